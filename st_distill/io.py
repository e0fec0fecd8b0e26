"""Small file helpers shared by every layer: atomic writes and transparent gzip reads."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def open_bytes(path: str | os.PathLike) -> IO[bytes]:
    """Opens a file for reading bytes, decompressing it on the fly when its name ends in ``.gz``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Writes a file atomically: into a temporary file in the same folder, renamed over ``path`` on success.

    A crash or an exception inside the ``with`` block leaves any previous version of ``path``
    untouched and removes the temporary file, so readers never see a half-written file.

    Args:
        path: The destination file. Its parent folder is created if needed.
        mode: ``"w"`` for text (UTF-8) or ``"wb"`` for bytes.

    Example:
        ::

            with atomic_write("metrics.json") as f:
                json.dump(metrics, f)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False, ensure_ascii=False)
        f.write("\n")
