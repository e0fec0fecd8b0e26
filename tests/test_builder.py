"""Tests of the dataset builder: every registry objective gets its columns and trains for a step."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from st_distill.dataset import build_dataset, load_built_dataset, load_report, save_dataset
from st_distill.data.formats import FormatError, load_beir, read_qrels, read_texts, read_trec_run
from st_distill.data.negatives import negatives_from_run
from st_distill.data.store import TextStore
from st_distill.data.teacher_files import read_llm_ranking
from st_distill.objectives import OBJECTIVES, get_objective
from st_distill.teachers import CrossEncoderTeacher, score_with_teachers


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def dl21(shared_data, tiny_model_path, tmp_path_factory):
    """TREC DL 2021 with BM25 negatives (7 sampled from the top-100), an 'LLM ranking' of the
    BM25 top-10 and the tiny model's teacher logits for every pair those datasets use."""
    from sentence_transformers.cross_encoder import CrossEncoder

    folder = shared_data / "trec-dl-2021"
    queries, corpus = read_texts(folder / "queries.tsv"), read_texts(folder / "passages.tsv")
    qrels, run = read_qrels(folder / "qrels.txt"), read_trec_run(folder / "run.bm25.top100.trec")
    qids = list(run)[:12]
    run = {qid: run[qid] for qid in qids}
    qrels = {qid: qrels[qid] for qid in qids if qid in qrels}
    negatives = negatives_from_run(run, qrels, k=7, depth=100, strategy="uniform", relevance_threshold=2, seed=0)
    top10 = {qid: dict(list(docs.items())[:10]) for qid, docs in run.items()}
    pairs = {(q, d) for q, docs in top10.items() for d in docs}
    pairs |= {(q, d) for q, docs in negatives.items() for d in docs}
    pairs |= {(q, d) for q, docs in qrels.items() for d, g in docs.items() if g >= 2 and d in corpus}
    teacher = CrossEncoderTeacher(CrossEncoder(tiny_model_path, num_labels=1, max_length=64, device="cpu"), name="tiny")
    scores = score_with_teachers([teacher], sorted(pairs), queries, corpus, tmp_path_factory.mktemp("cache"))
    return dict(queries=queries, corpus=corpus, qrels=qrels, negatives=negatives, candidates=top10, teacher=scores.to_run())


def inputs_for(name, data):
    """The inputs each format kind is built from (deliberately general: read from the registry)."""
    fmt = get_objective(name).dataset_format
    kwargs = dict(relevance_threshold=2, max_positives=2, seed=0)
    if fmt.from_candidates:
        teacher = data["teacher"] if fmt.teacher == "scores" else None  # ranking: LLM pseudo-scores
        return dict(kwargs, candidates=data["llm"], teacher_scores=teacher, n_negatives=7)
    kwargs.update(qrels=data["qrels"], negatives=data["negatives"])
    if fmt.teacher is not None:
        kwargs["teacher_scores"] = data["teacher"]
    if fmt.kind == "listwise":
        kwargs["n_negatives"] = 7
    return kwargs


@pytest.fixture(scope="module")
def data(dl21, tmp_path_factory):
    llm_file = tmp_path_factory.mktemp("llm") / "ranking.run"
    # an LLM ranking file: the BM25 top-10 in reverse order, ranks 1..10
    with open(llm_file, "w") as f:
        for qid, docs in dl21["candidates"].items():
            for rank, docid in enumerate(reversed(list(docs)), start=1):
                f.write(f"{qid} Q0 {docid} {rank} 0 rankzephyr\n")
    return {**dl21, "llm": read_llm_ranking(llm_file)}


def train_one_step(model_path, name, dataset, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(model_path, num_labels=1, max_length=64, device="cpu")
    before = [p.detach().clone() for p in model.model.parameters()]
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / name), max_steps=1, per_device_train_batch_size=2, use_cpu=True,
        report_to="none", save_strategy="no", learning_rate=1e-2, seed=0, disable_tqdm=True,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=get_objective(name).loss(model))
    output = trainer.train()
    assert np.isfinite(output.training_loss)
    assert any(not np.allclose(a.numpy(), b.detach().numpy()) for a, b in zip(before, model.model.parameters()))


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_builds_its_columns_and_trains_one_step(name, data, tiny_model_path, tmp_path):
    fmt = get_objective(name).dataset_format
    dataset, report = build_dataset(name, data["queries"], data["corpus"], **inputs_for(name, data))
    assert dataset.column_names == fmt.columns(report.n_negatives) == report.columns
    assert report.rows == len(dataset) > 0 and report.queries > 0
    row = dataset[0]
    assert row["query"] in data["queries"].values()
    if fmt.kind == "pointwise" and fmt.teacher == "scores":  # mse: the teacher logit of each pair
        qid = next(q for q, t in data["queries"].items() if t == row["query"])
        docid = next(d for d in data["teacher"][qid] if data["corpus"][d] == row["document"])
        assert row["score"] == pytest.approx(data["teacher"][qid][docid])
    elif fmt.kind == "pointwise":
        assert set(dataset["label"]) == {0.0, 1.0}
    elif fmt.kind == "ntuple":
        qid = next(q for q, t in data["queries"].items() if t == row["query"])
        assert data["qrels"][qid][next(d for d, t in data["corpus"].items() if t == row["positive"])] >= 2
        negatives = [row[f"negative_{i}"] for i in range(1, report.n_negatives + 1)]
        assert len(set(negatives)) == len(negatives)
        if fmt.label_column == "scores":
            docids = [next(d for d in data["teacher"][qid] if data["corpus"][d] == text) for text in [row["positive"], *negatives]]
            np.testing.assert_allclose(row["scores"], [data["teacher"][qid][d] for d in docids], rtol=1e-6)
    else:
        assert len(row["docs"]) == len(row["scores"]) >= 2
        if fmt.teacher == "ranking":
            assert row["scores"] == sorted(row["scores"], reverse=True) or not fmt.positive_first
    train_one_step(tiny_model_path, name, dataset, tmp_path)


def test_listwise_lists_follow_candidates_and_pseudo_scores(data):
    dataset, report = build_dataset("distillranknet", data["queries"], data["corpus"], candidates=data["llm"], n_negatives=4)
    qid = next(iter(data["llm"]))
    row = dataset[0]
    assert row["query"] == data["queries"][qid]
    best = sorted(data["llm"][qid], key=data["llm"][qid].get, reverse=True)[:5]
    assert row["docs"] == [data["corpus"][d] for d in best]
    assert row["scores"] == [10.0, 9.0, 8.0, 7.0, 6.0]


def test_deterministic_for_a_seed_and_seed_matters(data):
    args = dict(qrels=data["qrels"], negatives=data["candidates"], relevance_threshold=2)
    first, _ = build_dataset("infonce", data["queries"], data["corpus"], n_negatives=3, seed=5, **args)
    second, _ = build_dataset("infonce", data["queries"], data["corpus"], n_negatives=3, seed=5, **args)
    other, _ = build_dataset("infonce", data["queries"], data["corpus"], n_negatives=3, seed=6, **args)
    assert first.to_dict() == second.to_dict() and first.to_dict() != other.to_dict()


def test_report_counts_what_was_skipped(data):
    queries = dict(data["queries"])
    dropped = next(iter(data["qrels"]))
    del queries[dropped]
    dataset, report = build_dataset("infonce", queries, data["corpus"], qrels=data["qrels"], negatives=data["negatives"],
                                    relevance_threshold=2, n_negatives=7)
    assert report.skipped["query without text"] == 1
    # TREC DL 2021 judges passages whose text is unknown: they are counted, not fatal
    no_text = sum(1 for docs in data["qrels"].values() for d, g in docs.items() if g >= 2 and d not in data["corpus"])
    assert report.skipped["positive without text"] == no_text - sum(
        1 for d, g in data["qrels"][dropped].items() if g >= 2 and d not in data["corpus"])
    # pools of the BM25 top-10 minus relevant documents: queries with fewer than 8 give no row
    _, wanting = build_dataset("infonce", data["queries"], data["corpus"], qrels=data["qrels"],
                               candidates=data["candidates"], relevance_threshold=2, n_negatives=8, max_positives=1)
    short = 0
    for qid, docs in data["qrels"].items():
        if not any(g >= 2 and d in data["corpus"] for d, g in docs.items()):
            continue
        pool = [d for d in data["candidates"][qid] if docs.get(d, 0) < 2 and d in data["corpus"]]
        short += len(pool) < 8
    assert short > 0 and wanting.skipped["fewer than 8 negatives"] == short


def test_missing_inputs_are_clear_errors(data):
    with pytest.raises(ValueError, match="teacher scores"):
        build_dataset("marginmse", data["queries"], data["corpus"], qrels=data["qrels"], negatives=data["negatives"])
    with pytest.raises(ValueError, match="needs candidates"):
        build_dataset("adrmse", data["queries"], data["corpus"], qrels=data["qrels"])
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        build_dataset("nope", data["queries"], data["corpus"])
    with pytest.raises(ValueError, match="TextStore"):
        build_dataset("hinge", data["queries"], data["corpus"], qrels=data["qrels"], negatives=data["negatives"], lazy=True)


@pytest.fixture
def stores(data, tmp_path):
    return (TextStore.from_texts(data["queries"], tmp_path / "texts" / "queries.arrow"),
            TextStore.from_texts(data["corpus"], tmp_path / "texts" / "corpus.arrow"))


@pytest.mark.parametrize("name", ["marginmse", "adrmse"])
def test_lazy_dataset_matches_eager_saves_loads_and_trains(name, data, stores, tiny_model_path, tmp_path):
    kwargs = inputs_for(name, data)
    eager, _ = build_dataset(name, data["queries"], data["corpus"], **kwargs)
    lazy, report = build_dataset(name, *stores, lazy=True, **kwargs)
    assert report.lazy and lazy.column_names == eager.column_names
    assert lazy.data.column("query").type == pa.int32()  # ids in the table, texts on access
    assert lazy[:] == eager[:]
    save_dataset(lazy, report, tmp_path)
    assert json.loads((tmp_path / "lazy_texts.json").read_text())["corpus"] == "texts/corpus.arrow"
    assert load_report(tmp_path)["rows"] == len(eager)
    assert load_built_dataset(tmp_path)[:] == eager[:]
    train_one_step(tiny_model_path, name, load_built_dataset(tmp_path), tmp_path)


def write_triples(path, data, extra=""):
    """A Hofstätter-shaped file from TREC DL ids: positives with their BM25 negatives, made-up scores."""
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for qid, docs in data["qrels"].items():
            for pos in [d for d, g in docs.items() if g >= 2 and d in data["corpus"]][:2]:
                for neg in data["negatives"][qid][:3]:
                    f.write(f"{rng.normal(5):.4f}\t{rng.normal():.4f}\t{qid}\t{pos}\t{neg}\n")
        f.write(extra)
    return path


@pytest.mark.parametrize("lazy", [False, True])
def test_marginmse_and_bce_from_teacher_triples(data, stores, lazy, tmp_path):
    from st_distill.data.teacher_files import read_teacher_triples

    path = write_triples(tmp_path / "triples.tsv", data)
    table = read_teacher_triples(path)
    queries, corpus = stores if lazy else (data["queries"], data["corpus"])
    dataset, report = build_dataset("marginmse", queries, corpus, triples=path, lazy=lazy)
    assert report.rows == table.num_rows and dataset.column_names == ["query", "positive", "negative_1", "scores"]
    for i in (0, table.num_rows - 1):
        row = dataset[i]
        assert row["query"] == data["queries"][table.column("qid")[i].as_py()]
        assert row["negative_1"] == data["corpus"][table.column("neg_pid")[i].as_py()]
        np.testing.assert_allclose(row["scores"], [table.column("pos_score")[i].as_py(), table.column("neg_score")[i].as_py()])
    bce, report = build_dataset("bce", queries, corpus, triples=path, lazy=lazy)
    assert report.rows == 2 * table.num_rows and bce["label"][:4] == [1.0, 0.0, 1.0, 0.0]
    assert bce[1]["document"] == data["corpus"][table.column("neg_pid")[0].as_py()]


def test_triples_with_unknown_ids_fail_or_are_counted(data, tmp_path):
    path = write_triples(tmp_path / "triples.tsv", data, extra="1.0\t0.5\tnot-a-query\tp\tq\n")
    lines = path.read_text().count("\n")
    with pytest.raises(FormatError, match=f"triples.tsv:{lines}: unknown query id 'not-a-query'"):
        build_dataset("hinge", data["queries"], data["corpus"], triples=path)
    dataset, report = build_dataset("hinge", data["queries"], data["corpus"], triples=path, skip_invalid=True)
    assert report.skipped == {"unknown query id": 1} and report.rows == lines - 1
    with pytest.raises(ValueError, match="one negative per row"):
        build_dataset("infonce", data["queries"], data["corpus"], triples=path)


def test_scifact_and_nfcorpus_build(shared_data):
    # BEIR folders (the NFCorpus train split here judges every listed pair with grade 1)
    for name, threshold in (("scifact", 1), ("nfcorpus", 1)):
        beir = load_beir(shared_data / name, split="train")
        qrels = dict(list(beir.qrels.items())[:30])
        judged = {d for docs in beir.qrels.values() for d in docs}
        pool = [d for d in beir.corpus if d not in judged][:50]
        negatives = negatives_from_run({q: {d: -i for i, d in enumerate(pool)} for q in qrels}, qrels, k=3)
        dataset, report = build_dataset("bce", beir.queries, beir.corpus, qrels=qrels, negatives=negatives,
                                         relevance_threshold=threshold, n_negatives=3)
        positives = sum(1 for docs in qrels.values() for g in docs.values() if g >= threshold)
        assert report.rows == 4 * positives and sum(dataset["label"]) == positives


def test_hugging_face_msmarco_subsets_from_local_parquet(data, tmp_path):
    # the subsets' column layout, saved locally: the conversions do not care where the dataset came from
    import pyarrow.parquet as pq
    from datasets import load_dataset

    from st_distill.data.sources import msmarco_margin_triples, msmarco_negatives, msmarco_text_store
    from st_distill.data.teacher_files import read_teacher_triples

    triples = read_teacher_triples(write_triples(tmp_path / "t.tsv", data))
    files = {
        "corpus": pa.table({"passage_id": list(data["corpus"]), "passage": list(data["corpus"].values())}),
        "queries": pa.table({"query_id": list(data["queries"]), "query": list(data["queries"].values())}),
        "margin": pa.table({
            "query_id": triples.column("qid"), "positive_id": triples.column("pos_pid"),
            "negative_id": triples.column("neg_pid"),
            "score": pc.subtract(triples.column("pos_score"), triples.column("neg_score")),
        }),
    }
    loaded = {}
    for name, table in files.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
        loaded[name] = load_dataset("parquet", data_files=str(tmp_path / f"{name}.parquet"), split="train")
    corpus = msmarco_text_store(loaded["corpus"], tmp_path / "corpus.arrow", "corpus")
    queries = msmarco_text_store(loaded["queries"], tmp_path / "queries.arrow", "queries")
    dataset, report = build_dataset("marginmse", queries, corpus, triples=msmarco_margin_triples(loaded["margin"]), lazy=True)
    assert report.rows == triples.num_rows
    margins = [s[0] - s[1] for s in dataset["scores"]]
    expected = (triples.column("pos_score").to_numpy() - triples.column("neg_score").to_numpy()).tolist()
    np.testing.assert_allclose(margins, expected, rtol=1e-5, atol=1e-5)
    assert dataset[0]["positive"] == data["corpus"][triples.column("pos_pid")[0].as_py()]
    negatives = msmarco_negatives(loaded["margin"])
    assert negatives[triples.column("qid")[0].as_py()][0] == triples.column("neg_pid")[0].as_py()


def test_build_command_with_teacher_cache_and_lazy_triples(data, shared_data, tiny_model_path, tmp_path, capsys):
    from st_distill.cli import main
    from st_distill.teachers import load_cached_scores

    folder = shared_data / "trec-dl-2021"
    texts = ["--queries", str(folder / "queries.tsv"), "--corpus", str(folder / "passages.tsv")]
    negatives_run = tmp_path / "negatives.trec"
    negatives_run.write_text("".join(f"{q} Q0 {d} {i + 1} {-i} bm25\n" for q, docs in data["negatives"].items() for i, d in enumerate(docs)))
    pairs_run = tmp_path / "pairs.trec"
    pairs = [(q, d) for q, docs in data["negatives"].items() for d in docs]
    pairs += [(q, d) for q, docs in data["qrels"].items() for d, g in docs.items() if g >= 2 and d in data["corpus"]]
    pairs_run.write_text("".join(f"{q} Q0 {d} 1 0 x\n" for q, d in sorted(set(pairs))))
    assert main(["teacher", *texts, "--run", str(pairs_run), "--cross-encoder", tiny_model_path, "--max-length", "64",
                 "--cache", str(tmp_path / "cache")]) == 0
    out = tmp_path / "marginmse"
    assert main(["build", "marginmse", *texts, "--qrels", str(folder / "qrels.txt"), "--relevance-threshold", "2",
                 "--negatives-run", str(negatives_run), "--teacher-cache", str(tmp_path / "cache"), "--output", str(out)]) == 0
    dataset = load_built_dataset(out)
    report = load_report(out)
    assert report["rows"] == len(dataset) and dataset.column_names == ["query", "positive", "negative_1", "scores"]
    cached = load_cached_scores(tmp_path / "cache").to_run()
    row = dataset[0]
    qid = next(q for q, t in data["queries"].items() if t == row["query"])
    pos = next(d for d in cached[qid] if data["corpus"][d] == row["positive"])
    assert row["scores"][0] == pytest.approx(cached[qid][pos])
    triples = write_triples(tmp_path / "t.tsv", data, extra="1\t2\tunknown-q\tx\ty\n")
    capsys.readouterr()
    argv = ["build", "marginmse", *texts, "--triples", str(triples), "--lazy", "--output", str(tmp_path / "lazy")]
    assert main(argv) == 2
    assert f"{triples}:{triples.read_text().count(chr(10))}: unknown query id 'unknown-q'" in capsys.readouterr().err
    assert main([*argv, "--skip-invalid"]) == 0
    lazy = load_built_dataset(tmp_path / "lazy")
    assert lazy.data.column("query").type == pa.int32() and lazy[0]["query"] in data["queries"].values()
    assert load_report(tmp_path / "lazy")["skipped"] == {"unknown query id": 1}


README_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"


def readme_section(title: str) -> str:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {title}\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def test_readme_building_and_teacher_examples_run(data, shared_data, tiny_model_path, tmp_path, monkeypatch, capsys):
    """The README's examples as written, with ../shared/data made absolute and the hub teacher
    swapped for the local tiny model; the MS MARCO file names are stood in for by TREC DL files."""
    import re
    import shlex

    from st_distill.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "queries.train.tsv").write_text((shared_data / "trec-dl-2021" / "queries.tsv").read_text())
    (tmp_path / "collection.tsv").write_text((shared_data / "trec-dl-2021" / "passages.tsv").read_text())
    write_triples(tmp_path / "bert_cat_ensemble_msmarcopassage_train_scores_ids.tsv", data)

    def adapt(code: str) -> str:
        return code.replace("../shared/data", str(shared_data)).replace(README_MODEL, tiny_model_path)

    namespaces = {}
    for title in ("Building datasets", "Teachers"):
        section = readme_section(title)
        blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
        assert len(blocks) == 1
        namespaces[title] = {}
        exec(compile(adapt(blocks[0]), f"README.md:{title}", "exec"), namespaces[title])
        for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
            for command in block.replace("\\\n", " ").splitlines():
                if command.strip() and not command.lstrip().startswith("#"):
                    argv = shlex.split(adapt(command))
                    assert argv[0] == "st-distill" and main(argv[1:]) == 0, command
    building = namespaces["Building datasets"]
    assert building["dataset"].column_names[-1] == "negative_7" and building["reloaded"][:] == building["dataset"][:]
    assert building["lists"][0]["scores"] == [float(100 - i) for i in range(10)]
    teachers = namespaces["Teachers"]
    assert teachers["report"].rows == 53 and teachers["scores"].scored == {teachers["teacher"].name: 530}
    assert load_report("data/dl21-kl")["rows"] == 53 and load_report("data/marginmse")["lazy"]
    assert "0 pairs scored, 530 from the cache" in capsys.readouterr().out  # the CLI reused the Python run's cache


def test_pointwise_takes_n_negative_rows_per_positive(data):
    """bce with n_negatives = k: each positive row comes with k negative rows of the same query, drawn
    from its pool (never a relevant document), so a bench objective can see the same candidates as InfoNCE."""
    one, _ = build_dataset("bce", data["queries"], data["corpus"], qrels=data["qrels"], negatives=data["negatives"],
                           relevance_threshold=2, max_positives=1, seed=0)
    three, report = build_dataset("bce", data["queries"], data["corpus"], qrels=data["qrels"], negatives=data["negatives"],
                                  relevance_threshold=2, max_positives=1, n_negatives=3, seed=0)
    assert report.n_negatives == 3
    for dataset, k in ((one, 1), (three, 3)):
        positives = sum(label == 1.0 for label in dataset["label"])
        assert positives > 0 and sum(label == 0.0 for label in dataset["label"]) == k * positives
    text_to_qid = {t: q for q, t in data["queries"].items()}
    for row in three:
        if row["label"] == 0.0:
            qid = text_to_qid[row["query"]]
            pool = {data["corpus"][d] for d in data["negatives"][qid]}
            relevant = {data["corpus"][d] for d, g in data["qrels"][qid].items() if g >= 2 and d in data["corpus"]}
            assert row["document"] in pool and row["document"] not in relevant
