"""Small file helpers shared by every layer: atomic writes, transparent gzip reads, and early checks
that an input is a file and an output can be written, so a wrong path fails before any work."""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from filelock import FileLock, Timeout


def require_file(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path`, checked to be an existing file.

    Raises:
        IsADirectoryError: When ``path`` is a folder.
        FileNotFoundError: When nothing is there.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def require_output_file(path: str | os.PathLike) -> Path:
    """Checks, before any work, that a file can be written at ``path``: it is not a folder, nor under a file.

    Raises:
        IsADirectoryError: When ``path`` is a folder.
        NotADirectoryError: When a parent of ``path`` is a file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file to write")
    _require_folder_chain(path.parent, path)
    return path


def require_output_folder(path: str | os.PathLike) -> Path:
    """Checks, before any work, that ``path`` is a folder or can become one, and that it takes new files.

    Writability is tried, not inferred from permission bits (which the superuser ignores, and which
    do not show a read-only file system): an empty folder is made and removed in ``path``, or in its
    nearest existing parent when ``path`` does not exist yet.

    Raises:
        NotADirectoryError: When ``path`` or one of its parents is an existing file.
        PermissionError: When nothing can be created there (no write permission, a read-only file system).
    """
    path = Path(path)
    existing = _require_folder_chain(path, path)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".st-distill-write-check-", dir=existing))
    except OSError as exc:
        where = "" if existing == path else f" (its nearest existing parent {existing} does not take new folders)"
        raise PermissionError(f"{path}: cannot write there{where}: {exc.strerror or exc}") from exc
    return path


def refuse_output_over_input(outputs: dict[str, str | os.PathLike | None], inputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuses, before any work, an output that is one of the inputs.

    Paths are compared after following symlinks (``Path.resolve``), and existing files also by
    ``os.path.samefile`` (hard links), so ``--output passages.tsv`` cannot overwrite ``--corpus
    passages.tsv`` however it is spelled. ``None`` entries (options not given) are ignored.

    Args:
        outputs: ``{option name: path}`` of what the command writes (a file or a folder).
        inputs: ``{option name: path}`` of what the command reads (files or folders).

    Raises:
        ValueError: Naming both options and paths when an output resolves to an input.
    """
    for out_name, out_path in outputs.items():
        if out_path is None:
            continue
        out = Path(out_path).resolve()
        for in_name, in_path in inputs.items():
            if in_path is None:
                continue
            source = Path(in_path).resolve()
            same = out == source
            if not same and out.exists() and source.exists():
                same = os.path.samefile(out, source)
            if same:
                raise ValueError(f"{out_name} {out_path} is the input {in_name} {in_path}: writing it would overwrite the input")


def _require_folder_chain(folder: Path, target: Path) -> Path:
    """The nearest of ``folder`` and its parents that exists; raises when that is not a folder."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            if parent.is_dir():
                return parent
            if parent == target:
                raise NotADirectoryError(f"{target}: exists and is not a folder")
            raise NotADirectoryError(f"{target}: cannot be created, {parent} is a file")
    return Path.cwd()


def open_bytes(path: str | os.PathLike) -> IO[bytes]:
    """Opens a file for reading bytes, decompressing it on the fly when its name ends in ``.gz``.

    Raises:
        IsADirectoryError: When ``path`` is a folder.
        FileNotFoundError: When nothing is there.
    """
    path = require_file(path)
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
    untouched and removes the temporary file, so readers never see a half-written file. The file
    gets the permissions of a plainly created one (``0666`` less the umask: ``0644`` by default),
    not the ``0600`` of a temporary file, so colleagues on a shared file system can read it.

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
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # e.g. EFBIG from a write: name the file
            raise OSError(exc.errno, f"{exc.strerror or exc}: writing {path}", str(path)) from exc
        raise


def current_umask() -> int:
    """The process's umask, read from ``/proc/self/status`` where Linux gives it (no race with other threads).

    Elsewhere it is read by setting and restoring it, which briefly changes it for the whole process.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file.

    Args:
        path: The file.

    Returns:
        The parsed value.

    Raises:
        ValueError: If the file is not valid JSON; the message names the file.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); the file is corrupt: delete or repair it") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc}); the file is corrupt: delete or repair it") from None


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, blocking: bool = True) -> Iterator[bool]:
    """An exclusive lock on ``path`` (:class:`filelock.FileLock`), held for the ``with`` block.

    The lock file is created (with its folder) when missing; a symbolic link there is refused, never
    followed, so no file elsewhere is truncated.

    Args:
        path: The lock file.
        blocking: Wait for the lock (the default); ``False`` tries once.

    Yields:
        Whether the lock is held (always ``True`` when ``blocking``).

    Raises:
        OSError: If ``path`` cannot be a lock file (a symbolic link, a folder); the message names it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        if path.is_symlink():
            raise OSError(errno.ELOOP, "it is a symbolic link")
        lock.acquire(timeout=-1 if blocking else 0)
    except Timeout:
        yield False
        return
    except OSError as exc:
        raise OSError(exc.errno, f"cannot lock {path} ({exc.strerror or exc}): a lock file must be a plain file, "
                      "not a link or a folder; remove it", str(path)) from None
    try:
        yield True
    finally:
        lock.release()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False, ensure_ascii=False)
        f.write("\n")
