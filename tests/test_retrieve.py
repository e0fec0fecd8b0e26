"""Tests of first-stage retrieval: BM25 (bm25s) and dense (faiss), and `st-distill retrieve`."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from st_distill import cli
from st_distill.data.formats import load_beir, read_trec_run
from st_distill.evaluation import bm25_retrieve, dense_retrieve, evaluate

CORPUS = {
    "d1": "The cat sat on the mat and purred.",
    "d2": "Dogs bark loudly at the postman every morning.",
    "d3": "A recipe for chocolate cake with dark chocolate.",
    "d4": "Cats and kittens: caring for a young cat.",
}


@pytest.mark.slow
def test_bm25_scifact_reference(shared_data):
    """A plain BM25 over SciFact test lands near the published 0.665 nDCG@10 (Pyserini flat: 0.679)."""
    data = load_beir(shared_data / "scifact", "test")
    queries = {qid: data.queries[qid] for qid in data.qrels}
    run = bm25_retrieve(data.corpus, queries, top_k=100)
    assert len(run) == 300 and all(len(docs) == 100 for docs in run.values())
    ndcg = evaluate(run, data.qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    assert 0.64 <= ndcg <= 0.70, ndcg


def test_bm25_ranks_term_matches_first():
    run = bm25_retrieve(CORPUS, {"q": "chocolate cake", "c": "cats"}, top_k=10)
    assert len(run["q"]) == len(CORPUS)  # top_k is capped at the corpus size
    assert max(run["q"], key=run["q"].get) == "d3"
    top_cat = sorted(run["c"], key=run["c"].get, reverse=True)[:2]
    assert set(top_cat) == {"d1", "d4"}  # "cats" is stemmed to match "cat" and "cats"
    plain = bm25_retrieve(CORPUS, {"c": "cats"}, top_k=10, stemmer=None)
    assert max(plain["c"], key=plain["c"].get) == "d4" and plain["c"]["d1"] == 0.0  # no stemming: only d4 says "cats"


def test_dense_matches_brute_force_cosine(tiny_model_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(tiny_model_path, device="cpu")
    queries = {"q1": "a cat on a mat", "q2": "baking a cake"}
    run = dense_retrieve(model, CORPUS, queries, top_k=3, show_progress_bar=False)
    docs = model.encode(list(CORPUS.values()))
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    for qid, text in queries.items():
        q = model.encode([text])[0]
        cosine = docs @ (q / np.linalg.norm(q))
        expected = [list(CORPUS)[i] for i in np.argsort(-cosine)[:3]]
        assert sorted(run[qid], key=run[qid].get, reverse=True) == expected
        np.testing.assert_allclose([run[qid][d] for d in expected], np.sort(cosine)[::-1][:3], atol=1e-5)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="top_k"):
        bm25_retrieve(CORPUS, {"q": "cat"}, top_k=0)
    with pytest.raises(ValueError, match="corpus is empty"):
        bm25_retrieve({}, {"q": "cat"})


def test_retrieve_command(tmp_path, capsys):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(f'{{"_id": "{d}", "title": "", "text": "{t}"}}\n' for d, t in CORPUS.items())
    )
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "chocolate"}\n{"_id": "q2", "text": "dogs"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\n")
    out = tmp_path / "run.trec"
    assert cli.main(["retrieve", "--beir", str(folder), "--top-k", "2", "--output", str(out)]) == 0
    run = read_trec_run(out)
    assert list(run) == ["q1"]  # only the queries judged in the split
    assert len(run["q1"]) == 2 and max(run["q1"], key=run["q1"].get) == "d3"
    assert out.read_text().split()[5] == "bm25"
    assert cli.main(["retrieve", "--beir", str(folder), "--method", "dense", "--output", str(out)]) == 2
    assert "--method dense needs --model" in capsys.readouterr().err


# --- issue 11: sizes, ids that cannot go into a run, judged queries without text ---------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k1": -1.0}, "k1 must be a finite number >= 0, got -1.0"),
        ({"b": -3.0}, r"b must be in \[0, 1\], got -3.0"),
        ({"b": 1.5}, r"b must be in \[0, 1\], got 1.5"),
        ({"top_k": -1}, "top_k must be at least 1, got -1"),
    ],
)
def test_bm25_rejects_parameters_out_of_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bm25_retrieve(CORPUS, {"q": "cat"}, **kwargs)


def test_dense_rejects_batch_size_zero():
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        dense_retrieve("unused: checked before loading", CORPUS, {"q": "cat"}, batch_size=0)


def beir_folder(tmp_path, corpus, queries, qrels):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(f'{{"_id": "{d}", "text": "{t}"}}\n' for d, t in corpus.items()))
    (folder / "queries.jsonl").write_text("".join(f'{{"_id": "{q}", "text": "{t}"}}\n' for q, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return folder


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--k1", "-1"], "argument --k1: expected a number >= 0, got '-1'"),
        (["--b", "-3"], "argument --b: expected a number in [0, 1], got '-3'"),
        (["--top-k", "0"], "argument --top-k: expected an integer >= 1, got '0'"),
        (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got '0'"),
        (["--top-k", "1_0"], "argument --top-k: expected an integer >= 1, got '1_0'"),
    ],
)
def test_retrieve_command_checks_ranges_when_parsing(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as info:
        cli.main(["retrieve", "--beir", str(tmp_path), "--output", str(tmp_path / "run.trec"), *flags])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_retrieve_refuses_an_id_a_run_cannot_hold(tmp_path, capsys):
    folder = beir_folder(tmp_path, {"d1": "cats purr", "d 2": "dogs bark"}, {"q1": "cats"}, "q1\td1\t1\n")
    out = tmp_path / "run.trec"
    assert cli.main(["retrieve", "--beir", str(folder), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'corpus.jsonl'}:2: document id 'd 2' holds whitespace" in err
    assert not out.exists()


def test_retrieve_warns_about_judged_queries_without_text(tmp_path, caplog):
    folder = beir_folder(
        tmp_path, {"d1": "cats purr", "d2": "dogs bark"}, {"q1": "cats"}, "q1\td1\t1\nq2\td2\t1\nq3\td2\t1\n"
    )
    out = tmp_path / "run.trec"
    with caplog.at_level(logging.WARNING):
        assert cli.main(["retrieve", "--beir", str(folder), "--output", str(out)]) == 0
    assert list(read_trec_run(out)) == ["q1"]
    assert "2 of the 3 queries judged in qrels/test.tsv are not in" in caplog.text and "'q2', 'q3'" in caplog.text


def test_retrieve_output_that_is_a_folder_fails_before_retrieval(tmp_path, capsys, monkeypatch):
    folder = beir_folder(tmp_path, {"d1": "cats purr"}, {"q1": "cats"}, "q1\td1\t1\n")
    monkeypatch.setattr("st_distill.data.first_stage.bm25_retrieve", pytest.fail)  # must not be reached
    assert cli.main(["retrieve", "--beir", str(folder), "--output", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a directory, expected a file to write" in capsys.readouterr().err
