"""A CrossEncoderTrainer evaluator that re-ranks a first-stage run and reports ir_measures metrics."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from st_distill.data.formats import Qrels, Texts
from st_distill.evaluation.metrics import evaluate, parse_measures
from st_distill.evaluation.rerank import rerank_and_measure, top_candidates

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)


def append_csv(output_path: str, file_name: str, headers: Sequence[str], row: Sequence[Any]) -> None:
    """Appends ``row`` to the CSV ``output_path/file_name``, with ``headers`` first in a new file, as the library's evaluators do."""
    os.makedirs(output_path, exist_ok=True)
    csv_path = os.path.join(output_path, file_name)
    exists = os.path.isfile(csv_path)
    with open(csv_path, "a" if exists else "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if not exists:
            writer.writerow(headers)
        writer.writerow(row)


def when(epoch: int, steps: int) -> str:
    """`` after epoch 1, step 20`` for a log line; empty outside training (``epoch == -1``)."""
    return f" after epoch {epoch}" + (f", step {steps}" if steps != -1 else "") if epoch != -1 else ""


def _key(measure_name: str) -> str:
    """Metric key as the trainer logs it: ``nDCG@10`` -> ``ndcg@10``, ``RR(rel=2)@10`` -> ``rr(rel=2)@10``."""
    return measure_name.lower().replace(" ", "")


class RerankingEvaluator(BaseEvaluator):
    """Evaluates a CrossEncoder by re-ranking each query's top ``depth`` documents of a first-stage run.

    Usable as the ``evaluator`` of ``CrossEncoderTrainer``: it returns a dict of metrics whose
    :attr:`primary_metric` (the first measure, nDCG@10 by default) can select checkpoints with
    ``metric_for_best_model="eval_<name>_ndcg@10"`` (``"eval_ndcg@10"`` without a name). Metrics
    come from ir_measures, with graded qrels handled as trec_eval does (see
    :mod:`st_distill.evaluation.metrics`); the first stage's metrics on the same candidates are
    reported beside, prefixed ``base_``, as the library's ``CrossEncoderRerankingEvaluator`` does.

    Unlike ``CrossEncoderRerankingEvaluator``, which takes text samples and adds any missing
    positives to the candidates, this evaluator re-ranks the run as it is (positives the first
    stage missed stay missed), as papers report re-ranking. Queries without judgements are not
    scored at all, since they cannot change a metric.

    Args:
        run: First-stage run ``{qid: {docid: score}}``.
        queries: ``{qid: text}``.
        corpus: ``{docid: text}`` (only the run's documents are needed).
        qrels: ``{qid: {docid: grade}}``.
        depth: Documents re-ranked per query.
        measures: ir_measures names, the first being the primary metric.
        rel_level: Minimum grade counted relevant by binary measures (2 for TREC DL passage).
        name: Prefix of the metric keys (and of the CSV file name).
        batch_size: Pairs per forward pass.
        show_progress_bar: Progress bar over the pairs.
        write_csv: Append the metrics to a CSV in ``output_path`` at each call.
        skip_missing: Drop and count queries/documents without text instead of raising.

    Example:
        ::

            from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
            from st_distill.data.formats import read_qrels, read_trec_run, read_tsv
            from st_distill.evaluation import RerankingEvaluator

            evaluator = RerankingEvaluator(
                run=read_trec_run("run.bm25.top100.trec"), queries=read_tsv("queries.tsv"),
                corpus=read_tsv("passages.tsv"), qrels=read_qrels("qrels.txt"), rel_level=2, name="dl19",
            )
            print(evaluator(CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")))
            # {'dl19_ndcg@10': ..., 'dl19_base_ndcg@10': 0.5058, ...}
    """

    def __init__(
        self,
        run: Mapping[str, Mapping[str, float]],
        queries: Texts,
        corpus: Texts,
        qrels: Qrels,
        depth: int = 100,
        measures: Sequence[str] = ("nDCG@10", "RR@10", "AP"),
        rel_level: int = 1,
        name: str = "",
        batch_size: int = 64,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        skip_missing: bool = False,
    ) -> None:
        super().__init__()
        self.measures = [str(m) for m in parse_measures(measures, rel_level)]
        self.rel_level = rel_level
        self.depth = depth
        self.qrels = qrels
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.write_csv = write_csv
        judged = [qid for qid in run if qid in qrels]
        if not judged:
            raise ValueError(f"none of the run's {len(run)} queries has a judgement in the qrels")
        self.unjudged_queries = len(run) - len(judged)
        self.candidates = top_candidates(run, queries, corpus, depth, skip_missing, qids=judged)
        if not self.candidates.pairs:
            raise ValueError("no (query, document) pair left to re-rank")
        self.base = evaluate(self.candidates.first_stage, qrels, self.measures)
        self.primary_metric = (f"{name}_" if name else "") + _key(self.measures[0])
        self.csv_file = "RerankingEvaluator" + (f"_{name}" if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps", *self.measures]

    def __call__(
        self, model: CrossEncoder, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Re-ranks the candidates with ``model`` and returns the metrics (and the first stage's, as ``base_*``)."""
        result = rerank_and_measure(
            model, self.candidates, self.qrels, self.measures, batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
        ).evaluation
        logger.info(
            "RerankingEvaluator %s%s: %d queries, %d pairs (depth %d)",
            self.name, when(epoch, steps), result.queries["evaluated"], len(self.candidates.pairs), self.depth,
        )
        for measure in self.measures:
            logger.info("  %-16s %.4f -> %.4f", measure, self.base.aggregate[measure], result.aggregate[measure])
        metrics: dict[str, Any] = {_key(m): result.aggregate[m] for m in self.measures}
        metrics.update({f"base_{_key(m)}": self.base.aggregate[m] for m in self.measures})
        if output_path is not None and self.write_csv:
            append_csv(output_path, self.csv_file, self.csv_headers, [epoch, steps, *(result.aggregate[m] for m in self.measures)])
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def get_config_dict(self) -> dict[str, Any]:
        """Settings stored in the model card."""
        return {"depth": self.depth, "measures": self.measures, "rel_level": self.rel_level}
