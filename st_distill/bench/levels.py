"""The training loss of a constant-score student: the level each objective's loss curve starts from.

A student that gives every (query, document) pair the same score has learnt nothing; its loss is
the line a curve must go below. For BCE that is ``ln 2``, for InfoNCE with ``n`` negatives
``ln(n + 1)``, for Hinge the margin; for the distillation objectives it depends on the teacher
scores, so it is computed from the built dataset with the losses' own pure functions
(:mod:`st_distill.losses.functional`) and all-zero student scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from st_distill.losses.functional import TERMS
from st_distill.objectives import get_objective

__all__ = ["constant_score_level"]

#: Rows of the built dataset the level is computed over.
ROWS = 4096


def constant_score_level(objective: str, dataset_folder: str | Path, loss_args: dict[str, Any] | None = None) -> float | None:
    """The loss of a constant-score student on (the first :data:`ROWS` rows of) a built dataset.

    Args:
        objective: The registry name of the objective.
        dataset_folder: A folder written by :func:`st_distill.dataset.save_dataset`
            (``dataset.arrow`` in it); only its label columns are read. Not read for ``bce``, whose
            level is ``ln 2`` whatever the data.
        loss_args: The loss arguments the cell trained with (registry defaults where absent).

    Returns:
        The level, or ``None`` for an objective it is not defined for or a missing dataset.
    """
    spec = get_objective(objective)
    term = TERMS.get(objective)
    args = {**spec.loss_kwargs, **(loss_args or {})}
    if term is None:
        return None
    if objective == "bce":  # every row costs softplus(0), whatever its label
        zeros = torch.zeros(1, 1)
        return float(term(zeros, None, None, **args))
    path = Path(dataset_folder) / "dataset.arrow"
    if not path.is_file():
        return None
    table = Dataset.from_file(str(path))
    table = table.select(range(min(ROWS, len(table))))
    teacher, mask = _teacher_lists(table, spec.dataset_format.kind)
    if teacher is None and spec.dataset_format.teacher is not None:
        return None
    if teacher is None:  # hard labels: one positive and the row's negatives
        width = 1 + sum(1 for name in table.column_names if name.startswith("negative_"))
        mask = torch.ones(len(table), width, dtype=torch.bool)
    zeros = torch.zeros(mask.shape)
    return float(term(zeros, teacher, mask, **args))


def _teacher_lists(table: Dataset, kind: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The teacher scores of a built dataset as a padded float32 ``[rows, documents]`` matrix and its mask
    (one column for pointwise ``score`` rows); ``(None, None)`` without teacher scores."""
    if kind == "pointwise" and "score" in table.column_names:
        scores = torch.tensor(table["score"], dtype=torch.float32).unsqueeze(1)
        return scores, torch.ones_like(scores, dtype=torch.bool)
    if "scores" not in table.column_names:
        return None, None
    rows = [torch.tensor(row, dtype=torch.float32) for row in table["scores"]]
    teacher = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    mask = torch.arange(teacher.shape[1]).unsqueeze(0) < torch.tensor([len(r) for r in rows]).unsqueeze(1)
    return teacher, mask
