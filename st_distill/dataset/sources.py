"""One recipe from a loaded collection to a built dataset, shared by ``st-distill build`` and the bench."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from st_distill.data.formats import Collection, Run
from st_distill.data.negatives import negatives_from_run
from st_distill.dataset.build import build_dataset
from st_distill.dataset.report import BuildReport

if TYPE_CHECKING:
    from datasets import Dataset

    from st_distill.objectives import Objective


def build_from_sources(
    objective: str | Objective,
    collection: Collection,
    *,
    negatives_run: Run | None = None,
    negatives_per_query: int | None = None,
    depth: int | None = None,
    strategy: Literal["top", "uniform"] = "top",
    **options: Any,
) -> tuple[Dataset, BuildReport]:
    """Builds one objective's dataset from a collection: its texts and judgements (relevant from
    its ``relevance_level``), negatives taken from a first-stage run, and whatever else
    :func:`~st_distill.dataset.build_dataset` takes.

    Args:
        objective: Registry name or objective.
        collection: Queries, corpus, qrels and relevance level (its ``run`` is not read: pass it as
            ``negatives_run`` or ``candidates``, which need not be the same run).
        negatives_run: A run each query's negatives pool is taken from
            (:func:`~st_distill.data.negatives.negatives_from_run`), if any.
        negatives_per_query: Negatives taken per query from ``negatives_run`` (default: ``negatives_from_run``'s, 7).
        depth: Look only at the top ``depth`` of ``negatives_run``.
        strategy: ``"top"`` (the best-ranked non-relevant documents) or ``"uniform"`` (a sample of the top ``depth``).
        **options: Passed to :func:`~st_distill.dataset.build_dataset` (``candidates``,
            ``teacher_scores``, ``triples``, row sizes, ``seed``, ``lazy``, ``normalize``, ...).

    Returns:
        ``(dataset, report)``.
    """
    negatives = None
    if negatives_run is not None:
        k = {} if negatives_per_query is None else {"k": negatives_per_query}  # else negatives_from_run's default
        negatives = negatives_from_run(
            negatives_run, collection.qrels, **k, depth=depth, strategy=strategy,
            relevance_threshold=collection.relevance_level, seed=options.get("seed", 0),
        )
    return build_dataset(
        objective, collection.queries, collection.corpus, qrels=collection.qrels, negatives=negatives,
        relevance_threshold=collection.relevance_level, **options,
    )
