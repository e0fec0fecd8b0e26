"""Deprecated alias of :mod:`st_distill.models.precision` (moved in 0.2.0); kept so that old imports work."""

import warnings

from st_distill.models.precision import *  # noqa: F401,F403
from st_distill.models.precision import __all__  # noqa: F401

warnings.warn(
    "st_distill.precision moved to st_distill.models.precision; the old name will be removed in a later release",
    DeprecationWarning,
    stacklevel=2,
)
