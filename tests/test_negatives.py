"""Tests of hard-negative selection from runs and bi-encoder mining."""

from __future__ import annotations

from collections import Counter

import pytest

from st_distill.data.formats import load_beir, read_qrels, read_trec_run
from st_distill.data.negatives import mine_negatives, negatives_from_run, query_rng, sparse_labels


def test_top_k_excludes_judged_relevant_in_rank_order():
    run = {"q": {"a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0, "e": 1.0}}
    qrels = {"q": {"a": 2, "c": 1, "d": 0}}
    assert negatives_from_run(run, qrels, k=2) == {"q": ["b", "d"]}  # grade >= 1 excluded, grade 0 kept
    assert negatives_from_run(run, qrels, k=2, relevance_threshold=2) == {"q": ["b", "c"]}
    assert negatives_from_run(run, qrels, k=10, depth=3) == {"q": ["b"]}  # only the top 3 are candidates


def test_uniform_sample_is_uniform_and_within_depth():
    # every candidate of the top-K has the same chance k/K (checked over many seeds), none beyond K
    run = {"q": {f"d{i:02d}": float(100 - i) for i in range(40)}}
    counts = Counter()
    trials = 3000
    for seed in range(trials):
        picked = negatives_from_run(run, k=3, depth=10, strategy="uniform", seed=seed)["q"]
        assert len(set(picked)) == 3 and all(int(d[1:]) < 10 for d in picked)
        assert picked == sorted(picked)  # kept in rank order
        counts.update(picked)
    expected = trials * 3 / 10
    assert set(counts) == {f"d{i:02d}" for i in range(10)}
    assert all(abs(c - expected) < 5 * (expected * 0.7) ** 0.5 for c in counts.values())


def test_sampling_is_per_query_and_order_independent():
    run = {f"q{j}": {f"d{i}": float(-i) for i in range(50)} for j in range(5)}
    full = negatives_from_run(run, k=7, depth=30, strategy="uniform", seed=3)
    reversed_run = dict(reversed(list(run.items())))
    assert negatives_from_run(reversed_run, k=7, depth=30, strategy="uniform", seed=3) == full
    assert negatives_from_run({"q2": run["q2"]}, k=7, depth=30, strategy="uniform", seed=3) == {"q2": full["q2"]}
    assert negatives_from_run(run, k=7, depth=30, strategy="uniform", seed=4) != full
    assert query_rng(1, "q").integers(1 << 30) == query_rng(1, "q").integers(1 << 30)


def test_study_setting_on_trec_dl(shared_data):
    folder = shared_data / "trec-dl-2021"
    run, qrels = read_trec_run(folder / "run.bm25.top100.trec"), read_qrels(folder / "qrels.txt")
    negatives = negatives_from_run(run, qrels, k=7, depth=100, strategy="uniform", relevance_threshold=2, seed=0)
    assert len(negatives) == len(run)
    for qid, docs in negatives.items():
        assert len(docs) == 7
        assert all(qrels.get(qid, {}).get(d, 0) < 2 for d in docs)
        assert set(docs) <= set(run[qid])


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        negatives_from_run({"q": {"a": 1.0}}, k=0)
    with pytest.raises(ValueError, match="unknown strategy"):
        negatives_from_run({"q": {"a": 1.0}}, strategy="random")


@pytest.mark.usefixtures("torch_one_thread")
def test_mine_negatives_with_a_bi_encoder_and_faiss(shared_data, tiny_model_path):
    from sentence_transformers import SentenceTransformer

    beir = load_beir(shared_data / "scifact", split="train")
    qrels = dict(list(beir.qrels.items())[:10])
    judged = {d for docs in qrels.values() for d in docs}
    corpus_ids = sorted(judged) + [d for d in list(beir.corpus)[:120] if d not in judged]
    corpus = {d: beir.corpus[d] for d in corpus_ids}
    model = SentenceTransformer(tiny_model_path, device="cpu")
    model.max_seq_length = 64
    negatives = mine_negatives(model, beir.queries, corpus, qrels, num_negatives=3, use_faiss=True, seed=0)
    assert set(negatives) == set(qrels)
    for qid, docs in negatives.items():
        assert len(docs) >= 3 and len(set(docs)) == len(docs)
        assert not set(docs) & set(qrels[qid])  # never a judged-relevant document
        assert set(docs) <= set(corpus)
    # deterministic for a seed, with random sampling too
    kwargs = dict(num_negatives=3, range_max=20, sampling_strategy="random", use_faiss=False, seed=1)
    assert mine_negatives(model, beir.queries, corpus, qrels, **kwargs) == mine_negatives(model, beir.queries, corpus, qrels, **kwargs)


def test_sparse_labels_keep_one_drawn_relevant_document_per_query():
    qrels = {"q1": {"a": 3, "b": 2, "c": 1, "d": 0}, "q2": {"x": 1, "y": 0}, "q3": {"m": 2}}
    sparse = sparse_labels(qrels, relevance_threshold=2)
    # one relevant document with its grade; every other judgement dropped; a query without one left out
    assert set(sparse) == {"q1", "q3"} and sparse["q3"] == {"m": 2}
    (doc, grade), = sparse["q1"].items()
    assert doc in {"a", "b"} and grade == qrels["q1"][doc]
    # with a corpus, only documents that have a text are drawn; a query whose relevant ones have none is left out
    assert sparse_labels(qrels, 2, documents={"b", "m"}) == {"q1": {"b": 2}, "q3": {"m": 2}}
    assert sparse_labels(qrels, 2, documents={"a"}) == {"q1": {"a": 3}}
    # the draw depends on the seed and the query alone, not on the other queries
    assert sparse_labels({"q1": qrels["q1"]}, 2) == {"q1": sparse["q1"]}
    # over seeds, each relevant document is drawn about equally often (10 of 10 documents, 2,000 draws)
    many = {"q": {f"d{i}": 2 for i in range(10)} | {"n": 0}}
    counts = Counter(next(iter(sparse_labels(many, 2, seed=seed)["q"])) for seed in range(2000))
    assert set(counts) == {f"d{i}" for i in range(10)} and max(counts.values()) < 260 and min(counts.values()) > 140


def test_denoise_candidates_by_hand():
    from st_distill.data.negatives import denoise_candidates

    run = {"q1": {"p": 9.0, "a": 8.0, "b": 7.0, "c": 6.0, "u": 5.0}, "q2": {"x": 3.0, "y": 2.0}}
    qrels = {"q1": {"p": 2, "c": 1}, "q2": {"x": 1}}  # q2 has no relevant candidate at threshold 2
    # teacher scores, standardised over all six below
    teacher = {"q1": {"p": 1.0, "a": 1.5, "b": -2.0, "c": 0.9}, "q2": {"x": -1.0, "y": 1.2}}
    values = [1.0, 1.5, -2.0, 0.9, -1.0, 1.2]
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    z = {d: (v - mean) / std for docs in teacher.values() for d, v in docs.items()}
    out = denoise_candidates(run, qrels, teacher, margin=0.5, relevance_threshold=2)
    bar = z["p"] - 0.5
    expected_q1 = {d: s for d, s in run["q1"].items() if d == "p" or d == "u" or z[d] < bar}  # u: not scored, kept
    assert out["q1"] == expected_q1 and "a" not in out["q1"] and "b" in out["q1"]  # a above the positive, b far below
    assert ("c" in out["q1"]) == (z["c"] < bar)  # c: judged 1, below the threshold: a candidate like any other
    assert out["q2"] == run["q2"]  # no scored relevant candidate: unchanged
    assert denoise_candidates(run, qrels, teacher, margin=0.0, relevance_threshold=2)["q1"].keys() == {"p", "b", "c", "u"}
    for margin in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="margin"):
            denoise_candidates(run, qrels, teacher, margin=margin)
    with pytest.raises(ValueError, match="not all equal"):
        denoise_candidates(run, qrels, {"q1": {"p": 1.0, "a": 1.0}}, margin=0.5)
