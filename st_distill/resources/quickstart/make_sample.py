"""Re-creates this folder's data sample from the full TREC DL files (``../shared/data`` in the project).

Run from the project root: ``python st_distill/resources/quickstart/make_sample.py ../shared/data``.
It keeps, for every query of TREC DL 2021 (training) and TREC DL 2019 (evaluation), the BM25
top-``DEPTH`` passages of the given run, their texts, and the judgements: for DL 2021 only those
of the kept passages (training needs no more); for DL 2019 all of them, so that nDCG's ideal
ranking is the official one. The output is deterministic.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

from st_distill.data.formats import ranked, read_qrels, read_trec_run, read_tsv, write_trec_run

DEPTH = 20
HERE = Path(__file__).resolve().parent


def _write_gzip(path: Path, lines: list[str]) -> None:
    # mtime=0 keeps the archive byte-identical from one run to the next.
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write("".join(lines).encode())


def make(source: Path, name: str, full_qrels: bool) -> None:
    run = read_trec_run(source / "run.bm25.top100.trec")
    qrels = read_qrels(source / "qrels.txt")
    queries = read_tsv(source / "queries.tsv")
    passages = read_tsv(source / "passages.tsv")
    top = {qid: dict(ranked(docs)[:DEPTH]) for qid, docs in run.items() if qid in queries}
    kept = sorted({docid for docs in top.values() for docid in docs})
    out = HERE / name
    out.mkdir(exist_ok=True)
    write_trec_run(top, out / f"run.bm25.top{DEPTH}.trec", tag="BM25")
    with open(out / "queries.tsv", "w", encoding="utf-8") as f:
        f.writelines(f"{qid}\t{queries[qid]}\n" for qid in sorted(top))
    _write_gzip(out / "passages.tsv.gz", [f"{docid}\t{passages[docid]}\n" for docid in kept])
    keep = set(kept)
    judged = [
        f"{qid} 0 {docid} {grade}\n"
        for qid in sorted(top)
        for docid, grade in sorted(qrels.get(qid, {}).items())
        if full_qrels or docid in keep
    ]
    _write_gzip(out / "qrels.txt.gz", judged)


if __name__ == "__main__":
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    make(shared / "trec-dl-2021", "trec-dl-2021", full_qrels=False)
    make(shared / "trec-dl-2019", "trec-dl-2019", full_qrels=True)
