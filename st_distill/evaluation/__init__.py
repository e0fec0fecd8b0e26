"""Evaluation: re-ranking of precomputed first-stage runs, ir_measures metrics, first-stage retrieval.

- :func:`top_candidates` / :func:`score_candidates`: each query's top-k of a run, re-ranked by a
  CrossEncoder (scored by :func:`st_distill.models.scoring.score_pairs`); :func:`rerank_run` does both;
- :func:`evaluate` / :func:`parse_measures`: metrics by ir_measures, per query and averaged;
  :func:`read_metrics` reads a metrics file back;
- :func:`rerank_and_measure`: the one re-rank + evaluate step of the trainer evaluator, the learning
  curves, the bench and ``st-distill eval`` (:func:`rerank_and_evaluate`, which works on files);
- :func:`bm25_retrieve` / :func:`dense_retrieve`: make a first-stage run;
- :class:`RerankingEvaluator`: the same re-ranking as a ``CrossEncoderTrainer`` evaluator;
- :class:`DistillationEvaluator` / :func:`fidelity`: how closely a student follows its teacher on
  held-aside lists (per-query Spearman, Kendall, KL of the softmaxed lists, top-k overlap).
"""

from st_distill.evaluation.distillation import DistillationEvaluator, fidelity
from st_distill.evaluation.evaluator import RerankingEvaluator
from st_distill.evaluation.metrics import DEFAULT_MEASURES, Evaluation, evaluate, parse_measures, read_metrics
from st_distill.evaluation.rerank import (
    Candidates,
    MissingTextError,
    Reranking,
    load_inputs,
    rerank_and_evaluate,
    rerank_and_measure,
    rerank_run,
    score_candidates,
    top_candidates,
)
from st_distill.data.first_stage import bm25_retrieve, dense_retrieve

__all__ = [
    "DEFAULT_MEASURES",
    "Candidates",
    "DistillationEvaluator",
    "Evaluation",
    "MissingTextError",
    "Reranking",
    "RerankingEvaluator",
    "bm25_retrieve",
    "dense_retrieve",
    "evaluate",
    "fidelity",
    "load_inputs",
    "parse_measures",
    "read_metrics",
    "rerank_and_evaluate",
    "rerank_and_measure",
    "rerank_run",
    "score_candidates",
    "top_candidates",
]
