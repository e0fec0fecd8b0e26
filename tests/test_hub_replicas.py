"""The paper config end to end on local replicas of its hub data, so that only the downloads are untested.

The replicas have the published schemas, id formats and subsets, at toy scale:

- ``sentence-transformers/msmarco`` subset ``bert-ensemble-margin-mse``: columns ``query_id``,
  ``positive_id``, ``negative_id`` (strings) and ``score`` (float64, the ensemble margin), as the
  dataset card's ``dataset_info`` declares; served by ``datasets.load_dataset`` from a local parquet;
- ``ir_datasets`` ``msmarco-passage/train/judged`` and ``msmarco-passage/trec-dl-{2019,2020}/judged``:
  objects with ``docs_iter`` / ``queries_iter`` / ``qrels_iter`` / ``has_scoreddocs`` /
  ``scoreddocs_iter`` yielding records with the fields of ``ir_datasets.formats`` (``GenericDoc``,
  ``GenericQuery``, ``TrecQrel``), all ids strings; the TREC DL 2019 texts and judgements are the
  real ones (the packaged quickstart sample);
- the Rank-DistiLLM files: a real slice of the RankZephyr ordering (``tests/data``), and a ColBERTv2
  run over the same queries and passages in TREC run format.

``datasets.load_dataset`` and ``ir_datasets.load`` (the two download functions) are replaced by
functions returning the replicas; everything after them (the loaders, the teacher-file join, the
builder of all six objectives, one training step each, the evaluation) is the package's own code
run from the paper config, edited only in scale: one tiny backbone, one seed, one step, four queries.
"""

from __future__ import annotations

import json
import random
import re
import sys
import types
from collections import namedtuple
from importlib import resources
from pathlib import Path

import pytest

from st_distill.bench.phases.build import _hub_triples
from st_distill.cli import main

pytestmark = pytest.mark.slow  # grids end to end: CI's Python legs skip them

ROOT = Path(__file__).resolve().parents[1]
RANKZEPHYR = Path(__file__).parent / "data" / "rank-distillm" / "rankzephyr-msmarco-train-6q-top60.run"
MAX_QUERIES = 4

# the record types of ir_datasets.formats (GenericDoc, GenericQuery, TrecQrel, GenericScoredDoc)
GenericDoc = namedtuple("GenericDoc", ["doc_id", "text"])
GenericQuery = namedtuple("GenericQuery", ["query_id", "text"])
TrecQrel = namedtuple("TrecQrel", ["query_id", "doc_id", "relevance", "iteration"])


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread):
    """Tiny models run faster on one thread than with two fighting other jobs for the cores."""


class IrDatasetReplica:
    """One ``ir_datasets`` dataset: the iterators the loader reads; ``scoreddocs`` must not be read
    when the config gives its own run (the real train/judged scoreddocs are an 11.5 GB download)."""

    def __init__(self, docs: list, queries: list, qrels: list) -> None:
        self.docs, self.queries, self.qrels = docs, queries, qrels

    def docs_iter(self):
        return iter(self.docs)

    def queries_iter(self):
        return iter(self.queries)

    def qrels_iter(self):
        return iter(self.qrels)

    def has_scoreddocs(self) -> bool:
        return True

    def scoreddocs_iter(self):
        raise AssertionError("scoreddocs read (downloaded) although the config gives a first-stage run")


def passage_text(pid: str) -> str:
    return f"passage {pid} about the topic of a train query"


def read_ranking(path: Path) -> dict[str, list[str]]:
    ranking: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        qid, _, pid, _, _, _ = line.split()
        ranking.setdefault(qid, []).append(pid)
    return ranking


@pytest.fixture
def replicas(tmp_path, monkeypatch):
    """Writes the replica files next to a copy of the paper config (same relative paths) and
    replaces the two download functions; returns what the checks need."""
    import datasets

    rng = random.Random(0)
    zephyr = read_ranking(RANKZEPHYR)
    train_qids = list(zephyr)
    data = tmp_path / "data"
    (data / "rank-distillm").mkdir(parents=True)
    (data / "splade-v3").mkdir()
    # Rank-DistiLLM: the real RankZephyr ordering, cut to the top 50 the config names; a ColBERTv2 run
    # (another order of the same passages, float scores) in TREC run format
    with open(data / "rank-distillm" / "rankzephyr.colbertv2.top50.run", "w") as f:
        for qid, pids in zephyr.items():
            f.writelines(f"{qid} Q0 {pid} {r} {51 - r} rank\n" for r, pid in enumerate(pids[:50], 1))
    colbert = {qid: rng.sample(pids, len(pids)) for qid, pids in zephyr.items()}
    with open(data / "rank-distillm" / "colbertv2.train.top500.run", "w") as f:
        for qid, pids in colbert.items():
            f.writelines(f"{qid} Q0 {pid} {r} {30 - r / 10:.4f} colbertv2\n" for r, pid in enumerate(pids, 1))
    # msmarco-passage: one collection for every subset; train queries judged by their RankZephyr top passage
    dl19 = resources.files("st_distill.resources") / "quickstart" / "trec-dl-2019"
    import gzip

    dl19_docs = dict(line.split("\t", 1) for line in gzip.decompress(dl19.joinpath("passages.tsv.gz").read_bytes()).decode().splitlines())
    docs = {pid: passage_text(pid) for pids in zephyr.values() for pid in pids} | {pid: text.strip() for pid, text in dl19_docs.items()}
    collection = [GenericDoc(pid, text) for pid, text in docs.items()]
    positives = {qid: pids[0] for qid, pids in zephyr.items()}
    train = IrDatasetReplica(
        collection,
        [GenericQuery(qid, f"train question {qid}") for qid in train_qids],
        [TrecQrel(qid, pid, 1, "0") for qid, pid in positives.items()],
    )
    dl_queries = [GenericQuery(*line.split("\t")) for line in dl19.joinpath("queries.tsv").read_text().splitlines()]
    dl_qrels = [TrecQrel(q, d, int(g), it) for q, it, d, g in (line.split() for line in gzip.decompress(dl19.joinpath("qrels.txt.gz").read_bytes()).decode().splitlines())]
    run_lines = dl19.joinpath("run.bm25.top20.trec").read_text().splitlines()
    halves = {"2019": {q.query_id for q in dl_queries[:25]}, "2020": {q.query_id for q in dl_queries[25:]}}
    suites = {}
    for year, qids in halves.items():
        suites[year] = IrDatasetReplica(collection, [q for q in dl_queries if q.query_id in qids], [r for r in dl_qrels if r.query_id in qids])
        (data / "splade-v3" / f"dl{year[2:]}.top1000.trec").write_text(
            "".join(re.sub(r"\S+$", "splade-v3", line) + "\n" for line in run_lines if line.split()[0] in qids))
    irds = {"msmarco-passage/train/judged": train, "msmarco-passage/trec-dl-2019/judged": suites["2019"],
            "msmarco-passage/trec-dl-2020/judged": suites["2020"]}
    # sentence-transformers/msmarco bert-ensemble-margin-mse: (query, positive, negative, margin) rows;
    # two queries outside train/judged, as the published file covers more queries than a run uses
    features = datasets.Features({"query_id": datasets.Value("string"), "positive_id": datasets.Value("string"),
                                  "negative_id": datasets.Value("string"), "score": datasets.Value("float64")})
    rows = {name: [] for name in features}
    for qid in [*train_qids, "1185869", "1185868"]:
        pids = zephyr.get(qid, zephyr[train_qids[0]])
        for neg in pids[5:9]:
            for name, value in zip(features, (qid, positives.get(qid, pids[0]), neg, round(rng.uniform(-10.16, 23.1), 6))):
                rows[name].append(value)
    parquet = tmp_path / "hub" / "bert-ensemble-margin-mse" / "train-00000-of-00001.parquet"
    parquet.parent.mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(parquet))
    margins = {(q, p, n): s for q, p, n, s in zip(*rows.values())}

    calls = []
    load_dataset = datasets.load_dataset

    def hub(path, name=None, split=None, revision=None, **kwargs):
        calls.append((path, name, split, revision))
        loaded = load_dataset("parquet", data_files=str(parquet), split="train")
        assert loaded.features == features  # the replica keeps the published types
        return loaded

    monkeypatch.setattr(datasets, "load_dataset", hub)
    monkeypatch.setitem(sys.modules, "ir_datasets", types.SimpleNamespace(load=lambda dataset_id: irds[dataset_id]))
    _hub_triples.cache_clear()  # the build phase keeps the last hub table for the process
    yield types.SimpleNamespace(zephyr=zephyr, colbert=colbert, positives=positives, margins=margins, calls=calls, docs=docs,
                                 suites={year: len(qids) for year, qids in halves.items()})
    _hub_triples.cache_clear()


def paper_at_toy_scale(folder: Path, model: str) -> Path:
    """The paper config, scaled down: one tiny backbone, seed 0, one step, four queries, no proxy phase."""
    text = (ROOT / "benchmarks" / "configs" / "paper.toml").read_text(encoding="utf-8")
    edits = [
        (r"seeds = \[0, 1, 2\]", "seeds = [0]"),
        (r"(relevance_level = 1\n)", rf"\1max_queries = {MAX_QUERIES}\n"),
        (r"# The study's small models.*?(?=# AdamW)", f'[[backbones]]\nname = "tiny"\nmodel = "{model}"\n\n'),
        (r"max_steps = 200000", "max_steps = 1"),
        (r"# The proxy phase.*?(?=\[\[phases\]\]\nname = \"main\")", ""),
    ]
    for pattern, replacement in edits:
        text, n = re.subn(pattern, replacement, text, flags=re.S)
        assert n == 1, f"paper.toml changed: {pattern!r} matched {n} times"
    path = folder / "benchmarks" / "configs" / "paper.toml"  # the data/ paths resolve as in the repository
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_paper_config_runs_on_hub_shaped_replicas(tmp_path, replicas, tiny_model_path, capsys):
    from st_distill.dataset import load_built_dataset

    config = paper_at_toy_scale(tmp_path, tiny_model_path)
    out = tmp_path / "out"
    assert main(["bench", str(config), "--output", str(out), "--no-report"]) == 0
    assert "6 cell(s) run" in capsys.readouterr().out
    assert replicas.calls == [("sentence-transformers/msmarco", "bert-ensemble-margin-mse", "train", None)]
    used = list(replicas.zephyr)[:MAX_QUERIES]
    query_of = {f"train question {qid}": qid for qid in used}
    pid_of = {text: pid for pid, text in replicas.docs.items()}

    # bce, hinge, marginmse: the hub triples of the first four judged queries, margins as published
    marginmse = load_built_dataset(out / "data" / "marginmse")
    triples = {k: v for k, v in replicas.margins.items() if k[0] in used}
    assert len(marginmse) == len(triples) == 4 * MAX_QUERIES
    for row in marginmse:
        key = (query_of[row["query"]], pid_of[row["positive"]], pid_of[row["negative_1"]])
        assert row["scores"] == pytest.approx([triples[key], 0.0], rel=1e-6, abs=1e-6)
    bce = load_built_dataset(out / "data" / "bce")
    assert len(bce) == 2 * len(triples) and sum(bce["label"]) == len(triples)
    assert len(load_built_dataset(out / "data" / "hinge")) == len(triples)
    # distillranknet, adrmse: the RankZephyr top 50 in its order, pseudo-scores descending
    for objective in ("distillranknet", "adrmse"):
        lists = load_built_dataset(out / "data" / objective)
        assert len(lists) == MAX_QUERIES
        for row in lists:
            qid = query_of[row["query"]]
            assert [pid_of[d] for d in row["docs"]] == replicas.zephyr[qid][:50]
            assert row["scores"] == sorted(row["scores"], reverse=True) and len(set(row["scores"])) == 50
    # infonce: the judged positive, then 7 negatives from the ColBERTv2 run
    infonce = load_built_dataset(out / "data" / "infonce")
    assert len(infonce) == MAX_QUERIES
    for row in infonce:
        qid = query_of[row["query"]]
        docs = [pid_of[row["positive"]]] + [pid_of[row[f"negative_{i}"]] for i in range(1, 8)]
        assert docs[0] == replicas.positives[qid] and len(docs) == 8 and len(set(docs)) == 8
        assert set(docs[1:]) <= set(replicas.colbert[qid]) - {replicas.positives[qid]}
    # one step per objective, evaluated on both suites over the given (SPLADE-named) runs
    cells = sorted(p.parent for p in (out / "cells").rglob("DONE"))
    assert [c.parent.name for c in cells] == sorted(["adrmse", "bce", "distillranknet", "hinge", "infonce", "marginmse"])
    for cell in cells:
        metrics = json.loads((cell / "metrics.json").read_text())
        assert metrics["train"]["steps"] == 1
        for year, n in replicas.suites.items():
            suite = metrics["suites"][f"trec-dl-{year}"]
            assert set(suite["aggregate"]) == {"nDCG@10", "RR@10", "AP", "R@100"} and len(suite["per_query"]["nDCG@10"]) == n
    for year in replicas.suites:
        assert (out / "eval" / f"trec-dl-{year}" / "first_stage.json").is_file()


def test_paper_dry_run_lists_the_downloads_with_their_published_sizes(tmp_path, capsys):
    from st_distill.data.sources import HUB_DOWNLOADS, IR_DATASETS_DOWNLOADS

    assert main(["bench", str(ROOT / "benchmarks" / "configs" / "paper.toml"), "--dry-run"]) == 2  # its local runs are missing
    plan = capsys.readouterr().out
    # every file once: the MS MARCO collection serves the train source and both suites
    files = {f.name: f.size for files, _ in IR_DATASETS_DOWNLOADS.values() for f in files}
    total = sum(files.values()) + HUB_DOWNLOADS[("sentence-transformers/msmarco", "bert-ensemble-margin-mse")].size
    assert total == 2_212_546_421 and "  downloads: 2.21 GB of data\n" in plan
    assert plan.count("collectionandqueries.tar.gz") == 1 and "scoreddocs" not in plan  # the config gives its runs
    assert "bert-ensemble-margin-mse parquet (39,780,704 rows) 1.12 GB" in plan
    assert "hub models (size not recorded): jhu-clsp/ettin-encoder-17m" in plan and "sizes from:" in plan
    assert "missing input: teacher.rankings" in plan
    # without its own run, the train source reads ir_datasets' scoreddocs: an 11.5 GB download more
    no_run = tmp_path / "paper.toml"
    text = (ROOT / "benchmarks" / "configs" / "paper.toml").read_text(encoding="utf-8")
    no_run.write_text(text.replace('run = "../../data/rank-distillm/colbertv2.train.top500.run"\n', ""), encoding="utf-8")
    assert main(["bench", str(no_run), "--dry-run"]) == 2
    plan = capsys.readouterr().out
    assert "msmarco-passage top1000.train.tar.gz (scoreddocs) 11.52 GB" in plan and "  downloads: 13.73 GB of data\n" in plan
