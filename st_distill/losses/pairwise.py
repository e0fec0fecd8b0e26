"""Pairwise objectives on (query, positive, negative_1..n) tuples."""

from __future__ import annotations

import torch
from sentence_transformers.cross_encoder import CrossEncoder, losses
from torch import Tensor, nn

from st_distill.losses import functional as F
from st_distill.losses.base import ListScoringMixin, as_lists, check_finite_labels


class HingeLoss(ListScoringMixin, nn.Module):
    def __init__(
        self, model: CrossEncoder, margin: float = 1.0, mini_batch_size: int | None = None, cached: bool = False
    ) -> None:
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
            cached (bool): Gradient caching with the library's GradCache engine: peak memory of one
                ``mini_batch_size`` chunk however long the lists are, the same loss and gradients as
                ``cached=False`` (dropout replayed), about one extra forward pass. Needs
                ``mini_batch_size > 0``. Defaults to False.

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
        self.init_scoring(model, mini_batch_size, cached)
        self.margin = margin

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
        return self.score_and_compute(
            queries, docs_lists, lambda scores, _: F.hinge(scores[:, 0], scores[:, 1:], margin=self.margin), prompt=prompt, task=task
        )

    def get_config_dict(self) -> dict[str, float | int | bool | None]:
        return {"margin": self.margin, "mini_batch_size": self.mini_batch_size, "cached": self.cached}

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


class MarginMSELoss(ListScoringMixin, losses.MarginMSELoss):
    def __init__(
        self,
        model: CrossEncoder,
        activation_fn: nn.Module = nn.Identity(),
        mini_batch_size: int | None = None,
        cached: bool = False,
        **kwargs,
    ) -> None:
        """
        The library's :class:`~sentence_transformers.cross_encoder.losses.MarginMSELoss` (same inputs,
        labels and value, tested equal), with its teacher scores checked, all pairs scored together
        and an optional gradient cache.

        The library's loss trains on whatever labels it gets, so a NaN teacher score (a broken
        teacher file, a failed scoring run) silently turns every weight into NaN. This one raises a
        ``ValueError`` naming the batch rows instead, like the other st-distill losses. It scores the
        pairs of all columns in one pass (or ``mini_batch_size`` chunks) instead of one pass per
        column, and computes the margins from float32 logits.

        Args:
            model (CrossEncoder): CrossEncoder model to be trained (one output label).
            activation_fn (:class:`~torch.nn.Module`): Applied to the logits before the margins.
                Defaults to :class:`~torch.nn.Identity`.
            mini_batch_size (int, optional): Pairs per forward pass. ``None`` or ``<= 0`` scores all
                pairs of the batch at once. Defaults to None.
            cached (bool): Gradient caching with the library's GradCache engine: peak memory of one
                ``mini_batch_size`` chunk however long the lists are, the same loss and gradients as
                ``cached=False`` (dropout replayed), about one extra forward pass. Needs
                ``mini_batch_size > 0``. Defaults to False.
            **kwargs: Passed to the underlying :class:`torch.nn.MSELoss`.

        References:
            - Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation: https://huggingface.co/papers/2010.02666

        Requirements:
            1. (query, positive, negative_1, ..., negative_n) tuples with the teacher's scores.

        Inputs:
            +------------------------------------------------+-------------------------------------------------+-------------------------------+
            | Inputs                                         | Labels                                          | Number of Model Output Labels |
            +================================================+=================================================+===============================+
            | (query, positive, negative_1, ..., negative_n) | [t_pos, t_neg_1, ..., t_neg_n] (or the margins) | 1                             |
            +------------------------------------------------+-------------------------------------------------+-------------------------------+

        Relations:
            - :class:`HingeLoss` takes the same tuples without teacher scores.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from st_distill.losses import MarginMSELoss

                model = CrossEncoder("microsoft/MiniLM-L12-H384-uncased", num_labels=1)
                train_dataset = Dataset.from_dict({
                    "query": ["What are pandas?"],
                    "positive": ["Pandas are a kind of bear."],
                    "negative_1": ["Pandas are kind of like fish."],
                    "scores": [[8.1, -2.3]],
                })
                trainer = CrossEncoderTrainer(model=model, train_dataset=train_dataset, loss=MarginMSELoss(model))
                trainer.train()
        """
        super().__init__(model, activation_fn=activation_fn, **kwargs)
        self.init_scoring(model, mini_batch_size, cached)

    def forward(
        self, inputs: list[list[str]], labels: Tensor | list[Tensor], prompt: str | None = None, task: str | None = None
    ) -> Tensor:
        """Score the tuples and compare the student's margins ``s+ - s-_i`` with the teacher's.

        Raises:
            ValueError: When labels are missing, hold a NaN or infinite score, or do not have the
                library's shapes (``[B]``, ``[B, n]`` margins or ``[B, n + 1]`` scores).
        """
        name = type(self).__name__
        if labels is None:
            raise ValueError(f"{name} needs a teacher-score column ('scores'), but the batch has none.")
        rows = torch.stack(list(labels)) if isinstance(labels, (list, tuple)) else labels
        check_finite_labels(rows, name)
        queries, docs_lists = as_lists(inputs, name)
        negatives = len(docs_lists[0]) - 1
        if rows.shape == (len(queries), negatives + 1):
            rows = rows[:, :1] - rows[:, 1:]
        elif rows.shape == (len(queries),):
            rows = rows.unsqueeze(1)
        if negatives < 1 or rows.shape != (len(queries), negatives) or any(len(docs) != negatives + 1 for docs in docs_lists):
            raise ValueError(
                f"{name}: labels of shape {tuple(rows.shape)} do not fit {len(queries)} rows of a positive and "
                f"{negatives} negative(s); give per row the n margins or the n + 1 teacher scores."
            )
        margins = rows.detach().to(device=self.model.device, dtype=torch.float32)

        def compute(scores: Tensor, _: Tensor) -> Tensor:
            logits = self.activation_fn(scores)
            return self.loss_fct(logits[:, :1] - logits[:, 1:], margins)

        return self.score_and_compute(queries, docs_lists, compute, prompt=prompt, task=task)

    def get_config_dict(self) -> dict[str, str | int | bool | None]:
        return {**super().get_config_dict(), "mini_batch_size": self.mini_batch_size, "cached": self.cached}
