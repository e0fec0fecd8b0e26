"""The bench runner end to end on tiny models: a two-cell grid, SIGKILL in a cell and resume, dry runs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from st_distill.cli import main
from st_distill.models import resolve_resource

pytestmark = pytest.mark.slow  # grids end to end: CI's Python legs skip them

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread):
    """Tiny models run faster on one thread than with two fighting other jobs for the cores."""


def write_config(folder: Path, model: str, max_steps: int = 4, save_steps: int = 2, teacher: str = "models") -> Path:
    """Two cells (bce, marginmse) of a tiny backbone on the packaged TREC DL sample; a tiny cross-encoder
    teacher (with ``teacher="train"``, trained first and ensembled with the given one)."""
    path = folder / "bench.toml"
    trained = f'train_backbone = "{model}"\nensemble = "zscore"\n[teacher.train]\nmax_steps = 2\n' if teacher == "train" else ""
    path.write_text(
        f"""
name = "tiny"
seeds = [0]
[[train_sources]]
name = "dl21"
queries = "resource://quickstart/trec-dl-2021/queries.tsv"
corpus = "resource://quickstart/trec-dl-2021/passages.tsv.gz"
qrels = "resource://quickstart/trec-dl-2021/qrels.txt.gz"
run = "resource://quickstart/trec-dl-2021/run.bm25.top20.trec"
depth = 10
relevance_level = 2
max_queries = 20
max_positives = 1
[negatives]
depth = 10
[teacher]
source = "{teacher}"
max_length = 64
{trained}[[teacher.models]]
model = "{model}"
kind = "cross-encoder"
[[backbones]]
name = "tiny"
model = "{model}"
[[objectives]]
name = "bce"
[[objectives]]
name = "marginmse"
[train]
max_steps = {max_steps}
passages_per_batch = 8
learning_rate = 1e-3
warmup_steps = 0
max_length = 64
save_steps = {save_steps}
logging_steps = 1
[eval]
metrics = ["nDCG@10", "RR@10"]
[eval.suites.dl19]
queries = "resource://quickstart/trec-dl-2019/queries.tsv"
corpus = "resource://quickstart/trec-dl-2019/passages.tsv.gz"
qrels = "resource://quickstart/trec-dl-2019/qrels.txt.gz"
run = "resource://quickstart/trec-dl-2019/run.bm25.top20.trec"
depth = 10
relevance_level = 2
""",
        encoding="utf-8",
    )
    return path


def finished_cells(out: Path) -> list[Path]:
    return sorted(p.parent for p in (out / "cells").rglob("DONE"))


def check_cells(out: Path) -> None:
    """Every cell exactly once, complete, with the identity its folder says."""
    cells = finished_cells(out)
    assert [c.relative_to(out / "cells").as_posix() for c in cells] == ["main/tiny/bce/seed-0", "main/tiny/marginmse/seed-0"]
    assert not list((out / "cells").rglob("*.partial")) and not list((out / "cells").rglob("checkpoints"))
    for cell in cells:
        metrics = json.loads((cell / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["cell"]["objective"] == cell.parent.name
        dl19 = metrics["suites"]["dl19"]
        assert set(dl19["aggregate"]) == {"nDCG@10", "RR@10"} and len(dl19["per_query"]["nDCG@10"]) == 43
        # how closely the student follows the teacher's own re-ranking of the suite (eval/dl19/teacher.trec)
        assert dl19["fidelity"]["queries"] == 43 and -1 <= dl19["fidelity"]["spearman"] <= 1
        assert dl19["fidelity"]["kl_divergence"] >= 0 and 0 <= dl19["fidelity"]["top10_overlap"] <= 1
        assert metrics["train"]["steps"] == metrics["settings"]["train"]["max_steps"]
        run_lines = (cell / "runs" / "dl19.trec").read_text(encoding="utf-8").splitlines()
        assert len(run_lines) == 43 * 10
        card = (cell / "model" / "README.md").read_text(encoding="utf-8")
        assert f"trained with {cell.parent.name}" in card and "dl21" in card
        assert any("loss" in json.loads(line) for line in (cell / "training_log.jsonl").read_text().splitlines())


def test_two_cell_grid_runs_end_to_end_and_skips_finished_cells(tmp_path, tiny_model_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="st_distill")
    config = write_config(tmp_path, tiny_model_path, teacher="train")
    out = tmp_path / "out"
    assert main(["bench", str(config), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 cell(s) run" in captured.out
    # issue 18: after the first cell, an estimate of the time left for the rest
    assert "cell main/tiny/bce/seed-0 finished in" in caplog.text and "s left for 1 more cell(s)" in caplog.text
    check_cells(out)
    # the data were built once per objective; the teacher cache holds every scored pair
    assert (out / "data" / "marginmse" / "DONE").is_file() and (out / "teacher" / "model" / "DONE").is_file()
    built = json.loads((out / "data" / "bce" / "sources.json").read_text())["dl21"]
    assert built["rows"] == 2 * built["queries"]  # max_positives = 1: one positive and one negative per query
    manifest = json.loads((out / "teacher" / "dl21" / "manifest.json").read_text())
    assert "trained-teacher" in json.dumps(manifest) and "zscore" in json.dumps(manifest)
    first_stage = json.loads((out / "eval" / "dl19" / "first_stage.json").read_text())
    assert first_stage["nDCG@10"] == pytest.approx(0.5058, abs=1e-4)  # the trec_eval figure of BM25
    report = (out / "report" / "table.md").read_text(encoding="utf-8")
    assert "| tiny | bce |" in report and "| tiny | marginmse |" in report
    before = {p: p.read_bytes() for p in (out / "report").rglob("*") if p.is_file()}
    mtimes = {c: (c / "metrics.json").stat().st_mtime_ns for c in finished_cells(out)}
    assert main(["bench", str(config), "--output", str(out)]) == 0
    assert "0 cell(s) run, 2 already done" in capsys.readouterr().out
    assert {c: (c / "metrics.json").stat().st_mtime_ns for c in finished_cells(out)} == mtimes
    assert {p: p.read_bytes() for p in (out / "report").rglob("*") if p.is_file()} == before
    # a results folder moved elsewhere is still the same run
    moved = tmp_path / "moved" / "out"
    moved.parent.mkdir()
    out.rename(moved)
    assert main(["bench", str(config), "--output", str(moved)]) == 0
    assert "0 cell(s) run, 2 already done" in capsys.readouterr().out
    moved.rename(out)
    # a changed config does not silently reuse cells made with other settings
    config.write_text(config.read_text().replace("learning_rate = 1e-3", "learning_rate = 2e-3"))
    assert main(["bench", str(config), "--output", str(out)]) == 2
    assert "finished with other settings" in capsys.readouterr().err
    # nor data and teacher scores made from other inputs
    config.write_text(config.read_text().replace("learning_rate = 2e-3", "learning_rate = 1e-3").replace('ensemble = "zscore"', 'ensemble = "mean"'))
    assert main(["bench", str(config), "--output", str(out)]) == 2
    assert "made with other teacher settings" in capsys.readouterr().err


def test_sigkill_in_a_cell_then_restart_finishes_every_cell_once(tmp_path, tiny_model_path):
    config = write_config(tmp_path, tiny_model_path, max_steps=20, save_steps=3)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "st_distill.cli", "bench", str(config), "--output", str(out), "--no-report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    work = out / "cells" / "main" / "tiny" / "bce" / "seed-0.partial"
    deadline = time.monotonic() + 120
    try:
        while not list(work.glob("checkpoints/checkpoint-*/trainer_state.json")):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the cell never wrote a checkpoint"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert work.is_dir() and not finished_cells(out)
    assert main(["bench", str(config), "--output", str(out), "--no-report"]) == 0
    check_cells(out)
    resumed = json.loads((out / "cells" / "main" / "tiny" / "bce" / "seed-0" / "metrics.json").read_text())["train"]
    assert resumed["resumed_from"] and resumed["resumed_from"].startswith("checkpoint-")
    # issue 11 item 12: the cell's train_loss is the mean over all its steps, not only those after the resume
    log = (out / "cells" / "main" / "tiny" / "bce" / "seed-0" / "training_log.jsonl").read_text().splitlines()
    losses = {r["step"]: r["loss"] for r in map(json.loads, log) if "loss" in r}  # logging_steps = 1
    assert sorted(losses) == list(range(1, 21))
    assert resumed["train_loss"] == pytest.approx(sum(losses.values()) / 20, abs=1e-3)


def test_dry_runs_print_the_plan_without_training(tmp_path, tiny_model_path, capsys, shared_data):
    config = write_config(tmp_path, tiny_model_path)
    assert main(["bench", str(config), "--output", str(tmp_path / "out"), "--dry-run", "--shard", "1/2"]) == 0
    plan = capsys.readouterr().out
    assert "1 cell(s):" in plan and "main/tiny/marginmse/seed-0: 4 steps x 4 rows x 2 passages = 32 pairs" in plan
    assert not (tmp_path / "out").exists()
    for name, status in (("mini", 0), ("paper", 2)):  # paper's inputs are not in the repository
        assert main(["bench", str(ROOT / "benchmarks" / "configs" / f"{name}.toml"), "--dry-run"]) == status
        assert "estimated training pairs" in capsys.readouterr().out


def test_proxy_phase_selects_the_learning_rate_the_main_phase_trains_with(tmp_path, tiny_model_path):
    config = write_config(tmp_path, tiny_model_path, max_steps=2, save_steps=10)
    config.write_text(
        config.read_text()
        + """
[[phases]]
name = "proxy"
select_on = "dl19"
[phases.sweep]
learning_rate = [1e-2, 1e-6]

[[phases]]
name = "main"
""",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert main(["bench", str(config), "--output", str(out)]) == 0
    selection = json.loads((out / "cells" / "proxy" / "selection.json").read_text(encoding="utf-8"))
    for objective in ("bce", "marginmse"):
        proxy = {}
        for cell in (out / "cells" / "proxy" / "tiny" / objective).iterdir():
            metrics = json.loads((cell / "metrics.json").read_text(encoding="utf-8"))
            proxy[metrics["settings"]["train"]["learning_rate"]] = metrics["suites"]["dl19"]["aggregate"]["nDCG@10"]
        assert sorted(proxy) == [1e-6, 1e-2]
        best = max(proxy, key=lambda lr: (proxy[lr], str(lr)))  # the runner's rule, ties broken by the value's text
        assert selection[objective]["train"] == {"learning_rate": best}
        main_cell = json.loads((out / "cells" / "main" / "tiny" / objective / "seed-0" / "metrics.json").read_text(encoding="utf-8"))
        assert main_cell["settings"]["train"]["learning_rate"] == best


def test_inputs_record_packaged_files_by_name_and_content(tmp_path, monkeypatch):
    """A reinstall moves the packaged resources; inputs.json must not notice (it did: the install path was recorded)."""
    import shutil
    import types

    import st_distill.models
    from st_distill.bench.config import load_config
    from st_distill.bench.plan import inputs_of

    before = inputs_of(load_config())
    assert before["train_sources"][0]["queries"]["resource"] == "resource://quickstart/trec-dl-2021/queries.tsv"
    assert str(ROOT) not in json.dumps(before)  # no install location anywhere in the record
    elsewhere = tmp_path / "site-packages" / "st_distill" / "resources"
    shutil.copytree(ROOT / "st_distill" / "resources", elsewhere)
    monkeypatch.setattr(st_distill.models, "resources", types.SimpleNamespace(files=lambda package: elsewhere))
    config = load_config()
    assert str(config.train_sources[0].queries).startswith(str(elsewhere))  # the config did read the other copy
    assert inputs_of(config) == before
    # a packaged file whose content changed is a different input
    (elsewhere / "quickstart" / "trec-dl-2021" / "queries.tsv").write_text("1\tanother query\n", encoding="utf-8")
    assert inputs_of(load_config()) != before


def test_student_fidelity_against_the_teachers_run():
    from st_distill.bench.phases.evaluate import student_fidelity

    teacher = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"x": 1.0, "y": 0.0}, "q3": {"z": 1.0}}
    same = student_fidelity({"q1": {"a": 13.0, "b": 12.0, "c": 11.0, "extra": 0.0}, "q2": {"x": 5.0, "y": 4.0}}, teacher)
    assert same["queries"] == 2 and same["spearman"] == pytest.approx(1.0) and same["kl_divergence"] == pytest.approx(0.0, abs=1e-9)
    reversed_ = student_fidelity({"q1": {"a": 1.0, "b": 2.0, "c": 3.0}, "q2": {"x": 0.0, "y": 1.0}}, teacher)
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["kendall"] == pytest.approx(-1.0)


def test_normalisation_reaches_the_built_data_and_a_change_is_not_reused(tmp_path, tiny_model_path):
    from st_distill.bench.config import load_config
    from st_distill.bench.runner import Runner
    from st_distill.data.builder import load_built_dataset

    config = write_config(tmp_path, tiny_model_path)
    out = tmp_path / "out"
    runner = Runner(load_config(config, output_dir=out))
    runner.write_record()
    raw = runner.dataset("marginmse")
    text = config.read_text().replace('name = "marginmse"', 'name = "marginmse"\nnormalize = "zscore"')
    config.write_text(text)
    with pytest.raises(ValueError, match="built with other settings"):
        Runner(load_config(config, output_dir=out)).dataset("marginmse")
    zscored = Runner(load_config(config, output_dir=tmp_path / "out2")).dataset("marginmse")
    assert json.loads((tmp_path / "out2" / "data" / "marginmse" / "report.json").read_text())["normalize"] == "zscore"
    assert json.loads((tmp_path / "out2" / "data" / "marginmse" / "settings.json").read_text())["normalize"] == "zscore"
    assert raw["query"] == zscored["query"] and raw["scores"] != zscored["scores"]
    assert load_built_dataset(tmp_path / "out2" / "data" / "marginmse").num_rows == raw.num_rows


def test_cell_train_loss_covers_the_steps_before_a_resume():
    from st_distill.bench.training import cell_train_loss

    per_step = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    # logging every 2 steps, a checkpoint at step 4, the trainer resumed there: its own mean is of steps 5-8
    history = [{"step": 2, "loss": 0.85}, {"step": 4, "loss": 0.65}, {"step": 6, "loss": 0.45}, {"step": 8, "loss": 0.25}]
    assert cell_train_loss(history, sum(per_step[4:]) / 4, 4, 8) == pytest.approx(sum(per_step) / 8)
    assert cell_train_loss(history, 0.55, 0, 8) == 0.55  # not resumed: the trainer's figure
    # a checkpoint at step 3 cuts a window: step 3 counts at the last logged mean (0.85)
    assert cell_train_loss(history[:1], sum(per_step[3:]) / 5, 3, 8) == pytest.approx((0.85 * 3 + sum(per_step[3:])) / 8)


def test_cosine_head_trained_layers_and_learning_curves_in_the_grid(tmp_path, tiny_model_path):
    """head, train_layers and [eval.curve] reach the cells: the saved students reload (load_student),
    every cell has its curve, the report draws it, and the settings record the backbone options."""
    config = write_config(tmp_path, tiny_model_path, max_steps=4, save_steps=10)
    text = config.read_text(encoding="utf-8")
    text = text.replace('[[backbones]]\nname = "tiny"\n', '[[backbones]]\nname = "tiny"\nhead = "cosine"\ntrain_layers = [1]\n')
    text += '[eval.curve]\nsuites = ["dl19"]\nevery_pairs = 16\n'
    config.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["bench", str(config), "--output", str(out)]) == 0
    check_cells(out)
    for cell in finished_cells(out):
        metrics = json.loads((cell / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["settings"]["backbone"]["head"] == "cosine" and metrics["settings"]["backbone"]["train_layers"] == [1]
        points = [json.loads(line) for line in (cell / "curve.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [p["pairs"] for p in points] == [0, 16, 32]  # 4 steps x 8 pairs, every 16
        # the last point is the saved model's own evaluation
        assert points[-1]["suites"]["dl19"]["nDCG@10"] == pytest.approx(metrics["suites"]["dl19"]["aggregate"]["nDCG@10"], abs=1e-6)
        assert json.loads((cell / "model" / "modules.json").read_text())[1]["type"] == "st_distill.models.heads.SegmentCosine"
    assert (out / "report" / "curves" / "dl19.png").is_file()
    # the cosine head has no random weight: one untrained student, calibrated on the baseline objective's pairs,
    # the level the bce cell's curve starts from
    (key,) = json.loads((out / "bench.json").read_text())["step0"]["main"]["tiny"]
    step0 = json.loads((out / "step0" / key / "metrics.json").read_text())
    assert step0["settings"]["seed"] is None and step0["settings"]["calibration"]["objective"] == "bce"
    first = json.loads((out / "cells" / "main" / "tiny" / "bce" / "seed-0" / "curve.jsonl").read_text().splitlines()[0])
    assert first["suites"]["dl19"]["nDCG@10"] == pytest.approx(step0["suites"]["dl19"]["aggregate"]["nDCG@10"], abs=1e-6)


def test_sparse_labels_make_the_other_relevant_candidates_negatives(tmp_path, tiny_model_path):
    """``labels = "sparse"``: one positive per query (the library's draw), the other relevant candidates
    become negatives (as unjudged MS MARCO passages), and the change is not reused from an older folder."""
    from st_distill.bench.config import load_config
    from st_distill.bench.runner import Runner
    from st_distill.data.formats import read_qrels
    from st_distill.data.negatives import sparse_labels

    config = write_config(tmp_path, tiny_model_path)
    out = tmp_path / "out"
    runner = Runner(load_config(config, output_dir=out))
    runner.write_record()
    every = runner.dataset("bce")
    config.write_text(config.read_text().replace("max_positives = 1\n", 'max_positives = 1\nlabels = "sparse"\n'))
    with pytest.raises(ValueError, match="train_sources"):
        Runner(load_config(config, output_dir=out)).check_inputs()
    sparse_runner = Runner(load_config(config, output_dir=tmp_path / "out2"))
    sparse = sparse_runner.dataset("bce")

    qrels = read_qrels(resolve_resource("resource://quickstart/trec-dl-2021/qrels.txt.gz"))
    source = sparse_runner.sources()["dl21"]
    drawn = sparse_labels({q: qrels[q] for q in source.queries}, 2)
    # rows hold texts (and the collection has duplicate passages): compare (query, passage) texts
    def pairs(judgements):
        return {(source.queries[q], source.corpus[d]) for q, docs in judgements.items() if q in source.queries for d in docs}

    positives = pairs(drawn)
    relevant = pairs({q: [d for d, grade in grades.items() if grade >= 2 and d in source.corpus] for q, grades in qrels.items()})
    assert {(r["query"], r["document"]) for r in sparse if r["label"] == 1.0} == positives
    relevant_negatives = {(r["query"], r["document"]) for r in sparse if r["label"] == 0.0} & relevant
    assert relevant_negatives and not relevant_negatives & positives
    assert not {(r["query"], r["document"]) for r in every if r["label"] == 0.0} & relevant


def test_heldout_check_agrees_with_the_bench(tmp_path, tiny_model_path, capsys):
    """benchmarks/heldout_check.py (stdlib readers, CrossEncoder.predict, pytrec_eval) gives every cell
    the nDCG@10 the bench computed with its own readers, scoring and ir_measures."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("heldout_check", Path(__file__).parents[1] / "benchmarks" / "heldout_check.py")
    heldout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heldout)
    config = write_config(tmp_path, tiny_model_path, max_steps=2, save_steps=10)
    out = tmp_path / "run"
    assert main(["bench", str(config), "--output", str(out)]) == 0
    data = resolve_resource("resource://quickstart/trec-dl-2019")
    assert heldout.main([str(out), "--data", str(data), "--depth", "10", "--suite", "dl19", "--json", str(tmp_path / "h.json")]) == 0
    result = json.loads((tmp_path / "h.json").read_text(encoding="utf-8"))
    assert set(result["bench"]) == {"main/tiny/bce/seed-0", "main/tiny/marginmse/seed-0"}
    for cell, value in result["bench"].items():  # a random tiny model has near-ties: batches padded
        assert result["ndcg@10"][cell] == pytest.approx(value, abs=2e-3)  # otherwise may swap a few
    first = json.loads((out / "eval" / "dl19" / "first_stage.json").read_text(encoding="utf-8"))["nDCG@10"]
    assert result["ndcg@10"]["first stage"] == pytest.approx(first, abs=1e-9)
    assert "above bce" in capsys.readouterr().out


def test_denoised_negatives_leave_out_what_the_teacher_scores_near_the_positive(tmp_path, tiny_model_path):
    """``objectives[].denoise``: no negative the teacher scores within the margin of its query's positive
    (standard deviations over the source), the others kept; recorded in the data's and the cell's settings."""
    import numpy as np

    from st_distill.bench.config import ConfigError, load_config
    from st_distill.bench.plan import cell_settings, plan_cells
    from st_distill.bench.runner import Runner
    from st_distill.data.formats import top_k
    from st_distill.data.normalize import table_run

    config = write_config(tmp_path, tiny_model_path)
    plain = Runner(load_config(config, output_dir=tmp_path / "plain"))
    plain.write_record()
    before = plain.dataset("bce")
    config.write_text(config.read_text().replace('name = "bce"\n', 'name = "bce"\ndenoise = 0.25\n'))
    loaded = load_config(config, output_dir=tmp_path / "out")
    runner = Runner(loaded)
    runner.write_record()
    denoised = runner.dataset("bce")
    teacher = table_run(runner._teacher_scores["dl21"].table())
    source = runner.sources()["dl21"]
    values = np.array([s for docs in teacher.values() for s in docs.values()])
    z = {q: {d: (s - values.mean()) / values.std() for d, s in docs.items()} for q, docs in teacher.items()}
    text_of = {}
    window = top_k(source.run, 10)  # [negatives] depth
    for qid, docs in z.items():
        docs = {d: v for d, v in docs.items() if d in window.get(qid, {})}
        positives = [d for d in docs if source.qrels.get(qid, {}).get(d, 0) >= 2]  # the judged-relevant candidates
        if positives:
            bar = max(docs[d] for d in positives) - 0.25
            for d, value in docs.items():
                text_of.setdefault((source.queries[qid], source.corpus.get(d)), []).append(d in positives or value < bar)
    negatives = [(r["query"], r["document"]) for r in denoised if r["label"] == 0.0]
    assert negatives and all(all(text_of.get(pair, [True])) or any(text_of[pair]) for pair in negatives)
    dropped = {pair for pair, kept in text_of.items() if not any(kept)}
    old_negatives = {(r["query"], r["document"]) for r in before if r["label"] == 0.0}
    assert dropped & old_negatives and not dropped & set(negatives)  # some were negatives before, none is now
    assert json.loads((tmp_path / "out" / "data" / "bce" / "settings.json").read_text())["denoise"] == 0.25
    assert "denoise" not in json.loads((tmp_path / "plain" / "data" / "bce" / "settings.json").read_text())
    cells = plan_cells(loaded)
    records = {c.objective: cell_settings(loaded, c).record() for c in cells}
    assert records["bce"]["denoise"] == 0.25 and "denoise" not in records["marginmse"]
    for text, key in ((config.read_text().replace("denoise = 0.25", "denoise = -1.0"), "denoise"),
                      (config.read_text().replace('source = "models"', 'source = "none"').replace('name = "marginmse"', 'name = "infonce"'), "denoise")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=key):
            load_config(bad, output_dir=tmp_path / "bad")
