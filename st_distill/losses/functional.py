"""Pure tensor math of the training objectives.

Every function takes student logits (and, for distillation, teacher scores) as tensors and returns
a scalar. Nothing here knows about models, tokenizers or datasets, so each formula can be tested
against a naive reference and reused outside sentence-transformers.

Conventions shared by all functions:

- ``scores`` and ``teacher`` are ``[B, L]``: one row per query, one column per document.
- ``mask`` is an optional ``[B, L]`` bool tensor, ``True`` for real documents and ``False`` for
  padding. Padded positions never contribute to a value or a gradient, whatever they hold (even
  ``inf`` or ``NaN``).
- Where a positive is needed it sits in column 0.
- Queries (or pairs) with nothing to learn from are left out of the mean. When a whole batch has
  nothing valid the result is ``0.0`` and stays connected to the graph, so ``backward()`` runs and
  yields zero gradients instead of ``NaN``.
- Teacher scores at valid positions must be finite; the loss classes check this before calling.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "TERMS",
    "hinge",
    "margin_mse",
    "infonce",
    "distill_ranknet",
    "teacher_ranks",
    "adr_mse",
    "kl_distill",
    "positive_first_bce",
    "squared_error",
    "combined_terms",
]

DISCOUNTS = ("log2", "reciprocal", None)


def _mask_like(scores: Tensor, mask: Tensor | None) -> Tensor:
    if scores.dim() != 2:
        raise ValueError(f"scores must be a [B, L] matrix, got shape {tuple(scores.shape)}")
    if mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    if mask.shape != scores.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match scores shape {tuple(scores.shape)}")
    return mask.bool()


def _check_same_shape(scores: Tensor, teacher: Tensor) -> None:
    if teacher.shape != scores.shape:
        raise ValueError(f"teacher shape {tuple(teacher.shape)} does not match scores shape {tuple(scores.shape)}")


def _zero(scores: Tensor, mask: Tensor) -> Tensor:
    """A scalar 0.0 that keeps ``scores`` in the graph with zero gradients, whatever padding holds."""
    return torch.where(mask, scores, 0.0).sum() * 0.0


def _log_softmax(x: Tensor) -> Tensor:
    """Row-wise log-softmax as ``x - logsumexp(x)``.

    Same value and gradient as ``torch.log_softmax``, whose CPU kernel enters a thread-parallel
    region even for a [4, 8] matrix: on a busy multi-threaded CPU that cost milliseconds per call,
    where ``logsumexp`` costs microseconds (measured in benchmarks/perf/loss_overhead.py).
    """
    return x - torch.logsumexp(x, dim=1, keepdim=True)


def hinge(pos: Tensor, neg: Tensor, margin: float = 1.0) -> Tensor:
    """Pairwise hinge loss ``mean max(0, margin - (s+ - s-))``.

    Args:
        pos: ``[B]`` scores of the positives.
        neg: ``[B]`` or ``[B, N]`` scores of the negatives of each positive.
        margin: The margin ``m`` by which a positive should outscore each negative.

    Returns:
        The mean over all ``B * N`` (positive, negative) pairs.
    """
    if pos.dim() != 1:
        raise ValueError(f"pos must be a [B] vector, got shape {tuple(pos.shape)}")
    if neg.dim() == 1:
        neg = neg.unsqueeze(1)
    if neg.dim() != 2 or neg.shape[0] != pos.shape[0] or neg.shape[1] == 0:
        raise ValueError(f"neg must be [B] or [B, N>=1] with B={pos.shape[0]}, got shape {tuple(neg.shape)}")
    return torch.clamp(margin - (pos.unsqueeze(1) - neg), min=0.0).mean()


def margin_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """Margin-MSE: ``mean_i ((s+ - s-_i) - (t+ - t-_i))^2`` (Hofstätter et al., 2020).

    Args:
        student: ``[B, 1+N]`` student logits, the positive in column 0.
        teacher: ``[B, 1+N]`` teacher logits in the same layout.

    Returns:
        The mean over the ``B * N`` margins.
    """
    _check_same_shape(student, teacher)
    if student.dim() != 2 or student.shape[1] < 2:
        raise ValueError(f"student must be [B, 1+N] with N >= 1, got shape {tuple(student.shape)}")
    student_margins = student[:, :1] - student[:, 1:]
    teacher_margins = (teacher[:, :1] - teacher[:, 1:]).to(student.dtype)
    return ((student_margins - teacher_margins) ** 2).mean()


def infonce(scores: Tensor, mask: Tensor | None = None, temperature: float = 1.0) -> Tensor:
    """InfoNCE over raw logits: ``-log softmax(s / T)[positive]``, positive in column 0.

    Args:
        scores: ``[B, L]`` student logits: the positive in column 0, negatives after it.
        mask: ``[B, L]`` bool, ``False`` at padded positions.
        temperature: Softmax temperature ``T`` (the study uses 1).

    Returns:
        The mean over queries whose positive is valid. A query with a single document gives 0.
    """
    mask = _mask_like(scores, mask)
    rows = mask[:, 0]
    if not rows.any():
        return _zero(scores, mask)
    scaled = torch.where(mask[rows], scores[rows] / temperature, float("-inf"))
    return -_log_softmax(scaled)[:, 0].mean()


def distill_ranknet(scores: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """RankNet distillation: mean of ``-log sigmoid(s_i - s_j)`` over all valid pairs with ``t_i > t_j``.

    Pairs are pooled over the whole batch (every ordered pair weighs the same, so a query with more
    documents weighs more), and tied teacher scores give no pair. ``-log sigmoid(x)`` is computed
    as ``softplus(-x)``, which stays finite for any score gap.

    Args:
        scores: ``[B, L]`` student logits.
        teacher: ``[B, L]`` teacher scores, higher = better.
        mask: ``[B, L]`` bool, ``False`` at padded positions.

    Returns:
        The mean over all pairs; 0 when the batch has no ordered pair.
    """
    _check_same_shape(scores, teacher)
    mask = _mask_like(scores, mask)
    s = torch.where(mask, scores, 0.0)
    t = torch.where(mask, teacher.to(scores.dtype), 0.0)
    pairs = (t.unsqueeze(2) > t.unsqueeze(1)) & mask.unsqueeze(2) & mask.unsqueeze(1)
    if not pairs.any():
        return _zero(s, mask)
    gaps = s.unsqueeze(2) - s.unsqueeze(1)
    return F.softplus(-gaps[pairs]).mean()


def teacher_ranks(teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Ranks from teacher scores, 1 = best, tied scores sharing their average rank.

    A document's rank is ``1 + #{better} + (#{tied others}) / 2``: three documents tied for the top
    all get rank 2. Padded positions get rank 0 and count for nothing.

    Args:
        teacher: ``[B, L]`` teacher scores, higher = better.
        mask: ``[B, L]`` bool, ``False`` at padded positions.

    Returns:
        ``[B, L]`` float ranks.
    """
    mask = _mask_like(teacher, mask)
    t = torch.where(mask, teacher, 0.0)
    valid_j = mask.unsqueeze(1)
    better = ((t.unsqueeze(1) > t.unsqueeze(2)) & valid_j).sum(dim=2)
    tied = ((t.unsqueeze(1) == t.unsqueeze(2)) & valid_j).sum(dim=2)  # counts the document itself
    ranks = 1.0 + better.to(t.dtype) + (tied.to(t.dtype) - 1.0) / 2.0
    return torch.where(mask, ranks, 0.0)


def adr_mse(
    scores: Tensor,
    teacher: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    discount: str | None = "log2",
) -> Tensor:
    """Approx-Discounted-Rank MSE (Schlatt et al., 2025).

    The student's rank of document ``i`` is approximated by
    ``r^_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)``; the target ``r_i`` is the teacher rank
    (1 = best, ties share their average rank, see :func:`teacher_ranks`). The loss is
    ``mean_i w(r_i) (r^_i - r_i)^2`` with ``w(r) = 1 / log2(r + 1)`` (``"log2"``), ``1 / r``
    (``"reciprocal"``) or ``1`` (``None``).

    Args:
        scores: ``[B, L]`` student logits.
        teacher: ``[B, L]`` teacher scores, higher = better.
        mask: ``[B, L]`` bool, ``False`` at padded positions.
        temperature: ``T`` in the rank approximation; smaller is closer to the hard rank.
        discount: ``"log2"``, ``"reciprocal"`` or ``None``.

    Returns:
        The mean over all valid documents of the batch.
    """
    if discount not in DISCOUNTS:
        raise ValueError(f"discount must be one of {DISCOUNTS}, got {discount!r}")
    _check_same_shape(scores, teacher)
    mask = _mask_like(scores, mask)
    if not mask.any():
        return _zero(scores, mask)
    s = torch.where(mask, scores, 0.0)
    targets = torch.where(mask, teacher_ranks(teacher.to(scores.dtype), mask), 1.0)  # 1 at padding: finite weights
    others = mask.unsqueeze(1) & ~torch.eye(s.shape[1], dtype=torch.bool, device=s.device)
    beaten_by = torch.sigmoid((s.unsqueeze(1) - s.unsqueeze(2)) / temperature)  # [b, i, j]: sigmoid((s_j - s_i) / T)
    approx = 1.0 + torch.where(others, beaten_by, 0.0).sum(dim=2)
    if discount == "log2":
        weights = 1.0 / torch.log2(targets + 1.0)
    elif discount == "reciprocal":
        weights = 1.0 / targets
    else:
        weights = torch.ones_like(targets)
    errors = weights * (approx - targets) ** 2
    return errors[mask].mean()


def kl_distill(scores: Tensor, teacher: Tensor, mask: Tensor | None = None, temperature: float = 1.0) -> Tensor:
    """Listwise KL distillation: ``KL(softmax(t / T) || softmax(s / T)) * T^2``.

    The ``T^2`` factor keeps gradient magnitudes comparable across temperatures (Hinton et al., 2015).

    Args:
        scores: ``[B, L]`` student logits.
        teacher: ``[B, L]`` teacher logits.
        mask: ``[B, L]`` bool, ``False`` at padded positions.
        temperature: Softmax temperature ``T`` applied to both distributions.

    Returns:
        The mean over queries with at least one valid document. A single-document list gives 0.
    """
    _check_same_shape(scores, teacher)
    mask = _mask_like(scores, mask)
    rows = mask.any(dim=1)
    if not rows.any():
        return _zero(scores, mask)
    mask = mask[rows]
    log_q = _log_softmax(torch.where(mask, scores[rows] / temperature, float("-inf")))
    log_p = _log_softmax(torch.where(mask, teacher[rows].to(scores.dtype) / temperature, float("-inf")))
    # Padded positions hold -inf in both; zero them before the product so no inf - inf is formed.
    log_q = torch.where(mask, log_q, 0.0)
    log_p = torch.where(mask, log_p, 0.0)
    terms = torch.where(mask, log_p.exp() * (log_p - log_q), 0.0)
    return terms.sum(dim=1).mean() * temperature**2


def positive_first_bce(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """BCE-with-logits with label 1 for column 0 and 0 for the other valid columns, mean over valid documents.

    Written as ``softplus(s) - y * s`` (the same stable value): on multi-threaded CPU,
    ``torch.nn.functional.binary_cross_entropy_with_logits`` took ~12 ms for 32 logits in our
    measurements (a parallel region), more than the rest of the loss together.

    Args:
        scores: ``[B, L]`` student logits: the positive in column 0, negatives after it.
        mask: ``[B, L]`` bool, ``False`` at padded positions.
    """
    mask = _mask_like(scores, mask)
    targets = torch.zeros_like(scores)
    targets[:, 0] = 1.0
    return (F.softplus(scores) - targets * scores)[mask].mean()


def squared_error(scores: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Pointwise distillation: ``mean (s - t)^2`` over the valid entries."""
    _check_same_shape(scores, teacher)
    mask = _mask_like(scores, mask)
    return ((scores - teacher.to(scores.dtype)) ** 2)[mask].mean()


def combined_terms(
    scores: Tensor,
    teacher: Tensor,
    mask: Tensor | None,
    teacher_loss: str = "kldistill",
    hard_loss: str = "infonce",
    teacher_weight: float = 1.0,
    hard_weight: float = 1.0,
    **teacher_args: object,
) -> dict[str, Tensor]:
    """The parts of a teacher term plus a hard-label term: ``{teacher_loss: w_t * term, hard_loss: w_h * term}``.

    ``teacher_args`` (``temperature``, ``discount``) go to the teacher term only; the hard term
    (``infonce`` at temperature 1, or ``bce``) takes the first document as the positive.
    """
    return {
        teacher_loss: teacher_weight * TERMS[teacher_loss](scores, teacher, mask, **teacher_args),
        hard_loss: hard_weight * TERMS[hard_loss](scores, teacher, mask),
    }


#: Objective name (:data:`st_distill.objectives.OBJECTIVES`) -> its math, as
#: ``term(scores, teacher, mask, **loss_arguments)`` on ``[B, L]`` lists (the positive in column 0
#: where one is needed; ``teacher`` may be ``None`` for the hard-label terms). Loss arguments a term
#: does not use are ignored. The combined loss's parts and the constant-score levels of the bench
#: (:mod:`st_distill.bench.levels`) compute through this table; the loss classes call the same functions.
TERMS: dict[str, Callable[..., Tensor]] = {
    "bce": lambda s, t, m, **_: positive_first_bce(s, m),
    "hinge": lambda s, t, m, margin=1.0, **_: hinge(s[:, 0], s[:, 1:], margin=margin),
    "marginmse": lambda s, t, m, **_: margin_mse(s, t),
    "infonce": lambda s, t, m, temperature=1.0, **_: infonce(s, m, temperature=temperature),
    "distillranknet": lambda s, t, m, **_: distill_ranknet(s, t, m),
    "adrmse": lambda s, t, m, temperature=1.0, discount="log2", **_: adr_mse(s, t, m, temperature=temperature, discount=discount),
    "kldistill": lambda s, t, m, temperature=1.0, **_: kl_distill(s, t, m, temperature=temperature),
    "kldistill+infonce": lambda s, t, m, **args: sum(combined_terms(s, t, m, **args).values()),
    "mse": lambda s, t, m, **_: squared_error(s, t, m),
}
