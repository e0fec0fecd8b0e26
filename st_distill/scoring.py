"""Deprecated alias of :mod:`st_distill.models.scoring` (moved in 0.2.0); kept so that old imports work.

The alias is the module itself (``sys.modules`` points this name at it), so that setting an
attribute through the old name changes what :mod:`st_distill.models.scoring` uses.
"""

import sys
import warnings

from st_distill.models import scoring

warnings.warn(
    "st_distill.scoring moved to st_distill.models.scoring; the old name will be removed in a later release",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = scoring
