"""Evaluation phase: re-rank each suite's first-stage run with a cell's model; the reference rows
(first stage, random order, the untrained student, the teacher's own re-ranking) that place the
students between floor and ceiling."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from st_distill.bench.config import BenchConfig, MtebSuite
from st_distill.bench.phases.teacher import teacher_models
from st_distill.bench.plan import Step0Settings
from st_distill.bench.workspace import CellFolder, Workspace, atomic_folder
from st_distill.data.formats import Collection, Run, read_trec_run, write_trec_run
from st_distill.evaluation.distillation import fidelity
from st_distill.evaluation.metrics import Evaluation, evaluate, read_metrics
from st_distill.evaluation.rerank import rerank_and_measure, top_candidates
from st_distill.io import read_json, write_json
from st_distill.models import resolve_model
from st_distill.teachers import score_with_teachers
from st_distill.training import make_student

logger = logging.getLogger(__name__)

__all__ = ["REFERENCES", "evaluate_model", "run_metrics", "student_fidelity", "evaluate_mteb_suite", "random_order", "reference_metrics",
           "add_measures", "step0_metrics", "STEP0_LABEL"]

#: The label of the untrained student's reference row (``"student at step 0 (<backbone>)"`` with several backbones).
STEP0_LABEL = "student at step 0"


def _suite_metrics(evaluation: Evaluation) -> dict[str, Any]:
    """A suite's entry of a cell's ``metrics.json``: averages, per-query values and query counts,
    keyed by the config's measure names (``RR@10``, not ``RR(rel=2)@10``)."""
    return {"aggregate": evaluation.aggregate, "per_query": evaluation.per_query, "queries": evaluation.queries}


def evaluate_model(
    model, suites: dict[str, Collection], metrics: tuple[str, ...], batch_size: int, runs_dir: Path, ws: Workspace | None = None,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Re-ranks every suite's first-stage run with ``model``; writes the runs; returns the metrics.

    Args:
        model: The cell's CrossEncoder.
        suites: The evaluation suites.
        metrics: ir_measures names.
        batch_size: Pairs per forward pass.
        runs_dir: Where the re-ranked runs (``<suite>.trec``) go.
        ws: The results folder; where it holds the teacher's re-ranking of a suite
            (``eval/<suite>/teacher.trec``, see :func:`reference_metrics`), the suite's entry gains
            ``fidelity``: how closely the model's scores follow the teacher's on those lists
            (:func:`st_distill.evaluation.fidelity`).
        temperature: The softmax temperature of the fidelity's KL divergence.

    Returns:
        ``{suite: {"aggregate": {measure: value}, "per_query": {measure: {qid: value}}, "queries": counts[, "fidelity": {...}]}}``.
    """
    out = {}
    for name, suite in suites.items():
        candidates = top_candidates(suite.run, suite.queries, suite.corpus, depth=None)
        result = rerank_and_measure(model, candidates, suite.qrels, metrics, suite.relevance_level,
                                    batch_size=batch_size, given_names=True)
        reranked = result.run
        write_trec_run(reranked, runs_dir / f"{name}.trec", tag="st-distill")
        out[name] = _suite_metrics(result.evaluation)
        teacher = ws.teacher_run(name) if ws is not None else None
        if teacher is not None and teacher.is_file():
            out[name]["fidelity"] = student_fidelity(reranked, read_trec_run(teacher), temperature)
    return out


def student_fidelity(student: Run, teacher: Run, temperature: float = 1.0) -> dict[str, float]:
    """:func:`st_distill.evaluation.fidelity` of a student's re-ranked run against the teacher's, over
    the documents both scored."""
    qids = [qid for qid in student if qid in teacher]
    docs = {qid: [docid for docid in student[qid] if docid in teacher[qid]] for qid in qids}
    qids = [qid for qid in qids if docs[qid]]
    return fidelity([[teacher[q][d] for d in docs[q]] for q in qids], [[student[q][d] for d in docs[q]] for q in qids], temperature)


def evaluate_mteb_suite(model, suite: MtebSuite, folder: Path) -> dict[str, dict[str, float]]:
    """Evaluates ``model`` on the config's MTEB tasks; MTEB's results cache goes to ``folder``.

    Returns:
        ``{task: {metric: value}}`` with MTEB's metric names (``ndcg_at_10``, ``main_score``, ...).
    """
    # imported here, not at the top: ``import mteb`` adds seconds (measured with ``python -X importtime``)
    # to every bench run, and only configs with an MTEB suite need it
    from st_distill.evaluation.mteb import evaluate_mteb

    return evaluate_mteb(model, suite.tasks, first_stage=suite.first_stage, top_k=suite.top_k, output_folder=folder)


#: The reference rows of the report, by file under ``eval/<suite>/``, in the order they are shown.
REFERENCES = {"first stage": "first_stage.json", "random order": "random.json", "teacher": "teacher.json"}


def random_order(run: Run, seed: int = 0) -> Run:
    """Each query's candidates in a random order (seeded per query): the floor a re-ranker must clear.

    Scores are ``n, ..., 1`` in the shuffled order; the generator of query ``qid`` is seeded from
    ``(seed, qid)``, so the order does not depend on the other queries.
    """
    shuffled: Run = {}
    for qid, docs in run.items():
        order = sorted(docs)
        random.Random(f"{seed}:{qid}").shuffle(order)
        shuffled[qid] = {docid: float(len(order) - i) for i, docid in enumerate(order)}
    return shuffled


def reference_metrics(config: BenchConfig, ws: Workspace, suites: dict[str, Collection]) -> None:
    """Evaluates (once) the report's reference rows of each suite, written under ``eval/<suite>/``.

    - ``first_stage.json``: the first-stage run, cut to the suite's depth;
    - ``random.json``: a seeded random order of the same candidates (:func:`random_order`);
    - ``teacher.json`` (and ``teacher.trec``): the teacher's own re-ranking of those candidates,
      where the config's teacher is a model (``teacher.source = "models"`` or ``"train"``); its
      scores are cached in ``eval/<suite>/teacher/`` like the training pairs'. A teacher given
      only as a scores file or an LLM ranking cannot score new pairs, and gets no row.
    """
    teachers = None
    for name, suite in suites.items():
        folder = ws.suite(name)
        for label, file in REFERENCES.items():
            if (folder / file).is_file():
                read_metrics(folder / file)  # a damaged file is named here, not in the report
                continue
            if file == "first_stage.json":
                run = suite.run
            elif file == "random.json":
                run = random_order(suite.run)
            elif config.teacher.source in ("models", "train"):
                teachers = teachers or teacher_models(config, ws)
                run = _teacher_run(teachers, config, suite, folder)
            else:
                continue
            logger.info("%s metrics of %s", label, name)
            result = evaluate(run, suite.qrels, config.eval.metrics, rel_level=suite.relevance_level, given_names=True)
            write_json(folder / file, result.aggregate)


def _teacher_run(teachers: list, config: BenchConfig, suite: Collection, folder: Path) -> Run:
    scores = score_with_teachers(teachers, suite.run, suite.queries, suite.corpus, cache_dir=folder / "teacher", ensemble=config.teacher.ensemble)
    run = scores.to_run()
    write_trec_run(run, folder / "teacher.trec", tag="st-distill-teacher")
    return run


def run_metrics(path: Path, suite: Collection, measures: tuple[str, ...]) -> dict[str, Any]:
    """Metrics of a saved run (a cell's ``runs/<suite>.trec``) on ``suite``: ``{"aggregate", "per_query", "queries"}``."""
    result = evaluate(read_trec_run(path), suite.qrels, measures, rel_level=suite.relevance_level, given_names=True)
    return _suite_metrics(result)


def add_measures(folder: CellFolder, metrics: dict[str, Any], suites: Mapping[str, Collection], measures: tuple[str, ...]) -> tuple[str, ...]:
    """Adds to a finished folder's ``metrics`` (its ``metrics.json`` content) the ``measures`` it lacks
    (``eval.metrics`` grew since), computed from its saved re-ranked runs (``runs/<suite>.trec``), and
    writes them back.

    Returns:
        The measures added (none: nothing was written).
    """
    added: dict[str, None] = {}
    for name, suite in metrics.get("suites", {}).items():
        missing = tuple(m for m in measures if m not in suite["aggregate"])
        if missing and name in suites:
            more = run_metrics(folder.run(name), suites[name], missing)
            suite["aggregate"].update(more["aggregate"])
            suite["per_query"].update(more["per_query"])
            added.update(dict.fromkeys(missing))
    if added:
        write_json(folder.metrics, metrics)
    return tuple(added)


def step0_metrics(config: BenchConfig, ws: Workspace, suites: dict[str, Collection], settings: Step0Settings,
                  calibration: Callable[[str], list[tuple[str, str]]]) -> bool:
    """Evaluates (once) the untrained student of ``settings`` into ``step0/<key>/`` (the report's
    step-0 reference): made by :func:`st_distill.training.make_student` as a cell makes it, evaluated
    by :func:`evaluate_model` as a cell's saved student is (same suites, measures, batch size,
    precision). A finished one gains the measures ``eval.metrics`` added since, from its saved runs.

    Args:
        config: The bench config.
        ws: The results folder.
        suites: The evaluation suites.
        settings: The untrained student's identity (:func:`~st_distill.bench.plan.step0_plan`).
        calibration: The calibration pairs of an objective's built dataset (called for a cosine head only).

    Returns:
        Whether it evaluated the student now.

    Raises:
        ValueError: When ``step0/<key>/`` records other settings (a damaged or foreign folder).
    """
    folder = ws.step0(settings.key)
    if folder.done.is_file():
        metrics = read_json(folder.metrics)
        if metrics.get("settings") != settings.record():
            raise ValueError(f"{folder.metrics}: records other settings than its key {settings.key} stands for; delete {folder.path}")
        add_measures(folder, metrics, suites, config.eval.metrics)
        return False
    backbone = settings.backbone
    pairs = calibration(settings.calibration["objective"]) if settings.calibration is not None else None
    model = make_student(resolve_model(backbone.model), settings.seed or 0, backbone.layers, backbone.max_length,
                         head=backbone.head, calibration_pairs=pairs)
    model.eval()
    logger.info("untrained student (%s, seed %s) on %s", backbone.model, settings.seed, ", ".join(suites))
    with atomic_folder(folder.path) as tmp:
        work = type(folder)(tmp)
        measured = evaluate_model(model, suites, config.eval.metrics, config.eval.batch_size, work.runs, ws=ws)
        write_json(work.metrics, {"settings": settings.record(), "suites": measured})
        work.done.touch()
    return True
