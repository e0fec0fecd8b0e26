"""Pointwise distillation on (query, document) pairs: one teacher score per pair."""

from __future__ import annotations

from sentence_transformers.cross_encoder import losses
from torch import Tensor

from st_distill.losses.base import check_finite_labels, check_finite_loss


class MSELoss(losses.MSELoss):
    def forward(
        self, inputs: list[list[str]], labels: Tensor | None, prompt: str | None = None, task: str | None = None
    ) -> Tensor:
        """
        The library's :class:`~sentence_transformers.cross_encoder.losses.MSELoss`, with its teacher scores
        checked first: the math, inputs and labels are the library's, unchanged (tested against a by-hand
        reference): ``mean_i (s_i - t_i)^2`` over the batch's (query, document) rows, ``s_i`` the
        student's logit (after ``activation_fn``, the identity by default) and ``t_i`` the teacher's raw logit.

        This is the pointwise distillation recipe of the Ettin rerankers (2026): a large reranker's raw
        logits (their range is about -12 to 22) on many candidates per query, each (query, candidate)
        pair one row. The library's loss trains on whatever labels it gets, so a NaN teacher score
        silently turns every weight into NaN; this one raises a ``ValueError`` naming the batch rows
        instead, like the other st-distill losses.

        Inputs:
            +---------------------+--------------------------------------+-------------------------------+
            | Inputs              | Labels                               | Number of Model Output Labels |
            +=====================+======================================+===============================+
            | (query, document)   | the teacher's raw logit of the pair  | 1                             |
            +---------------------+--------------------------------------+-------------------------------+

        Relations:
            - :class:`~st_distill.losses.MarginMSELoss` fits the teacher's margins between a positive
              and negatives instead of its scores, so it ignores the teacher's per-query offset.
            - :class:`~st_distill.losses.KLDistillLoss` fits the softmax of each query's list.

        Raises:
            ValueError: When labels are missing or hold a NaN or infinite score.
            FloatingPointError: When the loss itself is NaN or infinite (e.g. diverged student scores).
        """
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs a teacher-score column ('score'), but the batch has none.")
        check_finite_labels(labels, type(self).__name__)
        value = super().forward(inputs, labels, prompt=prompt, task=task)
        check_finite_loss(value, self)
        return value

    @property
    def citation(self) -> str:
        return """
@misc{hofstätter2021improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
    author={Sebastian Hofstätter and Sophia Althammer and Michael Schröder and Mete Sertkan and Allan Hanbury},
    year={2021},
    eprint={2010.02666},
    archivePrefix={arXiv},
    primaryClass={cs.IR}
}
"""
