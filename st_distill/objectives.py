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
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import PydanticSchemaGenerationError, TypeAdapter, ValidationError

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
    "LOSS_ARGUMENT_RULES",
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

    def loss_type(self) -> type:
        """The loss class (imported on first use)."""
        module_name, class_name = self.loss_class.split(":")
        return getattr(importlib.import_module(module_name), class_name)

    def loss(self, model: CrossEncoder, **overrides: Any) -> nn.Module:
        """Build the loss for ``model``; ``overrides`` replace entries of :attr:`loss_kwargs`.

        Raises:
            ValueError: When an override is not an argument of the loss or has a value it cannot
                train with (see :meth:`check_loss_arguments`).
        """
        problems = self.check_loss_arguments(overrides)
        if problems:
            raise ValueError("; ".join(f"{name}: {message}" for name, message in problems))
        return self.loss_type()(model, **{**self.loss_kwargs, **overrides})

    def check_loss_arguments(self, arguments: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The problems of loss arguments (e.g. a config's ``loss`` table), before any model or data is touched.

        Each name must be a named argument of the loss class (``**kwargs`` passed on to torch are
        not: a config cannot reach them), each value of the argument's annotated type (strictly:
        ``1`` is no ``bool``), and within the range the loss can train with (:data:`LOSS_ARGUMENT_RULES`:
        temperatures finite and > 0, margins and weights finite, ``mini_batch_size >= 1``, known
        discounts and terms). ``cached = true`` needs a ``mini_batch_size``.

        Args:
            arguments: Argument name -> value, on top of :attr:`loss_kwargs`.

        Returns:
            ``(argument, message)`` pairs, in the order of ``arguments``; empty when all is well.
        """
        loss_cls = self.loss_type()
        params = {name: p for name, p in list(inspect.signature(loss_cls).parameters.items())[1:]  # after the model
                  if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
        try:
            hints = typing.get_type_hints(loss_cls.__init__)
        except (NameError, TypeError):  # an annotation that cannot be evaluated: the value checks still run
            hints = {}
        problems: list[tuple[str, str]] = []
        for name, value in arguments.items():
            if name not in params:
                problems.append((name, f"unknown argument {name!r} of {loss_cls.__name__} (known: {', '.join(params)})"))
                continue
            expected = hints.get(name)
            if expected is not None and not _of_type(value, expected):
                problems.append((name, f"expected {params[name].annotation}, got {value!r}"))
                continue
            rule = LOSS_ARGUMENT_RULES.get(name)
            message = rule(value) if rule is not None else None
            if message:
                problems.append((name, message))
        merged = {**self.loss_kwargs, **arguments}
        reported = {name for name, _ in problems}
        if merged.get("cached") is True and not reported & {"cached", "mini_batch_size"} and not (
            isinstance(merged.get("mini_batch_size"), int) and merged["mini_batch_size"] >= 1
        ):
            problems.append(("cached", f"cached = true needs a mini_batch_size >= 1, got {merged.get('mini_batch_size')!r}"))
        return problems


def _of_type(value: Any, expected: Any) -> bool:
    """Whether ``value`` is strictly of the annotated type (pydantic); an ``isinstance`` check for types
    pydantic has no schema for (``torch.Tensor``, ``nn.Module``)."""
    try:
        TypeAdapter(expected).validate_python(value, strict=True)
        return True
    except ValidationError:
        return False
    except PydanticSchemaGenerationError:
        classes = typing.get_args(expected) if isinstance(expected, types.UnionType) or typing.get_origin(expected) is typing.Union else (expected,)
        classes = tuple(type(None) if c is None else c for c in classes if isinstance(c, type) or c is None)
        return not classes or isinstance(value, classes)


def _finite(value: Any, lower: float | None = None, strict: bool = True) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None  # the type check speaks for these
    if not math.isfinite(value):
        return f"must be finite, got {value}"
    if lower is not None and (value <= lower if strict else value < lower):
        return f"must be {'>' if strict else '>='} {lower}, got {value}"
    return None


def _one_of(module: str, name: str) -> Callable[[Any], str | None]:
    """A rule: the value is one of the tuple ``module.name`` (imported when a value is checked, as the loss
    classes are, so that importing the registry stays cheap)."""

    def check(value: Any) -> str | None:
        choices = getattr(importlib.import_module(module), name)
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}, got {value!r}"

    return check


#: The values a loss argument can train with, by argument name (the losses share their names):
#: a function of the value returning the problem, or ``None``. The loss classes check the same in
#: their ``__init__``; these run on a config before any model is built.
LOSS_ARGUMENT_RULES: dict[str, Callable[[Any], str | None]] = {
    "temperature": lambda v: _finite(v, 0.0),
    "margin": _finite,
    "teacher_weight": lambda v: _finite(v, 0.0, strict=False),
    "hard_weight": lambda v: _finite(v, 0.0, strict=False),
    "pos_weight": lambda v: _finite(v, 0.0),
    "mini_batch_size": lambda v: None if v is None or (isinstance(v, int) and v >= 1) else f"must be >= 1, got {v!r}",
    "discount": _one_of("st_distill.losses.functional", "DISCOUNTS"),
    "teacher_loss": _one_of("st_distill.losses.combined", "TEACHER_TERMS"),
    "hard_loss": _one_of("st_distill.losses.combined", "HARD_TERMS"),
}


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
