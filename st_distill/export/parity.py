"""The parity report of an export: does the exported re-ranker rank as its source does, and how fast?

Both models re-rank the same candidates of a suite (:mod:`st_distill.export.suite`); the report
holds nDCG@10 of each and their ratio, Kendall's tau between the two models' scores (over all pairs
and averaged per query), the largest absolute score difference, and pairs per second of each. The
source's parity scores are its float32 logits (``score_pairs(..., autocast=False)``); speeds are
measured as each model is used by default (:func:`st_distill.models.scoring.score_pairs`: bfloat16
autocast for the source on CPUs with AMX), interleaved, median of the repeats.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from st_distill.data.formats import Run
from st_distill.evaluation.metrics import evaluate
from st_distill.evaluation.rerank import Candidates
from st_distill.export.suite import Suite
from st_distill.models.precision import autocast_dtype
from st_distill.models.scoring import score_pairs

__all__ = ["DEFAULT_MIN_RATIO", "ParityError", "format_parity", "measure_parity", "pairs_per_second"]

#: The share of the source's nDCG@10 an export must keep by default.
DEFAULT_MIN_RATIO = 0.99
MEASURE = "nDCG@10"


class ParityError(ValueError):
    """An export kept less than the required share of its source's nDCG@10; carries the report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def pairs_per_second(models: Sequence[Any], pairs: Sequence[tuple[str, str]], repeats: int = 3, batch_size: int = 64) -> list[float]:
    """Pairs per second of each model on ``pairs`` (:func:`score_pairs`, default settings): the models
    take turns, ``repeats`` times, and each gets the median of its timings."""
    timings: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for i, model in enumerate(models):
            start = time.perf_counter()
            score_pairs(model, pairs, batch_size=batch_size, activation=False, show_progress_bar=False)
            timings[i].append(time.perf_counter() - start)
    return [len(pairs) / statistics.median(t) for t in timings]


def _run(candidates: Candidates, scores: np.ndarray) -> Run:
    run: Run = {qid: {} for qid in candidates.first_stage}
    for (qid, docid), score in zip(candidates.ids, scores.tolist()):
        run[qid][docid] = score
    return run


def _per_query_tau(candidates: Candidates, a: np.ndarray, b: np.ndarray) -> float:
    rows: dict[str, list[int]] = {}
    for i, (qid, _) in enumerate(candidates.ids):
        rows.setdefault(qid, []).append(i)
    taus = [kendalltau(a[r], b[r]).statistic for r in rows.values() if len(r) > 1]
    taus = [t for t in taus if np.isfinite(t)]
    return float(np.mean(taus)) if taus else float("nan")


def measure_parity(
    source: Any,
    exported: Any,
    suite: Suite,
    depth: int = 100,
    rel_level: int = 2,
    repeats: int = 3,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Compares an exported re-ranker with its source on a suite.

    Args:
        source: The source CrossEncoder.
        exported: The exported CrossEncoder (:func:`st_distill.models.exported.load_exported`).
        suite: The suite; it must have qrels.
        depth: Candidates re-ranked per query.
        rel_level: Minimum grade counted relevant by binary measures (nDCG@10 uses the grades).
        repeats: Timed passes of each model for pairs per second.
        batch_size: Pairs per forward pass.

    Returns:
        ``{"suite", "queries", "pairs", "ndcg@10": {"source", "exported", "ratio"}, "kendall_tau",
        "kendall_tau_per_query", "max_abs_diff", "pairs_per_second": {"source", "exported", "speedup"},
        "source_timing"}``.

    Raises:
        ValueError: When the suite has no qrels.
    """
    if suite.qrels is None:
        raise ValueError(f"{suite.name}: the parity suite needs qrels")
    candidates = suite.candidates(depth)
    reference = score_pairs(source, candidates.pairs, batch_size=batch_size, activation=False, autocast=False, show_progress_bar=False)
    scores = score_pairs(exported, candidates.pairs, batch_size=batch_size, activation=False, show_progress_bar=False)
    before = evaluate(_run(candidates, reference), suite.qrels, [MEASURE], rel_level).aggregate[MEASURE]
    after = evaluate(_run(candidates, scores), suite.qrels, [MEASURE], rel_level).aggregate[MEASURE]
    speed_source, speed_exported = pairs_per_second([source, exported], candidates.pairs, repeats, batch_size)
    return {
        "suite": suite.name,
        "queries": len(candidates.first_stage),
        "pairs": len(candidates.pairs),
        "ndcg@10": {"source": before, "exported": after, "ratio": after / before if before > 0 else 1.0},
        "kendall_tau": float(kendalltau(reference, scores).statistic),
        "kendall_tau_per_query": _per_query_tau(candidates, reference, scores),
        "max_abs_diff": float(np.max(np.abs(reference - scores))),
        "pairs_per_second": {"source": speed_source, "exported": speed_exported, "speedup": speed_exported / speed_source},
        "source_timing": "bfloat16 autocast" if autocast_dtype(source.device) is not None else "float32",
    }


def format_parity(report: dict[str, Any]) -> str:
    """The parity report as a small text table (printed by ``st-distill export``)."""
    ndcg, speed = report["ndcg@10"], report["pairs_per_second"]
    lines = [
        f"parity on {report['suite']} ({report['queries']} queries, {report['pairs']} pairs)",
        f"{'':<18}{'source':>10}{'exported':>10}",
        f"{'nDCG@10':<18}{ndcg['source']:>10.4f}{ndcg['exported']:>10.4f}   kept {100 * ndcg['ratio']:.2f}%",
        f"{'pairs / s':<18}{speed['source']:>10.1f}{speed['exported']:>10.1f}   x{speed['speedup']:.2f} "
        f"(source: {report['source_timing']})",
        f"Kendall tau {report['kendall_tau']:.4f} (per query {report['kendall_tau_per_query']:.4f}); "
        f"max |score difference| {report['max_abs_diff']:.4f}",
    ]
    return "\n".join(lines)
