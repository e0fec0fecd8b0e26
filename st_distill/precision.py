"""Deprecated alias of :mod:`st_distill.models.precision` (moved in 0.2.0); kept so that old imports work.

The alias is the module itself (``sys.modules`` points this name at it), so that setting an
attribute through the old name (a test's ``monkeypatch.setattr(precision, "native_bf16", ...)``)
changes what :mod:`st_distill.models.precision` uses.
"""

import sys
import warnings

from st_distill.models import precision

warnings.warn(
    "st_distill.precision moved to st_distill.models.precision; the old name will be removed in a later release",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = precision
