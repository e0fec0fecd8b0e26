"""Issue 20 (reliability) and issue 18 (first hour) of the bench: what identifies a cell, resuming,
locks, validation before any work, file names in errors, the ETA and the report's footnote."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from st_distill.bench.config import ConfigError, load_config
from st_distill.cli import main
from st_distill.io import write_json

from test_bench_runner import finished_cells, write_config
from test_report import make_results


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread):
    """Tiny models run faster on one thread than with two fighting other jobs for the cores."""


# -------------------------------------------------------------------------------- locks (items 7, 13)


def test_a_symlinked_lock_file_is_refused_and_its_target_survives(tmp_path):
    from st_distill.bench.workspace import Distributed

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me", encoding="utf-8")
    results = tmp_path / "results"
    (results / ".locks").mkdir(parents=True)
    (results / ".locks" / "prepare").symlink_to(outside)
    with pytest.raises(OSError, match=r"cannot lock .*prepare.*symbolic link"):
        with Distributed().main_locked(results / ".locks" / "prepare"):
            pass
    assert outside.read_text(encoding="utf-8") == "keep me"


def test_the_beir_download_lock_refuses_a_symlink(tmp_path, monkeypatch):
    from st_distill.data import download

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me", encoding="utf-8")
    monkeypatch.setattr(download, "cache_root", lambda: tmp_path / "cache")
    folder = download.beir_cache_folder("scifact")
    folder.parent.mkdir(parents=True)
    (folder.parent / ".scifact.lock").symlink_to(outside)
    with pytest.raises(OSError, match="cannot lock"):
        download.fetch_beir("scifact")
    assert outside.read_text(encoding="utf-8") == "keep me"


def test_a_claimed_cell_names_its_holder_and_is_free_again_after(tmp_path):
    from st_distill.bench.workspace import claim
    from st_distill.io import file_lock

    path = tmp_path / ".locks" / "cells" / "main" / "tiny" / "bce" / "seed-0.lock"
    with claim(path) as holder:
        assert holder is None
        with claim(path) as other:
            assert other.startswith(f"pid {os.getpid()} on host ")
    with claim(path) as holder:
        assert holder is None
    with file_lock(tmp_path / "plain.lock", blocking=False) as held:
        assert held


# -------------------------------------------------------------------------------- fingerprints (item 4)


def test_backbone_fingerprint_follows_the_weights_not_the_readme(tmp_path, tiny_model_path):
    import torch
    from safetensors.torch import load_file, save_file

    from st_distill.models.fingerprint import spec_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_path, copy)
    before = spec_fingerprint(str(copy))
    assert before == spec_fingerprint(tiny_model_path) and before.startswith("sha256:")
    (copy / "README.md").write_text("a model card", encoding="utf-8")
    assert spec_fingerprint(str(copy)) == before
    weights = load_file(copy / "model.safetensors")
    save_file({k: v / 2 if v.is_floating_point() else v for k, v in weights.items()}, copy / "model.safetensors",
              metadata={"format": "pt"})
    assert spec_fingerprint(str(copy)) != before
    assert spec_fingerprint("org/not-cached-model-xyz") == "hub:org/not-cached-model-xyz"
    assert spec_fingerprint(str(tmp_path / "absent")) == f"missing:{tmp_path / 'absent'}"
    assert torch.equal(load_file(copy / "model.safetensors")["classifier.bias"], weights["classifier.bias"] / 2)


# -------------------------------------------------------------------------------- one grid, many changes


def _grid_config(folder: Path, backbone: str, teacher: str) -> Path:
    """test_bench_runner's two-cell grid with ``backbone`` as the student, ``teacher`` as the teacher,
    and nDCG@10 alone evaluated."""
    path = write_config(folder, teacher)
    text = path.read_text(encoding="utf-8").replace('metrics = ["nDCG@10", "RR@10"]', 'metrics = ["nDCG@10"]')
    text = text.replace(f'[[backbones]]\nname = "tiny"\nmodel = "{teacher}"', f'[[backbones]]\nname = "tiny"\nmodel = "{backbone}"')
    text += '[report]\nmetrics = ["nDCG@10"]\n'
    path.write_text(text, encoding="utf-8")
    return path


def test_what_identifies_a_cell_and_how_runs_share_and_resume_them(tmp_path, tiny_model_path, capsys, caplog):
    from st_distill.bench.workspace import claim

    caplog.set_level(logging.INFO, logger="st_distill")

    backbone = tmp_path / "backbone"
    shutil.copytree(tiny_model_path, backbone)
    config = _grid_config(tmp_path, str(backbone), tiny_model_path)
    out = tmp_path / "out"
    cells = out / "cells" / "main" / "tiny"

    # item 13: another run holds the bce cell: this one skips it, says who holds it, leaves no .partial
    with claim(out / ".locks" / "cells" / "main" / "tiny" / "bce" / "seed-0.lock"):
        assert main(["bench", str(config), "--output", str(out), "--no-report"]) == 0
    captured = capsys.readouterr()
    assert "1 cell(s) run, 0 already done, 1 skipped (held by other runs)" in captured.out
    assert f"cell main/tiny/bce/seed-0: skipped, pid {os.getpid()} on host" in caplog.text
    caplog.clear()
    assert [c.name for c in cells.iterdir()] == ["marginmse"]
    # issue 18: after a cell, an estimate of the time left (none after the last)
    assert main(["bench", str(config), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 cell(s) run, 1 already done" in captured.out
    assert "finished in" in caplog.text and "left for" not in caplog.text  # one cell to do: nothing left after it

    # issue 18: one seed: the footnote says what is shown, not "± standard deviation"
    table = (out / "report" / "table.md").read_text(encoding="utf-8")
    assert "One seed per cell: the value of that seed." in table and "standard deviation" not in table

    # item 2 (eval.metrics): RR@10 added: computed from the saved runs, not an all-"–" column, no cell re-run
    config.write_text(config.read_text().replace('metrics = ["nDCG@10"]\n[eval', 'metrics = ["nDCG@10", "RR@10"]\n[eval')
                      .replace('[report]\nmetrics = ["nDCG@10"]', '[report]\nmetrics = ["nDCG@10", "RR@10"]'))
    assert main(["bench", str(config), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "0 cell(s) run, 2 already done" in captured.out
    import ir_measures

    qrels = list(ir_measures.read_trec_qrels(str(resource("quickstart/trec-dl-2019/qrels.txt.gz"))))
    for cell in finished_cells(out):
        metrics = _read(cell / "metrics.json")["suites"]["dl19"]
        run = list(ir_measures.read_trec_run(str(cell / "runs" / "dl19.trec")))
        expected = ir_measures.calc_aggregate([ir_measures.parse_measure("RR(rel=2)@10")], qrels, run)
        assert metrics["aggregate"]["RR@10"] == pytest.approx(list(expected.values())[0])
        assert len(metrics["per_query"]["RR@10"]) == 43
    table = (out / "report" / "table.md").read_text(encoding="utf-8")
    header = next(line for line in table.splitlines() if line.startswith("| backbone"))
    bce = next(line for line in table.splitlines() if line.startswith("| tiny | bce |"))
    assert "dl19 RR@10" in header and dict(zip(*([c.strip() for c in line.strip("|").split("|")] for line in (header, bce))))["dl19 RR@10"] != "–"

    # item 1: a partial cell started under other settings is discarded, not finished as if it were the new one
    bce = cells / "bce" / "seed-0"
    partial = bce.with_name("seed-0.partial")
    os.replace(bce, partial)
    (partial / "DONE").unlink()
    record = _read(partial / "cell.json")
    record["settings"]["train"]["learning_rate"] = 5e-4
    write_json(partial / "cell.json", record)
    write_json(partial / "train.json", {**_read(partial / "train.json"), "steps": 999})
    (partial / "TRAINED").touch()
    assert main(["bench", str(config), "--output", str(out), "--no-report"]) == 0
    captured = capsys.readouterr()
    assert "1 cell(s) run, 1 already done" in captured.out
    assert "discarding" in caplog.text and "other train settings" in caplog.text
    metrics = _read(bce / "metrics.json")
    assert metrics["train"]["steps"] == 4 and metrics["settings"]["train"]["learning_rate"] == 1e-3
    assert not partial.exists()

    # item 2 (normalize): a changed normalisation does not reuse cells trained on raw scores
    recorded = (out / "config.toml").read_bytes()
    changed = config.read_text().replace('name = "marginmse"', 'name = "marginmse"\nnormalize = "zscore"')
    config.write_text(changed)
    assert main(["bench", str(config), "--output", str(out), "--no-report"]) == 2
    assert "built with other settings" in capsys.readouterr().err
    assert (out / "config.toml").read_bytes() == recorded
    config.write_text(changed.replace('\nnormalize = "zscore"', ""))

    # item 4: new weights behind the backbone's path do not reuse its cells
    from safetensors.torch import load_file, save_file

    weights = load_file(backbone / "model.safetensors")
    save_file({k: v / 2 if v.is_floating_point() else v for k, v in weights.items()}, backbone / "model.safetensors",
              metadata={"format": "pt"})
    assert main(["bench", str(config), "--output", str(out), "--no-report"]) == 2
    assert "finished with other settings than the config's now (backbone)" in capsys.readouterr().err
    save_file(weights, backbone / "model.safetensors", metadata={"format": "pt"})
    assert main(["bench", str(config), "--output", str(out), "--no-report"]) == 0
    assert "0 cell(s) run, 2 already done" in capsys.readouterr().out

    # item 17: a corrupt metrics.json or inputs.json is named
    (cells / "bce" / "seed-0" / "metrics.json").write_text('{"settings": {"x": "unterminated', encoding="utf-8")
    assert main(["bench", str(config), "--output", str(out), "--no-report"]) == 2
    assert f"{cells / 'bce' / 'seed-0' / 'metrics.json'}: not valid JSON" in capsys.readouterr().err
    (out / "inputs.json").write_text("{", encoding="utf-8")
    assert main(["bench", str(config), "--output", str(out), "--no-report"]) == 2
    assert f"{out / 'inputs.json'}: not valid JSON" in capsys.readouterr().err


def _read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def resource(name: str) -> Path:
    from st_distill.models import resolve_resource

    return resolve_resource(f"resource://{name}")


def test_cells_from_before_fingerprints_are_still_reused(tmp_path, tiny_model_path, capsys, caplog):
    """A results folder made before the cell settings held the backbone's fingerprint, ``data`` and
    ``normalize`` is accepted (with a warning) while the rest of the settings match."""
    from test_bench_config import GOOD_OBJECTIVES, finished_grid, write_config as config_file

    path = config_file(tmp_path, GOOD_OBJECTIVES)
    out = tmp_path / "out"
    finished_grid(load_config(path, output_dir=out), out)
    for metrics in (out / "cells").rglob("metrics.json"):
        settings = _read(metrics)["settings"]
        del settings["backbone"]["fingerprint"], settings["data"], settings["normalize"]
        write_json(metrics, {"settings": settings})
    assert main(["bench", str(path), "--output", str(out), "--no-report"]) == 0
    captured = capsys.readouterr()
    assert "0 cell(s) run, 4 already done" in captured.out and "recorded no fingerprint of their backbone" in caplog.text


# -------------------------------------------------------------------------------- validation before work (14, 18)


def _tiny_config(tmp_path: Path, model: str, extra: str = "", replace: tuple[str, str] = ("", "")) -> Path:
    path = write_config(tmp_path, model)
    text = path.read_text(encoding="utf-8")
    if replace[0]:
        assert replace[0] in text
        text = text.replace(*replace)
    path.write_text(text + extra, encoding="utf-8")
    return path


def test_seeds_and_report_metrics_are_checked_with_their_key_path(tmp_path, tiny_model_path):
    path = _tiny_config(tmp_path, tiny_model_path, replace=("seeds = [0]", "seeds = [4294967296]"))
    with pytest.raises(ConfigError, match=r"seeds\[0\]: must be < 4294967296, got 4294967296"):
        load_config(path)
    path = _tiny_config(tmp_path, tiny_model_path, extra='[report]\nmetrics = ["nDCG@10", "AP"]\n')
    with pytest.raises(ConfigError, match=r"report\.metrics\[1\]: 'AP' is not evaluated: add it to eval\.metrics"):
        load_config(path)


def test_a_batch_smaller_than_a_row_is_said_with_its_key_path(tmp_path, tiny_model_path, capsys, caplog):
    path = _tiny_config(tmp_path, tiny_model_path, replace=("passages_per_batch = 8", "passages_per_batch = 1"))
    assert main(["bench", str(path), "--output", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "marginmse/seed-0: 4 steps x 1 row x 2 passages = 8 pairs" in capsys.readouterr().out
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "passages_per_batch" in r.getMessage()]
    assert len(warnings) == 1  # once, for marginmse; bce's rows are one passage
    assert "train.passages_per_batch: 1 is less than the 2 passages of one marginmse row" in warnings[0]
    assert "each batch takes a whole row of 2 passages" in warnings[0]


def test_a_suite_without_a_judged_query_is_refused_before_any_work(tmp_path, tiny_model_path, capsys):
    run = tmp_path / "other.trec"
    run.write_text("nope Q0 d1 1 1.0 x\nnope Q0 d2 2 0.5 x\n", encoding="utf-8")
    path = _tiny_config(tmp_path, tiny_model_path, replace=('run = "resource://quickstart/trec-dl-2019/run.bm25.top20.trec"', f'run = "{run}"'))
    out = tmp_path / "out"
    assert main(["bench", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "eval.suites.dl19.run: no query of" in err and "nothing to evaluate" in err
    assert not out.exists()


# -------------------------------------------------------------------------------- file names in errors (17)


def test_a_write_over_the_file_size_limit_names_the_file(tmp_path, tiny_model_path):
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        from st_distill.io import write_json
        from st_distill.training import save_student
        from st_distill.models import load_cross_encoder
        model = load_cross_encoder({tiny_model_path!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        for call in (lambda: write_json(Path({str(tmp_path / 'big.json')!r}), ["x" * 100] * 1000),
                     lambda: save_student(model, Path({str(tmp_path / 'model')!r}))):
            try:
                call()
            except OSError as exc:
                print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout + done.stderr
    assert "File too large" in lines[0] and str(tmp_path / "big.json") in lines[0]
    assert str(tmp_path / "model") in lines[1]
    assert not (tmp_path / "big.json").exists()


def test_read_json_names_the_corrupt_file(tmp_path):
    from st_distill.io import read_json

    path = tmp_path / "metrics.json"
    path.write_text('{"a": "unterminated', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path}: not valid JSON \(Unterminated string"):
        read_json(path)


# -------------------------------------------------------------------------------- the report's footnote (18)


@pytest.mark.parametrize(
    ("seeds", "footnote"),
    [
        ({"bce": [0], "hinge": [0]}, "One seed per cell: the value of that seed."),
        ({"bce": [0, 1], "hinge": [0, 1]}, "Mean over seeds ± standard deviation across seeds."),
        ({"bce": [0, 1], "hinge": [0]}, "a value without ±: the one seed of that cell."),
    ],
)
def test_the_footnote_says_what_the_values_are(tmp_path, seeds, footnote):
    from st_distill.bench.report import write_report

    make_results(tmp_path, {(o, s): [0.5 + 0.1 * s, 0.4, 0.3] for o, ss in seeds.items() for s in ss})
    table = write_report(tmp_path)["markdown"].read_text(encoding="utf-8")
    assert footnote in table
    shown = "±" in table.split("| tiny | bce |")[1].splitlines()[0]
    assert shown == (len(seeds["bce"]) > 1)
