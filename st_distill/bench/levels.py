"""The training loss of a constant-score student: the level each objective's loss curve starts from.

A student that gives every (query, document) pair the same score has learnt nothing; its loss is
the line a curve must go below. For BCE that is ``ln 2``, for InfoNCE with ``n`` negatives
``ln(n + 1)``, for Hinge the margin; for the distillation objectives it depends on the teacher
scores, so it is computed from the built dataset with the losses' own pure functions
(:mod:`st_distill.losses.functional`) and all-zero student scores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["constant_score_level"]

#: Rows of the built dataset the level is computed over.
ROWS = 4096


def constant_score_level(objective: str, dataset_folder: str | Path, loss_args: dict[str, Any] | None = None) -> float | None:
    """The loss of a constant-score student on (the first :data:`ROWS` rows of) a built dataset.

    Args:
        objective: The registry name of the objective.
        dataset_folder: A folder written by :func:`st_distill.data.builder.save_dataset`
            (``dataset.arrow`` in it); only its label columns are read.
        loss_args: The loss arguments the cell trained with (registry defaults where absent).

    Returns:
        The level, or ``None`` for an objective it is not defined for or a missing dataset.
    """
    import torch
    from datasets import Dataset

    from st_distill.losses import functional as F
    from st_distill.objectives import get_objective

    args = {**get_objective(objective).loss_kwargs, **(loss_args or {})}
    if objective == "bce":
        return math.log(2.0)
    path = Path(dataset_folder) / "dataset.arrow"
    if not path.is_file():
        return None
    table = Dataset.from_file(str(path))
    table = table.select(range(min(ROWS, len(table))))
    negatives = sum(1 for name in table.column_names if name.startswith("negative_"))
    if objective == "hinge":
        return float(args.get("margin", 1.0))
    if objective == "infonce":
        return math.log(negatives + 1)
    if objective == "mse":  # an all-zero student's squared error: the mean squared teacher score
        targets = np.asarray(table["score"], dtype=np.float64)
        return float(np.mean(targets**2))
    if "scores" not in table.column_names:
        return None
    scores = [torch.tensor(row, dtype=torch.float32) for row in table["scores"]]
    teacher = torch.nn.utils.rnn.pad_sequence(scores, batch_first=True)
    mask = torch.arange(teacher.shape[1]).unsqueeze(0) < torch.tensor([len(s) for s in scores]).unsqueeze(1)
    zeros = torch.zeros_like(teacher)
    levels = {
        "marginmse": lambda: F.margin_mse(zeros, teacher),
        "distillranknet": lambda: F.distill_ranknet(zeros, teacher, mask),
        "adrmse": lambda: F.adr_mse(zeros, teacher, mask, args.get("temperature", 1.0), args.get("discount", "log2")),
        "kldistill": lambda: F.kl_distill(zeros, teacher, mask, args.get("temperature", 1.0)),
        "kldistill+infonce": lambda: args.get("teacher_weight", 1.0) * F.kl_distill(zeros, teacher, mask, args.get("temperature", 1.0))
        + args.get("hard_weight", 1.0) * F.infonce(zeros, mask),
    }
    level = levels.get(objective)
    return None if level is None else float(level())
