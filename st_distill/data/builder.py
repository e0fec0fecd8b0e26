"""Deprecated alias of :mod:`st_distill.dataset` (moved in 0.2.0); kept so that old imports work."""

import st_distill.dataset

from st_distill._deprecated import alias_module

alias_module(__name__, st_distill.dataset)
