"""Learning curves: a cell's re-ranking quality on small suites as it trains.

:class:`LearningCurve` is a ``TrainerCallback``: before the first step, every ``every_pairs``
training pairs, and after the last step, it re-ranks each suite's first-stage run with the model
being trained (:func:`st_distill.evaluation.rerank_and_measure`, so in bfloat16 where the hardware has it)
and appends a point to a JSON-lines file::

    {"step": 40, "pairs": 640, "train_seconds": 51.2, "train_cpu_seconds": 98.0,
     "suites": {"trec-dl-2019": {"nDCG@10": 0.4421}}}

``train_seconds`` and ``train_cpu_seconds`` count training only (evaluations left out), so curves
read as quality per second of training. The report draws them against training pairs
(:func:`st_distill.bench.report.learning_curves`). On a resumed run, points after the checkpoint's
step are dropped and measured again.

Example:
    ::

        curve = LearningCurve({"dev": loaded}, ["nDCG@10"], every_pairs=320, pairs_per_step=16, path="curve.jsonl")
        train_model(model, loss, dataset, args, ..., callbacks=[curve])
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from st_distill.bench.levels import constant_score_level
from st_distill.bench.workspace import CellFolder, Workspace
from st_distill.evaluation.rerank import Candidates, rerank_and_measure, top_candidates
from st_distill.io import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["LearningCurve", "loss_curves", "read_curve", "save_png"]


def read_curve(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The points of a curve file, in step order (``[]`` when there is none).

    Raises:
        ValueError: Naming the file and line, when a line is not a JSON point with a ``step``.
    """
    path = Path(path)
    if not path.is_file():
        return []
    points = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                point = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg}); the curve file is damaged") from exc
            if not isinstance(point, dict) or not isinstance(point.get("step"), int):
                raise ValueError(f"{path}, line {number}: expected a JSON object with an integer 'step'")
            points.append(point)
    return sorted(points, key=lambda p: p["step"])


class LearningCurve(TrainerCallback):
    """Re-ranks small suites every ``every_pairs`` training pairs and records the metrics.

    Args:
        suites: ``{name: suite}``; each suite has ``queries``, ``corpus``, ``qrels``, ``run`` (the
            first stage, already cut to its depth) and ``relevance_level``
            (:class:`st_distill.bench.phases.sources.Loaded`).
        metrics: Measures to compute (``"nDCG@10"``...), as in the bench's ``[eval]``.
        every_pairs: Training pairs (passages, over all devices) between two points.
        pairs_per_step: Training pairs of one optimiser step, over all devices.
        path: The JSON-lines file the points go to.
        batch_size: Pairs per scoring forward pass.
        enabled: ``False`` on the ranks of a distributed run that do not evaluate.
    """

    def __init__(
        self,
        suites: Mapping[str, Any],
        metrics: Sequence[str],
        every_pairs: int,
        pairs_per_step: int,
        path: str | os.PathLike,
        batch_size: int = 64,
        enabled: bool = True,
    ) -> None:
        if every_pairs <= 0 or pairs_per_step <= 0:
            raise ValueError(f"every_pairs and pairs_per_step must be positive, got {every_pairs} and {pairs_per_step}")
        self.suites = dict(suites)
        self.metrics = tuple(metrics)
        self.every_pairs = every_pairs
        self.pairs_per_step = pairs_per_step
        self.path = Path(path)
        self.batch_size = batch_size
        self.enabled = enabled
        self.points: list[dict[str, Any]] = []
        self._clock = (0.0, 0.0)  # training wall and CPU seconds counted so far
        self._since: tuple[float, float] | None = None
        self._candidates: dict[str, Candidates] = {}  # per suite, made at the first point

    # -- the trainer's events ------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self.enabled:
            return
        step = state.global_step
        stored = read_curve(self.path)
        self.points = [p for p in stored if p["step"] <= step]
        if len(self.points) < len(stored):
            self._write()
        last = self.points[-1] if self.points else None
        self._clock = (last["train_seconds"], last["train_cpu_seconds"]) if last else (0.0, 0.0)
        if last is None or last["step"] < step:
            self._evaluate(model, step)
        self._start()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self.enabled:
            return
        pairs = state.global_step * self.pairs_per_step
        if pairs // self.every_pairs > self.points[-1]["pairs"] // self.every_pairs:
            self._evaluate(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.enabled and self.points[-1]["step"] < state.global_step:
            self._evaluate(model, state.global_step)

    # -- measuring -----------------------------------------------------------------------------

    def _start(self) -> None:
        self._since = (time.perf_counter(), time.process_time())

    def _stop(self) -> None:
        if self._since is not None:
            wall, cpu = time.perf_counter() - self._since[0], time.process_time() - self._since[1]
            self._clock = (self._clock[0] + wall, self._clock[1] + cpu)
            self._since = None

    def _write(self) -> None:
        with atomic_write(self.path) as f:
            for p in self.points:
                f.write(json.dumps(p, sort_keys=True) + "\n")

    def _evaluate(self, model, step: int) -> None:
        self._stop()
        started = time.perf_counter()
        suites = {}
        for name, suite in self.suites.items():
            if name not in self._candidates:
                self._candidates[name] = top_candidates(suite.run, suite.queries, suite.corpus, depth=None)
            result = rerank_and_measure(model, self._candidates[name], suite.qrels, self.metrics, suite.relevance_level,
                                        batch_size=self.batch_size, show_progress_bar=False, given_names=True)
            suites[name] = result.evaluation.aggregate
        point = {"step": step, "pairs": step * self.pairs_per_step, "train_seconds": round(self._clock[0], 2),
                 "train_cpu_seconds": round(self._clock[1], 2), "suites": suites}
        self.points.append(point)
        self._write()
        logger.info("learning curve at %d pairs (%.0f s of training; evaluated in %.0f s): %s", point["pairs"],
                    point["train_seconds"], time.perf_counter() - started, suites)
        self._start()


def save_png(fig, path: Path) -> None:
    """Writes a matplotlib figure as PNG, atomically, without metadata that would change between runs."""
    buffer = io.BytesIO()
    # No "Software"/date metadata: the same numbers give the same bytes.
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())


def loss_curves(ws: Workspace, cells: list[dict], phase: str, folder: Path, objectives: list[str]) -> Path | None:
    """One panel per (backbone, objective): the training loss against steps (mean over seeds), with
    the loss of a constant-score student marked (:func:`st_distill.bench.levels.constant_score_level`).
    Objectives have their own y-axes: their losses live on scales that differ by orders of magnitude."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[tuple[str, str], list[dict[int, float]]] = defaultdict(list)
    loss_args: dict[str, dict] = {}
    for cell in cells:
        log = CellFolder(ws / cell["folder"]).training_log
        if not log.is_file():
            continue
        try:
            with open(log, encoding="utf-8") as f:
                points = {int(r["step"]): float(r["loss"]) for r in map(json.loads, f) if "loss" in r and math.isfinite(r["loss"])}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{log}: not valid JSON lines ({exc}); the file is corrupt: delete or repair it") from None
        c = cell["cell"]
        curves[(c["backbone"], c["objective"] + (f"[{c['variant']}]" if c.get("variant") else ""))].append(points)
        loss_args.setdefault(c["objective"], cell.get("settings", {}).get("loss", {}))
    if not curves:
        return None
    rank = {name: i for i, name in enumerate(objectives)}
    curves = dict(sorted(curves.items(), key=lambda item: (item[0][0], rank.get(item[0][1].split("[")[0], len(rank)), item[0][1])))
    columns = min(3, len(curves))
    rows = math.ceil(len(curves) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax, ((backbone, objective), runs) in zip(axes.flat, curves.items()):
        steps = sorted(set.intersection(*(set(r) for r in runs)))
        ax.plot(steps, [np.mean([r[s] for r in runs]) for s in steps], color="tab:blue", label="training loss")
        name = objective.split("[")[0]
        level = constant_score_level(name, ws.data(name), loss_args.get(name))
        if level is not None:
            ax.axhline(level, color="gray", linestyle="--", linewidth=1, label=f"constant score ({level:.3g})")
        ax.set_title(f"{objective} ({backbone})", fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize="x-small")
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    fig.tight_layout()
    path = folder / f"loss_{phase}.png"
    save_png(fig, path)
    plt.close(fig)
    return path
