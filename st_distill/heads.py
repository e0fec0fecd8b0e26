"""Deprecated alias of :mod:`st_distill.models.heads` (moved in 0.2.0); kept so that old imports work."""

import warnings

from st_distill.models.heads import *  # noqa: F401,F403
from st_distill.models.heads import __all__  # noqa: F401

warnings.warn(
    "st_distill.heads moved to st_distill.models.heads; the old name will be removed in a later release",
    DeprecationWarning,
    stacklevel=2,
)
