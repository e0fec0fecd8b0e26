"""The results folder's mechanics: marker names, atomic folders, file locks, distributed ranks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DONE", "PARTIAL", "STARTED", "INPUTS_FILE", "SHARED_FOLDERS", "lock", "atomic_folder", "Distributed"]

DONE = "DONE"
INPUTS_FILE = "inputs.json"
SHARED_FOLDERS = ("sources/", "teacher/", "data/", "eval/")
STARTED = "STARTED"
PARTIAL = ".partial"


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """An exclusive file lock, so that shards sharing a results folder build shared steps once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yields a fresh temporary folder next to ``final``; renames it to ``final`` on success."""
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class Distributed:
    """Rank 0 prepares, evaluates and writes; every rank trains (``accelerate launch`` / ``torchrun``)."""

    def __init__(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.state = None
        if self.world_size > 1:
            from accelerate import PartialState

            self.state = PartialState()

    @property
    def is_main(self) -> bool:
        return self.state is None or self.state.is_main_process

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()
