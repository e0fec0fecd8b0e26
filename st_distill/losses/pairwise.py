"""Pairwise objectives on (query, positive, negative_1..n) tuples."""

from __future__ import annotations

import torch
from sentence_transformers.cross_encoder import CrossEncoder, losses
from torch import Tensor, nn

from st_distill.losses import functional as F
from st_distill.losses.base import as_lists, check_finite_labels, check_model, score_lists


class HingeLoss(nn.Module):
    def __init__(self, model: CrossEncoder, margin: float = 1.0, mini_batch_size: int | None = None) -> None:
        r"""
        Pairwise hinge (margin ranking) loss for cross-encoders: each positive should outscore each of
        its hard negatives by at least ``margin``,
        :math:`\mathcal{L} = \frac{1}{BN}\sum_{b,i} \max(0, m - (s^+_b - s^-_{b,i}))`, on raw logits.

        All (query, document) pairs of a batch are scored in one forward pass (or in chunks of
        ``mini_batch_size`` pairs).

        Args:
            model (CrossEncoder): CrossEncoder model to be trained (one output label).
            margin (float): The margin ``m``. Defaults to 1.0, as in the study.
            mini_batch_size (int, optional): Pairs per forward pass. ``None`` or ``<= 0`` scores all
                pairs of the batch at once. Defaults to None.

        References:
            - Optimizing Search Engines using Clickthrough Data (Joachims, KDD 2002)
            - Reproducing and Comparing Distillation Techniques for Cross-Encoders: https://arxiv.org/abs/2603.03010

        Requirements:
            1. (query, positive, negative_1, ..., negative_n) tuples; no label column.

        Inputs:
            +--------------------------------------------------+--------+-------------------------------+
            | Inputs                                           | Labels | Number of Model Output Labels |
            +==================================================+========+===============================+
            | (query, positive, negative_1, ..., negative_n)   | none   | 1                             |
            +--------------------------------------------------+--------+-------------------------------+

        Relations:
            - The library has no hinge loss for cross-encoders. Its
              :class:`~sentence_transformers.cross_encoder.losses.RankNetLoss` is the smooth
              (logistic) counterpart on the same pairs; this loss stops pushing once a pair is
              separated by ``margin``.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from st_distill.losses import HingeLoss

                model = CrossEncoder("microsoft/MiniLM-L12-H384-uncased", num_labels=1)
                train_dataset = Dataset.from_dict({
                    "query": ["What are pandas?"],
                    "positive": ["Pandas are a kind of bear."],
                    "negative_1": ["Pandas are kind of like fish."],
                })
                trainer = CrossEncoderTrainer(model=model, train_dataset=train_dataset, loss=HingeLoss(model))
                trainer.train()
        """
        super().__init__()
        check_model(self, model)
        self.model = model
        self.margin = margin
        self.mini_batch_size = mini_batch_size

    def forward(
        self, inputs: list[list[str]], labels: Tensor | None = None, prompt: str | None = None, task: str | None = None
    ) -> Tensor:
        name = type(self).__name__
        queries, docs_lists = as_lists(inputs, name)
        lengths = {len(docs) for docs in docs_lists}
        if min(lengths) < 2:
            raise ValueError(f"{name} needs a positive and at least one negative per query.")
        if len(lengths) != 1:
            raise ValueError(f"{name} expects the same number of negatives for every query, got {sorted(lengths)} documents.")
        scores, _ = score_lists(self.model, queries, docs_lists, self.mini_batch_size, prompt=prompt, task=task)
        return F.hinge(scores[:, 0], scores[:, 1:], margin=self.margin)

    def get_config_dict(self) -> dict[str, float | int | None]:
        return {"margin": self.margin, "mini_batch_size": self.mini_batch_size}

    @property
    def citation(self) -> str:
        return """
@inproceedings{joachims2002optimizing,
    title={Optimizing Search Engines using Clickthrough Data},
    author={Joachims, Thorsten},
    booktitle={Proceedings of the Eighth ACM SIGKDD International Conference on Knowledge Discovery and Data Mining},
    pages={133--142},
    year={2002},
    doi={10.1145/775047.775067},
}
"""


class MarginMSELoss(losses.MarginMSELoss):
    def forward(
        self, inputs: list[list[str]], labels: Tensor | list[Tensor], prompt: str | None = None, task: str | None = None
    ) -> Tensor:
        """
        The library's :class:`~sentence_transformers.cross_encoder.losses.MarginMSELoss`, with its teacher
        scores checked first: the math, inputs and labels are the library's, unchanged (tested equal).

        The library's loss trains on whatever labels it gets, so a NaN teacher score (a broken
        teacher file, a failed scoring run) silently turns every weight into NaN. This one raises a
        ``ValueError`` naming the batch rows instead, like the other st-distill losses.

        Inputs:
            +------------------------------------------------+-------------------------------------------------+-------------------------------+
            | Inputs                                         | Labels                                          | Number of Model Output Labels |
            +================================================+=================================================+===============================+
            | (query, positive, negative_1, ..., negative_n) | [t_pos, t_neg_1, ..., t_neg_n] (or the margins) | 1                             |
            +------------------------------------------------+-------------------------------------------------+-------------------------------+

        Raises:
            ValueError: When labels are missing or hold a NaN or infinite score.
        """
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs a teacher-score column ('scores'), but the batch has none.")
        check_finite_labels(torch.stack(list(labels)) if isinstance(labels, (list, tuple)) else labels, type(self).__name__)
        return super().forward(inputs, labels, prompt=prompt, task=task)
