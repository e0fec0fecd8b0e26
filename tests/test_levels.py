"""The constant-score level of each objective's loss, against independent numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset

from st_distill.bench.levels import constant_score_level
from st_distill.data.builder import BuildReport, save_dataset

LISTS = [[3.0, 1.0, 2.0, -1.0], [0.5, 2.5], [4.0, 3.0, 1.0]]


def _save(folder, columns: dict) -> str:
    dataset = Dataset.from_dict(columns)
    save_dataset(dataset, BuildReport(objective="x", kind="x", columns=dataset.column_names), folder)
    return folder


def _softmax(x):
    e = np.exp(np.asarray(x) - np.max(x))
    return e / e.sum()


def test_levels_that_need_no_data(tmp_path):
    ntuple = _save(tmp_path / "t", {"query": ["q"], "positive": ["p"], **{f"negative_{i}": ["n"] for i in range(1, 8)}})
    assert constant_score_level("bce", tmp_path / "missing") == pytest.approx(math.log(2))
    assert constant_score_level("infonce", ntuple) == pytest.approx(math.log(8))
    assert constant_score_level("hinge", ntuple) == 1.0
    assert constant_score_level("hinge", ntuple, {"margin": 0.5}) == 0.5
    assert constant_score_level("marginmse", tmp_path / "missing") is None


def test_levels_of_the_distillation_objectives(tmp_path):
    rows = [[2.0, 0.5, -1.0], [1.0, 1.5, 0.0], [3.0, -2.0, 0.0]]
    marginmse = _save(tmp_path / "m", {"query": ["a", "b", "c"], "positive": ["p"] * 3, "negative_1": ["n"] * 3,
                                       "negative_2": ["n"] * 3, "scores": rows})
    margins = [r[0] - r[j] for r in rows for j in (1, 2)]
    assert constant_score_level("marginmse", marginmse) == pytest.approx(np.mean(np.square(margins)))

    lists = _save(tmp_path / "l", {"query": ["a", "b", "c"], "docs": [["d"] * len(x) for x in LISTS], "scores": LISTS})
    # every ordered pair of a constant student costs -log sigmoid(0) = ln 2 (no ties in LISTS)
    assert constant_score_level("distillranknet", lists) == pytest.approx(math.log(2))
    # ADR-MSE: a constant student's approximate rank is 1 + (n - 1) / 2 for every document
    errors = []
    for scores in LISTS:
        n = len(scores)
        ranks = 1 + np.argsort(np.argsort(-np.asarray(scores)))
        errors += list((1 + (n - 1) / 2 - ranks) ** 2 / np.log2(ranks + 1))
    assert constant_score_level("adrmse", lists) == pytest.approx(np.mean(errors), rel=1e-5)
    # KL(softmax(t) || uniform), at temperature 2 scaled by T^2
    kl = [np.sum(p * np.log(p * len(p))) for p in (_softmax(np.asarray(s) / 2) for s in LISTS)]
    assert constant_score_level("kldistill", lists, {"temperature": 2.0}) == pytest.approx(4 * np.mean(kl), rel=1e-5)


def test_level_of_mse_is_the_mean_squared_teacher_score(tmp_path):
    rows = _save(tmp_path / "p", {"query": ["a", "a", "b"], "document": ["x", "y", "z"], "score": [2.0, -1.0, 0.5]})
    assert constant_score_level("mse", rows) == pytest.approx(np.mean([4.0, 1.0, 0.25]))


def test_level_of_the_combined_objective_follows_its_terms(tmp_path):
    """kldistill+infonce with teacher_loss = "adrmse": the level is w_t * the ADR-MSE level + w_h * ln(n)
    (it used to be the KL level whatever teacher_loss said)."""
    lists = _save(tmp_path / "l", {"query": ["a", "b", "c"], "docs": [["d"] * len(x) for x in LISTS], "scores": LISTS})
    adrmse = constant_score_level("adrmse", lists)
    infonce = np.mean([math.log(len(scores)) for scores in LISTS])  # -log(1/n) for a constant student
    args = {"teacher_loss": "adrmse", "teacher_weight": 0.5, "hard_weight": 2.0}
    assert constant_score_level("kldistill+infonce", lists, args) == pytest.approx(0.5 * adrmse + 2.0 * infonce, rel=1e-6)
    kl = constant_score_level("kldistill", lists)
    assert constant_score_level("kldistill+infonce", lists) == pytest.approx(kl + infonce, rel=1e-6)
