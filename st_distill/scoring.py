"""Deprecated alias of :mod:`st_distill.models.scoring` (moved in 0.2.0); kept so that old imports work."""

import st_distill.models.scoring

from st_distill._deprecated import alias_module

alias_module(__name__, st_distill.models.scoring)
