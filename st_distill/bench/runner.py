"""The bench runner: teacher phase, dataset building, the grid of training cells, evaluation.

Results folder layout (``config.output_dir``; :class:`~st_distill.bench.workspace.Workspace` owns
every path and file name)::

    bench.json                      what the report needs to know about the run (no timestamps)
    inputs.json                     the training sources, negatives, teacher and suites that made
                                    sources/, teacher/, data/ and eval/ (a later run must match)
    config.toml                     a copy of the config
    sources/<source>/               first-stage runs made here (``first_stage = "bm25"``)
    teacher/model/                  the teacher trained in the teacher phase (teacher.source = "train")
    teacher/<source>/               the teacher-score cache of each training source
    data/<objective>/               the built training dataset of each objective (+ report.json)
    eval/<suite>/                   first-stage run and metrics of each evaluation suite
    step0/<key>/                    the untrained student of a backbone (and seed) evaluated on the suites:
                                    metrics.json, runs/, DONE; ``key`` digests its settings
                                    (:class:`~st_distill.bench.plan.Step0Settings`)
    cells/<phase>/<backbone>/<objective>/seed-<seed>[--<variant>]/
        model/                      the trained CrossEncoder; README.md: its model card (st_distill.export.card),
                                    written with the metrics (a finished cell without one gets it on the next run)
        runs/<suite>.trec           the re-ranked run of each suite
        metrics.json                aggregate and per-query metrics per suite, the cell's settings
        cell.json                   the cell and the settings it was started with
        training_log.jsonl          the trainer's log history (loss per logging step)
        DONE                        written last
    cells/<phase>/selection.json    the hyper-parameters a sweep phase selected
    report/                         tables and charts (:mod:`st_distill.bench.report`)
    .locks/prepare                  held while the shared steps are made
    .locks/cells/<cell>.lock        held while a run makes the cell (``.holder`` beside it names who)

Every cell is built in ``<cell>.partial/`` and renamed to its final name once ``DONE`` is written,
so a finished cell is never half-written and never computed twice. A run killed in the middle of
a cell leaves ``<cell>.partial/`` with the trainer's last checkpoint; the next run resumes there
when the cell's settings (:class:`~st_distill.bench.plan.CellSettings`: data, model, training) are
those its ``cell.json`` records, and discards it otherwise.
Shared steps (teacher, datasets, first-stage runs) are written atomically too (temporary folder,
then rename) and skipped when present. They are reused only while the config's inputs
(``inputs.json``) and each cell's settings (its ``metrics.json``; the backbone by the fingerprint of
its files) stay the same; a run whose config changed either of them stops with an error naming
what changed. Measures added to ``eval.metrics`` are computed for finished cells from their saved
runs.

Several processes may share one results folder:

- shards (``--shard I/N``, e.g. array jobs): each runs its own cells; the shared steps (the
  record, BEIR downloads, teacher, datasets, first-stage runs, reference metrics, untrained students) are made under a file lock
  (``.locks/prepare``), so the first shard builds them and the others find them done;
- any runs on one folder: each cell is claimed (``.locks/cells/``) while a run makes it; another
  run skips a claimed cell, naming the process that holds it;
- the ranks of one ``torchrun`` / ``accelerate launch`` job (:class:`~st_distill.bench.workspace.Distributed`):
  every rank trains each cell (DDP, the global batch split across ranks); rank 0 alone builds
  the shared steps, writes the cell's folder and evaluates, and the others wait for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from typing import Any

from st_distill.bench.cards import cell_facts, has_card, write_card
from st_distill.bench.config import BenchConfig
from st_distill.bench.curves import LearningCurve
from st_distill.bench.phases.build import build_phase, check_built
from st_distill.bench.phases.evaluate import add_measures, evaluate_model, evaluate_mteb_suite, reference_metrics, step0_metrics
from st_distill.bench.phases.sources import load_collection
from st_distill.bench.phases.teacher import teacher_phase, train_teacher
from st_distill.bench.plan import (
    Cell, CellSettings, Step0Settings, cell_settings, check_plan, inputs_of, plan_cells, select_shard, step0_plan,
)
from st_distill.bench.report import write_report
from st_distill.bench.workspace import DONE, INPUTS_FILE, SHARED_FOLDERS, CellFolder, Distributed, Workspace, claim
from st_distill.data.download import fetch_beir
from st_distill.data.formats import Collection
from st_distill.dataset import load_built_dataset
from st_distill.io import read_json, write_json
from st_distill.logs import progress_enabled
from st_distill.models import resolve_model
from st_distill.objectives import get_objective
from st_distill.training import load_student, make_student, rows_per_batch, sample_pairs, save_student, train_model

logger = logging.getLogger(__name__)

__all__ = ["PhaseBlocked", "Runner", "run_bench"]


#: Settings that cells finished before st-distill recorded them lack (see Runner.check_finished).
_LEGACY_KEYS = ("data", "normalize")


class PhaseBlocked(RuntimeError):
    """A phase needs the selection of an earlier sweep phase whose cells are not all finished yet."""


class Runner:
    """Runs a validated config: ``Runner(config).run(...)``; see :func:`run_bench`."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.ws = Workspace(config.output_dir)
        self.dist = Distributed()
        if not self.dist.is_main:  # rank 0 tells the story; the others only warn
            logging.getLogger("st_distill").setLevel(logging.WARNING)
        self._sources: dict[str, Collection] | None = None
        self._suites: dict[str, Collection] | None = None
        self._teacher_scores: dict | None = None
        self._step0: dict[str, dict[str, list[Step0Settings]]] | None = None

    # -- shared inputs, loaded lazily ----------------------------------------------------------------

    def sources(self) -> dict[str, Collection]:
        if self._sources is None:
            self._sources = {
                s.name: load_collection(s, self.ws.source(s.name), max(s.depth, self.config.negatives.depth))
                for s in self.config.train_sources
            }
        return self._sources

    def suites(self) -> dict[str, Collection]:
        if self._suites is None:
            self._suites = {name: load_collection(s, self.ws.suite(name), s.depth) for name, s in self.config.eval.suites.items()}
        return self._suites

    def build(self, objective: str) -> None:
        """Builds (once) the dataset of ``objective``, scoring with the teachers first (once per run),
        and checks that a dataset found there was built with the config's settings. Rank 0 only."""
        if not (self.ws.data(objective) / DONE).is_file():
            if self._teacher_scores is None:
                self._teacher_scores = teacher_phase(self.config, self.ws, self.sources())
            build_phase(self.config, self.ws, objective, self.sources(), self._teacher_scores)
        check_built(self.config, self.ws, objective)

    def dataset(self, objective: str):
        """The dataset of ``objective``: built if missing (by rank 0, holding the folder's lock) and
        checked against the config's settings (see :meth:`build`), then loaded on every rank."""
        with self.dist.main_locked(self.ws.prepare_lock):
            if self.dist.is_main:
                self.build(objective)
        return load_built_dataset(self.ws.data(objective))

    def prepare(self, cells: list[Cell], planned: list[Cell] = ()) -> None:
        """The shared steps of the run: the record (``inputs.json``, ``bench.json``, ``config.toml``),
        BEIR downloads, and what ``cells`` need: the teacher phase, their objectives' datasets and
        each suite's reference metrics; and the untrained students of ``planned`` (the cells of
        the run, finished or not: :meth:`step0_references`), so that a results folder made before
        they existed gains them without training a cell.

        Rank 0 does them holding the results folder's lock, so that shards sharing the folder
        (``--shard``) build each once and never see another's half-made files; it checks the
        config's inputs against the recorded ones again under the lock, so that two shards with
        different inputs cannot both record theirs. The teacher phase's training runs on every rank; the other ranks wait for
        rank 0 at the end.
        """
        with self.dist.main_locked(self.ws.prepare_lock):
            if self.dist.is_main:
                self.check_inputs()  # again: another shard may have recorded its inputs since run() checked
                self.write_record()
                for collection in (*self.config.train_sources, *self.config.eval.suites.values()):
                    if isinstance(collection.beir, str):
                        fetch_beir(collection.beir)
            if cells and self.config.teacher.source == "train":
                train_teacher(self.config, self.ws, self.sources if self.dist.is_main else None, self.dist)
            if self.dist.is_main:
                for objective in dict.fromkeys(c.objective for c in cells):
                    self.build(objective)
                if cells:
                    reference_metrics(self.config, self.ws, self.suites())
                self.step0_references(planned)

    def step0_plan(self) -> dict[str, dict[str, list[Step0Settings]]]:
        """The untrained students of every phase whose selections are known
        (:func:`~st_distill.bench.plan.step0_plan`), made once per run."""
        if self._step0 is None:
            cells = plan_cells(self.config)
            selected = {}
            for phase in dict.fromkeys(c.phase for c in cells):
                try:
                    selected[phase] = self.selections(phase)
                except PhaseBlocked:
                    continue
            self._step0 = step0_plan(self.config, cells, selected)
        return self._step0

    def step0_of(self, cell: Cell) -> Step0Settings | None:
        """The untrained student of ``cell``'s backbone and seed."""
        return next((s for s in self.step0_plan().get(cell.phase, {}).get(cell.backbone, []) if s.seed in (None, cell.seed)), None)

    def step0_references(self, cells: list[Cell]) -> None:
        """Evaluates (once) the untrained student of each backbone and seed of ``cells`` into
        ``step0/<key>/`` (:func:`~st_distill.bench.phases.evaluate.step0_metrics`); a cosine head is
        calibrated on the pairs of its objective's dataset (built first where missing). Rank 0 only."""

        def calibration(objective: str) -> list[tuple[str, str]]:
            self.build(objective)
            return sample_pairs(load_built_dataset(self.ws.data(objective)))

        wanted = {step0.key: step0 for step0 in map(self.step0_of, cells) if step0 is not None}
        for settings in wanted.values():
            step0_metrics(self.config, self.ws, self.suites(), settings, calibration)

    # -- bookkeeping -------------------------------------------------------------------------------

    def check_inputs(self) -> None:
        """Checks the config's inputs against those recorded in ``inputs.json`` (if any); writes nothing.

        Raises:
            ValueError: When the folder's shared files were made from other inputs.
        """
        path = self.ws.inputs
        if path.is_file():
            now = inputs_of(self.config)
            before = read_json(path)
            changed = [key for key in now if before.get(key) != now[key]]
            if changed:
                raise ValueError(f"{self.ws}: its data, teacher scores and first-stage runs were made with other "
                                 f"{', '.join(changed)} settings than the config's now; use a new --output, or delete "
                                 f"{', '.join(SHARED_FOLDERS)}, cells/ and {INPUTS_FILE} there to rebuild them")

    def check_finished(self, cells: list[Cell]) -> None:
        """Checks that every finished cell of ``cells`` was made with the settings the config gives it now
        (:func:`~st_distill.bench.plan.cell_settings`: data, model and training), and that the datasets
        those cells trained on were built with the config's settings.

        A cell finished before its settings recorded the backbone's fingerprint, ``data`` and
        ``normalize`` is compared on the rest; its dataset's check covers ``data`` and ``normalize``,
        and a warning says that its backbone's weights cannot be checked.

        Raises:
            ValueError: Naming the first finished cell (or its dataset) whose settings differ.
        """
        selected_for: dict[str, dict] = {}
        unprinted = []
        for cell in cells:
            final = self.ws.cell(cell.key)
            if not final.done.is_file():
                continue
            if (self.ws.data(cell.objective) / DONE).is_file():
                check_built(self.config, self.ws, cell.objective)
            if cell.phase not in selected_for:
                selected_for[cell.phase] = self.selections(cell.phase)
            stored = read_json(final.metrics)["settings"]
            now = cell_settings(self.config, cell, selected_for[cell.phase]).record()
            if "fingerprint" not in stored["backbone"]:  # finished before st-distill recorded these
                stored = {**{k: now[k] for k in _LEGACY_KEYS}, **stored, "backbone": {**stored["backbone"], "fingerprint": now["backbone"]["fingerprint"]}}
                unprinted.append(cell.key)
            if stored != now:
                changed = _changed(stored, now)
                raise ValueError(f"{final.path}: finished with other settings than the config's now ({', '.join(changed)}); "
                                 "use another output_dir, or delete this cell to recompute it")
        if unprinted:
            logger.warning("%d finished cell(s) (first: %s) recorded no fingerprint of their backbone (made by an older "
                           "st-distill): reused on the assumption that its weights are unchanged", len(unprinted), unprinted[0])

    def complete_metrics(self, cells: list[Cell]) -> None:
        """Adds the config's measures that finished cells of ``cells`` lack (``eval.metrics`` grew since),
        computed from their saved re-ranked runs (``runs/<suite>.trec``). Rank 0 only."""
        for cell in cells:
            final = self.ws.cell(cell.key)
            if not final.done.is_file():
                continue
            added = add_measures(final, read_json(final.metrics), self.suites(), self.config.eval.metrics)
            if added:
                logger.info("cell %s: computed %s from its saved runs", cell.key, ", ".join(added))

    def complete_cards(self, cells: list[Cell]) -> None:
        """Writes the filled model card (:func:`~st_distill.bench.cards.write_card`) of finished cells of
        ``cells`` whose student has none (finished by an older st-distill): their files and ``DONE`` stay
        as they are (``README.md`` is no part of a model's fingerprint). Rank 0 only."""

        for cell in cells:
            final = self.ws.cell(cell.key)
            if not final.done.is_file() or not final.model.is_dir() or has_card(final.model):
                continue
            settings = cell_settings(self.config, cell, self.selections(cell.phase))
            self.write_cell_card(cell, settings, final, load_student(final.model, max_length=settings.backbone.max_length),
                                 read_json(final.metrics))
            logger.info("cell %s: wrote its model card", cell.key)

    def write_cell_card(self, cell: Cell, settings: CellSettings, folder: CellFolder, model, metrics: dict[str, Any]) -> None:
        """Writes ``model/README.md`` of a cell whose ``metrics.json`` holds ``metrics``."""
        step0 = self.step0_of(cell)
        facts = cell_facts(model, self.ws, cell, settings, metrics, [s.name for s in self.config.train_sources], self.config.eval.metrics,
                           self.ws.step0(step0.key) if step0 is not None else None, [m.model for m in self.config.teacher.models])
        write_card(model, folder.model, facts)

    def write_record(self) -> None:
        """Writes ``inputs.json`` (once), ``bench.json`` and ``config.toml``: only for a run that was accepted."""
        c = self.config
        if not self.ws.inputs.is_file():
            write_json(self.ws.inputs, inputs_of(c))
        write_json(self.ws.record, {
            "name": c.name,
            "phases": [{"name": p.name, "backbones": list(p.backbones), "objectives": list(p.objectives), "seeds": list(p.seeds),
                        "sweep": {k: list(v) for k, v in p.sweep.items()}, "select_on": p.select_on} for p in c.phases],
            "backbones": [b.name for b in c.backbones],
            "objectives": [o.name for o in c.objectives],
            "suites": {name: {"depth": s.depth, "relevance_level": s.relevance_level} for name, s in c.eval.suites.items()},
            "metrics": list(c.eval.metrics),
            "main_metric": c.eval.main_metric,
            "report": {"metrics": list(c.report.metrics), "baseline": c.report.baseline, "alpha": c.report.alpha},
            "step0": {phase: {backbone: [s.key for s in listed] for backbone, listed in backbones.items()}
                      for phase, backbones in self.step0_plan().items()},
        })
        shutil.copyfile(c.path, self.ws.config_copy)

    def selections(self, upto: str) -> dict[str, dict[str, Any]]:
        """The values earlier sweep phases selected per objective, for the phases after them.

        Raises:
            PhaseBlocked: When a selecting phase before ``upto`` has unfinished cells.
        """
        selected: dict[str, dict[str, Any]] = {}
        for phase in self.config.phases:
            if phase.name == upto:
                break
            if not phase.select_on:
                continue
            path = self.ws.selection(phase.name)
            if path.is_file():
                choice = read_json(path)
            else:
                choice = self._select(phase)
                if self.dist.is_main:
                    write_json(path, choice)
            for objective, values in choice.items():
                selected.setdefault(objective, {}).update(values["train"])
        return selected

    def _select(self, phase) -> dict[str, Any]:
        cells = plan_cells(self.config, phase.name)
        missing = [c.key for c in cells if not self.ws.cell(c.key).done.is_file()]
        if missing:
            raise PhaseBlocked(f"phase {phase.name!r} has {len(missing)} unfinished cell(s) (first: {missing[0]}); "
                               "its selection is needed by the phases after it: run it to the end first")
        scores: dict[str, dict[tuple, list[float]]] = {}
        for cell in cells:
            metrics = read_json(self.ws.cell(cell.key).metrics)
            value = metrics["suites"][phase.select_on]["aggregate"][self.config.eval.main_metric]
            scores.setdefault(cell.objective, {}).setdefault(cell.sweep, []).append(float(value))
        choice = {}
        for objective, by_value in scores.items():
            means = {sweep: sum(v) / len(v) for sweep, v in by_value.items()}
            best = max(means, key=lambda s: (means[s], [str(x) for x in s]))
            choice[objective] = {"train": dict(best), "score": means[best], "measure": self.config.eval.main_metric,
                                 "suite": phase.select_on, "candidates": {",".join(f"{k}={v}" for k, v in s): m for s, m in means.items()}}
            logger.info("phase %s selected %s for %s (%s %.4f on %s)", phase.name, dict(best), objective,
                        self.config.eval.main_metric, means[best], phase.select_on)
        return choice

    def provenance(self) -> dict[str, Any]:
        """The data and teachers a cell learnt from (read by ``st-distill mteb meta --cell-metadata``)."""
        t = self.config.teacher
        teachers = [m.model for m in t.models] + ([f"{t.train_backbone} (trained here with {t.train_objective})"] if t.source == "train" else [])
        if t.source == "scores_file":
            teachers.append(str(t.scores_file))
        return {"train_dataset": [s.name for s in self.config.train_sources], "teachers": teachers}

    # -- one cell ----------------------------------------------------------------------------------

    def run_cell(self, cell: Cell, settings: CellSettings) -> None:
        """Trains (every rank), saves and evaluates (rank 0) one cell in ``<cell>.partial/``, then renames it final.

        A ``<cell>.partial/`` left by a killed run is resumed only when its ``cell.json`` records the
        same settings; one made under other settings (or without a record) is discarded first, so
        that what a cell records is what it trained with.
        """
        final, work = self.ws.cell(cell.key), self.ws.partial(cell.key)
        if self.dist.is_main:
            if work.path.is_dir():
                before = read_json(work.record).get("settings") if work.record.is_file() else None
                now = settings.record()
                if before != now:
                    changed = "no record of its settings" if before is None else f"other {', '.join(_changed(before, now))} settings"
                    logger.warning("cell %s: discarding %s, started with %s than the config's now; training it anew",
                                   cell.key, work.path, changed)
                    shutil.rmtree(work.path)
            work.path.mkdir(parents=True, exist_ok=True)
            write_json(work.record, {"cell": _cell_dict(cell), "settings": settings.record(), **self.provenance()})
        self.dist.barrier()
        if not work.trained.is_file():
            self.train_cell(cell, settings, work)
        if self.dist.is_main:
            self.evaluate_cell(cell, settings, work)
            os.replace(work.path, final.path)
        self.dist.barrier()

    def train_cell(self, cell: Cell, settings: CellSettings, work: CellFolder) -> None:
        """Trains a cell's student on every rank (resuming from ``work/checkpoints``); rank 0 saves it to ``work/model``."""

        dataset = load_built_dataset(self.ws.data(cell.objective))
        train, backbone = settings.train, settings.backbone
        head = backbone.head
        model = make_student(resolve_model(backbone.model), cell.seed, backbone.layers, backbone.max_length, head=head,
                             train_layers=None if backbone.train_layers is None else list(backbone.train_layers),
                             calibration_pairs=sample_pairs(dataset) if head == "cosine" else None)
        loss = get_objective(cell.objective).loss(model, **settings.loss)
        batch_rows = rows_per_batch(train["passages_per_batch"], settings.passages_per_row, self.dist.world_size)
        curve = self.config.eval.curve
        callbacks = []
        if curve is not None:

            callbacks.append(LearningCurve({name: self.suites()[name] for name in curve.suites} if self.dist.is_main else {},
                                           self.config.eval.metrics, curve.every_pairs,
                                           batch_rows * settings.passages_per_row * self.dist.world_size,
                                           work.curve, self.config.eval.batch_size, enabled=self.dist.is_main))
        summary = train_model(
            model, loss, dataset, train, seed=cell.seed, batch_rows=batch_rows,
            checkpoints=work.checkpoints, log_path=work.training_log, started_marker=work.started,
            callbacks=callbacks,
        )
        self.dist.barrier()  # every rank has written its part of the last checkpoint
        if self.dist.is_main:
            save_student(model, work.model)
            write_json(work.summary, summary)
            shutil.rmtree(work.checkpoints, ignore_errors=True)
            work.trained.touch()

    def evaluate_cell(self, cell: Cell, settings: CellSettings, work: CellFolder) -> None:
        """Re-ranks the suites with the cell's saved model; writes ``metrics.json`` and ``DONE``."""

        model = load_student(work.model, max_length=settings.backbone.max_length)
        suites = evaluate_model(model, self.suites(), self.config.eval.metrics, self.config.eval.batch_size, work.runs,
                                ws=self.ws, temperature=float(settings.loss.get("temperature", 1.0)))
        mteb = evaluate_mteb_suite(model, self.config.eval.mteb, work.mteb) if self.config.eval.mteb else {}
        summary = read_json(work.summary)
        metrics = {"cell": _cell_dict(cell), "settings": settings.record(), **self.provenance(),
                   "train": summary, "suites": suites, **({"mteb": mteb} if mteb else {})}
        write_json(work.metrics, metrics)
        self.write_cell_card(cell, settings, work, model, metrics)
        work.done.touch()

    # -- the grid ----------------------------------------------------------------------------------

    def run(self, phase: str | None = None, shard: tuple[int, int] = (0, 1)) -> dict[str, int]:
        """Runs the planned cells of this shard, skipping finished ones.

        Returns:
            ``{"done": finished before, "ran": run now, "total": cells of this shard}``.

        Raises:
            PhaseBlocked: When a phase needs an unfinished selection phase (run that phase first).
            ValueError: When a finished cell was made with other settings than the config's.
        """
        from tqdm.auto import tqdm

        cells = select_shard(plan_cells(self.config, phase), *shard)
        check_plan(self.config, cells)
        self.check_inputs()
        self.check_finished(cells)
        # rank 0's view of what is finished, so that every rank runs the same cells
        todo = self.dist.broadcast([c for c in cells if not self.ws.cell(c.key).done.is_file()])
        done = len(cells) - len(todo)
        where = f" in shard {shard[0]}/{shard[1]}" if shard[1] > 1 else ""
        logger.info("bench %s: %d cell(s)%s, %d already done", self.config.name, len(cells), where, done)
        self.prepare(todo, cells)
        if self.dist.is_main:
            self.complete_metrics(cells)
            self.complete_cards(cells)
        ran = skipped = 0
        progress = tqdm(total=len(cells), initial=done, desc="cells", unit="cell", disable=not (self.dist.is_main and progress_enabled(logger)))
        selected_for: dict[str, dict] = {}
        took: list[float] = []
        for i, cell in enumerate(todo):  # the finished cells' settings were checked by check_finished
            if cell.phase not in selected_for:
                selected_for[cell.phase] = self.selections(cell.phase)
                # its selection was made by the cells just run: its untrained students are known now (rank 0 decides)
                if self.dist.broadcast(self.dist.is_main and cell.phase not in self.step0_plan()):
                    self._step0 = None
                    with self.dist.main_locked(self.ws.prepare_lock):
                        if self.dist.is_main:
                            self.write_record()
                            self.step0_references([c for c in cells if c.phase == cell.phase])
            settings = cell_settings(self.config, cell, selected_for[cell.phase])
            with claim(self.ws.cell_lock(cell.key)) if self.dist.is_main else contextlib.nullcontext() as holder:
                # another run on this folder may hold the cell, or have finished it since this one planned
                state = self.dist.broadcast("held" if holder else "done" if self.ws.cell(cell.key).done.is_file() else "run")
                if state == "held":
                    if self.dist.is_main:
                        logger.warning("cell %s: skipped, %s is running it", cell.key, holder)
                    skipped += 1
                elif state == "done":
                    logger.info("cell %s: finished meanwhile by another run", cell.key)
                    done += 1
                else:
                    logger.info("cell %d/%d: %s", done + ran + skipped + 1, len(cells), cell.key)
                    progress.set_postfix_str(cell.key)
                    started = time.perf_counter()
                    self.run_cell(cell, settings)
                    ran += 1
                    took.append(time.perf_counter() - started)
                    left = len(todo) - i - 1
                    logger.info("cell %s finished in %.0f s%s", cell.key, took[-1],
                                f"; about {_duration(sum(took) / len(took) * left)} left for {left} more cell(s)" if left else "")
            progress.update(1)
        progress.close()
        if skipped:
            logger.warning("%d cell(s) skipped: other runs hold them; run again once they end", skipped)
        return {"done": done, "ran": ran, "total": len(cells), "skipped": skipped}

def _changed(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The top-level keys whose values differ between two settings."""
    return sorted(k for k in {*before, *now} if before.get(k) != now.get(k))


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _cell_dict(cell: Cell) -> dict[str, Any]:
    return {"phase": cell.phase, "backbone": cell.backbone, "objective": cell.objective, "seed": cell.seed, "variant": cell.variant}


def run_bench(
    config: BenchConfig, phase: str | None = None, shard: tuple[int, int] = (0, 1), report: bool = True
) -> dict[str, int]:
    """Runs a bench config (see the module docstring) and, on rank 0, writes the report.

    Args:
        config: A validated config (:func:`st_distill.bench.config.load_config`).
        phase: Run only this phase.
        shard: ``(i, n)``: run only shard ``i`` of ``n`` (see :func:`select_shard`).
        report: Write ``report/`` once this shard is done.

    Returns:
        Cell counts ``{"done", "ran", "total"}``, and ``"report"``: the report's Markdown table, where
        one was written.
    """
    runner = Runner(config)
    counts = runner.run(phase, shard)
    if report and runner.dist.is_main:

        reported = phase or config.phases[-1].name
        written = write_report(config.output_dir, reported)
        counts["report"] = str(written["markdown"])
    return counts
