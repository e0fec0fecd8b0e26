"""The results folder: :class:`Workspace` owns every path and file name in it; marker names,
atomic folders, per-cell claims, distributed ranks."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from st_distill.io import file_lock, read_json, write_json

__all__ = [
    "DONE", "PARTIAL", "STARTED", "INPUTS_FILE", "SHARED_FOLDERS", "CellFolder", "Workspace", "lock", "claim", "atomic_folder",
    "Distributed", "WAIT_TIMEOUT",
]

DONE = "DONE"
INPUTS_FILE = "inputs.json"
SHARED_FOLDERS = ("sources/", "teacher/", "data/", "eval/", "step0/")
STARTED = "STARTED"
PARTIAL = ".partial"


@dataclass(frozen=True)
class CellFolder:
    """The files of one cell's folder (final, or its ``.partial`` while it is made); see :class:`Workspace`."""

    path: Path

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def done(self) -> Path:
        """``DONE``: written last."""
        return self.path / DONE

    @property
    def metrics(self) -> Path:
        """``metrics.json``: the cell, its settings, training summary and metrics per suite."""
        return self.path / "metrics.json"

    @property
    def record(self) -> Path:
        """``cell.json``: the cell and the settings it was started with (a resume compares them)."""
        return self.path / "cell.json"

    @property
    def trained(self) -> Path:
        """``TRAINED``: the model is saved; only the evaluation is left."""
        return self.path / "TRAINED"

    @property
    def started(self) -> Path:
        """``STARTED``: the trainer took its first step."""
        return self.path / STARTED

    @property
    def summary(self) -> Path:
        """``train.json``: the trainer's summary."""
        return self.path / "train.json"

    @property
    def model(self) -> Path:
        """``model/``: the trained CrossEncoder."""
        return self.path / "model"

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: the trainer's checkpoints while it trains."""
        return self.path / "checkpoints"

    @property
    def training_log(self) -> Path:
        """``training_log.jsonl``: the trainer's log history."""
        return self.path / "training_log.jsonl"

    @property
    def curve(self) -> Path:
        """``curve.jsonl``: the learning curve's points (``[eval.curve]``)."""
        return self.path / "curve.jsonl"

    @property
    def runs(self) -> Path:
        """``runs/``: the re-ranked run of each suite."""
        return self.path / "runs"

    def run(self, suite: str) -> Path:
        """``runs/<suite>.trec``."""
        return self.runs / f"{suite}.trec"

    @property
    def mteb(self) -> Path:
        """``mteb/``: MTEB's results cache (``[eval.mteb]``)."""
        return self.path / "mteb"


@dataclass(frozen=True)
class Workspace:
    """A bench results folder (``config.output_dir``): every path and file name in it.

    The layout is described in :mod:`st_distill.bench.runner`. ``ws / "name"`` is ``ws.root / "name"``.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    def __str__(self) -> str:
        return str(self.root)

    @property
    def inputs(self) -> Path:
        """``inputs.json``: the inputs that made the shared folders."""
        return self.root / INPUTS_FILE

    @property
    def record(self) -> Path:
        """``bench.json``: what the report needs to know about the run."""
        return self.root / "bench.json"

    @property
    def config_copy(self) -> Path:
        """``config.toml``: a copy of the config."""
        return self.root / "config.toml"

    @property
    def report(self) -> Path:
        """``report/``: tables and charts."""
        return self.root / "report"

    def source(self, name: str) -> Path:
        """``sources/<name>/``: first-stage runs made for a training source."""
        return self.root / "sources" / name

    @property
    def teacher(self) -> Path:
        """``teacher/``: the teacher phase's model and score caches."""
        return self.root / "teacher"

    @property
    def teacher_model(self) -> Path:
        """``teacher/model/``: the teacher trained in the teacher phase."""
        return self.teacher / "model"

    @property
    def teacher_partial(self) -> Path:
        """``teacher/model.partial/``: the teacher while it trains (its checkpoints resume)."""
        return self.teacher / f"model{PARTIAL}"

    @property
    def teacher_data(self) -> Path:
        """``teacher/data/``: the teacher phase's training dataset."""
        return self.teacher / "data"

    def teacher_cache(self, source: str) -> Path:
        """``teacher/<source>/``: the teacher-score cache of a training source."""
        return self.teacher / source

    def data(self, objective: str) -> Path:
        """``data/<objective>/``: an objective's built training dataset."""
        return self.root / "data" / objective

    def suite(self, name: str) -> Path:
        """``eval/<name>/``: an evaluation suite's first-stage run and reference metrics."""
        return self.root / "eval" / name

    def teacher_run(self, suite: str) -> Path:
        """``eval/<suite>/teacher.trec``: the teacher's own re-ranking of a suite."""
        return self.suite(suite) / "teacher.trec"

    def step0(self, key: str) -> CellFolder:
        """``step0/<key>/``: the untrained student's evaluation (``key``: :attr:`~st_distill.bench.plan.Step0Settings.key`),
        laid out as a cell's folder (``metrics.json``, ``runs/``, ``DONE``)."""
        return CellFolder(self.root / "step0" / key)

    def cells(self, phase: str) -> Path:
        """``cells/<phase>/``."""
        return self.root / "cells" / phase

    def selection(self, phase: str) -> Path:
        """``cells/<phase>/selection.json``: what a sweep phase selected."""
        return self.cells(phase) / "selection.json"

    def cell(self, key: str) -> CellFolder:
        """``cells/<key>/``: a finished cell (``key``: :attr:`~st_distill.bench.plan.Cell.key`)."""
        return CellFolder(self.root / "cells" / key)

    def partial(self, key: str) -> CellFolder:
        """``cells/<key>.partial/``: a cell while it is made."""
        return CellFolder(self.root / "cells" / f"{key}{PARTIAL}")

    @property
    def prepare_lock(self) -> Path:
        """``.locks/prepare``: held while the shared steps are made."""
        return self.root / ".locks" / "prepare"

    def cell_lock(self, key: str) -> Path:
        """``.locks/cells/<key>.lock``: held while a run makes the cell (see :func:`claim`)."""
        return self.root / ".locks" / "cells" / f"{key}.lock"


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
