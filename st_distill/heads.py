"""Deprecated alias of :mod:`st_distill.models.heads` (moved in 0.2.0); kept so that old imports work.

The alias is the module itself (``sys.modules`` points this name at it), so that setting an
attribute through the old name changes what :mod:`st_distill.models.heads` uses.
"""

import sys
import warnings

from st_distill.models import heads

warnings.warn(
    "st_distill.heads moved to st_distill.models.heads; the old name will be removed in a later release",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = heads
