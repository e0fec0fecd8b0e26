"""st_distill.training used from a plain script: train_model's precision, logging, argument checks and
non-finite stops, save_student's permissions, and the README's "Train a student from a script" example."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import stat
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

from st_distill.losses import InfoNCELoss
from st_distill.models import precision
from st_distill.objectives import get_objective
from st_distill.training import StopOnNonFinite, fast_forward, load_student, make_student, save_student, train_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")

README = Path(__file__).resolve().parents[1] / "README.md"

PAIRS = Dataset.from_dict({
    "query": ["what do pandas eat", "how tall is the tower", "who wrote hamlet", "capital of france"] * 2,
    "document": ["Pandas eat bamboo.", "It is 330 metres tall.", "Shakespeare wrote it in 1600.", "Paris is."] * 2,
    "label": [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0],
})
LISTS = Dataset.from_dict({
    "query": ["what do pandas eat", "how tall is the tower", "who wrote hamlet", "capital of france"],
    "docs": [["Pandas eat bamboo.", "Pandas are bears.", "A panda is black and white with a long history."],
             ["It is 330 metres tall.", "Built in 1889.", "Paris has many towers and this one is made of iron."],
             ["Shakespeare wrote it.", "A Danish prince.", "Hamlet is a tragedy written around 1600 in London."],
             ["Paris is.", "Lyon is large.", "France has many cities, its capital being the largest."]],
    "scores": [[3.0, 1.0, -1.0], [2.0, 0.5, 0.0], [4.0, 1.0, 2.0], [1.0, -2.0, 0.5]],
})
ARGS = {"max_steps": 3, "learning_rate": 1e-4, "warmup_steps": 0, "logging_steps": 1, "save_steps": 100}


def _old_bf16_path(model, loss, dataset, tmp_path):
    """The mechanism train_model used before: the trainer in float32, bfloat16 autocast from fast_forward."""
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / "old"), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-4, warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, seed=0, data_seed=0, save_strategy="no", logging_steps=1,
        report_to="none", disable_tqdm=True, dataloader_drop_last=False, dataloader_pin_memory=False, use_cpu=True,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    with fast_forward(model, bf16=True, tokens_per_chunk=None):
        trainer.train()
    return [r["loss"] for r in trainer.state.log_history if "loss" in r]


@pytest.mark.parametrize(("objective", "head", "dataset"), [("bce", "cls", PAIRS), ("kldistill", "mean", LISTS)])
def test_bf16_through_the_trainers_argument_gives_the_old_numbers(tiny_model_path, tmp_path, monkeypatch, objective, head, dataset):
    """train_model's bfloat16 (the trainer's bf16 argument, the score layer kept float32) trains to the very
    same weights as the former fast_forward autocast, also through the gradient cache (kldistill,
    mini-batches of 4 pairs); afterwards the model's forward and fp32 selection are its own again."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)  # bfloat16 autocast runs (emulated) on any CPU
    kwargs = {"mini_batch_size": 4} if objective == "kldistill" else {}
    old = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head=head)
    old_losses = _old_bf16_path(old, get_objective(objective).loss(old, **kwargs), dataset, tmp_path)
    new = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head=head)
    train_model(new, get_objective(objective).loss(new, **kwargs), dataset, {**ARGS, "bf16": True}, seed=0, batch_rows=2,
                checkpoints=tmp_path / "new", log_path=tmp_path / "log.jsonl", fast_dropout=False)  # torch's dropout stream, as before
    new_losses = [r["loss"] for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert new_losses == old_losses
    fp32 = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head=head)
    summary = train_model(fp32, get_objective(objective).loss(fp32, **kwargs), dataset, ARGS, seed=0, batch_rows=2, chunked=False)
    assert summary["train_loss"] != pytest.approx(sum(new_losses) / len(new_losses), abs=0, rel=1e-7)  # bfloat16 did run
    for (name, a), (_, b) in zip(old.state_dict().items(), new.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert "forward" not in vars(new) and "_original_forward" not in vars(new)  # accelerate's autocast wrapper is gone
    assert new.keep_in_fp32_modules == []
    features = new.preprocess([("a query", "a document")])
    with torch.no_grad():
        assert new(dict(features))["scores"].dtype == torch.float32  # no autocast left behind


def test_native_bf16_is_probed_once_per_device(monkeypatch):
    monkeypatch.undo()  # the real probe, not the conftest's float32 default
    calls = []
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: calls.append(1) or False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: calls.append(1) or False, raising=False)
    precision._probe_bf16.cache_clear()
    try:
        assert [precision.native_bf16("cpu") for _ in range(3)] == [False] * 3
        assert precision.autocast_dtype("cpu") is None
        assert len(calls) == 2  # both probes, once
    finally:
        precision._probe_bf16.cache_clear()


def test_step_logs_go_through_logging_not_print(tiny_model_path, tmp_path, caplog, capsys):
    """One INFO line per logging step (step n/N, loss, grad_norm, lr), none of the trainer's raw dicts on stdout."""
    model = make_student(tiny_model_path, seed=0, max_length=32, device="cpu")
    with caplog.at_level(logging.INFO, logger="st_distill.training.trainer"):
        train_model(model, get_objective("bce").loss(model), PAIRS, ARGS, batch_rows=2, checkpoints=tmp_path / "c")
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [s.split(":")[0] for s in steps] == ["step 1/3", "step 2/3", "step 3/3"]
    assert all(re.fullmatch(r"step \d/3: loss [-\d.e]+, grad_norm [-\d.e]+, lr [-\d.e]+", s) for s in steps), steps
    assert any(r.getMessage().startswith("training done: ") and "train_loss" in r.getMessage() for r in caplog.records)
    assert "{'loss'" not in capsys.readouterr().out


def test_on_a_terminal_the_bar_stays_without_printing_the_dicts(tiny_model_path, tmp_path, monkeypatch):
    from transformers import ProgressCallback

    from st_distill.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "progress_enabled", lambda log: True)
    seen = []
    monkeypatch.setattr(CrossEncoderTrainer, "train", lambda self, **kwargs: seen.append(list(self.callback_handler.callbacks)) or _done(self))
    model = make_student(tiny_model_path, seed=0, max_length=32, device="cpu")
    train_model(model, get_objective("bce").loss(model), PAIRS, ARGS, batch_rows=2, checkpoints=tmp_path / "c")
    bars = [c for c in seen[0] if isinstance(c, ProgressCallback)]
    assert len(bars) == 1 and type(bars[0]).on_log is not ProgressCallback.on_log  # a bar that prints no dicts
    assert any(isinstance(c, trainer_module.StepLog) for c in seen[0])


def _done(trainer):
    from transformers.trainer_utils import TrainOutput

    return TrainOutput(0, 0.0, {})


def test_a_zero_temperature_stops_at_the_first_step(tiny_model_path, tmp_path):
    """InfoNCE at temperature 0 gives a NaN loss; it used to train on with grad_norm NaN and log loss 0.0."""
    model = make_student(tiny_model_path, seed=0, max_length=32, device="cpu")
    ntuple = Dataset.from_dict({"query": ["a", "b"], "positive": ["p", "q"], "negative_1": ["n", "m"]})
    with pytest.raises(FloatingPointError, match=r"InfoNCELoss: the loss is not finite .*'temperature': 0\.0"):
        train_model(model, InfoNCELoss(model, temperature=0.0), ntuple, ARGS, batch_rows=2, checkpoints=tmp_path / "c")


def test_a_non_finite_logged_loss_stops_training():
    """The library's own losses (BCE) are checked at each logging step."""
    class State:
        global_step = 7

    StopOnNonFinite().on_log(None, State(), None, {"loss": 0.5, "grad_norm": 1.0})
    with pytest.raises(FloatingPointError, match=r"step 7: loss nan"):
        StopOnNonFinite().on_log(None, State(), None, {"loss": math.nan, "grad_norm": 1.0})
    with pytest.raises(FloatingPointError, match=r"grad_norm inf"):
        StopOnNonFinite().on_log(None, State(), None, {"loss": 0.5, "grad_norm": math.inf})


def test_train_model_refuses_bad_arguments_before_training(tiny_model_path, tmp_path):
    model = make_student(tiny_model_path, seed=0, max_length=32, device="cpu")
    loss = get_objective("bce").loss(model)
    with pytest.raises(ValueError, match=r"unknown training argument\(s\) \['max_seq_length'\]"):
        train_model(model, loss, PAIRS, {**ARGS, "max_seq_length": 32}, checkpoints=tmp_path)
    with pytest.raises(ValueError, match="max_steps: missing"):
        train_model(model, loss, PAIRS, {"learning_rate": 1e-4}, checkpoints=tmp_path)
    with pytest.raises(ValueError, match="max_length: 64 differs from the model's max_seq_length 32"):
        train_model(model, loss, PAIRS, {**ARGS, "max_length": 64}, checkpoints=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before the trainer wrote anything


def test_max_length_among_training_arguments_is_deprecated_where_it_is_the_models(tiny_model):
    """The tokens of a pair are the model's ``max_seq_length``; the same value among ``args`` still reads."""
    from st_distill.training.trainer import TRAIN_DEFAULTS, _train_args

    tiny_model.max_seq_length = 32
    with pytest.warns(DeprecationWarning, match=r"args\['max_length'\] is deprecated"):
        args = _train_args(tiny_model, {**ARGS, "max_length": 32})
    assert args == {**TRAIN_DEFAULTS, **ARGS}


def test_save_student_writes_the_weights_with_the_umasks_permissions(tiny_model_path, tmp_path):
    """safetensors creates the weights 0600 whatever the umask; a saved student's files all get 0666 less the umask."""
    model = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head="mean")
    previous = os.umask(0o022)
    try:
        save_student(model, tmp_path / "student")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "student").rglob("*") if p.is_file()}
    assert modes["model.safetensors"] == 0o644
    assert set(modes.values()) == {0o644}, modes


def test_readme_train_a_student_from_a_script_runs(tmp_path, monkeypatch, caplog):
    """The README's example, as written: the packaged all-MiniLM-L6-v2 cut to two layers, four steps."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Train a student from a script\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert section, "README.md has no '## Train a student from a script' section"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with caplog.at_level(logging.INFO):
        exec(compile(blocks[0], f"{README}:Train a student from a script", "exec"), namespace)
    assert namespace["summary"]["steps"] == 4 and math.isfinite(namespace["summary"]["train_loss"])
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.getMessage().startswith("step ")] == ["step 2/4", "step 4/4"]
    student, reloaded = namespace["student"], load_student(tmp_path / "my-student")
    pair = [("what do giant pandas eat", "Giant pandas eat almost nothing but bamboo.")]
    assert reloaded.max_seq_length == student.max_seq_length == 128
    torch.testing.assert_close(torch.as_tensor(reloaded.predict(pair)), torch.as_tensor(student.predict(pair)))
