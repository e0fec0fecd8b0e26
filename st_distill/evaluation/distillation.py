"""Distillation fidelity: how closely a student CrossEncoder follows its teacher on held-aside lists.

:func:`fidelity` compares two sets of per-query score lists (teacher and student);
:class:`DistillationEvaluator` scores the lists with the student and reports it, as a
``CrossEncoderTrainer`` evaluator. The library's ``MultiVectorDistillationEvaluator`` does the same
for multi-vector models only (Spearman and KL); this one is for cross-encoders, takes ragged lists,
and adds Kendall's tau and the top-k overlap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from st_distill.data.formats import Texts
from st_distill.evaluation.evaluator import append_csv, when
from st_distill.evaluation.rerank import top_candidates
from st_distill.losses.functional import kl_distill
from st_distill.models.scoring import score_pairs

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

__all__ = ["fidelity", "DistillationEvaluator"]


def _top(scores: np.ndarray, k: int) -> set[int]:
    """Positions of the ``k`` highest scores; ties go to the earlier position, as a stable ranking orders them."""
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


def _check_settings(temperature: float, k: int) -> None:
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _arrays(teacher: Sequence[Sequence[float]], student: Sequence[Sequence[float]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The lists as float64 arrays, checked: as many student as teacher lists, same lengths, non-empty, finite."""
    if len(teacher) != len(student) or not len(teacher):
        raise ValueError(f"need one student list per teacher list (and at least one), got {len(teacher)} and {len(student)}")
    pairs = [(np.asarray(t, dtype=np.float64), np.asarray(s, dtype=np.float64)) for t, s in zip(teacher, student)]
    for i, (t, s) in enumerate(pairs):
        if t.shape != s.shape or t.ndim != 1 or t.size == 0:
            raise ValueError(f"list {i}: {t.size} teacher scores but {s.size} student scores (need the same, at least 1)")
        if not (np.isfinite(t).all() and np.isfinite(s).all()):
            raise ValueError(f"list {i}: a score is NaN or infinite")
    return pairs


def _padded(lists: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, L]`` float64 tensor of the lists, zero-padded, and its ``[B, L]`` mask of real entries."""
    lengths = torch.tensor([len(values) for values in lists])
    mask = torch.arange(int(lengths.max())).unsqueeze(0) < lengths.unsqueeze(1)
    return torch.nn.utils.rnn.pad_sequence([torch.from_numpy(values) for values in lists], batch_first=True), mask


def fidelity(
    teacher: Sequence[Sequence[float]], student: Sequence[Sequence[float]], temperature: float = 1.0, k: int = 10
) -> dict[str, float]:
    """How closely ``student`` follows ``teacher``, list by list, averaged over the lists (queries).

    - ``spearman``: Spearman's rho of each list (scipy's ``spearmanr``: ties get average ranks);
    - ``kendall``: Kendall's tau-b of each list (scipy's ``kendalltau``, which corrects for ties);
    - ``kl_divergence``: ``KL(softmax(t / T) || softmax(s / T)) * T^2`` of each list, the value
      :class:`~st_distill.losses.KLDistillLoss` takes on it (:func:`st_distill.losses.functional.kl_distill`);
      0 for a list the student matches up to a constant, lower is better;
    - ``top{k}_overlap``: ``|top-k(t) & top-k(s)| / min(k, n)`` of each list, ties broken by list position.

    A rank correlation is undefined for a list of one document or one where either side is
    constant; such lists are left out of the Spearman and Kendall means (0.0 when every list is),
    and kept in the other two.

    Args:
        teacher: One list of teacher scores per query.
        student: The student's scores of the same documents, in the same order.
        temperature: Softmax temperature ``T`` of the KL divergence.
        k: Depth of the top-k overlap.

    Returns:
        ``{"spearman", "kendall", "kl_divergence", "top{k}_overlap", "queries", "rank_correlation_queries"}``:
        the four means, the number of lists, and of lists with a defined rank correlation.

    Raises:
        ValueError: On lists of different numbers or lengths, an empty list, a non-finite score,
            a non-positive temperature or ``k``.
    """
    _check_settings(temperature, k)
    pairs = _arrays(teacher, student)
    rhos, taus = [], []
    for t, s in pairs:
        if t.size > 1 and np.ptp(t) > 0 and np.ptp(s) > 0:
            rhos.append(spearmanr(t, s).statistic)
            taus.append(kendalltau(t, s).statistic)
    overlap = [len(_top(t, k) & _top(s, k)) / min(k, t.size) for t, s in pairs]
    teacher_matrix, mask = _padded([t for t, _ in pairs])
    student_matrix, _ = _padded([s for _, s in pairs])
    kl = kl_distill(student_matrix, teacher_matrix, mask, temperature=temperature).item()
    return {
        "spearman": float(np.mean(rhos)) if rhos else 0.0,
        "kendall": float(np.mean(taus)) if taus else 0.0,
        "kl_divergence": kl,
        f"top{k}_overlap": float(np.mean(overlap)),
        "queries": len(pairs),
        "rank_correlation_queries": len(rhos),
    }


class DistillationEvaluator(BaseEvaluator):
    """Evaluates how closely a CrossEncoder follows its teacher on held-aside (query, documents, teacher scores) lists.

    The student scores every (query, document) pair (raw logits, no activation); :func:`fidelity`
    then compares each query's list with the teacher's: mean per-query Spearman (the primary
    metric) and Kendall tau-b, ``KL(teacher || student)`` of the softmaxed lists at
    ``temperature`` (times ``T^2``, as :class:`~st_distill.losses.KLDistillLoss`), and the top-k
    overlap. Usable as the ``evaluator`` of ``CrossEncoderTrainer``: metric keys are prefixed with
    ``name`` (``eval_<name>_spearman`` in the trainer's logs), and each call appends a CSV row to
    ``output_path`` when ``write_csv``. Lists may differ in length.

    Args:
        queries: One query text per list.
        documents: One list of document texts per query.
        scores: The teacher's scores of those documents (raw logits; any scale where higher is better).
        temperature: Softmax temperature of the KL divergence (match the training loss's).
        k: Depth of the top-k overlap.
        name: Prefix of the metric keys and of the CSV file name.
        batch_size: Pairs per forward pass.
        show_progress_bar: Progress bar over the pairs.
        write_csv: Append the metrics to a CSV in ``output_path`` at each call.

    Example:
        ::

            from sentence_transformers.cross_encoder import CrossEncoder
            from st_distill.evaluation import DistillationEvaluator

            evaluator = DistillationEvaluator(
                queries=["what do pandas eat", "capital of france"],
                documents=[["Pandas eat bamboo.", "Pandas are bears.", "Fish swim."],
                           ["Paris is the capital of France.", "France borders Spain."]],
                scores=[[9.1, 2.3, -4.0], [8.7, -1.2]],
                name="held-out",
            )
            print(evaluator(CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")))
            # {'held-out_spearman': ..., 'held-out_kendall': ..., 'held-out_kl_divergence': ..., 'held-out_top10_overlap': ...}
    """

    def __init__(
        self,
        queries: Sequence[str],
        documents: Sequence[Sequence[str]],
        scores: Sequence[Sequence[float]],
        temperature: float = 1.0,
        k: int = 10,
        name: str = "",
        batch_size: int = 64,
        show_progress_bar: bool = False,
        write_csv: bool = True,
    ) -> None:
        super().__init__()
        if not (len(queries) == len(documents) == len(scores)) or not queries:
            raise ValueError(
                f"queries ({len(queries)}), documents ({len(documents)}) and scores ({len(scores)}) "
                "must have the same, non-zero length"
            )
        self.queries = list(queries)
        self.documents = [list(docs) for docs in documents]
        self.scores = [[float(s) for s in row] for row in scores]
        bad = next((i for i, (d, s) in enumerate(zip(self.documents, self.scores)) if len(d) != len(s)), None)
        if bad is not None:
            raise ValueError(f"query {bad}: {len(self.documents[bad])} documents but {len(self.scores[bad])} teacher scores")
        _check_settings(temperature, k)
        _arrays(self.scores, self.scores)  # empty lists, NaN teacher scores: fail here, before any model runs
        self.temperature = temperature
        self.k = k
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.write_csv = write_csv
        self.metric_names = ["spearman", "kendall", "kl_divergence", f"top{k}_overlap"]
        self.primary_metric = "spearman"
        self.csv_file = "DistillationEvaluator" + (f"_{name}" if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps", *self.metric_names]

    @classmethod
    def from_run(
        cls,
        teacher: Mapping[str, Mapping[str, float]],
        queries: Texts,
        corpus: Texts,
        depth: int | None = None,
        skip_missing: bool = False,
        **kwargs: Any,
    ) -> DistillationEvaluator:
        """An evaluator over the teacher's scores of each query's documents (e.g. a first stage's top-k
        scored by the teacher, from the teacher cache's ``to_run()``).

        Args:
            teacher: ``{qid: {docid: teacher score}}``.
            queries: ``{qid: text}``.
            corpus: ``{docid: text}``.
            depth: Keep each query's ``depth`` best documents by teacher score (all when None).
            skip_missing: Drop (and count) queries and documents without text instead of raising.
            **kwargs: Passed to the constructor (``temperature``, ``k``, ``name``, ...).

        Raises:
            MissingTextError: On a query or document without text, unless ``skip_missing``.
        """
        if not teacher:
            raise ValueError("the teacher run is empty: no list to evaluate on")
        candidates = top_candidates(teacher, queries, corpus, depth, skip_missing)
        qids = list(candidates.first_stage)
        documents = [[corpus[docid] for docid in candidates.first_stage[qid]] for qid in qids]
        scores = [list(candidates.first_stage[qid].values()) for qid in qids]
        return cls([queries[qid] for qid in qids], documents, scores, **kwargs)

    def __call__(
        self, model: CrossEncoder, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Scores the lists with ``model`` and returns the fidelity metrics, prefixed with ``name``."""
        pairs = [(query, doc) for query, docs in zip(self.queries, self.documents) for doc in docs]
        flat = score_pairs(model, pairs, batch_size=self.batch_size, activation=False, show_progress_bar=self.show_progress_bar)
        bounds = np.cumsum([0, *(len(docs) for docs in self.documents)])
        student = [flat[bounds[i] : bounds[i + 1]] for i in range(len(self.documents))]
        result = fidelity(self.scores, student, self.temperature, self.k)
        logger.info(
            "DistillationEvaluator %s%s: %d queries (%d with a defined rank correlation), %d pairs",
            self.name, when(epoch, steps), result["queries"], result["rank_correlation_queries"], len(pairs),
        )
        metrics = {key: result[key] for key in self.metric_names}
        for key, value in metrics.items():
            logger.info("  %-16s %.4f", key, value)
        if output_path is not None and self.write_csv:
            append_csv(output_path, self.csv_file, self.csv_headers, [epoch, steps, *metrics.values()])
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def get_config_dict(self) -> dict[str, Any]:
        """Settings stored in the model card."""
        return {"temperature": self.temperature, "k": self.k}
