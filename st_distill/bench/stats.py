"""Significance testing for the report: paired t-tests on per-query values, Holm-Bonferroni correction."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["holm", "paired_ttest", "seed_mean"]


def seed_mean(per_seed: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Averages per-query values over seeds, keeping the queries every seed has.

    Args:
        per_seed: One ``{qid: value}`` per seed.

    Returns:
        ``{qid: mean value}`` over the queries common to all seeds, in sorted qid order.
    """
    if not per_seed:
        return {}
    common = set(per_seed[0]).intersection(*per_seed[1:])
    return {qid: float(np.mean([values[qid] for values in per_seed])) for qid in sorted(common)}


def paired_ttest(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[float, int]:
    """Two-sided paired t-test of ``a`` against ``b`` on the queries both have.

    Uses :func:`scipy.stats.ttest_rel`. When every difference is zero (or fewer than two queries
    are shared) there is no evidence of a difference and the p-value is 1.0.

    Args:
        a: ``{qid: value}`` of a system.
        b: ``{qid: value}`` of the baseline.

    Returns:
        ``(p_value, number_of_queries)``.
    """
    from scipy.stats import ttest_rel

    qids = sorted(set(a) & set(b))
    if len(qids) < 2:
        return 1.0, len(qids)
    x = np.array([a[q] for q in qids], dtype=np.float64)
    y = np.array([b[q] for q in qids], dtype=np.float64)
    if np.allclose(x - y, 0.0):
        return 1.0, len(qids)
    p = float(ttest_rel(x, y).pvalue)
    return (1.0 if math.isnan(p) else p), len(qids)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down), in the input order.

    With the p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value of the i-th is
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``; a hypothesis is rejected at level alpha when its
    adjusted p-value is <= alpha, which is Holm's procedure (Holm, 1979).

    Args:
        p_values: Raw p-values of one family of tests.

    Returns:
        The adjusted p-values, same order as ``p_values``.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (p_values[i], i))
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
