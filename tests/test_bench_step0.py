"""The untrained student's reference row (issue 21 item 3) and the model card of every cell (issue 22 item 5),
on a tiny grid: the step-0 row against an independent evaluation of ``make_student``, its reuse, a results
folder made before it existed, the learning curves' first points, the card's content, the dry run."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import ir_measures
import numpy as np
import pytest
import torch

from st_distill.cli import main
from st_distill.data.formats import read_qrels, read_texts, read_trec_run
from st_distill.models import resolve_model
from st_distill.training import make_student
from test_bench_runner import finished_cells, write_config

pytestmark = pytest.mark.slow  # grids end to end: CI's Python legs skip them

SUITE = "resource://quickstart/trec-dl-2019"


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread):
    """Tiny models run faster on one thread than with two fighting other jobs for the cores."""


def independent_ndcg(model_path: str, seed: int) -> float:
    """nDCG@10 of ``make_student(mean head, seed)`` re-ranking the suite's BM25 top-10 of each judged query,
    scored with ``CrossEncoder.predict`` and measured with ir_measures: no st-distill evaluation code."""
    student = make_student(model_path, seed, max_length=64, head="mean")
    student.eval()
    folder = Path(resolve_model(SUITE))
    queries, corpus = read_texts(folder / "queries.tsv"), read_texts(folder / "passages.tsv.gz")
    qrels, run = read_qrels(folder / "qrels.txt.gz"), read_trec_run(folder / "run.bm25.top20.trec")
    judged = [q for q in qrels if q in queries and q in run]
    pairs, ids = [], []
    for qid in judged:
        for docid in sorted(run[qid], key=lambda d: (-run[qid][d], d))[:10]:
            pairs.append((queries[qid], corpus[docid]))
            ids.append((qid, docid))
    scores = student.predict(pairs, batch_size=32, activation_fn=torch.nn.Identity(), show_progress_bar=False)
    reranked: dict[str, dict[str, float]] = {}
    for (qid, docid), score in zip(ids, scores.tolist()):
        reranked.setdefault(qid, {})[docid] = score
    return ir_measures.calc_aggregate([ir_measures.nDCG @ 10], {q: qrels[q] for q in judged}, reranked)[ir_measures.nDCG @ 10]


def card_rows(card: str) -> dict[str, list[float]]:
    """The card's "Training Logs" table: ``{row name: values}`` (the trained student's row is named by its steps)."""
    rows = {}
    for line in card.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 3 and re.fullmatch(r"[-0-9.]+", cells[1]):
            rows[cells[0]] = [float(c) for c in cells[1:]]
    return rows


def test_step0_row_reuse_old_folders_curves_and_cards(tmp_path, tiny_model_path, capsys, caplog):
    config = write_config(tmp_path, tiny_model_path, max_steps=2, save_steps=10)
    text = config.read_text(encoding="utf-8").replace("seeds = [0]", "seeds = [0, 1]")
    text = text.replace('[[backbones]]\nname = "tiny"\n', '[[backbones]]\nname = "tiny"\nhead = "mean"\n')
    config.write_text(text + '[eval.curve]\nsuites = ["dl19"]\nevery_pairs = 16\n', encoding="utf-8")
    out = tmp_path / "out"
    assert main(["bench", str(config), "--output", str(out), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "untrained students (the report's step-0 rows)" in plan and plan.count("(to evaluate)") == 2

    assert main(["bench", str(config), "--output", str(out)]) == 0
    capsys.readouterr()
    bench = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    keys = bench["step0"]["main"]["tiny"]
    assert len(keys) == 2  # the mean head is random: one untrained student per seed
    step0 = [json.loads((out / "step0" / key / "metrics.json").read_text(encoding="utf-8")) for key in keys]
    assert [s["settings"]["seed"] for s in step0] == [0, 1]
    assert step0[0]["settings"]["backbone"]["head"] == "mean" and step0[0]["settings"]["backbone"]["max_length"] == 64
    values = [s["suites"]["dl19"]["aggregate"]["nDCG@10"] for s in step0]
    expected = [independent_ndcg(tiny_model_path, seed) for seed in (0, 1)]
    assert values == pytest.approx(expected, abs=1e-4) and values[0] != pytest.approx(values[1], abs=1e-4)
    report = (out / "report" / "table.md").read_text(encoding="utf-8")
    assert f"| student at step 0 | – | {np.mean(expected):.4f} |" in report
    # each cell's learning curve starts at its seed's untrained student
    for cell in finished_cells(out):
        metrics = json.loads((cell / "metrics.json").read_text(encoding="utf-8"))
        first = json.loads((cell / "curve.jsonl").read_text(encoding="utf-8").splitlines()[0])
        assert first["pairs"] == 0
        assert first["suites"]["dl19"]["nDCG@10"] == pytest.approx(values[metrics["cell"]["seed"]], abs=1e-6)

    # the card of a cell: teacher fingerprint, loss arguments, metrics rows equal to their files
    cell = out / "cells" / "main" / "tiny" / "marginmse" / "seed-0"
    card = (cell / "model" / "README.md").read_text(encoding="utf-8")
    metrics = json.loads((cell / "metrics.json").read_text(encoding="utf-8"))
    manifest = json.loads((out / "teacher" / "dl21" / "manifest.json").read_text(encoding="utf-8"))
    (fingerprint, record), = manifest["teachers"].items()
    assert f"st-distill {fingerprint[:12]}" in card and f"weights {record['components']['weights'][:12]}" in card
    assert "MarginMSELoss" in card and '"mini_batch_size": null' in card and "trained with marginmse" in card
    assert "* Size: 16 training samples" in card  # the dataset's rows (data/marginmse/sources.json)
    rows = card_rows(card)
    measures = ("nDCG@10", "RR@10")
    reference = {name: json.loads((out / "eval" / "dl19" / file).read_text()) for name, file in
                 (("first stage", "first_stage.json"), ("teacher", "teacher.json"))}
    assert rows == {
        "first stage": [round(reference["first stage"][m], 4) for m in measures],
        "teacher": [round(reference["teacher"][m], 4) for m in measures],
        "step 0": [round(step0[0]["suites"]["dl19"]["aggregate"][m], 4) for m in measures],
        "2": [round(metrics["suites"]["dl19"]["aggregate"][m], 4) for m in measures],
    }

    # reuse: a second run computes nothing
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "report" not in p.parts and ".locks" not in p.parts
              and p.name not in ("bench.json", "config.toml")}  # the record, rewritten by every run
    caplog.set_level(logging.INFO, logger="st_distill")
    assert main(["bench", str(config), "--output", str(out)]) == 0
    assert "0 cell(s) run, 4 already done" in capsys.readouterr().out
    assert "untrained student" not in caplog.text
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert main(["bench", str(config), "--output", str(out), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("(done)") == 2

    # a results folder made before step-0 rows existed gains them, and no cell runs again
    import shutil

    shutil.rmtree(out / "step0")
    (cell / "model" / "README.md").write_text("---\ntags:\n- st-distill\n---\n# a plain card\n", encoding="utf-8")  # and no card
    bench.pop("step0")
    (out / "bench.json").write_text(json.dumps(bench), encoding="utf-8")
    assert main(["report", str(out)]) == 0
    assert "student at step 0" not in capsys.readouterr().out
    done = {c: (c / "metrics.json").stat().st_mtime_ns for c in finished_cells(out)}
    assert main(["bench", str(config), "--output", str(out)]) == 0
    output = capsys.readouterr().out
    assert "0 cell(s) run, 4 already done" in output and f"| student at step 0 | – | {np.mean(expected):.4f} |" in output
    assert {c: (c / "metrics.json").stat().st_mtime_ns for c in finished_cells(out)} == done
    assert (cell / "model" / "README.md").read_text(encoding="utf-8") == card  # written again, step-0 row included
