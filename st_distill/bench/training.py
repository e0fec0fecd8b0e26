"""Deprecated alias of :mod:`st_distill.training` (moved in 0.2.0); kept so that old imports work."""

import warnings

from st_distill.training import *  # noqa: F401,F403
from st_distill.training import __all__  # noqa: F401
from st_distill.training.trainer import _last_checkpoint  # noqa: F401  (imported by older tests and scripts)

warnings.warn(
    "st_distill.bench.training moved to st_distill.training; the old name will be removed in a later release",
    DeprecationWarning,
    stacklevel=2,
)
