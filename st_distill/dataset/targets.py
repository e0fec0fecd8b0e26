"""Where teacher scores become labels: the ``(qid, docid, score)`` table normalised on its arrays,
checked (NaN refused, sigmoid-squashed scores and softmax underflow warned about)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from st_distill.data.formats import Run
from st_distill.data.ids import run_from_ids
from st_distill.data.normalize import (
    Normalization,
    check_normalization,
    check_teacher_scores,
    normalize_table,
    run_table,
    scores_provenance,
)

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

    from st_distill.objectives import DatasetFormat, Objective

logger = logging.getLogger(__name__)


def as_run(source: Run | Dataset | IterableDataset | None) -> Run | None:
    """A run from a run or an id dataset (``resolve_ids`` style)."""
    if source is None or isinstance(source, Mapping):
        return source
    return run_from_ids(source)


def as_scores(source: Any) -> pa.Table | None:
    """Teacher scores as a ``(qid, docid, score)`` table (:func:`~st_distill.data.normalize.scores_table`):
    a table or any Arrow stream (e.g. :class:`~st_distill.teachers.TeacherScores`) as it is, a run
    or an id dataset converted."""
    if source is None:
        return None
    if isinstance(source, pa.Table):
        return source
    if hasattr(source, "__arrow_c_stream__"):  # the Arrow PyCapsule protocol
        return pa.table(source)
    return run_table(as_run(source))


def label_targets(
    name: str, fmt: DatasetFormat, normalize: Normalization | None, scores: pa.Table | None, candidates: Run | None
) -> tuple[dict[tuple[str, str], float] | None, str | None]:
    """``{(qid, docid): target}`` the rows' scores are read from, normalised, and the method applied
    (``None`` when the format trains on labels only). Without teacher scores, a ranking format reads
    the candidates' own scores (e.g. LLM pseudo-scores): those are normalised, the candidates' order
    is kept. Here scores become labels, so here they are checked (see :func:`_check_targets`)."""
    recorded = scores_provenance(scores)[0] if scores is not None else None
    method = check_normalization(normalize or recorded or "raw")
    source, what = (scores, "teacher_scores") if scores is not None else (None, "candidates")
    if fmt.teacher is None:
        if normalize not in (None, "raw"):
            raise ValueError(f"{name}: trains on labels, not teacher scores; normalize={normalize!r} does not apply")
        method = None
    elif source is None and candidates is not None:
        source = run_table(candidates)
    if source is None:
        return None, method
    if method is not None:
        check_teacher_scores(source, f"{name}: {what}")
        if method == "raw" and fmt.teacher == "scores" and fmt.kind != "listwise" and scores is not None:
            _warn_if_squashed(name, source)
        source = normalize_table(source, method)
    keys = zip(source.column("qid").to_pylist(), source.column("docid").to_pylist())
    return dict(zip(keys, source.column("score").to_pylist())), method


def _warn_if_squashed(name: str, scores: pa.Table) -> None:
    """Warns when every raw teacher score lies in [0, 1]: sigmoid-squashed, where MarginMSE and MSE expect logits."""
    values = scores.column("score").to_numpy()
    finite = values[np.isfinite(values)]
    if finite.size > 1 and finite.min() >= 0.0 and finite.max() <= 1.0:
        logger.warning(
            "%s: all %d teacher scores lie in [0, 1] (min %.4g, max %.4g): they look sigmoid-squashed, where this "
            "objective expects raw logits; margins of probabilities are tiny. Score with raw logits (st-distill teacher "
            "keeps them) or choose a normalisation (normalize=...) on purpose",
            name, finite.size, finite.min(), finite.max(),
        )


#: A float32 softmax underflows once a row's spread divided by the temperature exceeds about this
#: (the bound of ``sentence_transformers.util.check_teacher_targets``).
SOFTMAX_SPREAD = 100.0


def warn_if_softmax_underflows(name: str, objective: Objective, rows: list[tuple]) -> None:
    """Warns when a listwise row's target spread over the loss's default temperature underflows a softmax."""
    temperature = objective.loss_kwargs.get("temperature")
    if not temperature or not rows:
        return
    spread = max((max(scores) - min(scores) for _, _, scores in rows if scores), default=0.0)
    if spread / temperature > SOFTMAX_SPREAD:
        logger.warning(
            "%s: the widest list of targets spans %.1f; at the loss's temperature %g a float32 softmax underflows "
            "(spread / temperature above about %g), so some documents carry no gradient. Train with a temperature "
            "above %.3g, or normalise the teacher scores (normalize='zscore')",
            name, spread, temperature, SOFTMAX_SPREAD, spread / SOFTMAX_SPREAD,
        )
