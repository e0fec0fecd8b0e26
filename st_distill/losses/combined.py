"""A teacher term plus a hard-label term, returned as named parts so the trainer logs each."""

from __future__ import annotations

from sentence_transformers.cross_encoder import CrossEncoder
from torch import Tensor

from st_distill.losses import functional as F
from st_distill.losses.distillation import TeacherListLoss

TEACHER_TERMS = ("kldistill", "distillranknet", "adrmse")
HARD_TERMS = ("infonce", "bce")


class CombinedDistillationLoss(TeacherListLoss):
    def __init__(
        self,
        model: CrossEncoder,
        teacher_loss: str = "kldistill",
        hard_loss: str = "infonce",
        teacher_weight: float = 1.0,
        hard_weight: float = 1.0,
        temperature: float = 1.0,
        discount: str | None = "log2",
        mini_batch_size: int | None = None,
        cached: bool = False,
    ) -> None:
        r"""
        Distillation from a teacher combined with the hard relevance label:
        :math:`\mathcal{L} = w_t \mathcal{L}_{teacher}(s, t) + w_h \mathcal{L}_{hard}(s)`, where the
        labelled positive is the first document of each list. Both terms use the same forward pass.

        The loss returns a dict ``{teacher_loss: w_t * L_teacher, hard_loss: w_h * L_hard}``;
        :class:`~sentence_transformers.cross_encoder.CrossEncoderTrainer` sums the parts for the
        backward pass and logs each one under its name.
        With ``cached=True`` the parts keep their values but the whole gradient rides on the first
        one, so back-propagate their sum (as the trainer does), not a single part.

        Args:
            model (CrossEncoder): CrossEncoder model to be trained (one output label).
            teacher_loss (str): ``"kldistill"`` (:func:`~st_distill.losses.functional.kl_distill`),
                ``"distillranknet"`` or ``"adrmse"``. Defaults to ``"kldistill"``.
            hard_loss (str): ``"infonce"`` (softmax cross-entropy with the first document as the
                positive) or ``"bce"`` (first document labelled 1, the others 0). Defaults to ``"infonce"``.
            teacher_weight (float): ``w_t``. Defaults to 1.0.
            hard_weight (float): ``w_h``. Defaults to 1.0.
            temperature (float): Temperature of the teacher term (``kldistill``, ``adrmse``). Defaults to 1.0.
            discount (str, optional): Discount of the ``adrmse`` teacher term. Defaults to ``"log2"``.
            mini_batch_size (int, optional): Pairs per forward pass. ``None`` or ``<= 0`` scores all
                pairs of the batch at once. Defaults to None.
            cached (bool): Gradient caching with the library's GradCache engine: peak memory of one
                ``mini_batch_size`` chunk however long the lists are, the same loss and gradients as
                ``cached=False`` (dropout replayed), about one extra forward pass. Needs
                ``mini_batch_size > 0``. Defaults to False.

        References:
            - Distilling the Knowledge in a Neural Network: https://arxiv.org/abs/1503.02531

        Requirements:
            1. Query with a list of documents whose FIRST document is the labelled positive and the
               others are negatives.
            2. One teacher score per document (raw logits for ``kldistill``; any order-preserving
               score for ``distillranknet`` / ``adrmse``).

        Inputs:
            +----------------------------------------+--------------------------------+-------------------------------+
            | Inputs                                 | Labels                         | Number of Model Output Labels |
            +========================================+================================+===============================+
            | (query, [positive, neg1, ..., negN])   | [score1, score2, ..., scoreN]  | 1                             |
            +----------------------------------------+--------------------------------+-------------------------------+

        Relations:
            - With ``hard_weight=0`` it is the chosen teacher loss alone (:class:`KLDistillLoss`,
              :class:`DistillRankNetLoss`, :class:`ADRMSELoss`); with ``teacher_weight=0`` and
              ``hard_loss="infonce"`` it is :class:`InfoNCELoss`.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from st_distill.losses import CombinedDistillationLoss

                model = CrossEncoder("microsoft/MiniLM-L12-H384-uncased", num_labels=1)
                train_dataset = Dataset.from_dict({
                    "query": ["What are pandas?"],
                    "docs": [["Pandas are a kind of bear.", "Pandas eat bamboo.", "Pandas are kind of like fish."]],
                    "scores": [[7.5, 3.1, -4.2]],
                })
                loss = CombinedDistillationLoss(model, teacher_weight=1.0, hard_weight=0.5)
                trainer = CrossEncoderTrainer(model=model, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        if teacher_loss not in TEACHER_TERMS:
            raise ValueError(f"teacher_loss must be one of {TEACHER_TERMS}, got {teacher_loss!r}")
        if hard_loss not in HARD_TERMS:
            raise ValueError(f"hard_loss must be one of {HARD_TERMS}, got {hard_loss!r}")
        if discount not in F.DISCOUNTS:
            raise ValueError(f"discount must be one of {F.DISCOUNTS}, got {discount!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(model, mini_batch_size, cached)
        self.teacher_loss = teacher_loss
        self.hard_loss = hard_loss
        self.teacher_weight = teacher_weight
        self.hard_weight = hard_weight
        self.temperature = temperature
        self.discount = discount

    def compute(self, scores: Tensor, teacher: Tensor, mask: Tensor) -> dict[str, Tensor]:
        return F.combined_terms(scores, teacher, mask, self.teacher_loss, self.hard_loss, self.teacher_weight, self.hard_weight,
                                temperature=self.temperature, discount=self.discount)

    def get_config_dict(self) -> dict[str, float | int | str | bool | None]:
        return {
            "teacher_loss": self.teacher_loss,
            "hard_loss": self.hard_loss,
            "teacher_weight": self.teacher_weight,
            "hard_weight": self.hard_weight,
            "temperature": self.temperature,
            "discount": self.discount,
            "mini_batch_size": self.mini_batch_size,
            "cached": self.cached,
        }

    @property
    def citation(self) -> str:
        return """
@article{hinton2015distilling,
    title={Distilling the Knowledge in a Neural Network},
    author={Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},
    journal={arXiv preprint arXiv:1503.02531},
    year={2015},
}
"""
