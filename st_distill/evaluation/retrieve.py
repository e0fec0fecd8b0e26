"""Deprecated alias of :mod:`st_distill.data.first_stage` (moved in 0.2.0); kept so that old imports work."""

import warnings

from st_distill.data.first_stage import *  # noqa: F401,F403
from st_distill.data.first_stage import __all__  # noqa: F401

warnings.warn(
    "st_distill.evaluation.retrieve moved to st_distill.data.first_stage; the old name will be removed in a later release",
    DeprecationWarning,
    stacklevel=2,
)
