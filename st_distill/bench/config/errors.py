"""Error messages of bench configs: pydantic's validation errors as ``CONFIG: KEY.PATH: what is wrong``."""

import os
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ValidationError
from typing_extensions import is_typeddict

__all__ = ["ConfigError", "config_errors"]


class ConfigError(ValueError):
    """An invalid bench config. The message is ``CONFIG: KEY.PATH: what is wrong``, one line per error."""

    def __init__(self, config: str | os.PathLike, key: str, message: str, more: Sequence[tuple[str, str]] = ()) -> None:
        self.config = str(config)
        self.key = key
        lines = [f"{config}: {k}: {m}" if k else f"{config}: {m}" for k, m in ((key, message), *more)]
        super().__init__("\n".join(lines))


_EXPECTED = {
    "int_type": "int", "int_parsing": "int", "int_from_float": "int", "float_type": "float", "float_parsing": "float",
    "string_type": "str", "bool_type": "bool", "bool_parsing": "bool", "path_type": "a path",
    "list_type": "a list", "tuple_type": "a list", "dict_type": "a table", "model_type": "a table",
    "model_attributes_type": "a table", "typed_dict_type": "a table",
}
#: pydantic's bound errors: the bound's key in the error's context, and its sign.
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<")}
_MISSING_HINTS = {
    "train_sources": "give at least one [[train_sources]] table",
    "objectives": "give at least one [[objectives]] table",
    "backbones": "give at least one [[backbones]] table",
    "eval": "give at least one [eval.suites.NAME] table",
    "eval.suites": "give at least one [eval.suites.NAME] table",
    "eval.mteb.tasks": "give the MTEB task names (or local BEIR folders) to evaluate",
}


def config_errors(exc: ValidationError, root: type[BaseModel]) -> list[tuple[str, str, str]]:
    """``(key path, message, error type)`` of each error, in the config's order.

    Args:
        exc: The validation error of ``root`` (the config's model).
        root: The model validated, whose annotations name the keys an unknown key is not.
    """
    out = []
    errors = exc.errors(include_url=False)
    for error in errors:
        ctx = error.get("ctx") or {}
        if error["type"] == "too_short" and any(e["loc"][: len(error["loc"])] == error["loc"] and e is not error for e in errors):
            continue  # a list whose entries failed is reported by those entries
        loc = (*(part for part in error["loc"] if part != "[key]"), *ctx.get("at", ()))
        key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        out.append((key, _message(error, loc, key, root), error["type"]))
    return out


def _message(error: dict[str, Any], loc: tuple, key: str, root: type[BaseModel]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error["input"]
    if kind in ("config", "missing_input"):
        return ctx["message"]
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "missing":
        return f"missing: {_MISSING_HINTS[key]}" if key in _MISSING_HINTS else "missing"
    if kind == "extra_forbidden":
        return f"unknown key (known: {', '.join(_keys_at(root, loc[:-1]))})"
    if kind in _BOUNDS:
        bound, sign = _BOUNDS[kind]
        return f"must be {sign} {ctx[bound]}, got {value!r}"
    if kind == "finite_number":
        return f"must be a finite number, got {value!r}"
    if kind == "literal_error":
        return f"unknown value {value!r} (known: {ctx['expected']})"
    if kind == "too_short":
        return f"expected at least {ctx['min_length']} entry, got none" if ctx.get("min_length") == 1 else error["msg"]
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {value!r}"
    return error["msg"]


def _keys_at(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the table at ``loc`` knows, found by walking the models' annotations."""
    kind: Any = root
    for part in loc:
        kind = _unwrap(kind)
        if isinstance(part, int):
            kind = get_args(kind)[0]
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            kind = kind.model_fields[part].annotation
        elif is_typeddict(kind):
            kind = get_type_hints(kind, include_extras=True)[part]
        else:  # a dict of tables (eval.suites)
            kind = get_args(kind)[1]
    kind = _unwrap(kind)
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else list(kind.__annotations__)


def _unwrap(kind: Any) -> Any:
    """The type under ``Annotated[...]`` and ``X | None``."""
    while True:
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
        elif get_origin(kind) in (Union, type(int | None)):
            kind = next(a for a in get_args(kind) if a is not type(None))
        else:
            return kind
