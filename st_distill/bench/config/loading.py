"""Loading a bench config: the TOML file, validated in full (see :mod:`st_distill.bench.config`)."""

import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from st_distill.bench.config.errors import ConfigError, config_errors
from st_distill.bench.config.sections import BenchConfig
from st_distill.bench.config.types import DEFAULT_CONFIG
from st_distill.models import RESOURCE_PREFIX, resolve_resource

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

logger = logging.getLogger(__name__)

__all__ = ["load_config"]


def load_config(
    spec: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None, check_files: bool = True
) -> BenchConfig:
    """Reads and validates a bench config.

    Args:
        spec: A TOML file, ``resource://...``, or the name of a packaged config (``"quickstart"``);
            ``None`` for the packaged quickstart.
        output_dir: Overrides the config's ``output_dir`` (checked the same way).
        check_files: Fail on a missing input file or model folder (the default). ``False`` (dry
            runs) records missing inputs in :attr:`BenchConfig.missing` instead, so a plan can be
            printed on a machine that does not hold the data.

    Returns:
        The validated :class:`BenchConfig`.

    Raises:
        FileNotFoundError: If the config file does not exist.
        ConfigError: On any invalid key or value, naming the key path (every error, one a line).

    A deprecated key (``[train] max_length``) is read as its new spelling and logged as a warning
    naming the file and the key.
    """
    path = _config_path(spec)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"invalid TOML: {exc}") from None
    raw.setdefault("name", path.stem)
    if output_dir is not None:
        raw["output_dir"] = str(output_dir)
    deprecated: dict[str, str] = {}
    context: dict[str, Any] = {"base": path.resolve().parent, "allow_missing": False, "deprecated": deprecated}
    missing: list[str] = []
    try:
        config = BenchConfig.model_validate(raw, context=context)
    except ValidationError as exc:
        errors = config_errors(exc, BenchConfig)
        missing = [f"{key}: {message}" for key, message, kind in errors if kind == "missing_input"]
        if check_files or len(missing) < len(errors):
            (key, message, _), *more = errors
            raise ConfigError(path, key, message, [(k, m) for k, m, _ in more]) from None
        try:
            config = BenchConfig.model_validate(raw, context={**context, "allow_missing": True})
        except ValidationError as again:
            (key, message, _), *more = config_errors(again, BenchConfig)
            raise ConfigError(path, key, message, [(k, m) for k, m, _ in more]) from None
    for key, message in deprecated.items():
        logger.warning("%s: %s: %s", path, key, message)
    config._path = str(path)
    config._missing = tuple(missing)
    return config


def _config_path(spec: str | os.PathLike | None) -> Path:
    text = DEFAULT_CONFIG if spec is None else str(spec)
    if text.startswith(RESOURCE_PREFIX):
        path = resolve_resource(text)
    elif re.fullmatch(r"[A-Za-z0-9_-]+", text) and not Path(text).exists():
        path = resolve_resource(f"{RESOURCE_PREFIX}{text}/config.toml")
    else:
        path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"{text}: no such config file")
    return path
