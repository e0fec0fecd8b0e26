"""Teacher-score normalisation against independent per-query numpy/scipy references, and its use by the builder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

from st_distill.dataset import build_dataset, load_report
from st_distill.data.normalize import NORMALIZATIONS, normalize_run, normalize_scores


def reference(run: dict[str, dict[str, float]], method: str) -> dict[str, dict[str, float]]:
    """The definitions written out query by query (the module docstring's table), with plain numpy."""
    every = np.array([s for docs in run.values() for s in docs.values()], dtype=np.float64)
    out = {}
    for qid, docs in run.items():
        s = np.array(list(docs.values()), dtype=np.float64)
        if method == "raw":
            t = s
        elif method == "sigmoid":
            t = 1.0 / (1.0 + np.exp(-s))
        elif method == "minmax":
            t = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.full_like(s, 0.5)
        elif method == "zscore":
            t = (s - s.mean()) / s.std() if s.std() > 0 else np.zeros_like(s)
        elif method == "global-zscore":
            t = (s - every.mean()) / every.std() if every.std() > 0 else np.zeros_like(s)
        else:  # rank: average ranks for ties, best 1, worst 0
            t = (rankdata(s, method="average") - 1) / (len(s) - 1) if len(s) > 1 else np.array([0.5])
        out[qid] = dict(zip(docs, t.tolist()))
    return out


HAND = {
    "ties": {"a": 3.0, "b": 1.0, "c": 3.0, "d": -2.0, "e": 1.0},
    "single": {"only": 7.5},
    "constant": {"x": 2.0, "y": 2.0},
    "logits": {"p": 21.7, "q": -11.9, "r": 0.25},
}


def assert_runs_close(actual, expected):
    assert actual.keys() == expected.keys()
    for qid in expected:
        assert list(actual[qid]) == list(expected[qid])
        np.testing.assert_allclose(list(actual[qid].values()), list(expected[qid].values()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", NORMALIZATIONS)
def test_each_method_matches_the_reference_with_ties_a_single_document_and_constant_queries(method):
    assert_runs_close(normalize_run(HAND, method), reference(HAND, method))


def test_hand_values_of_the_degenerate_cases():
    ranks = normalize_run(HAND, "rank")
    assert ranks["ties"] == {"a": 0.875, "b": 0.375, "c": 0.875, "d": 0.0, "e": 0.375}  # average ranks 4.5, 2.5, 1
    assert ranks["single"] == {"only": 0.5} and ranks["constant"] == {"x": 0.5, "y": 0.5}
    assert normalize_run(HAND, "minmax")["single"] == {"only": 0.5}
    assert normalize_run(HAND, "zscore")["constant"] == {"x": 0.0, "y": 0.0}
    assert normalize_run({"q": {"a": 4.0, "b": 4.0}}, "global-zscore") == {"q": {"a": 0.0, "b": 0.0}}


# scores on a grid of halves: sums are exact in any order (so the reference's order of summation
# cannot matter), and ties are frequent
scores = st.integers(-60, 60).map(lambda i: i / 2)
runs = st.dictionaries(
    st.text("abc", min_size=1, max_size=3),
    st.dictionaries(st.text("xyz", min_size=1, max_size=3), scores, min_size=1, max_size=8),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(run=runs, method=st.sampled_from(NORMALIZATIONS))
def test_any_run_matches_the_reference(run, method):
    actual, expected = normalize_run(run, method), reference(run, method)
    for qid in expected:
        np.testing.assert_allclose(list(actual[qid].values()), list(expected[qid].values()), rtol=1e-9, atol=1e-9)


def test_groups_need_not_be_contiguous_and_bad_input_is_named():
    scores, groups = np.array([5.0, 1.0, 3.0, 2.0]), np.array([1, 0, 1, 0])
    np.testing.assert_allclose(normalize_scores(scores, groups, "minmax"), [1.0, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="unknown normalisation 'softmax'.*raw, sigmoid"):
        normalize_scores(scores, groups, "softmax")
    with pytest.raises(ValueError, match="non-finite"):
        normalize_scores(np.array([np.nan]), np.array([0]), "zscore")


QUERIES = {"q1": "cats", "q2": "towers", "q3": "water"}
CORPUS = {f"d{i}": f"passage number {i}" for i in range(8)}
QRELS = {"q1": {"d0": 1}, "q2": {"d1": 1}, "q3": {"d2": 1}}
NEGATIVES = {"q1": ["d3", "d4"], "q2": ["d5", "d6"], "q3": ["d7", "d3"]}
TEACHER = {
    "q1": {"d0": 9.0, "d3": 1.0, "d4": -4.0, "d5": 0.0},  # d5 is scored but in no row: it still counts
    "q2": {"d1": 3.0, "d5": 3.0, "d6": -1.0},
    "q3": {"d2": 20.0, "d7": -12.0, "d3": 2.5},
}


@pytest.mark.parametrize("method", NORMALIZATIONS)
def test_the_builder_reads_targets_normalised_over_each_querys_teacher_scores(method):
    dataset, report = build_dataset(
        "marginmse", QUERIES, CORPUS, qrels=QRELS, negatives=NEGATIVES, teacher_scores=TEACHER, n_negatives=2, normalize=method
    )
    expected = reference(TEACHER, method)
    by_text = {text: docid for docid, text in CORPUS.items()}
    for row in dataset:
        qid = next(q for q, text in QUERIES.items() if text == row["query"])
        docs = [by_text[row[c]] for c in ("positive", "negative_1", "negative_2")]
        np.testing.assert_allclose(row["scores"], [expected[qid][d] for d in docs], rtol=1e-6, atol=1e-6)
    assert report.normalize == method and report.rows == 3


def test_listwise_ranking_scores_are_normalised_but_keep_their_order():
    ranking = {"q1": {"d0": 3.0, "d3": 2.0, "d4": 1.0}, "q2": {"d1": 2.0, "d6": 1.0}}
    dataset, report = build_dataset("distillranknet", QUERIES, CORPUS, candidates=ranking, n_negatives=2, normalize="minmax")
    assert [row["scores"] for row in dataset] == [[1.0, 0.5, 0.0], [1.0, 0.0]]
    assert dataset[0]["docs"] == [CORPUS["d0"], CORPUS["d3"], CORPUS["d4"]] and report.normalize == "minmax"


def test_label_objectives_refuse_a_normalisation_and_record_none():
    kwargs = dict(qrels=QRELS, negatives=NEGATIVES, n_negatives=2)
    with pytest.raises(ValueError, match="infonce: trains on labels.*'zscore' does not apply"):
        build_dataset("infonce", QUERIES, CORPUS, normalize="zscore", **kwargs)
    assert build_dataset("infonce", QUERIES, CORPUS, **kwargs)[1].normalize is None


def test_normalisation_is_chosen_at_teacher_time_and_applied_at_build_time_without_rescoring(tiny_model_path, tmp_path, capsys):
    from st_distill.cli import main
    from st_distill.teachers import load_cached_scores

    (tmp_path / "queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    (tmp_path / "corpus.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in CORPUS.items()))
    (tmp_path / "qrels.txt").write_text("".join(f"{q} 0 {d} 1\n" for q, docs in QRELS.items() for d in docs))
    (tmp_path / "pairs.trec").write_text("".join(f"{q} Q0 {d} 1 0 x\n" for q, docs in TEACHER.items() for d in docs))
    (tmp_path / "negatives.trec").write_text(
        "".join(f"{q} Q0 {d} {i + 1} {-i} bm25\n" for q, docs in NEGATIVES.items() for i, d in enumerate(docs))
    )
    texts = ["--queries", str(tmp_path / "queries.tsv"), "--corpus", str(tmp_path / "corpus.tsv")]
    teacher = ["teacher", *texts, "--run", str(tmp_path / "pairs.trec"), "--cross-encoder", tiny_model_path,
               "--max-length", "64", "--cache", str(tmp_path / "cache")]
    assert main([*teacher, "--normalize", "minmax", "--output", str(tmp_path / "t.trec")]) == 0
    assert "10 pairs scored, 0 from the cache" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["normalize"] == "minmax"
    raw = load_cached_scores(tmp_path / "cache")
    assert raw.normalize == "minmax"
    from st_distill.data.formats import read_trec_run

    written = read_trec_run(tmp_path / "t.trec")
    for qid, docs in reference(raw.to_run(), "minmax").items():  # --output holds the targets
        np.testing.assert_allclose([written[qid][d] for d in docs], list(docs.values()), atol=1e-6)
    build = ["build", "marginmse", *texts, "--qrels", str(tmp_path / "qrels.txt"), "--negatives-run", str(tmp_path / "negatives.trec"),
             "--negatives", "2", "--n-negatives", "2", "--teacher-cache", str(tmp_path / "cache")]
    assert main([*build, "--output", str(tmp_path / "a")]) == 0
    assert load_report(tmp_path / "a")["normalize"] == "minmax"
    assert load_report(tmp_path / "a")["teacher"]["fingerprints"] == raw.ensemble["fingerprints"]
    assert main([*build, "--normalize", "rank", "--output", str(tmp_path / "b")]) == 0
    assert load_report(tmp_path / "b")["normalize"] == "rank"
    capsys.readouterr()
    assert main([*teacher, "--normalize", "zscore"]) == 0  # another choice: nothing is scored again
    assert "0 pairs scored, 10 from the cache" in capsys.readouterr().out
    assert json.loads((tmp_path / "cache" / "manifest.json").read_text())["normalize"] == "zscore"
    np.testing.assert_array_equal(load_cached_scores(tmp_path / "cache").scores, raw.scores)  # the cache stays raw


def test_mse_rows_carry_normalised_teacher_scores():
    dataset, report = build_dataset("mse", QUERIES, CORPUS, candidates=TEACHER, teacher_scores=TEACHER, n_negatives=3, normalize="zscore")
    expected = reference(TEACHER, "zscore")
    by_text = {text: docid for docid, text in CORPUS.items()}
    qid_of = {text: qid for qid, text in QUERIES.items()}
    assert report.normalize == "zscore" and report.rows == sum(map(len, TEACHER.values()))
    for row in dataset:
        assert row["score"] == pytest.approx(expected[qid_of[row["query"]]][by_text[row["document"]]], abs=1e-6)
