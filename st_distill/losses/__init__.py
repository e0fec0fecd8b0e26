"""The study's objectives as sentence-transformers ``CrossEncoderTrainer`` losses.

The math lives in :mod:`st_distill.losses.functional`; :mod:`st_distill.losses.base` turns
(query, docs) batches into a padded float32 score matrix and mask, with or without gradient caching
(``cached=True``). ``bce`` uses the library's ``BinaryCrossEntropyLoss``; ``marginmse`` and ``mse``
the library's ``MarginMSELoss`` and ``MSELoss`` (their inputs, labels and values) behind a check of
the teacher scores (see :mod:`st_distill.objectives`).
"""

from st_distill.losses.combined import CombinedDistillationLoss
from st_distill.losses.distillation import ADRMSELoss, DistillRankNetLoss, KLDistillLoss
from st_distill.losses.listwise import InfoNCELoss
from st_distill.losses.pairwise import HingeLoss, MarginMSELoss
from st_distill.losses.pointwise import MSELoss

__all__ = [
    "HingeLoss",
    "MarginMSELoss",
    "MSELoss",
    "InfoNCELoss",
    "DistillRankNetLoss",
    "ADRMSELoss",
    "KLDistillLoss",
    "CombinedDistillationLoss",
]
