"""The report: Holm's correction, paired t-tests on seed-averaged per-query values, tables, byte-identical rebuilds."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ttest_rel

from st_distill.bench.gap import gap_note, share_of_gap
from st_distill.bench.report import build_table, collect_cells, write_report
from st_distill.bench.stats import holm, paired_ttest, seed_mean


def test_holm_matches_hand_computed_values():
    # sorted: 0.005 -> 4 * 0.005 = 0.02; 0.01 -> 3 * 0.01 = 0.03; 0.03 -> 2 * 0.03 = 0.06;
    # 0.04 -> 1 * 0.04 = 0.04, raised to the running maximum 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])
    assert holm([]) == []


def test_holm_is_bonferroni_step_down_against_a_naive_loop():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.1, size=7).tolist()
    order = np.argsort(p)
    m = len(p)
    expected = [0.0] * m
    for i, index in enumerate(order):
        expected[index] = min(1.0, max((m - j) * p[order[j]] for j in range(i + 1)))
    assert holm(p) == pytest.approx(expected)


def test_paired_ttest_and_seed_mean():
    a = {"q1": 0.5, "q2": 0.7, "q3": 0.2, "q4": 0.9}
    b = {"q1": 0.4, "q2": 0.5, "q3": 0.25, "q4": 0.6, "extra": 1.0}
    p, n = paired_ttest(a, b)
    assert n == 4
    assert p == pytest.approx(ttest_rel([0.5, 0.7, 0.2, 0.9], [0.4, 0.5, 0.25, 0.6]).pvalue)
    assert paired_ttest(a, a) == (1.0, 4)  # no difference at all: no evidence
    assert seed_mean([{"q1": 1.0, "q2": 0.0}, {"q1": 0.0, "q3": 1.0}]) == {"q1": 0.5}


def make_results(folder: Path, per_query: dict[tuple[str, int], list[float]]) -> None:
    """A results folder with one suite, one backbone, objectives x seeds with given per-query nDCG@10."""
    objectives = sorted({o for o, _ in per_query}, key=["bce", "infonce", "hinge"].index)
    (folder / "eval" / "dl").mkdir(parents=True)
    (folder / "eval" / "dl" / "first_stage.json").write_text(json.dumps({"nDCG@10": 0.3}), encoding="utf-8")
    (folder / "eval" / "dl" / "random.json").write_text(json.dumps({"nDCG@10": 0.1}), encoding="utf-8")
    (folder / "eval" / "dl" / "teacher.json").write_text(json.dumps({"nDCG@10": 0.7}), encoding="utf-8")
    (folder / "bench.json").write_text(json.dumps({
        "name": "t", "phases": [{"name": "main"}], "backbones": ["tiny"], "objectives": objectives,
        "suites": {"dl": {"depth": 10, "relevance_level": 1}}, "metrics": ["nDCG@10"], "main_metric": "nDCG@10",
        "report": {"metrics": ["nDCG@10"], "baseline": "bce", "alpha": 0.05},
    }), encoding="utf-8")
    for (objective, seed), values in per_query.items():
        cell = folder / "cells" / "main" / "tiny" / objective / f"seed-{seed}"
        cell.mkdir(parents=True)
        queries = {f"q{i}": v for i, v in enumerate(values)}
        (cell / "metrics.json").write_text(json.dumps({
            "cell": {"phase": "main", "backbone": "tiny", "objective": objective, "seed": seed, "variant": ""},
            "suites": {"dl": {"aggregate": {"nDCG@10": float(np.mean(values))}, "per_query": {"nDCG@10": queries}}},
        }), encoding="utf-8")
        (cell / "training_log.jsonl").write_text(
            "".join(json.dumps({"step": s, "loss": 1.0 / s + seed}) + "\n" for s in (1, 2, 3)), encoding="utf-8")
        (cell / "DONE").touch()


@pytest.fixture
def results(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, size=30)
    per_query = {}
    for seed in (0, 1, 2):
        per_query[("bce", seed)] = (base + rng.normal(0, 0.01, 30)).tolist()
        per_query[("infonce", seed)] = (base + 0.15 + rng.normal(0, 0.01, 30)).tolist()  # clearly better
        per_query[("hinge", seed)] = (base + rng.normal(0, 0.05, 30)).tolist()  # no real difference
    make_results(tmp_path, per_query)
    return tmp_path


def test_table_means_stds_and_marks(results):
    bench, cells = collect_cells(results)
    table = build_table(bench, cells)
    assert table.rows == [("tiny", "bce"), ("tiny", "infonce"), ("tiny", "hinge")]
    column = ("dl", "nDCG@10")
    scores = {o: [c["suites"]["dl"]["aggregate"]["nDCG@10"] for c in cells if c["cell"]["objective"] == o] for o in ("bce", "infonce", "hinge")}
    for objective, values in scores.items():
        assert table.values[("tiny", objective)][column]["mean"] == pytest.approx(np.mean(values))
        assert table.values[("tiny", objective)][column]["std"] == pytest.approx(np.std(values, ddof=1))
    # the t-test runs on per-query values averaged over the three seeds
    def averaged(objective):
        runs = [c["suites"]["dl"]["per_query"]["nDCG@10"] for c in cells if c["cell"]["objective"] == objective]
        return [np.mean([r[f"q{i}"] for r in runs]) for i in range(30)]

    raw = {o: ttest_rel(averaged(o), averaged("bce")).pvalue for o in ("infonce", "hinge")}
    adjusted = holm([raw["infonce"], raw["hinge"]])
    assert table.values[("tiny", "infonce")][column]["p"] == pytest.approx(raw["infonce"])
    assert table.values[("tiny", "infonce")][column]["p_holm"] == pytest.approx(adjusted[0])
    assert table.values[("tiny", "hinge")][column]["p_holm"] == pytest.approx(adjusted[1])
    assert table.values[("tiny", "infonce")][column]["sig"] == 1
    assert table.values[("tiny", "hinge")][column]["sig"] == (1 if adjusted[1] <= 0.05 else 0) * np.sign(
        table.values[("tiny", "hinge")][column]["diff"])
    assert "p" not in table.values[("tiny", "bce")][column]
    assert table.references == {"first stage": {column: 0.3}, "random order": {column: 0.1}, "teacher": {column: 0.7}}


def test_report_files_and_byte_identical_rebuild(results, capsys):
    from st_distill.cli import main

    written = write_report(results)
    assert {"markdown", "csv", "latex", "significance", "dl", "loss"} <= set(written)
    markdown = written["markdown"].read_text(encoding="utf-8")
    assert "| tiny | infonce |" in markdown and "▲" in markdown and "| first stage | – | 0.3000 |" in markdown
    assert "| random order | – | 0.1000 |" in markdown and "| teacher | – | 0.7000 |" in markdown
    rows = list(csv.DictReader(io.StringIO(written["csv"].read_text(encoding="utf-8"))))
    assert [(r["backbone"], r["objective"]) for r in rows] == [
        ("first stage", ""), ("random order", ""), ("teacher", ""), ("tiny", "bce"), ("tiny", "infonce"), ("tiny", "hinge")]
    assert rows[4]["sig"] == "1"
    latex = written["latex"].read_text(encoding="utf-8")
    assert latex.startswith("\\begin{tabular}{llrr}") and "$^{\\uparrow}$" in latex  # nDCG@10, then its share
    assert written["dl"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = {p: p.read_bytes() for p in (results / "report").rglob("*") if p.is_file()}
    assert main(["report", str(results)]) == 0
    assert "infonce" in capsys.readouterr().out
    after = {p: p.read_bytes() for p in (results / "report").rglob("*") if p.is_file()}
    assert after == before


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench.json"):
        write_report(tmp_path)
    make_results(tmp_path, {("bce", 0): [0.5, 0.6]})
    with pytest.raises(ValueError, match="unknown phase 'proxy'"):
        write_report(tmp_path, phase="proxy")


def test_pooled_column_pairs_every_suites_queries(results):
    """With a second suite, the pooled column's mean is over all queries of both suites, its test
    pairs them all (checked against scipy on the concatenation), and reference rows weight the
    suites' means by their numbers of queries."""
    rng = np.random.default_rng(2)
    bench = json.loads((results / "bench.json").read_text(encoding="utf-8"))
    bench["suites"]["small"] = {"depth": 10, "relevance_level": 1}
    (results / "bench.json").write_text(json.dumps(bench), encoding="utf-8")
    (results / "eval" / "small").mkdir()
    for file, value in (("first_stage.json", 0.5), ("random.json", 0.2), ("teacher.json", 0.9)):
        (results / "eval" / "small" / file).write_text(json.dumps({"nDCG@10": value}), encoding="utf-8")
    small = {}
    for path in sorted((results / "cells").rglob("metrics.json")):
        metrics = json.loads(path.read_text(encoding="utf-8"))
        values = {f"s{i}": float(v) for i, v in enumerate(rng.uniform(0, 1, size=10))}
        small[(metrics["cell"]["objective"], metrics["cell"]["seed"])] = values
        metrics["suites"]["small"] = {"aggregate": {"nDCG@10": float(np.mean(list(values.values())))}, "per_query": {"nDCG@10": values}}
        path.write_text(json.dumps(metrics), encoding="utf-8")
    bench, cells = collect_cells(results)
    table = build_table(bench, cells)
    pooled = ("pooled", "nDCG@10")
    assert table.columns == [("dl", "nDCG@10"), ("small", "nDCG@10"), pooled]

    def concatenated(objective):  # per query, averaged over seeds: 30 of dl, then 10 of small
        runs = [c for c in cells if c["cell"]["objective"] == objective]
        return ([np.mean([c["suites"]["dl"]["per_query"]["nDCG@10"][f"q{i}"] for c in runs]) for i in range(30)]
                + [np.mean([small[(objective, c["cell"]["seed"])][f"s{i}"] for c in runs]) for i in range(10)])

    for objective in ("bce", "infonce", "hinge"):
        assert table.values[("tiny", objective)][pooled]["mean"] == pytest.approx(np.mean(concatenated(objective)))
    raw = [ttest_rel(concatenated(o), concatenated("bce")).pvalue for o in ("infonce", "hinge")]
    assert table.values[("tiny", "infonce")][pooled]["p"] == pytest.approx(raw[0])
    assert table.values[("tiny", "hinge")][pooled]["p_holm"] == pytest.approx(holm(raw)[1])
    assert table.values[("tiny", "infonce")][pooled]["queries"] == 40
    assert table.references["first stage"][pooled] == pytest.approx((0.3 * 30 + 0.5 * 10) / 40)
    assert table.references["teacher"][pooled] == pytest.approx((0.7 * 30 + 0.9 * 10) / 40)
    # the pooled share: of the pooled means, (row - first stage) / (teacher - first stage)
    first, teacher = (0.3 * 30 + 0.5 * 10) / 40, (0.7 * 30 + 0.9 * 10) / 40
    assert table.values[("tiny", "infonce")][pooled]["share"] == pytest.approx((np.mean(concatenated("infonce")) - first) / (teacher - first))
    assert table.values[("tiny", "bce")][("small", "nDCG@10")]["share"] == pytest.approx(
        (table.values[("tiny", "bce")][("small", "nDCG@10")]["mean"] - 0.5) / 0.4)


def test_share_of_gap_by_hand():
    assert share_of_gap(0.5, 0.2, 0.6) == pytest.approx(0.75)
    assert share_of_gap(0.1, 0.3, 0.7) == pytest.approx(-0.5)  # worse than its input: below 0
    assert share_of_gap(0.8, 0.3, 0.7) == pytest.approx(1.25)  # past the teacher: above 1
    assert share_of_gap(0.5, 0.5, 0.4) is None and "not above the first stage" in gap_note(0.5, 0.4)
    assert share_of_gap(0.5, 0.5, 0.5) is None  # no gap at all
    assert share_of_gap(0.5, 0.3, None) is None and "no teacher row" in gap_note(0.3, None)
    assert share_of_gap(0.5, None, 0.7) is None and gap_note(None, 0.7) == "no first-stage row"
    assert gap_note(0.3, 0.7) is None


def add_step0(folder: Path, values: list[float], backbone: str = "tiny") -> None:
    """Step-0 folders of one backbone, one per seed, with the given nDCG@10 on suite ``dl``; named in bench.json."""
    bench = json.loads((folder / "bench.json").read_text(encoding="utf-8"))
    keys = []
    for i, value in enumerate(values):
        key = f"{backbone}-{i}"
        (folder / "step0" / key).mkdir(parents=True)
        (folder / "step0" / key / "metrics.json").write_text(json.dumps(
            {"settings": {}, "suites": {"dl": {"aggregate": {"nDCG@10": value}, "per_query": {}}}}), encoding="utf-8")
        (folder / "step0" / key / "DONE").touch()
        keys.append(key)
    bench.setdefault("step0", {}).setdefault("main", {})[backbone] = keys
    (folder / "bench.json").write_text(json.dumps(bench), encoding="utf-8")


def test_share_column_and_step0_row_against_hand_computed_values(results):
    """first stage 0.3, teacher 0.7 on suite dl; the untrained student 0.35 and 0.45 over two seeds (mean 0.4)."""
    add_step0(results, [0.35, 0.45])
    bench, cells = collect_cells(results)
    table = build_table(bench, cells)
    column = ("dl", "nDCG@10")
    assert list(table.references) == ["first stage", "random order", "student at step 0", "teacher"]
    assert table.references["student at step 0"][column] == pytest.approx(0.4)
    assert table.reference_shares == {"first stage": {"dl": 0.0}, "random order": {"dl": pytest.approx(-0.5)},
                                      "student at step 0": {"dl": pytest.approx(0.25)}, "teacher": {"dl": 1.0}}
    for row in table.rows:
        assert table.values[row][column]["share"] == pytest.approx((table.values[row][column]["mean"] - 0.3) / 0.4)
    assert table.share_notes == {"dl": None}
    written = write_report(results)
    markdown = written["markdown"].read_text(encoding="utf-8")
    assert "| backbone | objective | dl nDCG@10 | dl share |" in markdown
    assert "| student at step 0 | – | 0.4000 | 25% |" in markdown and "| teacher | – | 0.7000 | 100% |" in markdown
    infonce = table.values[("tiny", "infonce")][column]
    assert f"| tiny | infonce | {infonce['mean']:.4f} ± {infonce['std']:.4f} ▲ | {100 * infonce['share']:.0f}% |" in markdown
    assert "Student at step 0 & -- & 0.4000 & 25\\% \\\\" in written["latex"].read_text(encoding="utf-8")
    data = json.loads(written["json"].read_text(encoding="utf-8"))
    assert data["share_measure"] == "nDCG@10" and data["share_undefined"] == {}
    assert data["references"][2] == {"label": "student at step 0", "values": {"dl": {"nDCG@10": pytest.approx(0.4)}}, "share": {"dl": pytest.approx(0.25)}}
    assert data["rows"][1]["share"]["dl"] == pytest.approx(infonce["share"])
    rows = list(csv.DictReader(io.StringIO(written["csv"].read_text(encoding="utf-8"))))
    assert rows[2]["backbone"] == "student at step 0" and float(rows[2]["share"]) == pytest.approx(0.25)

    # several backbones: one step-0 row each, named
    add_step0(results, [0.5], backbone="other")
    bench, cells = collect_cells(results)
    assert [label for label in bench["references"] if "step 0" in label] == ["student at step 0 (tiny)", "student at step 0 (other)"]

    # undefined: the teacher not above the first stage, or no teacher row
    (results / "eval" / "dl" / "teacher.json").write_text(json.dumps({"nDCG@10": 0.3}), encoding="utf-8")
    markdown = write_report(results)["markdown"].read_text(encoding="utf-8")
    assert "| tiny | bce |" in markdown and markdown.count("| – |") >= 7  # every share cell, the objective cells of references
    assert "`dl share` is undefined (–): the teacher (0.3000) is not above the first stage (0.3000)" in markdown
    assert all(table_row.endswith("| – |") for table_row in markdown.splitlines() if table_row.startswith("| tiny |"))
    (results / "eval" / "dl" / "teacher.json").unlink()
    written = write_report(results)
    assert "`dl share` is undefined (–): no teacher row" in written["markdown"].read_text(encoding="utf-8")
    assert json.loads(written["json"].read_text(encoding="utf-8"))["rows"][0]["share"] == {"dl": None}
