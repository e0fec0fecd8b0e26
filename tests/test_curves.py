"""Learning curves: the callback's points against independent evaluations, resume, and the report's plot."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from st_distill.bench.curves import LearningCurve, read_curve

QUERIES = {"q1": "what is a cat", "q2": "how tall is the eiffel tower"}
CORPUS = {
    "d1": "A cat is a small domesticated carnivorous mammal.",
    "d2": "Dogs bark at night.",
    "d3": "The Eiffel Tower is 330 metres tall.",
    "d4": "Paris has many museums.",
    "d5": "Cats sleep a lot.",
}
QRELS = {"q1": {"d1": 2, "d5": 1}, "q2": {"d3": 2}}
RUN = {"q1": {"d2": 3.0, "d1": 2.0, "d5": 1.0}, "q2": {"d4": 2.0, "d3": 1.0, "d2": 0.5}}


def _suite():
    return SimpleNamespace(queries=QUERIES, corpus=CORPUS, qrels=QRELS, run=RUN, relevance_level=1)


def _expected(model) -> dict[str, float]:
    """nDCG@10 and RR@10 of the model's re-ranking, computed without the callback."""
    from st_distill.evaluation import evaluate, rerank_run

    reranked, _ = rerank_run(model, RUN, QUERIES, CORPUS, depth=3, show_progress_bar=False)
    aggregate = evaluate(reranked, QRELS, ["nDCG@10", "RR@10"], rel_level=1).aggregate
    return {"nDCG@10": aggregate["nDCG@10"], "RR@10": aggregate["RR@10"]}


def test_points_every_n_pairs_match_independent_evaluations(tiny_model_path, tmp_path, torch_one_thread):
    from datasets import Dataset

    from st_distill.bench.training import make_student, train_model
    from st_distill.objectives import get_objective

    model = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head="mean")
    before = _expected(model)
    rows = [{"query": QUERIES[q], "document": CORPUS[d], "label": float(QRELS[q].get(d, 0) > 0)} for q in RUN for d in RUN[q]]
    dataset = Dataset.from_list(rows * 4)
    curve = LearningCurve({"dl": _suite()}, ["nDCG@10", "RR@10"], every_pairs=8, pairs_per_step=3, path=tmp_path / "curve.jsonl")
    args = {"max_steps": 7, "learning_rate": 1e-3, "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 1.0,
            "bf16": False, "save_steps": 100, "logging_steps": 1}
    train_model(model, get_objective("bce").loss(model), dataset, args, seed=0, batch_rows=3,
                checkpoints=tmp_path / "ckpt", log_path=tmp_path / "log.jsonl", callbacks=[curve])
    points = read_curve(tmp_path / "curve.jsonl")
    # before training, then whenever 8 more pairs are passed (steps 3, 6: pairs 9, 18), then the last step
    assert [(p["step"], p["pairs"]) for p in points] == [(0, 0), (3, 9), (6, 18), (7, 21)]
    assert points[0]["suites"]["dl"] == pytest.approx(before, abs=1e-12)
    assert points[-1]["suites"]["dl"] == pytest.approx(_expected(model), abs=1e-12)
    seconds = [p["train_seconds"] for p in points]
    assert seconds[0] == 0.0 and seconds == sorted(seconds) and all(p["train_cpu_seconds"] >= 0 for p in points)


def test_resume_drops_points_after_the_checkpoint(tiny_model, tmp_path, torch_one_thread):
    path = tmp_path / "curve.jsonl"
    old = [{"step": s, "pairs": 4 * s, "train_seconds": float(s), "train_cpu_seconds": float(s), "suites": {"dl": {"nDCG@10": 0.1}}}
           for s in (0, 2, 4, 6)]
    path.write_text("".join(json.dumps(p) + "\n" for p in old))
    curve = LearningCurve({"dl": _suite()}, ["nDCG@10"], every_pairs=8, pairs_per_step=4, path=path)
    state = SimpleNamespace(global_step=4)
    curve.on_train_begin(None, state, None, model=tiny_model)
    assert [p["step"] for p in read_curve(path)] == [0, 2, 4]  # nothing re-evaluated: step 4 has its point
    state.global_step = 5
    curve.on_step_end(None, state, None, model=tiny_model)  # 20 pairs: same 8-pair period as 16
    state.global_step = 6
    curve.on_step_end(None, state, None, model=tiny_model)  # 24 pairs: a new period
    points = read_curve(path)
    assert [p["step"] for p in points] == [0, 2, 4, 6]
    assert points[-1]["train_seconds"] >= 4.0 and points[-1]["suites"]["dl"]["nDCG@10"] == pytest.approx(_expected(tiny_model)["nDCG@10"])


def test_disabled_rank_does_nothing(tiny_model, tmp_path):
    curve = LearningCurve({"dl": _suite()}, ["nDCG@10"], 8, 4, tmp_path / "curve.jsonl", enabled=False)
    state = SimpleNamespace(global_step=0)
    curve.on_train_begin(None, state, None, model=tiny_model)
    curve.on_train_end(None, state, None, model=tiny_model)
    assert not (tmp_path / "curve.jsonl").exists()


def test_bad_periods():
    with pytest.raises(ValueError, match="every_pairs and pairs_per_step must be positive"):
        LearningCurve({}, ["nDCG@10"], 0, 4, "x")


def _cell(folder: Path, objective: str, seed: int, points: list[tuple[int, float]]) -> dict:
    cell = folder / "cells" / "main" / "tiny" / objective / f"seed-{seed}"
    cell.mkdir(parents=True)
    (cell / "curve.jsonl").write_text("".join(
        json.dumps({"step": p // 4, "pairs": p, "train_seconds": 0.0, "train_cpu_seconds": 0.0, "suites": {"dl": {"nDCG@10": v}}}) + "\n"
        for p, v in points))
    return {"cell": {"backbone": "tiny", "objective": objective, "seed": seed, "variant": ""}, "folder": str(cell.relative_to(folder))}


def test_report_draws_one_line_per_objective_and_the_reference_lines(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from st_distill.bench import report

    (tmp_path / "eval" / "dl").mkdir(parents=True)
    (tmp_path / "eval" / "dl" / "first_stage.json").write_text(json.dumps({"nDCG@10": 0.5}))
    (tmp_path / "eval" / "dl" / "teacher.json").write_text(json.dumps({"nDCG@10": 0.6}))  # no random.json: not drawn
    cells = [_cell(tmp_path, "bce", 0, [(0, 0.3), (40, 0.4), (80, 0.45)]),
             _cell(tmp_path, "bce", 1, [(0, 0.3), (40, 0.5)]),  # a seed that stopped early: mean where both have points
             _cell(tmp_path, "infonce", 0, [(0, 0.3), (40, 0.55)])]
    drawn = {}
    monkeypatch.setattr(plt, "close", lambda fig: drawn.setdefault("fig", fig))
    written = report.learning_curves(tmp_path, cells, "nDCG@10", tmp_path / "report" / "curves")
    assert written == [tmp_path / "report" / "curves" / "dl.png"] and written[0].read_bytes()[:4] == b"\x89PNG"
    ax = drawn["fig"].axes[0]
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    assert lines["bce"] == ([0, 40], [0.3, pytest.approx(0.45)])
    assert lines["infonce"] == ([0, 40], [0.3, 0.55])
    assert lines["first stage 0.500"][1] == [0.5, 0.5] and lines["teacher 0.600"][1] == [0.6, 0.6]
    assert not any(label.startswith("random") for label in lines)
    assert report.learning_curves(tmp_path, [], "nDCG@10", tmp_path / "none") == []
    np.testing.assert_allclose(lines["bce"][1], [0.3, 0.45])
