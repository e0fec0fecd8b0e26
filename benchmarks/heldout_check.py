"""An independent check of a bench run's students on a held-out TREC DL set.

Nothing of st-distill's own data or evaluation code is used: the held-out set's files are read
with the standard library from the original TREC-format files (by default
``../shared/data/trec-dl-2019``, not the package's copy), every saved student is loaded with the
library's ``CrossEncoder`` (``trust_remote_code=True`` for st-distill's head module) and scores the
first stage's top-``depth`` with ``CrossEncoder.predict`` in float32, and nDCG@10 comes from
``pytrec_eval`` (trec_eval's linear gains; unjudged passages count as not relevant). It prints
the first stage, every cell (with the bench's own figure beside it) and whether the best of the
InfoNCE and MarginMSE students beats the first stage and the BCE student.

Usage::

    st-distill bench --output runs/quickstart
    python benchmarks/heldout_check.py runs/quickstart [--data ../shared/data/trec-dl-2019] [--depth 20]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trec-dl-2019"


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def _file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder}: no {stem} (or {stem}.gz)")


def read_tsv(path: Path) -> dict[str, str]:
    with _open(path) as handle:
        return dict(line.rstrip("\n").split("\t", 1) for line in handle if line.strip())


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with _open(path) as handle:
        for line in handle:
            if line.strip():
                qid, _, docid, grade = line.split()
                qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


def read_run(path: Path, depth: int) -> dict[str, list[str]]:
    ranked: dict[str, list[tuple[float, str]]] = {}
    with _open(path) as handle:
        for line in handle:
            if line.strip():
                qid, _, docid, _, score, _ = line.split()
                ranked.setdefault(qid, []).append((float(score), docid))
    return {qid: [d for _, d in sorted(docs, key=lambda x: (-x[0], x[1]))[:depth]] for qid, docs in ranked.items()}


def ndcg10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    import pytrec_eval

    judged = {q: docs for q, docs in qrels.items() if q in run}
    per_query = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10"}).evaluate(run)
    return sum(v["ndcg_cut_10"] for v in per_query.values()) / len(judged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a bench output folder (with cells/)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="TREC DL folder: queries.tsv, qrels.txt, passages.tsv, run.*.trec")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--suite", default="trec-dl-2019", help="the bench's name of this set, for its own figure")
    parser.add_argument("--json", type=Path, help="write the figures here")
    cli = parser.parse_args(argv)

    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(max(1, torch.get_num_threads()))
    queries, corpus = read_tsv(_file(cli.data, "queries.tsv")), read_tsv(_file(cli.data, "passages.tsv"))
    qrels = read_qrels(_file(cli.data, "qrels.txt"))
    run_file = next(iter(sorted(cli.data.glob("run.*.trec*"))))
    run = {q: docs for q, docs in read_run(run_file, cli.depth).items() if q in qrels}
    pairs = [(q, d) for q, docs in run.items() for d in docs]
    first = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items()}
    rows = {"first stage": ndcg10(first, qrels)}
    print(f"{cli.data} ({run_file.name}, top-{cli.depth}): {len(run)} judged queries, {len(pairs)} pairs")
    print(f"{'cell':<48} {'nDCG@10':>8} {'bench':>8}")
    print(f"{'first stage':<48} {rows['first stage']:>8.4f}")
    bench = {}
    for model_dir in sorted(cli.results.glob("cells/*/*/*/seed-*/model")):
        cell = model_dir.parent.relative_to(cli.results / "cells").as_posix()
        model = CrossEncoder(str(model_dir), device="cpu", trust_remote_code=True)
        scores = model.predict([(queries[q], corpus[d]) for q, d in pairs], batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        scored: dict[str, dict[str, float]] = {}
        for (q, d), s in zip(pairs, scores.tolist()):
            scored.setdefault(q, {})[d] = float(s)
        rows[cell] = ndcg10(scored, qrels)
        metrics = json.loads((model_dir.parent / "metrics.json").read_text(encoding="utf-8"))
        bench[cell] = metrics["suites"].get(cli.suite, {}).get("aggregate", {}).get("nDCG@10")
        own = f"{bench[cell]:>8.4f}" if bench[cell] is not None else f"{'-':>8}"
        print(f"{cell:<48} {rows[cell]:>8.4f} {own}", flush=True)

    def best(objective: str) -> float | None:
        values = [v for k, v in rows.items() if k.split("/")[2:3] == [objective]]
        return max(values) if values else None

    relative = [v for v in (best("infonce"), best("marginmse")) if v is not None]
    verdict = None
    if relative and best("bce") is not None:
        top = max(relative)
        verdict = {"best relative": top, "beats first stage": top > rows["first stage"], "beats bce": top > best("bce")}
        print(f"best of infonce/marginmse {top:.4f}: above the first stage ({rows['first stage']:.4f}): "
              f"{verdict['beats first stage']}; above bce ({best('bce'):.4f}): {verdict['beats bce']}")
    if cli.json:
        cli.json.write_text(json.dumps({"data": str(cli.data), "depth": cli.depth, "ndcg@10": rows, "bench": bench, "verdict": verdict}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
