"""Deprecated alias of :mod:`st_distill.models.heads` (moved in 0.2.0); kept so that old imports work."""

import st_distill.models.heads

from st_distill._deprecated import alias_module

alias_module(__name__, st_distill.models.heads)
