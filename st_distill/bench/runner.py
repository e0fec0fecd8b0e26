"""The bench runner: teacher phase, dataset building, the grid of training cells, evaluation.

Results folder layout (``config.output_dir``)::

    bench.json                      what the report needs to know about the run (no timestamps)
    inputs.json                     the training sources, negatives, teacher and suites that made
                                    sources/, teacher/, data/ and eval/ (a later run must match)
    config.toml                     a copy of the config
    sources/<source>/               first-stage runs made here (``first_stage = "bm25"``)
    teacher/model/                  the teacher trained in the teacher phase (teacher.source = "train")
    teacher/<source>/               the teacher-score cache of each training source
    data/<objective>/               the built training dataset of each objective (+ report.json)
    eval/<suite>/                   first-stage run and metrics of each evaluation suite
    cells/<phase>/<backbone>/<objective>/seed-<seed>[--<variant>]/
        model/                      the trained CrossEncoder, with its model card (README.md)
        runs/<suite>.trec           the re-ranked run of each suite
        metrics.json                aggregate and per-query metrics per suite, the cell's settings
        training_log.jsonl          the trainer's log history (loss per logging step)
        DONE                        written last
    cells/<phase>/selection.json    the hyper-parameters a sweep phase selected
    report/                         tables and charts (:mod:`st_distill.bench.report`)

Every cell is built in ``<cell>.partial/`` and renamed to its final name once ``DONE`` is written,
so a finished cell is never half-written and never computed twice. A run killed in the middle of
a cell leaves ``<cell>.partial/`` with the trainer's last checkpoint; the next run resumes there.
Shared steps (teacher, datasets, first-stage runs) are written atomically too (temporary folder,
then rename) and skipped when present. They are reused only while the config's inputs
(``inputs.json``) and each cell's training settings (its ``metrics.json``) stay the same; a run
whose config changed either of them stops with an error naming what changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from st_distill.bench.config import HF_PREFIX, BenchConfig, Collection, MtebSuite, resolve_model
from st_distill.data.formats import (
    Qrels,
    Run,
    Texts,
    load_beir,
    read_qrels,
    read_texts,
    read_trec_run,
    top_k,
    write_trec_run,
)
from st_distill.io import write_json

logger = logging.getLogger(__name__)

__all__ = ["Cell", "PhaseBlocked", "plan_cells", "select_shard", "cell_settings", "describe_plan", "run_bench"]

DONE = "DONE"
INPUTS_FILE = "inputs.json"
SHARED_FOLDERS = ("sources/", "teacher/", "data/", "eval/")
STARTED = "STARTED"
PARTIAL = ".partial"


class PhaseBlocked(RuntimeError):
    """A phase needs the selection of an earlier sweep phase whose cells are not all finished yet."""


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    phase: str
    backbone: str
    objective: str
    seed: int
    sweep: tuple[tuple[str, Any], ...] = ()

    @property
    def variant(self) -> str:
        """The sweep values of this cell as ``key=value`` joined by ``,`` (empty outside sweeps)."""
        return ",".join(f"{k}={v}" for k, v in self.sweep)

    @property
    def key(self) -> str:
        """The cell's folder under ``cells/``."""
        name = f"seed-{self.seed}" + (f"--{self.variant}" if self.variant else "")
        return f"{self.phase}/{self.backbone}/{self.objective}/{name}"


# --------------------------------------------------------------------------------------------------
# The plan


def plan_cells(config: BenchConfig, phase: str | None = None) -> list[Cell]:
    """Every cell of the grid, in run order (phase, backbone, objective, seed, sweep value).

    Args:
        config: The bench config.
        phase: Only this phase.

    Raises:
        ValueError: For an unknown phase name.
    """
    names = [p.name for p in config.phases]
    if phase is not None and phase not in names:
        raise ValueError(f"unknown phase {phase!r} (phases: {', '.join(names)})")
    cells = []
    for p in config.phases:
        if phase is not None and p.name != phase:
            continue
        combos: list[tuple[tuple[str, Any], ...]] = [()]
        for key, values in p.sweep.items():
            combos = [(*combo, (key, value)) for combo in combos for value in values]
        for backbone in p.backbones:
            for objective in p.objectives:
                for seed in p.seeds:
                    cells.extend(Cell(p.name, backbone, objective, seed, combo) for combo in combos)
    return cells


def inputs_of(config: BenchConfig) -> dict[str, Any]:
    """The parts of ``config`` that the shared files depend on, as plain JSON values."""
    parts = {"train_sources": [asdict(s) for s in config.train_sources], "negatives": asdict(config.negatives),
             "teacher": asdict(config.teacher), "suites": {name: asdict(s) for name, s in config.eval.suites.items()}}
    return json.loads(json.dumps(parts, default=str))


def select_shard(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """The slice of ``cells`` that shard ``index`` of ``count`` runs (0-based): every ``count``-th cell
    of each phase, starting at ``index``. The assignment depends only on the plan, so array jobs
    of one grid never run the same cell twice.

    Raises:
        ValueError: Unless ``0 <= index < count``.
    """
    if not 0 <= index < count:
        raise ValueError(f"--shard {index}/{count}: need 0 <= i < n")
    out, position = [], {}
    for cell in cells:
        i = position.get(cell.phase, 0)
        position[cell.phase] = i + 1
        if i % count == index:
            out.append(cell)
    return out


def _passages_per_row(objective: str, n_negatives: int | None) -> int:
    from st_distill.objectives import get_objective

    fmt = get_objective(objective).dataset_format
    if fmt.kind == "pointwise":
        return 1
    return 1 + (n_negatives if n_negatives is not None else fmt.n_negatives)


def cell_settings(config: BenchConfig, cell: Cell, selected: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The merged settings of a cell: training arguments, loss arguments, negatives per row, model.

    Training arguments merge, later winning: the objective's registry defaults, ``[train]``, the
    backbone's ``train``, the objective's ``train``, the phase's ``train``, the values an earlier
    sweep phase selected for this objective, then this cell's own sweep values.
    """
    from st_distill.objectives import get_objective

    objective = config.objective(cell.objective)
    backbone = config.backbone(cell.backbone)
    phase = next(p for p in config.phases if p.name == cell.phase)
    registry = get_objective(cell.objective).defaults
    train = {k: registry[k] for k in ("learning_rate", "passages_per_batch", "warmup_steps", "weight_decay", "max_grad_norm", "max_steps", "optimizer") if k in registry}
    for layer in (config.train, backbone.train, objective.train, phase.train, (selected or {}).get(cell.objective, {}), dict(cell.sweep)):
        train.update(layer)
    n_negatives = objective.n_negatives if objective.n_negatives is not None else get_objective(cell.objective).dataset_format.n_negatives
    return {
        "backbone": {"model": backbone.model, "layers": backbone.layers},
        "objective": cell.objective,
        "n_negatives": n_negatives,
        "loss": dict(sorted(objective.loss.items())),
        "train": dict(sorted(train.items())),
        "passages_per_row": _passages_per_row(cell.objective, n_negatives),
    }


def describe_plan(config: BenchConfig, cells: list[Cell], selected: dict | None = None) -> str:
    """A human-readable plan: data, teacher, cells with their steps and estimated training pairs."""
    lines = [f"bench {config.name!r} ({config.path}) -> {config.output_dir}"]
    teacher_pairs = eval_pairs = 0
    for source in config.train_sources:
        queries, judged = _judged(source)
        depth = max(source.depth, config.negatives.depth)
        teacher_pairs = None if queries is None or teacher_pairs is None else teacher_pairs + queries * depth + judged
        lines.append(f"  train source {source.name}: {_describe_collection(source)}; {_count(queries)} judged queries")
    t = config.teacher
    teacher = {"none": "none", "scores_file": f"scores file {t.scores_file}", "models": "score with " + ", ".join(f"{m.model} ({m.kind})" for m in t.models)}.get(t.source)
    if t.source == "train":
        teacher = f"train {t.train_backbone} with {t.train_objective} ({t.train.get('max_steps', config.train.get('max_steps'))} steps), then score"
        if t.models:
            teacher += " + " + ", ".join(m.model for m in t.models) + f" ({t.ensemble} ensemble)"
    lines.append(f"  teacher: {teacher}" + (f"; LLM rankings {t.rankings}" if t.rankings else ""))
    lines.append(f"  negatives: {config.negatives.sampling} from the first-stage top-{config.negatives.depth}")
    for name, suite in config.eval.suites.items():
        queries, _ = _judged(suite)
        eval_pairs = None if queries is None or eval_pairs is None else eval_pairs + queries * suite.depth
        lines.append(f"  eval suite {name}: {_describe_collection(suite)}; {_count(queries)} judged queries")
    lines.append(f"  metrics: {', '.join(config.eval.metrics)}; report: {', '.join(config.report.metrics)} vs {config.report.baseline}")
    total_pairs = 0
    lines.append(f"  {len(cells)} cell(s):")
    selecting = {}
    for phase in config.phases:
        selecting[phase.name] = [(p.name, key) for p in config.phases[: config.phases.index(phase)] if p.select_on for key in p.sweep]
    for cell in cells:
        s = cell_settings(config, cell, selected)
        rows = max(1, s["train"]["passages_per_batch"] // s["passages_per_row"])
        pairs = s["train"]["max_steps"] * rows * s["passages_per_row"]
        total_pairs += pairs
        chosen = "".join(f", {key} selected by phase {name!r}" for name, key in selecting[cell.phase])
        lines.append(
            f"    {cell.key}: {s['train']['max_steps']} steps x {rows} rows x {s['passages_per_row']} passages"
            f" = {pairs:,} pairs, lr {s['train']['learning_rate']:g}{chosen}"
        )
    lines.append(f"  estimated training pairs: {total_pairs:,}")
    if config.teacher.source in ("models", "train"):
        lines.append(f"  estimated teacher pairs (judged queries x depth + their judged documents, at most): {_count(teacher_pairs)}")
    lines.append(f"  estimated re-ranked pairs per cell (at most): {_count(eval_pairs)}")
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _judged(c: Collection) -> tuple[int | None, int | None]:
    """Judged queries of a collection (capped by ``max_queries``) and their judged documents, from its qrels; None when not local."""
    path = c.beir / "qrels" / f"{c.split}.tsv" if c.beir is not None else c.qrels
    if path is None or not Path(path).is_file():
        return None, None
    judged = list(read_qrels(path).values())[: c.max_queries]
    return len(judged), sum(len(docs) for docs in judged)


def _describe_collection(c: Collection) -> str:
    if c.ir_datasets:
        where = f"ir_datasets {c.ir_datasets}"
    elif c.beir:
        where = f"BEIR {c.beir} ({c.split})"
    else:
        where = f"queries {c.queries.name}, corpus {c.corpus.name}, qrels {c.qrels.name}"
    run = f"run {c.run.name}" if c.run else f"first stage {c.first_stage}"
    return f"{where}; {run} top-{c.depth}; relevant grade >= {c.relevance_level}"


# --------------------------------------------------------------------------------------------------
# Helpers: atomic folders, locks, distributed runs


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive file lock, so that shards sharing a results folder build shared steps once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _atomic_folder(final: Path) -> Iterator[Path]:
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


class _Distributed:
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


# --------------------------------------------------------------------------------------------------
# Phase functions: data, teacher, build, train, evaluate


@dataclass
class Loaded:
    """A collection in memory: texts, judgements and its first-stage run cut to ``depth``."""

    name: str
    queries: Texts
    corpus: Texts
    qrels: Qrels
    run: Run
    relevance_level: int


def load_collection(c: Collection, workdir: Path, depth: int) -> Loaded:
    """Reads a training source or evaluation suite; makes its first-stage run when the config asks.

    Only judged queries are kept (the first ``max_queries`` of them, in qrels order, when set);
    the run is cut to its top-``depth`` documents per query.
    """
    provided_run = None
    if c.ir_datasets is not None:
        from st_distill.data.sources import load_ir_dataset

        workdir.mkdir(parents=True, exist_ok=True)
        irds = load_ir_dataset(c.ir_datasets, workdir / "corpus.arrow")
        queries, corpus, qrels, provided_run = irds.queries, irds.corpus, irds.qrels, irds.run
    elif c.beir is not None:
        beir = load_beir(c.beir, c.split)
        queries, corpus, qrels = beir.queries, beir.corpus, beir.qrels
    else:
        queries, corpus, qrels = read_texts(c.queries), read_texts(c.corpus), read_qrels(c.qrels)
    judged = [qid for qid in qrels if qid in queries][: c.max_queries]
    queries = {qid: queries[qid] for qid in judged}
    qrels = {qid: qrels[qid] for qid in judged}
    if c.run is not None:
        full_run = read_trec_run(c.run)
    elif c.first_stage is not None:
        full_run = read_trec_run(_first_stage_run(c, queries, corpus, workdir, depth))
    elif provided_run is not None:
        full_run = provided_run
    else:
        raise ValueError(f"{c.name}: {c.ir_datasets} provides no first-stage run (scoreddocs); give 'run' or first_stage")
    run = top_k({qid: docs for qid, docs in full_run.items() if qid in queries}, depth)
    if not run:
        raise ValueError(f"{c.name}: no query of the first-stage run has judgements")
    return Loaded(c.name, queries, corpus, qrels, run, c.relevance_level)


def _first_stage_run(c: Collection, queries: Texts, corpus: Texts, workdir: Path, depth: int) -> Path:
    """Makes (once) the first-stage run a collection asks for, with ``st-distill retrieve``'s code."""
    path = workdir / f"run.{c.first_stage}.top{depth}.trec"
    if not path.is_file():
        from st_distill.evaluation import bm25_retrieve

        logger.info("%s: BM25 retrieval of %d queries over %d documents", c.name, len(queries), len(corpus))
        write_trec_run(bm25_retrieve(corpus, queries, top_k=depth), path, tag="bm25")
    return path


def _teacher_models(config: BenchConfig, ws: Path) -> list:
    """The teachers to score with (the teacher phase's trained model, see :func:`train_teacher`, first)."""
    from st_distill.teachers import BiEncoderTeacher, CrossEncoderTeacher

    t = config.teacher
    teachers = []
    if t.source == "train":
        model_dir = ws / "teacher" / "model"
        teachers.append(CrossEncoderTeacher(str(model_dir), name="trained-teacher", max_length=t.max_length, batch_size=t.batch_size))
    for model in t.models:
        path = resolve_model(model.model)
        if model.kind == "bi-encoder":
            teachers.append(BiEncoderTeacher(path, max_length=t.max_length, batch_size=t.batch_size))
        else:
            teachers.append(CrossEncoderTeacher(path, max_length=t.max_length, batch_size=t.batch_size))
    return teachers


def train_teacher(config: BenchConfig, ws: Path, sources: dict[str, Loaded] | None, dist: _Distributed) -> None:
    """The teacher phase's training: ``train_backbone`` with ``train_objective`` on the training sources.

    Every rank calls it (the trainer runs DDP); rank 0 builds the data and saves the model into
    ``teacher/model/`` (atomically, through ``teacher/model.partial/``).
    """
    from st_distill.bench.training import make_student, rows_per_batch, train_model
    from st_distill.objectives import get_objective

    t = config.teacher
    objective = get_objective(t.train_objective)
    args = {**{k: v for k, v in objective.defaults.items() if k in _TRAIN_ARG_KEYS}, **config.train, **t.train}
    model_dir = ws / "teacher" / "model"
    data_dir = ws / "teacher" / "data"
    if dist.is_main and not (data_dir / DONE).is_file():
        from st_distill.data.builder import save_dataset

        dataset, reports = _build_dataset(config, t.train_objective, None, sources, None)
        with _atomic_folder(data_dir) as tmp:
            save_dataset(dataset, reports[0], tmp)
            (tmp / DONE).touch()
    dist.barrier()
    from st_distill.data.builder import load_built_dataset

    dataset = load_built_dataset(data_dir)
    model = make_student(resolve_model(t.train_backbone), seed=0, max_length=t.max_length)
    work = ws / "teacher" / f"model{PARTIAL}"
    work.mkdir(parents=True, exist_ok=True)
    logger.info("teacher phase: training %s with %s for %d steps", t.train_backbone, t.train_objective, args["max_steps"])
    summary = train_model(
        model, objective.loss(model), dataset, args, seed=0,
        batch_rows=rows_per_batch(args["passages_per_batch"], _passages_per_row(t.train_objective, None), dist.world_size),
        checkpoints=work / "checkpoints", log_path=work / "training_log.jsonl",
    )
    if dist.is_main:
        model.model_card_data.model_name = f"st-distill teacher: {t.train_backbone} trained with {t.train_objective}"
        model.save_pretrained(str(work))
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        write_json(work / "train.json", summary)
        (work / DONE).touch()
        shutil.rmtree(model_dir, ignore_errors=True)
        os.replace(work, model_dir)
    dist.barrier()


_TRAIN_ARG_KEYS = ("learning_rate", "passages_per_batch", "warmup_steps", "weight_decay", "max_grad_norm", "max_steps", "optimizer")


def teacher_phase(config: BenchConfig, ws: Path, sources: dict[str, Loaded]) -> dict[str, Any]:
    """Scores every training (query, candidate) pair — candidates and judged positives — with the
    teacher(s), through the resumable cache ``teacher/<source>/``.

    Returns:
        ``{source: TeacherScores}``; empty when the config has no model teacher.
    """
    from st_distill.teachers import score_with_teachers

    if config.teacher.source not in ("models", "train"):
        return {}
    teachers = _teacher_models(config, ws)
    scores = {}
    for name, source in sources.items():
        pairs = {qid: dict(docs) for qid, docs in source.run.items()}
        for qid in pairs:
            for docid, grade in source.qrels.get(qid, {}).items():
                if grade >= source.relevance_level and docid in source.corpus:
                    pairs[qid].setdefault(docid, 0.0)
        logger.info("teacher phase: %s, %d pairs", name, sum(len(d) for d in pairs.values()))
        scores[name] = score_with_teachers(
            teachers, pairs, source.queries, source.corpus, cache_dir=ws / "teacher" / name, ensemble=config.teacher.ensemble
        )
    return scores


def _build_dataset(config: BenchConfig, objective: str, n_negatives: int | None, sources: dict[str, Loaded], teacher_scores: dict | None):
    """Builds one objective's training dataset over every training source (concatenated).

    Where a source's corpus is a memory-mapped text store (MS MARCO scale), the dataset joins
    texts lazily (ids in the table, texts on access).
    """
    from datasets import concatenate_datasets

    from st_distill.data.builder import build_dataset
    from st_distill.data.negatives import negatives_from_run
    from st_distill.data.store import TextStore
    from st_distill.data.teacher_files import read_llm_ranking
    from st_distill.objectives import get_objective

    fmt = get_objective(objective).dataset_format
    n = n_negatives if n_negatives is not None else (fmt.n_negatives or 1)
    entry = next((o for o in config.objectives if o.name == objective), None)
    from_triples = entry is not None and entry.data == "triples"
    t = config.teacher
    parts = []
    specs = {spec.name: spec for spec in config.train_sources}
    for name, source in sources.items():
        spec = specs[name]
        queries, corpus = source.queries, source.corpus
        lazy = isinstance(corpus, TextStore)
        if lazy and not isinstance(queries, TextStore):
            queries = TextStore.from_texts(queries, Path(config.output_dir) / "sources" / name / "queries.arrow")
        kwargs: dict[str, Any] = {"qrels": source.qrels, "relevance_threshold": source.relevance_level, "n_negatives": n,
                                  "max_positives": spec.max_positives, "seed": 0, "lazy": lazy}
        scores = (teacher_scores or {}).get(name)
        if fmt.kind == "listwise":
            if t.rankings is not None:
                kwargs["candidates"] = read_llm_ranking(t.rankings, query_ids=source.queries)
            else:
                kwargs["candidates"] = source.run
            if fmt.teacher == "scores" or t.rankings is None:
                kwargs["teacher_scores"] = scores
        elif from_triples:
            kwargs["triples"] = _teacher_triples(t.scores_file)
        else:
            if config.negatives.sampling == "top":
                kwargs["negatives"] = negatives_from_run(
                    source.run, source.qrels, k=n, depth=config.negatives.depth, strategy="top", relevance_threshold=source.relevance_level
                )
            else:
                kwargs["candidates"] = top_k(source.run, config.negatives.depth)
            if fmt.teacher == "scores":
                kwargs["teacher_scores"] = scores
        dataset, report = build_dataset(objective, queries, corpus, **kwargs)
        logger.info("built %s from %s: %d rows, %d queries", objective, name, report.rows, report.queries)
        parts.append((dataset, report))
    dataset = parts[0][0] if len(parts) == 1 else concatenate_datasets([d for d, _ in parts])
    return dataset, [r for _, r in parts]


def _teacher_triples(spec):
    """A teacher-triples file, or the published scores of a ``hf://ORG/DATASET/SUBSET`` spec as a table."""
    if isinstance(spec, str) and spec.startswith(HF_PREFIX):
        from st_distill.data.sources import load_msmarco_subset, msmarco_margin_triples

        subset = spec[len(HF_PREFIX):].split("/")[2]
        return msmarco_margin_triples(load_msmarco_subset(subset))
    return spec


def build_phase(config: BenchConfig, ws: Path, objective: str, sources: dict[str, Loaded], teacher_scores: dict) -> Path:
    """Builds and saves (once) the training dataset of one objective under ``data/<objective>/``."""
    from st_distill.data.builder import BuildReport, save_dataset

    final = ws / "data" / objective
    if (final / DONE).is_file():
        return final
    dataset, reports = _build_dataset(config, objective, config.objective(objective).n_negatives, sources, teacher_scores)
    with _atomic_folder(final) as tmp:
        report = reports[0]
        if len(reports) > 1:
            report = BuildReport(**{**reports[0].to_dict(), "rows": len(dataset), "queries": sum(r.queries for r in reports),
                                    "skipped": {k: sum(r.skipped.get(k, 0) for r in reports) for r in reports for k in r.skipped}})
        save_dataset(dataset, report, tmp)
        write_json(tmp / "sources.json", {name: r.to_dict() for name, r in zip(sources, reports)})
        (tmp / DONE).touch()
    return final


def _metrics(run: Run, suite: Loaded, measures: tuple[str, ...]) -> dict[str, Any]:
    """Metrics of ``run`` on a suite, keyed by the config's measure names (``RR@10``, not ``RR(rel=2)@10``)."""
    from st_distill.evaluation import evaluate, parse_measures

    result = evaluate(run, suite.qrels, measures, rel_level=suite.relevance_level)
    names = {str(parsed): name for parsed, name in zip(parse_measures(measures, suite.relevance_level), measures)}
    return {
        "aggregate": {names[k]: v for k, v in result.aggregate.items()},
        "per_query": {names[k]: v for k, v in result.per_query.items()},
        "queries": result.queries,
    }


def evaluate_model(model, suites: dict[str, Loaded], metrics: tuple[str, ...], batch_size: int, runs_dir: Path) -> dict[str, Any]:
    """Re-ranks every suite's first-stage run with ``model``; writes the runs; returns the metrics.

    Returns:
        ``{suite: {"aggregate": {measure: value}, "per_query": {measure: {qid: value}}, "queries": counts}}``.
    """
    from st_distill.evaluation import rerank_run

    out = {}
    for name, suite in suites.items():
        depth = max(len(docs) for docs in suite.run.values())
        reranked, _ = rerank_run(model, suite.run, suite.queries, suite.corpus, depth=depth, batch_size=batch_size)
        write_trec_run(reranked, runs_dir / f"{name}.trec", tag="st-distill")
        out[name] = _metrics(reranked, suite, metrics)
    return out


def evaluate_mteb_suite(model, suite: MtebSuite, folder: Path) -> dict[str, dict[str, float]]:
    """Evaluates ``model`` on the config's MTEB tasks; MTEB's results cache goes to ``folder``.

    Returns:
        ``{task: {metric: value}}`` with MTEB's metric names (``ndcg_at_10``, ``main_score``, ...).
    """
    from st_distill.evaluation.mteb import evaluate_mteb

    return evaluate_mteb(model, suite.tasks, first_stage=suite.first_stage, top_k=suite.top_k, output_folder=folder)


def first_stage_metrics(config: BenchConfig, ws: Path, suites: dict[str, Loaded]) -> None:
    """Evaluates (once) each suite's first-stage run, cut to its depth, for the report's first-stage row."""
    for name, suite in suites.items():
        path = ws / "eval" / name / "first_stage.json"
        if not path.is_file():
            write_json(path, _metrics(suite.run, suite, config.eval.metrics)["aggregate"])


# --------------------------------------------------------------------------------------------------
# Cells


def _model_card(model, config: BenchConfig, cell: Cell, settings: dict) -> None:
    t = config.teacher
    teacher = {
        "none": "none (hard labels only)",
        "scores_file": f"scores file {Path(t.scores_file).name if t.scores_file else ''}",
        "models": " + ".join(Path(m.model).name for m in t.models),
        "train": f"{Path(t.train_backbone or '').name} trained with {t.train_objective}" + "".join(f" + {Path(m.model).name}" for m in t.models),
    }[t.source]
    from st_distill.objectives import get_objective

    if get_objective(cell.objective).dataset_format.teacher is None:
        teacher = "none (hard labels only)"
    card = model.model_card_data
    card.model_name = f"{cell.backbone} cross-encoder trained with the st-distill objective '{cell.objective}' (teacher: {teacher})"
    data = " + ".join(s.name for s in config.train_sources)
    # The trainer described the dataset it saw; name it after the training sources.
    for entry in card.train_datasets:
        entry["name"] = f"{data} ({cell.objective} format)"
    card.add_tags(["st-distill", f"objective-{cell.objective}"])
    card.local_files_only = True


class Runner:
    """Runs a validated config: ``Runner(config).run(...)``; see :func:`run_bench`."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.ws = Path(config.output_dir)
        self.dist = _Distributed()
        self._sources: dict[str, Loaded] | None = None
        self._suites: dict[str, Loaded] | None = None
        self._teacher_scores: dict | None = None

    # -- shared inputs, loaded lazily ----------------------------------------------------------------

    def sources(self) -> dict[str, Loaded]:
        if self._sources is None:
            self._sources = {
                s.name: load_collection(s, self.ws / "sources" / s.name, max(s.depth, self.config.negatives.depth))
                for s in self.config.train_sources
            }
        return self._sources

    def suites(self) -> dict[str, Loaded]:
        if self._suites is None:
            self._suites = {name: load_collection(s, self.ws / "eval" / name, s.depth) for name, s in self.config.eval.suites.items()}
        return self._suites

    def dataset(self, objective: str):
        """The built dataset of ``objective``: built on rank 0 (teacher phase first, once), loaded on all."""
        from st_distill.data.builder import load_built_dataset

        final = self.ws / "data" / objective
        if self.dist.is_main and not (final / DONE).is_file():
            with _lock(self.ws / ".locks" / "prepare"):
                if not (final / DONE).is_file():
                    if self._teacher_scores is None:
                        self._teacher_scores = teacher_phase(self.config, self.ws, self.sources())
                    build_phase(self.config, self.ws, objective, self.sources(), self._teacher_scores)
        self.dist.barrier()
        return load_built_dataset(final)

    # -- bookkeeping -------------------------------------------------------------------------------

    def check_inputs(self) -> None:
        """Records the config's inputs in ``inputs.json``, or checks them against the recorded ones.

        Raises:
            ValueError: When the folder's shared files were made from other inputs.
        """
        now = inputs_of(self.config)
        path = self.ws / INPUTS_FILE
        if path.is_file():
            before = json.loads(path.read_text(encoding="utf-8"))
            changed = [key for key in now if before.get(key) != now[key]]
            if changed:
                raise ValueError(f"{self.ws}: its data, teacher scores and first-stage runs were made with other "
                                 f"{', '.join(changed)} settings than the config's now; use a new --output, or delete "
                                 f"{', '.join(SHARED_FOLDERS)}, cells/ and {INPUTS_FILE} there to rebuild them")
        elif self.dist.is_main:
            write_json(path, now)

    def write_bench_json(self) -> None:
        c = self.config
        write_json(self.ws / "bench.json", {
            "name": c.name,
            "phases": [{"name": p.name, "backbones": list(p.backbones), "objectives": list(p.objectives), "seeds": list(p.seeds),
                        "sweep": {k: list(v) for k, v in p.sweep.items()}, "select_on": p.select_on} for p in c.phases],
            "backbones": [b.name for b in c.backbones],
            "objectives": [o.name for o in c.objectives],
            "suites": {name: {"depth": s.depth, "relevance_level": s.relevance_level} for name, s in c.eval.suites.items()},
            "metrics": list(c.eval.metrics),
            "main_metric": c.eval.main_metric,
            "report": {"metrics": list(c.report.metrics), "baseline": c.report.baseline, "alpha": c.report.alpha},
        })
        shutil.copyfile(c.path, self.ws / "config.toml")

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
            path = self.ws / "cells" / phase.name / "selection.json"
            if path.is_file():
                choice = json.loads(path.read_text(encoding="utf-8"))
            else:
                choice = self._select(phase)
                if self.dist.is_main:
                    write_json(path, choice)
            for objective, values in choice.items():
                selected.setdefault(objective, {}).update(values["train"])
        return selected

    def _select(self, phase) -> dict[str, Any]:
        cells = plan_cells(self.config, phase.name)
        missing = [c.key for c in cells if not (self.ws / "cells" / c.key / DONE).is_file()]
        if missing:
            raise PhaseBlocked(f"phase {phase.name!r} has {len(missing)} unfinished cell(s) (first: {missing[0]}); "
                               "its selection is needed by the phases after it: run it to the end first")
        scores: dict[str, dict[tuple, list[float]]] = {}
        for cell in cells:
            metrics = json.loads((self.ws / "cells" / cell.key / "metrics.json").read_text(encoding="utf-8"))
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

    def run_cell(self, cell: Cell, settings: dict[str, Any]) -> None:
        """Trains, saves and evaluates one cell in ``<cell>.partial/``, then renames it final."""
        from st_distill.bench.training import make_student, rows_per_batch, train_model
        from st_distill.objectives import get_objective

        final = self.ws / "cells" / cell.key
        work = final.with_name(final.name + PARTIAL)
        work.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            write_json(work / "cell.json", {"cell": _cell_dict(cell), "settings": settings, **self.provenance()})
        if not (work / "TRAINED").is_file():
            dataset = self.dataset(cell.objective)
            train = settings["train"]
            model = make_student(resolve_model(settings["backbone"]["model"]), cell.seed, settings["backbone"]["layers"], train["max_length"])
            loss = get_objective(cell.objective).loss(model, **settings["loss"])
            summary = train_model(
                model, loss, dataset, train, seed=cell.seed,
                batch_rows=rows_per_batch(train["passages_per_batch"], settings["passages_per_row"], self.dist.world_size),
                checkpoints=work / "checkpoints", log_path=work / "training_log.jsonl", started_marker=work / STARTED,
            )
            if self.dist.is_main:
                _model_card(model, self.config, cell, settings)
                model.save_pretrained(str(work / "model"))
                write_json(work / "train.json", summary)
                shutil.rmtree(work / "checkpoints", ignore_errors=True)
                (work / "TRAINED").touch()
            self.dist.barrier()
        if self.dist.is_main:
            from sentence_transformers.cross_encoder import CrossEncoder

            model = CrossEncoder(str(work / "model"), max_length=settings["train"]["max_length"])
            suites = evaluate_model(model, self.suites(), self.config.eval.metrics, self.config.eval.batch_size, work / "runs")
            mteb = evaluate_mteb_suite(model, self.config.eval.mteb, work / "mteb") if self.config.eval.mteb else {}
            summary = json.loads((work / "train.json").read_text(encoding="utf-8"))
            write_json(work / "metrics.json", {"cell": _cell_dict(cell), "settings": settings, **self.provenance(),
                                               "train": summary, "suites": suites, **({"mteb": mteb} if mteb else {})})
            (work / DONE).touch()
            os.replace(work, final)
        self.dist.barrier()

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

        self.ws.mkdir(parents=True, exist_ok=True)
        self.check_inputs()
        if self.dist.is_main:
            self.write_bench_json()
        cells = select_shard(plan_cells(self.config, phase), *shard)
        done = sum((self.ws / "cells" / c.key / DONE).is_file() for c in cells)
        logger.info("bench %s: %d cell(s) in this shard, %d already done", self.config.name, len(cells), done)
        if len(cells) > done and self.config.teacher.source == "train" and not (self.ws / "teacher" / "model" / DONE).is_file():
            train_teacher(self.config, self.ws, self.sources() if self.dist.is_main else None, self.dist)
        if self.dist.is_main and len(cells) > done:
            first_stage_metrics(self.config, self.ws, self.suites())
        ran = 0
        progress = tqdm(total=len(cells), initial=done, desc="cells", unit="cell", disable=not self.dist.is_main)
        selected_for: dict[str, dict] = {}
        for cell in cells:
            if cell.phase not in selected_for:
                selected_for[cell.phase] = self.selections(cell.phase)
            settings = cell_settings(self.config, cell, selected_for[cell.phase])
            final = self.ws / "cells" / cell.key
            if (final / DONE).is_file():
                stored = json.loads((final / "metrics.json").read_text(encoding="utf-8"))["settings"]
                if stored != json.loads(json.dumps(settings)):
                    raise ValueError(f"{final}: finished with other settings than the config's now; "
                                     "use another output_dir, or delete this cell to recompute it")
                continue
            logger.info("cell %d/%d: %s", done + ran + 1, len(cells), cell.key)
            progress.set_postfix_str(cell.key)
            started = time.perf_counter()
            self.run_cell(cell, settings)
            ran += 1
            progress.update(1)
            logger.info("cell %s finished in %.0f s", cell.key, time.perf_counter() - started)
        progress.close()
        return {"done": done, "ran": ran, "total": len(cells)}


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
        Cell counts: ``{"done", "ran", "total"}``.
    """
    runner = Runner(config)
    counts = runner.run(phase, shard)
    if report and runner.dist.is_main:
        from st_distill.bench.report import write_report

        reported = phase or config.phases[-1].name
        written = write_report(config.output_dir, reported)
        logger.info("report: %s", written["markdown"])
    return counts
