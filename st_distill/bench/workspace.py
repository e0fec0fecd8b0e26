"""The results folder's mechanics: marker names, atomic folders, file locks, distributed ranks."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from st_distill.io import file_lock, read_json, write_json

__all__ = ["DONE", "PARTIAL", "STARTED", "INPUTS_FILE", "SHARED_FOLDERS", "lock", "claim", "atomic_folder", "Distributed", "WAIT_TIMEOUT"]

DONE = "DONE"
INPUTS_FILE = "inputs.json"
SHARED_FOLDERS = ("sources/", "teacher/", "data/", "eval/")
STARTED = "STARTED"
PARTIAL = ".partial"


def lock(path: Path) -> contextlib.AbstractContextManager[None]:
    """Deprecated: :func:`st_distill.io.file_lock`."""
    warnings.warn("st_distill.bench.workspace.lock is deprecated: use st_distill.io.file_lock", DeprecationWarning, stacklevel=2)
    return file_lock(path)


@contextlib.contextmanager
def claim(path: Path) -> Iterator[str | None]:
    """Tries to take the exclusive lock ``path`` without waiting (one per cell, so that two runs on one
    results folder never train the same cell).

    While held, ``<path>.holder`` names the holder (pid, host, since when) for the others to show.

    Yields:
        ``None`` while this process holds the lock; else who holds it, e.g. ``"pid 42 on host h since
        2026-01-01 10:00:00 UTC"``, and nothing is held.

    Raises:
        OSError: If ``path`` cannot be a lock file (a symbolic link, a folder).
    """
    holder = path.with_name(path.name + ".holder")
    with file_lock(path, blocking=False) as held:
        if not held:
            yield _holder(holder)
            return
        try:
            write_json(holder, {"pid": os.getpid(), "host": socket.gethostname(),
                                "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
            yield None
        finally:
            with contextlib.suppress(OSError):
                holder.unlink()


def _holder(path: Path) -> str:
    """Who holds a :func:`claim`, from its ``.holder`` file."""
    try:
        who = read_json(path)
        return f"pid {who['pid']} on host {who['host']} since {who['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (no holder recorded yet)"


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


WAIT_TIMEOUT = timedelta(days=2)
"""How long a rank waits for rank 0 to finish a step it does alone (data, teacher scores, evaluation)."""


class Distributed:
    """The ranks of a ``torchrun`` / ``accelerate launch`` job; a single rank when launched plainly.

    Rank 0 prepares the shared steps, evaluates, and writes every file of the results folder;
    every rank trains (the trainer wraps the model in DDP). While rank 0 works alone the other
    ranks wait in :meth:`barrier` or :meth:`broadcast` on a CPU (gloo) group whose timeout is
    :data:`WAIT_TIMEOUT`, not the training collectives' default of minutes: building MS MARCO
    datasets or evaluating a cell outlasts that. A rank that dies still ends the job at once, as
    ``torchrun`` stops every rank when one fails.

    The default process group (NCCL on GPUs, gloo on CPUs) is the one the trainer uses; on a GPU
    each rank is bound to the device of its ``LOCAL_RANK``.
    """

    def __init__(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0
        self.group = None
        if self.world_size > 1:
            import torch
            import torch.distributed as dist

            if not dist.is_initialized():
                cuda = torch.cuda.is_available()
                if cuda:
                    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
                dist.init_process_group("nccl" if cuda else "gloo")
            self.rank = dist.get_rank()
            self.group = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Waits until every rank gets here."""
        if self.group is not None:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if self.group is None:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    @contextlib.contextmanager
    def main_locked(self, path: Path) -> Iterator[None]:
        """Rank 0 runs the block holding the file lock ``path`` (see :func:`lock`); the other ranks run
        it without (doing only their part of it), and every rank meets at a barrier after it."""
        with file_lock(path) if self.is_main else contextlib.nullcontext():
            yield
        self.barrier()
