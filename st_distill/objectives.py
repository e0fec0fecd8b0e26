"""Registry of training objectives: name -> loss factory, dataset format and the study's defaults.

This is the single source of truth that the dataset builder and the bench read. Importing it is
cheap: loss classes (and torch) are imported only when :meth:`Objective.loss` is called.

Example:
    ::

        from st_distill.objectives import get_objective

        objective = get_objective("adrmse")
        objective.dataset_format.columns()        # ['query', 'docs', 'scores']
        objective.defaults["learning_rate"]       # 1e-05
        loss = objective.loss(model, temperature=0.5)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder
    from torch import nn

__all__ = [
    "DatasetFormat",
    "Objective",
    "OBJECTIVES",
    "STUDY_OBJECTIVES",
    "STUDY_DEFAULTS",
    "SMALL_MODEL_DEFAULTS",
    "get_objective",
]

KINDS = ("pointwise", "ntuple", "listwise")


@dataclass(frozen=True)
class DatasetFormat:
    """The columns of the ``datasets.Dataset`` an objective trains on, in order.

    Attributes:
        kind: ``"pointwise"`` (``query, document, label`` or ``score``), ``"ntuple"`` (``query, positive,
            negative_1..negative_n`` [, ``scores``]) or ``"listwise"`` (``query, docs, scores``).
        label_column: The column the loss receives as labels (``"label"``, ``"score"`` or ``"scores"``), or ``None``.
        n_negatives: The default: negatives per row (ntuple), documents per list - 1 (listwise),
            candidates per query - 1 (pointwise from candidates), ``None`` (pointwise from judgements).
        teacher: ``None`` (hard labels only), ``"scores"`` (raw teacher logits needed) or
            ``"ranking"`` (a teacher ranking, as descending pseudo-scores, or teacher scores).
        description: What each column holds, for humans.
        positive_first: ``True`` when the first document of each row (the ``positive`` column, or
            ``docs[0]``) must be the labelled relevant document.
    """

    kind: str
    label_column: str | None
    n_negatives: int | None
    teacher: str | None
    description: str
    positive_first: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def from_candidates(self) -> bool:
        """``True`` when rows come from each query's ranked candidates (a run, with teacher scores or an
        LLM ranking) rather than from judged positives plus negatives: listwise lists without a
        positive first, and pointwise rows labelled with teacher scores (``mse``)."""
        if self.kind == "listwise":
            return not self.positive_first
        return self.kind == "pointwise" and self.teacher == "scores"

    def columns(self, n_negatives: int | None = None) -> list[str]:
        """The dataset's column names in order.

        Args:
            n_negatives: Negatives per row for ``"ntuple"`` formats (defaults to the study's);
                ignored by the other kinds, whose column set does not depend on it.

        Raises:
            ValueError: If an ntuple format is asked for fewer than one negative.
        """
        if self.kind == "pointwise":
            return ["query", "document", self.label_column]
        if self.kind == "listwise":
            return ["query", "docs", "scores"]
        n = self.n_negatives if n_negatives is None else n_negatives
        if n is None or n < 1:
            raise ValueError(f"an ntuple dataset needs at least one negative per row, got {n}")
        columns = ["query", "positive", *(f"negative_{i}" for i in range(1, n + 1))]
        return [*columns, self.label_column] if self.label_column else columns


@dataclass(frozen=True)
class Objective:
    """A training objective: how to build its loss, what data it needs and how the study trained it.

    Attributes:
        name: Registry key, e.g. ``"adrmse"``.
        family: ``"pointwise"``, ``"pointwise distillation"``, ``"pairwise"``, ``"pairwise distillation"``, ``"listwise"``,
            ``"listwise distillation"`` or ``"combined"``.
        dataset_format: The :class:`DatasetFormat` of its training data.
        defaults: Training hyper-parameters (see :data:`STUDY_DEFAULTS`) plus ``batch_size``, the
            dataset rows per batch that give ``passages_per_batch`` passages.
        loss_class: Import path ``"module:Class"`` of the loss.
        loss_kwargs: Default keyword arguments of the loss (the study's values).
    """

    name: str
    family: str
    dataset_format: DatasetFormat
    defaults: dict[str, Any]
    loss_class: str
    loss_kwargs: dict[str, Any] = field(default_factory=dict)

    def loss(self, model: CrossEncoder, **overrides: Any) -> nn.Module:
        """Build the loss for ``model``; ``overrides`` replace entries of :attr:`loss_kwargs`."""
        module_name, class_name = self.loss_class.split(":")
        loss_cls = getattr(importlib.import_module(module_name), class_name)
        return loss_cls(model, **{**self.loss_kwargs, **overrides})


# AdamW with linear warm-up, as in the study (Morand et al., 2026). Small backbones use
# SMALL_MODEL_DEFAULTS on top of these.
STUDY_DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw_torch",
    "learning_rate": 1e-5,
    "passages_per_batch": 32,
    "warmup_steps": 5000,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "max_steps": 200_000,
    "seeds": 3,
}
SMALL_MODEL_DEFAULTS: dict[str, Any] = {"learning_rate": 7e-6, "passages_per_batch": 64}


def _defaults(passages_per_row: int, **extra: Any) -> dict[str, Any]:
    rows = max(1, STUDY_DEFAULTS["passages_per_batch"] // passages_per_row)
    return {**STUDY_DEFAULTS, "batch_size": rows, **extra}


_TRIPLES = "MS MARCO train triples (query, relevant passage, BM25 negative)"
_LISTS = "RankZephyr ordering of the first-stage top-50; the order becomes descending pseudo-scores"

_POINTWISE = DatasetFormat(
    kind="pointwise",
    label_column="label",
    n_negatives=None,
    teacher=None,
    description="one (query, document) pair per row; label 1.0 for a relevant document, 0.0 for a negative",
)
_HARD_NTUPLE = dict(kind="ntuple", label_column=None, teacher=None, positive_first=True)
_LISTWISE = dict(kind="listwise", label_column="scores", n_negatives=49)
# 50-document lists train with gradient caching: the memory of 16 pairs at a time, whatever the list
# length, for the same loss and gradients (see st_distill.losses.base.ListScoringMixin).
_CACHED = {"mini_batch_size": 16, "cached": True}

OBJECTIVES: dict[str, Objective] = {
    objective.name: objective
    for objective in (
        Objective(
            name="bce",
            family="pointwise",
            dataset_format=_POINTWISE,
            defaults=_defaults(1, data=_TRIPLES + ", each giving (positive, 1.0) and (negative, 0.0)"),
            loss_class="sentence_transformers.cross_encoder.losses:BinaryCrossEntropyLoss",
        ),
        Objective(
            name="hinge",
            family="pairwise",
            dataset_format=DatasetFormat(
                **_HARD_NTUPLE,
                n_negatives=1,
                description="query, its relevant passage, n hard negatives; no label column",
            ),
            defaults=_defaults(2, data=_TRIPLES),
            loss_class="st_distill.losses.pairwise:HingeLoss",
            loss_kwargs={"margin": 1.0},
        ),
        Objective(
            name="marginmse",
            family="pairwise distillation",
            dataset_format=DatasetFormat(
                kind="ntuple",
                label_column="scores",
                n_negatives=1,
                teacher="scores",
                positive_first=True,
                description=(
                    "query, positive, n negatives, and scores = [t_pos, t_neg_1, ..., t_neg_n]: "
                    "raw teacher logits of those documents"
                ),
            ),
            defaults=_defaults(2, data="Hofstätter et al.'s teacher-ensemble scores of MS MARCO triples"),
            loss_class="st_distill.losses.pairwise:MarginMSELoss",
        ),
        Objective(
            name="infonce",
            family="listwise",
            dataset_format=DatasetFormat(
                **_HARD_NTUPLE,
                n_negatives=7,
                description="query, its relevant passage, n negatives; no label column",
            ),
            defaults=_defaults(8, data="1 positive + 7 negatives sampled uniformly from the first-stage top-500"),
            loss_class="st_distill.losses.listwise:InfoNCELoss",
            loss_kwargs={"temperature": 1.0},
        ),
        Objective(
            name="distillranknet",
            family="listwise distillation",
            dataset_format=DatasetFormat(
                **_LISTWISE,
                teacher="ranking",
                description="query, docs (list of texts), scores: one teacher score per doc, higher = better",
            ),
            defaults=_defaults(50, data=_LISTS),
            loss_class="st_distill.losses.distillation:DistillRankNetLoss",
            loss_kwargs=dict(_CACHED),
        ),
        Objective(
            name="adrmse",
            family="listwise distillation",
            dataset_format=DatasetFormat(
                **_LISTWISE,
                teacher="ranking",
                description="query, docs (list of texts), scores: one teacher score per doc, higher = better",
            ),
            defaults=_defaults(50, data=_LISTS),
            loss_class="st_distill.losses.distillation:ADRMSELoss",
            loss_kwargs={"temperature": 1.0, "discount": "log2", **_CACHED},
        ),
        Objective(
            name="kldistill",
            family="listwise distillation",
            dataset_format=DatasetFormat(
                **_LISTWISE,
                teacher="scores",
                description="query, docs (list of texts), scores: raw teacher logit per doc (not ranks)",
            ),
            defaults=_defaults(50, data="teacher logits of the first-stage top-50 (not part of the study)"),
            loss_class="st_distill.losses.distillation:KLDistillLoss",
            loss_kwargs={"temperature": 1.0, **_CACHED},
        ),
        Objective(
            name="kldistill+infonce",
            family="combined",
            dataset_format=DatasetFormat(
                **_LISTWISE,
                teacher="scores",
                positive_first=True,
                description=(
                    "query, docs with the labelled relevant document FIRST and negatives after it, "
                    "scores: raw teacher logit per doc"
                ),
            ),
            defaults=_defaults(50, data="relevant passage + first-stage negatives with teacher logits (not part of the study)"),
            loss_class="st_distill.losses.combined:CombinedDistillationLoss",
            loss_kwargs={
                "teacher_loss": "kldistill",
                "hard_loss": "infonce",
                "teacher_weight": 1.0,
                "hard_weight": 1.0,
                "temperature": 1.0,
                **_CACHED,
            },
        ),
        Objective(
            name="mse",
            family="pointwise distillation",
            dataset_format=DatasetFormat(
                kind="pointwise",
                label_column="score",
                n_negatives=49,
                teacher="scores",
                description=(
                    "one (query, document) pair per row, score = the teacher's raw logit of the pair; "
                    "each query gives one row per candidate (its first-stage top n + 1)"
                ),
            ),
            defaults=_defaults(1, data="teacher logits of the first-stage top-50, one row per pair (not part of the study)"),
            loss_class="st_distill.losses.pointwise:MSELoss",
        ),
    )
}

#: The six objectives compared in the study, in its order.
STUDY_OBJECTIVES = ("bce", "hinge", "marginmse", "infonce", "distillranknet", "adrmse")


def get_objective(name: str) -> Objective:
    """The registered :class:`Objective` called ``name``.

    Raises:
        ValueError: For an unknown name; the message lists the known ones.
    """
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; known objectives: {', '.join(OBJECTIVES)}") from None
