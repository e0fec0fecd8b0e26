"""Deprecated names: an old module path that is the moved module itself, and old names of moved objects."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any


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


def alias_names(module: str, home: str, **moved: Any) -> Callable[[str], Any]:
    """A module ``__getattr__`` that resolves old names to moved objects, with a ``DeprecationWarning``.

    Args:
        module: The module's ``__name__`` (the old names' home).
        home: The module the objects are public in now (named in the warning).
        **moved: Old name -> the object, now public in ``home`` under its ``__name__``.

    Returns:
        The function to assign to the module's ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is now {home}.{moved[name].__name__}", DeprecationWarning, stacklevel=2)
        return moved[name]

    return __getattr__
