"""Listwise objectives with hard labels: one positive against its negatives."""

from __future__ import annotations

from sentence_transformers.cross_encoder import CrossEncoder
from torch import Tensor, nn

from st_distill.losses import functional as F
from st_distill.losses.base import ListScoringMixin, as_lists


class InfoNCELoss(ListScoringMixin, nn.Module):
    def __init__(
        self, model: CrossEncoder, temperature: float = 1.0, mini_batch_size: int | None = None, cached: bool = False
    ) -> None:
        r"""
        InfoNCE (softmax cross-entropy) over a query's positive and its hard negatives, on raw logits:
        :math:`\mathcal{L} = -\log \frac{\exp(s^+/\tau)}{\exp(s^+/\tau) + \sum_i \exp(s^-_i/\tau)}`,
        averaged over queries.

        Only the query's own hard negatives compete with its positive (no in-batch negatives: a
        cross-encoder scores each pair jointly, so every extra negative costs a forward pass).

        .. note::

            Lists may be ragged: with the ``(query, [doc1, ..., docN])`` layout (positive first), the
            number of negatives can vary between queries.

        Args:
            model (CrossEncoder): CrossEncoder model to be trained (one output label).
            temperature (float): Softmax temperature ``tau`` applied to the logits. Defaults to 1.0,
                as in the study.
            mini_batch_size (int, optional): Pairs per forward pass. ``None`` or ``<= 0`` scores all
                pairs of the batch at once. Defaults to None.
            cached (bool): Gradient caching with the library's GradCache engine: peak memory of one
                ``mini_batch_size`` chunk however long the lists are, the same loss and gradients as
                ``cached=False`` (dropout replayed), about one extra forward pass. Needs
                ``mini_batch_size > 0``. Defaults to False.

        References:
            - Representation Learning with Contrastive Predictive Coding: https://arxiv.org/abs/1807.03748
            - Reproducing and Comparing Distillation Techniques for Cross-Encoders: https://arxiv.org/abs/2603.03010

        Requirements:
            1. A positive and n hard negatives per query (the study samples 7 uniformly from the
               first-stage top-500); no label column.

        Inputs:
            +--------------------------------------------------+--------+-------------------------------+
            | Inputs                                           | Labels | Number of Model Output Labels |
            +==================================================+========+===============================+
            | (query, positive, negative_1, ..., negative_n)   | none   | 1                             |
            +--------------------------------------------------+--------+-------------------------------+
            | (query, [positive, negative_1, ..., negative_n]) | none   | 1                             |
            +--------------------------------------------------+--------+-------------------------------+

        Relations:
            - :class:`~sentence_transformers.cross_encoder.losses.MultipleNegativesRankingLoss` also
              takes (query, positive, negatives) but applies a sigmoid and a scale of 10 to the logits
              and adds sampled in-batch negatives; this loss is the plain softmax over raw logits and
              the given negatives, as in the study.
            - :class:`~sentence_transformers.cross_encoder.losses.ListNetLoss` with a one-hot target
              softens the target by a softmax over the labels, so it is not the same loss.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from st_distill.losses import InfoNCELoss

                model = CrossEncoder("microsoft/MiniLM-L12-H384-uncased", num_labels=1)
                train_dataset = Dataset.from_dict({
                    "query": ["What are pandas?"],
                    "positive": ["Pandas are a kind of bear."],
                    "negative_1": ["Pandas are kind of like fish."],
                    "negative_2": ["Panda is a web framework."],
                })
                trainer = CrossEncoderTrainer(model=model, train_dataset=train_dataset, loss=InfoNCELoss(model))
                trainer.train()
        """
        super().__init__()
        self.init_scoring(model, mini_batch_size, cached)
        self.temperature = temperature

    def forward(
        self, inputs: list[list[str]], labels: Tensor | None = None, prompt: str | None = None, task: str | None = None
    ) -> Tensor:
        queries, docs_lists = as_lists(inputs, type(self).__name__)
        return self.score_and_compute(
            queries, docs_lists, lambda scores, mask: F.infonce(scores, mask, temperature=self.temperature), prompt=prompt, task=task
        )

    def get_config_dict(self) -> dict[str, float | int | bool | None]:
        return {"temperature": self.temperature, "mini_batch_size": self.mini_batch_size, "cached": self.cached}

    @property
    def citation(self) -> str:
        return """
@article{oord2018representation,
    title={Representation Learning with Contrastive Predictive Coding},
    author={van den Oord, Aaron and Li, Yazhe and Vinyals, Oriol},
    journal={arXiv preprint arXiv:1807.03748},
    year={2018},
}
"""
