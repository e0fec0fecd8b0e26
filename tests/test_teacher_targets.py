"""Teacher targets are checked where scores become labels (reliability #20, item 9), and teacher
scores travel to the builder as one (qid, docid, score) table."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from st_distill.dataset import build_dataset
from st_distill.data.normalize import normalize_run, normalize_table, run_table, scores_provenance, scores_table, table_run
from fake_teachers import LengthTeacher

from st_distill.teachers import load_cached_scores, score_with_teachers

QUERIES = {"q1": "cats", "q2": "dogs"}
CORPUS = {f"d{i}": f"document {i}" for i in range(6)}
QRELS = {"q1": {"d0": 1}, "q2": {"d3": 1}}
NEGATIVES = {"q1": ["d1", "d2"], "q2": ["d4", "d5"]}
RUN = {"q1": {"d0": 3.0, "d1": 2.0, "d2": 1.0}, "q2": {"d3": 3.0, "d4": 2.0, "d5": 1.0}}


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_a_nan_teacher_score_is_refused_naming_the_pair():
    teacher = {"q1": {"d0": 4.0, "d1": 1.0, "d2": 0.5}, "q2": {"d3": 2.0, "d4": math.nan, "d5": 0.0}}
    with pytest.raises(ValueError, match=r"marginmse: teacher_scores: 1 NaN score.*'q2'.*'d4'"):
        build_dataset("marginmse", QUERIES, CORPUS, qrels=QRELS, negatives=NEGATIVES, teacher_scores=teacher, n_negatives=2)


def test_a_nan_in_a_scores_table_is_refused_before_normalising():
    table = scores_table(["q1", "q1", "q1"], ["d0", "d1", "d2"], np.array([1.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match=r"NaN.*'q1'.*'d1'"):
        build_dataset("kldistill", QUERIES, CORPUS, candidates=RUN, teacher_scores=table, n_negatives=2, normalize="zscore")


def test_sigmoid_squashed_scores_warn_for_marginmse_and_mse(caplog):
    probabilities = {"q1": {"d0": 0.97, "d1": 0.2, "d2": 0.01}, "q2": {"d3": 0.9, "d4": 0.5, "d5": 0.3}}
    with caplog.at_level("WARNING", logger="st_distill"):
        build_dataset("marginmse", QUERIES, CORPUS, qrels=QRELS, negatives=NEGATIVES, teacher_scores=probabilities, n_negatives=2)
    assert any("sigmoid-squashed" in m and "marginmse" in m and "all 6 teacher scores" in m for m in warnings_of(caplog))
    caplog.clear()
    with caplog.at_level("WARNING", logger="st_distill"):
        build_dataset("mse", QUERIES, CORPUS, candidates=RUN, teacher_scores=probabilities, n_negatives=2)
    assert any("sigmoid-squashed" in m and "mse" in m for m in warnings_of(caplog))


def test_logits_or_a_chosen_normalisation_do_not_warn(caplog):
    logits = {"q1": {"d0": 7.5, "d1": -2.0, "d2": -6.0}, "q2": {"d3": 3.0, "d4": 0.5, "d5": -1.0}}
    probabilities = {q: {d: 1 / (1 + math.exp(-s)) for d, s in docs.items()} for q, docs in logits.items()}
    with caplog.at_level("WARNING", logger="st_distill"):
        build_dataset("marginmse", QUERIES, CORPUS, qrels=QRELS, negatives=NEGATIVES, teacher_scores=logits, n_negatives=2)
        build_dataset("marginmse", QUERIES, CORPUS, qrels=QRELS, negatives=NEGATIVES, teacher_scores=probabilities,
                      n_negatives=2, normalize="zscore")
    assert not warnings_of(caplog)


def test_a_softmax_that_underflows_at_the_loss_temperature_warns_with_a_safe_temperature(caplog):
    wide = {"q1": {"d0": 250.0, "d1": 20.0, "d2": -10.0}, "q2": {"d3": 3.0, "d4": 2.0, "d5": 1.0}}
    with caplog.at_level("WARNING", logger="st_distill"):
        build_dataset("kldistill", QUERIES, CORPUS, candidates=RUN, teacher_scores=wide, n_negatives=2)
    messages = [m for m in warnings_of(caplog) if "underflows" in m]
    assert len(messages) == 1
    # spread 260 at kldistill's temperature 1: safe above 260 / 100
    assert "spans 260.0" in messages[0] and "temperature 1" in messages[0] and "above 2.6" in messages[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="st_distill"):  # per-query z-scores are safe
        build_dataset("kldistill", QUERIES, CORPUS, candidates=RUN, teacher_scores=wide, n_negatives=2, normalize="zscore")
    assert not [m for m in warnings_of(caplog) if "underflows" in m]


def test_scores_table_round_trips_a_run_and_keeps_its_provenance():
    table = run_table(RUN)
    assert table.column_names == ["qid", "docid", "score"] and table.column("score").type == pa.float64()
    assert table_run(table) == RUN
    recorded = scores_table(table.column("qid"), table.column("docid"), table.column("score"), normalize="rank",
                            teacher={"ensemble": "mean", "teachers": ["a"], "fingerprints": {"a": "f"}})
    assert scores_provenance(recorded) == ("rank", {"ensemble": "mean", "teachers": ["a"], "fingerprints": {"a": "f"}})
    assert scores_provenance(table) == (None, None)


@pytest.mark.parametrize("method", ["minmax", "zscore", "global-zscore", "rank", "sigmoid"])
def test_normalize_table_matches_per_query_reference(method):
    run = {"q1": {"a": 3.0, "b": 1.0, "c": -2.0}, "q2": {"a": 0.5, "d": 0.5}, "q3": {"e": 9.0}}
    got = table_run(normalize_table(run_table(run), method))
    every = np.array([s for docs in run.values() for s in docs.values()])
    for qid, docs in run.items():
        s = np.array(list(docs.values()))
        if method == "minmax":
            t = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.full_like(s, 0.5)
        elif method == "zscore":
            t = (s - s.mean()) / s.std() if s.std() > 0 else np.zeros_like(s)
        elif method == "global-zscore":
            t = (s - every.mean()) / every.std()
        elif method == "rank":
            t = {"q1": np.array([1.0, 0.5, 0.0]), "q2": np.array([0.5, 0.5]), "q3": np.array([0.5])}[qid]
        else:
            t = 1 / (1 + np.exp(-s))
        np.testing.assert_allclose(list(got[qid].values()), t, rtol=1e-12)
    assert got == normalize_run(run, method)


class SumTeacher(LengthTeacher):
    name = "sum"
    jitter = True


def test_teacher_scores_reach_the_builder_as_their_table(tmp_path):
    pairs = [(q, d) for q in QUERIES for d in CORPUS]
    score_with_teachers([SumTeacher()], pairs, QUERIES, CORPUS, tmp_path, normalize="minmax")
    cached = load_cached_scores(tmp_path, queries=QUERIES, corpus=CORPUS)
    table = cached.table()
    assert table.column_names == ["qid", "docid", "score"] and table.num_rows == len(pairs)
    assert scores_provenance(table)[0] == "minmax"
    np.testing.assert_array_equal(table.column("score").to_numpy(), cached.scores)
    assert pa.table(cached).equals(table, check_metadata=True)  # the TeacherScores is itself an Arrow stream
    candidates = table_run(table)
    by_table, report = build_dataset("kldistill", QUERIES, CORPUS, candidates=candidates, teacher_scores=table, n_negatives=3, ids=True)
    by_object, _ = build_dataset("kldistill", QUERIES, CORPUS, candidates=candidates, teacher_scores=cached, n_negatives=3, ids=True)
    assert by_table.data.table.equals(by_object.data.table)
    assert report.normalize == "minmax" and report.teacher["teachers"] == ["sum"]
    expected = normalize_run(candidates, "minmax")  # per query, over all of its scored documents
    for row in by_table:
        assert row["scores"] == pytest.approx([expected[row["query_id"]][d] for d in row["doc_ids"]], rel=1e-6)
