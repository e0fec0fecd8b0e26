"""Deprecated alias of :mod:`st_distill.dataset` (moved in 0.2.0); kept so that old imports work."""

import warnings

from st_distill.dataset import *  # noqa: F401,F403
from st_distill.dataset import __all__  # noqa: F401

warnings.warn(
    "st_distill.data.builder moved to st_distill.dataset; the old name will be removed in a later release",
    DeprecationWarning,
    stacklevel=2,
)
