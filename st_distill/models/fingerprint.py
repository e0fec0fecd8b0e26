"""What a model spec stands for, from its files and before loading: the content hash of a local
folder's weight, config and tokenizer files, or a hub id with its revision.

A loaded model's fingerprint is :func:`st_distill.teachers.model_fingerprint`; this one is cheap
enough to take for every backbone of a grid each time a run starts (a file's hash is reused while
its size and modification time stay the same).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from st_distill.io import file_sha256
from st_distill.models import PACKAGE_PREFIX, RESOURCE_PREFIX, resolve_model

__all__ = ["MODEL_FILE_SUFFIXES", "spec_fingerprint"]

#: The files of a model folder that make what it computes: weights, configs, tokenizer files.
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model")

_HASHES: dict[tuple[str, int, int], str] = {}


def spec_fingerprint(spec: str, base: str | os.PathLike | None = None) -> str:
    """The fingerprint of a model spec (see :mod:`st_distill.models`), taken without loading it.

    Args:
        spec: A local folder, ``package:MODULE``, ``resource://...`` or a hub id.
        base: The folder a relative spec is relative to.

    Returns:
        ``"sha256:<hex>"`` over the names and contents of a folder's weight, config and tokenizer
        files (``README.md`` and hidden files do not count), and those of the module subfolders its
        ``modules.json`` lists; for a hub id,
        ``"hub:<id>@<revision>"`` with the commit of its local copy, or ``"hub:<id>"`` where none is
        cached.

    Raises:
        FileNotFoundError: If a local folder has no model file.
    """
    if spec.startswith((PACKAGE_PREFIX, RESOURCE_PREFIX)) or Path(resolve_model(spec, base)).is_dir():
        return folder_fingerprint(Path(resolve_model(spec, base)))
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", spec) or spec.startswith("."):
        return f"missing:{spec}"
    return _hub_fingerprint(spec)


def folder_fingerprint(folder: Path) -> str:
    """``"sha256:<hex>"`` of a model folder's files (``"missing:<folder>"`` without any; see :func:`spec_fingerprint`)."""
    folders = [folder]
    modules = folder / "modules.json"
    if modules.is_file():  # a sentence-transformers model: its modules' subfolders (1_Pooling, ...)
        try:
            folders += [folder / m["path"] for m in json.loads(modules.read_text(encoding="utf-8")) if m.get("path")]
        except (ValueError, TypeError, KeyError):
            pass  # a broken modules.json still counts through its own bytes
    files = sorted({p for f in folders if f.is_dir() for p in f.iterdir()
                    if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES and not p.name.startswith(".")})
    if not files:
        return f"missing:{folder}"
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(folder).as_posix()}\0{_file_hash(file)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def _file_hash(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_sha256(path)
    return _HASHES[key]


def _hub_fingerprint(model_id: str) -> str:
    """``hub:<id>@<commit>`` from the local hub cache (the snapshot folder of its ``config.json``)."""
    from huggingface_hub import try_to_load_from_cache  # only for hub ids: keeps local specs' start-up light

    cached = try_to_load_from_cache(model_id, "config.json")
    if isinstance(cached, str) and Path(cached).parent.parent.name == "snapshots":
        return f"hub:{model_id}@{Path(cached).parent.name}"
    return f"hub:{model_id}"
