"""Deprecated module names: an old import path that is the moved module itself."""

from __future__ import annotations

import sys
import warnings
from types import ModuleType


def alias_module(old: str, new: ModuleType) -> None:
    """Makes ``old`` (the calling module's ``__name__``) the module ``new``, with a ``DeprecationWarning``.

    ``sys.modules`` maps the old name to the new module itself, so attributes set through the old
    name (``monkeypatch.setattr``) change what the new module uses, and every public name resolves.
    """
    warnings.warn(
        f"{old} moved to {new.__name__}; the old name will be removed in a later release",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = new
