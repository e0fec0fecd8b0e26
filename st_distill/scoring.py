"""Deprecated alias of :mod:`st_distill.models.scoring` (moved in 0.2.0); kept so that old imports work."""

import warnings

from st_distill.models.scoring import *  # noqa: F401,F403
from st_distill.models.scoring import __all__  # noqa: F401

warnings.warn(
    "st_distill.scoring moved to st_distill.models.scoring; the old name will be removed in a later release",
    DeprecationWarning,
    stacklevel=2,
)
