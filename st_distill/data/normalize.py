"""Teacher-score normalisation: turning cached raw teacher scores into training targets.

MarginMSE and MSE are scale-sensitive: a teacher emitting probabilities gives tiny margins, one
emitting logits in [-12, 22] large ones. The teacher cache always keeps the **raw** scores; the
builder applies one of these methods when it turns them into targets, so changing the method
never rescores a pair:

=================  ==========================================================================
method             target of a document ``d`` of query ``q`` (``s``: raw teacher score)
=================  ==========================================================================
``raw``            ``s``
``sigmoid``        ``1 / (1 + exp(-s))``
``minmax``         ``(s - min_q) / (max_q - min_q)``, per query, in [0, 1]
``zscore``         ``(s - mean_q) / std_q``, per query (population std)
``global-zscore``  ``(s - mean) / std`` over every pair given (population std)
``rank``           ``(r - 1) / (n_q - 1)``, per query: ``r`` the ascending rank of ``s`` among
                   the query's ``n_q`` scores (ties share their average rank), so the best
                   document gets 1 and the worst 0
=================  ==========================================================================

Per-query statistics are taken over **all** the teacher scores of the query that are given (the
whole scored candidate set), not over the documents of one training row, so a document's target
does not depend on which negatives were sampled beside it.

Degenerate cases (no division by zero): a query whose scores are all equal, including a query
with a single document, gets ``0.5`` from ``minmax`` and ``rank`` (the middle of the range) and
``0.0`` from ``zscore``; ``global-zscore`` gives ``0.0`` everywhere when all scores are equal.
Every method is monotone within a query (non-decreasing; ``sigmoid`` can make ties of very
large logits in float32), so an order-based objective sees the same order.

Example:
    ::

        from st_distill.data.normalize import normalize_run

        normalize_run({"q1": {"d1": 8.0, "d2": 2.0, "d3": -1.0}}, "minmax")
        # {'q1': {'d1': 1.0, 'd2': 0.333..., 'd3': 0.0}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import numpy as np

Normalization = Literal["raw", "sigmoid", "minmax", "zscore", "global-zscore", "rank"]
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)


def check_normalization(method: str) -> str:
    """Returns ``method`` when it is a known normalisation.

    Raises:
        ValueError: Naming the known methods otherwise.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {method!r}: expected one of {', '.join(NORMALIZATIONS)}")
    return method


def normalize_scores(scores: np.ndarray, groups: np.ndarray, method: Normalization) -> np.ndarray:
    """Normalises scores, per group (query) where the method is per query.

    Args:
        scores: Raw scores, shape ``(n,)``.
        groups: The group (query) of each score: integers, shape ``(n,)``, in any order.
        method: One of :data:`NORMALIZATIONS` (see the module docstring).

    Returns:
        float64 targets, aligned with ``scores``.

    Raises:
        ValueError: On an unknown method, mismatched shapes or a non-finite score.
    """
    check_normalization(method)
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    if scores.shape != groups.shape or scores.ndim != 1:
        raise ValueError(f"scores and groups must be 1-d arrays of one length, got {scores.shape} and {groups.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("cannot normalise non-finite teacher scores")
    if method == "raw" or not scores.size:
        return scores.copy()
    if method == "sigmoid":
        from scipy.special import expit

        return expit(scores)
    if method == "global-zscore":
        std = scores.std()
        return (scores - scores.mean()) / (std if std > 0 else 1.0)
    # per group: sort by (group, score); each group is one contiguous run of the sorted order
    order = np.lexsort((scores, groups))
    ordered, ordered_groups = scores[order], groups[order]
    starts = np.flatnonzero(np.r_[True, ordered_groups[1:] != ordered_groups[:-1]])
    sizes = np.diff(np.r_[starts, scores.size])
    member = np.repeat(np.arange(starts.size), sizes)  # group number of each sorted position
    out = np.empty_like(scores)
    if method == "minmax":
        low, span = ordered[starts], ordered[starts + sizes - 1] - ordered[starts]
        spread = span[member] > 0
        out[order] = np.where(spread, (ordered - low[member]) / np.where(spread, span[member], 1.0), 0.5)
    elif method == "zscore":
        mean = np.add.reduceat(ordered, starts) / sizes
        centred = ordered - mean[member]
        std = np.sqrt(np.add.reduceat(centred**2, starts) / sizes)
        out[order] = centred / np.where(std > 0, std, 1.0)[member]
    else:  # rank: ties (equal scores within a group) share the average of their 0-based positions
        position = np.arange(scores.size) - starts[member]
        tie_start = np.flatnonzero(np.r_[True, (ordered_groups[1:] != ordered_groups[:-1]) | (ordered[1:] != ordered[:-1])])
        tie_size = np.diff(np.r_[tie_start, scores.size])
        tie = np.repeat(np.arange(tie_start.size), tie_size)
        average = (position[tie_start] + (tie_size - 1) / 2)[tie]
        denominator = sizes[member] - 1
        out[order] = np.where(denominator > 0, average / np.maximum(denominator, 1), 0.5)
    return out


def normalize_run(run: Mapping[str, Mapping[str, float]], method: Normalization) -> dict[str, dict[str, float]]:
    """Normalises a run ``{qid: {docid: raw score}}`` (each query is a group); see :func:`normalize_scores`.

    Returns:
        A new run with the same queries and documents, holding the targets.
    """
    check_normalization(method)
    qids = list(run)
    sizes = np.fromiter((len(run[qid]) for qid in qids), dtype=np.int64, count=len(qids))
    scores = np.fromiter((score for qid in qids for score in run[qid].values()), dtype=np.float64, count=int(sizes.sum()))
    values = normalize_scores(scores, np.repeat(np.arange(len(qids)), sizes), method).tolist()
    out: dict[str, dict[str, float]] = {}
    position = 0
    for qid, size in zip(qids, sizes.tolist()):
        out[qid] = dict(zip(run[qid], values[position : position + size]))
        position += size
    return out
