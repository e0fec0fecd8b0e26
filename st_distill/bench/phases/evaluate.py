"""Evaluation phase: re-rank each suite's first-stage run with a cell's model; first-stage metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from st_distill.bench.config import BenchConfig, MtebSuite
from st_distill.bench.phases.sources import Loaded
from st_distill.data.formats import Run, write_trec_run
from st_distill.io import write_json

logger = logging.getLogger(__name__)

__all__ = ["evaluate_model", "evaluate_mteb_suite", "first_stage_metrics"]


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
            logger.info("first-stage metrics of %s", name)
            write_json(path, _metrics(suite.run, suite, config.eval.metrics)["aggregate"])
