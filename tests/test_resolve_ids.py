"""Id datasets and sentence-transformers' ``util.resolve_ids``, both ways: st-distill builds id datasets
that train after ``resolve_ids``, and id datasets prepared for ``resolve_ids`` feed the builder (and the
trainer directly); streaming (``IterableDataset``) where the library accepts it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, IterableDataset
from sentence_transformers.util import resolve_ids

from st_distill.dataset import build_dataset, load_built_dataset, save_dataset
from st_distill.data.ids import id_column, id_lookups, run_from_ids, texts_dataset, texts_from_lookup, with_texts
from st_distill.objectives import OBJECTIVES, get_objective

pytestmark = pytest.mark.usefixtures("torch_one_thread")

QUERIES = {"q1": "what do pandas eat", "q2": "capital of france", "q3": "how tall is everest", "q4": "who wrote hamlet"}
CORPUS = {
    "d1": "Pandas eat bamboo almost exclusively.",
    "d2": "Paris is the capital and largest city of France.",
    "d3": "Mount Everest is 8,849 metres tall.",
    "d4": "Hamlet is a tragedy written by William Shakespeare.",
    "n1": "The stock market fell on Monday.",
    "n2": "Bamboo is a fast growing grass.",
    "n3": "France borders Spain and Italy.",
    "n4": "Tides are caused by the moon.",
}
QRELS = {f"q{i}": {f"d{i}": 1} for i in range(1, 5)}
CANDIDATES = {f"q{i}": {f"d{i}": 4.0, "n1": 3.0, "n2": 2.0, "n3": 1.0, "n4": 0.0} for i in range(1, 5)}
TEACHER = {q: {d: float(s) * 2.5 - i for d, s in docs.items()} for i, (q, docs) in enumerate(CANDIDATES.items())}


def inputs(name: str) -> dict:
    """The builder inputs of each format (read from the registry), n = 2 negatives / 3 documents per list."""
    fmt = get_objective(name).dataset_format
    kwargs = dict(n_negatives=2) if fmt.n_negatives is not None else {}
    if fmt.from_candidates:
        kwargs.update(candidates=CANDIDATES)
    else:
        kwargs.update(qrels=QRELS, negatives={q: ["n1", "n2", "n3", "n4"] for q in QRELS})
    if fmt.teacher is not None:
        kwargs["teacher_scores"] = TEACHER
    return kwargs


def train_one_step(name: str, dataset, model_path: str, tmp_path) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(model_path, num_labels=1, max_length=64, device="cpu")
    before = model.model.classifier.weight.detach().clone()
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / name), max_steps=1, per_device_train_batch_size=2, use_cpu=True,
        report_to="none", save_strategy="no", learning_rate=1e-2, seed=0, disable_tqdm=True,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=get_objective(name).loss(model))
    assert np.isfinite(trainer.train().training_loss)
    assert not torch.equal(before, model.model.classifier.weight.detach())


def test_id_column_names_invert_resolve_ids():
    assert [id_column(c) for c in ("query", "document", "positive", "negative_3")] == [
        "query_id", "document_id", "positive_id", "negative_3_id"]
    assert id_column("docs", is_list=True) == "doc_ids" and id_column("queries", is_list=True) == "query_ids"
    with pytest.raises(ValueError, match="plural"):
        id_column("doc", is_list=True)
    # resolve_ids itself turns them back
    ids = Dataset.from_dict({"query_id": ["q1"], "negative_3_id": ["n1"], "doc_ids": [["d1", "n2"]], "scores": [[1.0, 0.0]]})
    lookups = id_lookups(ids.column_names, texts_dataset(QUERIES), texts_dataset(CORPUS))
    assert ids.with_transform(resolve_ids(lookups, output_format="lists"))[0] == {
        "query": QUERIES["q1"], "negative_3": CORPUS["n1"], "docs": [CORPUS["d1"], CORPUS["n2"]], "scores": [1.0, 0.0]}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_built_id_dataset_resolves_to_the_text_dataset(name):
    texts, _ = build_dataset(name, QUERIES, CORPUS, **inputs(name))
    ids, report = build_dataset(name, QUERIES, CORPUS, ids=True, **inputs(name))
    assert report.ids and report.columns == ids.column_names
    assert all(c.endswith(("_id", "_ids")) or c in ("label", "score", "scores") for c in ids.column_names)
    assert ids.data.column(0).type == "string" and ids[0]["query_id"] in QUERIES
    lookups = id_lookups(ids.column_names, texts_dataset(QUERIES), texts_dataset(CORPUS))
    resolved = ids.with_transform(resolve_ids(lookups, output_format="lists"))
    assert resolved[:] == texts[:]  # same columns, same order, same values
    assert with_texts(ids, QUERIES, CORPUS)[:] == texts[:]


@pytest.mark.parametrize("name", ["mse", "kldistill", "marginmse"])
def test_st_distill_id_dataset_trains_after_resolve_ids(name, tiny_model_path, tmp_path):
    ids, report = build_dataset(name, QUERIES, CORPUS, ids=True, **inputs(name))
    save_dataset(ids, report, tmp_path / "ids")
    loaded = load_built_dataset(tmp_path / "ids")
    assert loaded[:] == ids[:]
    # the published-dataset layout: ids + lookup datasets, joined by the library's transform
    loaded.set_transform(resolve_ids(id_lookups(loaded.column_names, texts_dataset(QUERIES), texts_dataset(CORPUS)),
                                     output_format="lists"))
    assert list(loaded[0]) == get_objective(name).dataset_format.columns(2)
    train_one_step(name, loaded, tiny_model_path, tmp_path)


def test_triples_build_id_datasets(tmp_path):
    path = tmp_path / "triples.tsv"
    path.write_text("7.5\t-1.0\tq1\td1\tn1\n6.0\t0.5\tq2\td2\tn3\n")
    ids, _ = build_dataset("marginmse", QUERIES, CORPUS, triples=path, ids=True)
    assert ids[:] == {"query_id": ["q1", "q2"], "positive_id": ["d1", "d2"], "negative_1_id": ["n1", "n3"],
                      "scores": [[7.5, -1.0], [6.0, 0.5]]}
    ids, _ = build_dataset("mse", QUERIES, CORPUS, triples=path, ids=True)
    assert ids[:] == {"query_id": ["q1", "q1", "q2", "q2"], "document_id": ["d1", "n1", "d2", "n3"],
                      "score": [7.5, -1.0, 6.0, 0.5]}
    with pytest.raises(ValueError, match="not both"):
        build_dataset("mse", QUERIES, CORPUS, triples=path, ids=True, lazy=True)


# ---------------------------------------------------------------------------------------------
# The other way: datasets prepared for resolve_ids (the lightonai/ms-marco-en-bge layout)

@pytest.fixture
def published():
    """An id dataset with ragged lists and its two lookup datasets, as published KD datasets are laid out."""
    train = Dataset.from_dict({
        "query_id": list(TEACHER),
        "document_ids": [list(docs)[: 2 + i % 3] for i, docs in enumerate(TEACHER.values())],
        "scores": [list(docs.values())[: 2 + i % 3] for i, docs in enumerate(TEACHER.values())],
    })
    queries = Dataset.from_dict({"query_id": list(QUERIES), "text": list(QUERIES.values())})
    documents = Dataset.from_dict({"document_id": list(CORPUS), "text": list(CORPUS.values())})
    return train, queries, documents


def test_run_and_texts_from_a_published_id_dataset(published):
    train, queries, documents = published
    run = run_from_ids(train)
    assert run == {q: dict(list(docs.items())[: 2 + i % 3]) for i, (q, docs) in enumerate(TEACHER.items())}
    assert texts_from_lookup(queries) == QUERIES and texts_from_lookup((documents, "document_id", "text")) == CORPUS
    # pointwise rows, string-encoded lists, unscored lists (pseudo-scores in list order)
    pointwise = Dataset.from_dict({"query_id": ["q1", "q1"], "document_id": ["d1", "n2"], "score": [3.0, -1.0]})
    assert run_from_ids(pointwise) == {"q1": {"d1": 3.0, "n2": -1.0}}
    encoded = Dataset.from_dict({"query_id": ["q1"], "document_ids": ["['n2', 'd1']"], "scores": ["[0.5, 2.0]"]})
    assert run_from_ids(encoded) == {"q1": {"n2": 0.5, "d1": 2.0}}
    unscored = Dataset.from_dict({"query_id": ["q1"], "document_ids": [["n2", "d1", "n4"]]})
    assert run_from_ids(unscored) == {"q1": {"n2": 3.0, "d1": 2.0, "n4": 1.0}}
    bad = Dataset.from_dict({"query_id": ["q1", "q2"], "document_ids": [["d1"], ["d2", "n1"]], "scores": [[1.0], [2.0]]})
    with pytest.raises(ValueError, match="row 1: 2 document ids but 1 scores"):
        run_from_ids(bad)
    with pytest.raises(ValueError, match="no query column 'qid'"):
        run_from_ids(train, query_column="qid")


@pytest.mark.parametrize("name", ["mse", "kldistill"])
def test_published_id_dataset_feeds_the_builder_and_trains(name, published, tiny_model_path, tmp_path):
    train, queries, documents = published
    dataset, report = build_dataset(name, queries, documents, candidates=train, teacher_scores=train, n_negatives=3)
    run = run_from_ids(train)
    expected, _ = build_dataset(name, QUERIES, CORPUS, candidates=run, teacher_scores=run, n_negatives=3)
    assert dataset[:] == expected[:] and report.rows == len(expected)
    # streaming: the builder reads an IterableDataset batch by batch, with the same result
    streamed, _ = build_dataset(name, queries, documents, candidates=train.to_iterable_dataset(),
                                teacher_scores=train.to_iterable_dataset(), n_negatives=3)
    assert streamed[:] == expected[:]
    train_one_step(name, dataset, tiny_model_path, tmp_path)


def test_published_id_dataset_trains_directly_after_resolve_ids(published, tiny_model_path, tmp_path):
    train, queries, documents = published
    train.set_transform(resolve_ids({"query_id": queries, "document_ids": documents}, output_format="lists"))
    assert list(train[0]) == ["query", "documents", "scores"]  # the losses read columns by position
    train_one_step("kldistill", train, tiny_model_path, tmp_path)


def test_streaming_join_and_the_trainer_s_limit(published, tiny_model_path, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer

    train, queries, documents = published
    in_memory = with_texts(train, queries, documents)
    streamed = with_texts(train.to_iterable_dataset(), queries, documents)
    assert isinstance(streamed, IterableDataset) and list(streamed.features) == ["query", "documents", "scores"]
    assert list(streamed) == [in_memory[i] for i in range(len(in_memory))]
    # CrossEncoderTrainer (sentence-transformers 6.2) refuses an IterableDataset: train on a Dataset
    model = CrossEncoder(tiny_model_path, num_labels=1, max_length=64, device="cpu")
    with pytest.raises(ValueError, match="does not support an IterableDataset"):
        CrossEncoderTrainer(model=model, train_dataset=streamed, loss=get_objective("kldistill").loss(model))


def test_ids_build_command(tmp_path, capsys):
    from st_distill.cli import main
    from st_distill.data.formats import write_trec_run

    (tmp_path / "queries.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in QUERIES.items()))
    (tmp_path / "corpus.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in CORPUS.items()))
    write_trec_run(CANDIDATES, tmp_path / "bm25.trec")
    write_trec_run(TEACHER, tmp_path / "teacher.trec")
    out = tmp_path / "mse-ids"
    assert main(["build", "mse", "--queries", str(tmp_path / "queries.tsv"), "--corpus", str(tmp_path / "corpus.tsv"),
                 "--candidates", str(tmp_path / "bm25.trec"), "--teacher-run", str(tmp_path / "teacher.trec"),
                 "--n-negatives", "2", "--ids", "--output", str(out)]) == 0
    expected, _ = build_dataset("mse", QUERIES, CORPUS, candidates=CANDIDATES, teacher_scores=TEACHER, n_negatives=2, ids=True)
    assert load_built_dataset(out)[:] == expected[:] and '"ids": true' in capsys.readouterr().out


def test_readme_id_datasets_example_runs(shared_data):
    """The README's example as written, with ../shared/data made absolute."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Id datasets\n(.*?)(?=^## )", text, flags=re.S | re.M).group(1)
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0].replace("../shared/data", str(shared_data)), "README.md:Id datasets", "exec"), namespace)
    run, corpus = namespace["run"], namespace["corpus"]
    assert list(namespace["ids"][0]) == ["query", "docs", "scores"]
    pointwise = namespace["pointwise"]
    # every (query, passage) pair of the run with a text, each with its score
    assert len(pointwise) == sum(d in corpus for docs in run.values() for d in docs)
    row = pointwise[0]
    qid = next(iter(run))
    assert row["query"] == namespace["queries"][qid] and row["score"] == pytest.approx(max(run[qid].values()))


def test_streams_without_features(published):
    train, queries, documents = published
    rows = list(train)
    stream = IterableDataset.from_generator(lambda: iter(rows))
    assert stream.column_names is None
    assert run_from_ids(stream) == run_from_ids(train)
    with pytest.raises(ValueError, match="no Features"):
        with_texts(stream, queries, documents)
