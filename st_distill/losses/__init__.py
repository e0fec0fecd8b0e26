"""The study's objectives as sentence-transformers ``CrossEncoderTrainer`` losses.

The math lives in :mod:`st_distill.losses.functional`; :mod:`st_distill.losses.base` turns
(query, docs) batches into a padded float32 score matrix and mask, with or without gradient caching
(``cached=True``). ``bce`` uses the library's ``BinaryCrossEntropyLoss``; ``marginmse`` the library's
``MarginMSELoss`` (its inputs, labels and value) behind a check of the teacher scores (see
:mod:`st_distill.objectives`).
"""

from st_distill.losses.combined import CombinedDistillationLoss
from st_distill.losses.distillation import ADRMSELoss, DistillRankNetLoss, KLDistillLoss
from st_distill.losses.listwise import InfoNCELoss
from st_distill.losses.pairwise import HingeLoss, MarginMSELoss

__all__ = [
    "HingeLoss",
    "MarginMSELoss",
    "InfoNCELoss",
    "DistillRankNetLoss",
    "ADRMSELoss",
    "KLDistillLoss",
    "CombinedDistillationLoss",
]
