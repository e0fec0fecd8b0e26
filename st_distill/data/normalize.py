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

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa

Normalization = Literal["raw", "sigmoid", "minmax", "zscore", "global-zscore", "rank"]
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
_NORMALIZE_KEY = b"st_distill.normalize"
_TEACHER_KEY = b"st_distill.teacher"


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
    return table_run(normalize_table(run_table(run), method))


def scores_table(
    qids: pa.Array | pa.ChunkedArray | Sequence[str],
    docids: pa.Array | pa.ChunkedArray | Sequence[str],
    scores: np.ndarray | pa.Array | pa.ChunkedArray,
    normalize: Normalization | None = None,
    teacher: Mapping[str, Any] | None = None,
) -> pa.Table:
    """The ``(qid, docid, score)`` table teacher scores travel in, with their provenance.

    Args:
        qids: Query id of each pair.
        docids: Document id of each pair.
        scores: Raw score of each pair (float32 or float64; the type is kept).
        normalize: The normalisation recorded with the scores (e.g. by the teacher cache), if any.
        teacher: The teachers behind the scores (``{"ensemble", "teachers", "fingerprints"}``), if known.

    Returns:
        The table; ``normalize`` and ``teacher`` are stored in its schema metadata (see :func:`scores_provenance`).
    """
    table = pa.table({"qid": pa.array(qids, pa.string()) if not isinstance(qids, (pa.Array, pa.ChunkedArray)) else qids,
                      "docid": pa.array(docids, pa.string()) if not isinstance(docids, (pa.Array, pa.ChunkedArray)) else docids,
                      "score": scores})
    metadata = {}
    if normalize is not None:
        metadata[_NORMALIZE_KEY] = check_normalization(normalize).encode()
    if teacher is not None:
        metadata[_TEACHER_KEY] = json.dumps(dict(teacher)).encode()
    return table.replace_schema_metadata(metadata or None)


def scores_provenance(table: pa.Table) -> tuple[Normalization | None, dict[str, Any] | None]:
    """``(normalize, teacher)`` recorded in a table made by :func:`scores_table` (``None`` where not recorded)."""
    metadata = table.schema.metadata or {}
    normalize = metadata.get(_NORMALIZE_KEY)
    teacher = metadata.get(_TEACHER_KEY)
    return (normalize.decode() if normalize else None), (json.loads(teacher) if teacher else None)


def run_table(run: Mapping[str, Mapping[str, float]]) -> pa.Table:
    """A run ``{qid: {docid: score}}`` as a :func:`scores_table` (float64 scores), in run order."""
    qids = [qid for qid, docs in run.items() for _ in docs]
    docids = [docid for docs in run.values() for docid in docs]
    scores = np.fromiter((score for docs in run.values() for score in docs.values()), dtype=np.float64, count=len(docids))
    return scores_table(qids, docids, scores)


def table_run(table: pa.Table) -> dict[str, dict[str, float]]:
    """A :func:`scores_table` as a run ``{qid: {docid: score}}`` (queries in first-seen order)."""
    run: dict[str, dict[str, float]] = {}
    for qid, docid, score in zip(table.column("qid").to_pylist(), table.column("docid").to_pylist(), table.column("score").to_pylist()):
        run.setdefault(qid, {})[docid] = score
    return run


def check_teacher_scores(table: pa.Table, source: str = "teacher scores") -> None:
    """Refuses NaN scores, naming the first pair (a NaN target makes every gradient NaN).

    Infinite scores pass: sentence-transformers' losses read them as candidates excluded on purpose.

    Raises:
        ValueError: Naming ``source``, the number of NaN scores and the first such pair.
    """
    values = table.column("score").to_numpy()
    nan = np.isnan(values)
    if nan.any():
        first = int(np.flatnonzero(nan)[0])
        raise ValueError(
            f"{source}: {int(nan.sum())} NaN score(s), first of query {table.column('qid')[first].as_py()!r}, "
            f"document {table.column('docid')[first].as_py()!r}; a NaN target makes the loss and every gradient NaN"
        )


def normalize_table(table: pa.Table, method: Normalization) -> pa.Table:
    """Normalises a :func:`scores_table` on its arrays, each query a group (see :func:`normalize_scores`).

    Returns:
        The table with the targets as its (float64) ``score`` column; ``"raw"`` returns it unchanged.
    """
    check_normalization(method)
    if method == "raw":
        return table
    groups = table.column("qid").combine_chunks().dictionary_encode().indices.to_numpy()
    values = normalize_scores(table.column("score").to_numpy(), groups, method)
    return table.set_column(table.schema.get_field_index("score"), "score", pa.array(values, pa.float64()))
