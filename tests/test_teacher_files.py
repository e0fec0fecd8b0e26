"""Tests of the teacher-file readers (Hofstätter triples, LLM rankings) and the text store."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from st_distill.data.formats import FormatError, read_trec_run
from st_distill.data.store import TextStore
from st_distill.data.teacher_files import read_llm_ranking, read_teacher_triples

TRIPLES = "1.5\t-2.0\tq1\tp1\tp2\n0.25\t0.125\tq2\tp3\tp1\n\n3e1\t-1e-1\tq1\tp2\tp3\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_triples_values_and_types(tmp_path):
    table = read_teacher_triples(write(tmp_path, "t.tsv", TRIPLES))
    assert table.column_names == ["qid", "pos_pid", "neg_pid", "pos_score", "neg_score"]
    assert table.column("qid").to_pylist() == ["q1", "q2", "q1"]
    assert table.column("neg_pid").to_pylist() == ["p2", "p1", "p3"]
    assert table.column("pos_score").type == pa.float32()
    np.testing.assert_allclose(table.column("pos_score").to_numpy(), [1.5, 0.25, 30.0])
    np.testing.assert_allclose(table.column("neg_score").to_numpy(), [-2.0, 0.125, -0.1], rtol=1e-6)


def test_triples_space_separated_and_max_rows(tmp_path):
    table = read_teacher_triples(write(tmp_path, "t.txt", TRIPLES.replace("\t", " ")), max_rows=2)
    assert table.column("pos_pid").to_pylist() == ["p1", "p3"]


def test_triples_rows_into_known_ids(tmp_path):
    queries = pa.array(["q2", "q1"])
    docs = pa.array(["p3", "p2", "p1"])
    table = read_teacher_triples(write(tmp_path, "t.tsv", TRIPLES), queries, docs)
    assert table.column("query_row").to_pylist() == [1, 0, 1]
    assert table.column("positive_row").to_pylist() == [2, 0, 1]
    assert table.column("negative_row").to_pylist() == [1, 2, 0]
    lean = read_teacher_triples(write(tmp_path, "t.tsv", TRIPLES), queries, docs, keep_ids=False)
    assert lean.column_names == ["pos_score", "neg_score", "query_row", "positive_row", "negative_row"]
    assert lean.select(lean.column_names).equals(table.drop_columns(["qid", "pos_pid", "neg_pid"]))


@pytest.mark.parametrize(
    "bad, message",
    [
        ("1.0\t2.0\tq1\tp1", "expected 5 fields"),
        ("nan\t2.0\tq1\tp1\tp2", "score 'nan' is not a finite number"),
        ("1.0\tinf\tq1\tp1\tp2", "score 'inf' is not a finite number"),
        ("1.0\tabc\tq1\tp1\tp2", "score 'abc' is not a finite number"),
        ("1.0\t2.0\tq9\tp1\tp2", "unknown query id 'q9'"),
        ("1.0\t2.0\tq1\tp1\tp9", "unknown passage id 'p9'"),
    ],
)
def test_triples_bad_line_names_file_and_line(tmp_path, bad, message):
    # the bad line is line 4 (after a blank line 3): line numbers count physical lines
    path = write(tmp_path, "t.tsv", TRIPLES.replace("\n\n", f"\n\n{bad}\n"))
    with pytest.raises(FormatError, match=message) as info:
        read_teacher_triples(path, pa.array(["q1", "q2"]), pa.array(["p1", "p2", "p3"]))
    assert str(info.value).startswith(f"{path}:4:")


def test_triples_first_bad_line_wins_across_kinds(tmp_path):
    # an unknown id on line 2 comes before a malformed line 3, although they are found in different passes
    path = write(tmp_path, "t.tsv", "1\t2\tq1\tp1\tp2\n1\t2\tq1\tp1\tzz\nbroken\n")
    with pytest.raises(FormatError) as info:
        read_teacher_triples(path, pa.array(["q1"]), pa.array(["p1", "p2"]))
    assert info.value.line == 2


def test_triples_skip_invalid_counts_and_warns(tmp_path, caplog):
    text = TRIPLES + "broken line\nnan\t1\tq1\tp1\tp2\n1\t1\tq1\tp1\tunknown\n2\t1\tq2\tp2\tp1\n"
    skipped = Counter()
    with caplog.at_level(logging.WARNING):
        table = read_teacher_triples(
            write(tmp_path, "t.tsv", text), None, pa.array(["p1", "p2", "p3"]), skip_invalid=True, skipped=skipped
        )
    assert table.column("pos_pid").to_pylist() == ["p1", "p3", "p2", "p2"]
    assert table.column("negative_row").to_pylist() == [1, 0, 2, 0]
    assert skipped == Counter({"malformed line": 1, "non-finite score": 1, "unknown passage id": 1})
    assert "skipped 3 invalid line(s)" in caplog.text and "t.tsv:5:" in caplog.text


def test_triples_empty_file(tmp_path):
    with pytest.raises(FormatError, match="no 'pos_score neg_score qid pos_pid neg_pid' line"):
        read_teacher_triples(write(tmp_path, "t.tsv", "\n"))


def test_llm_ranking_order_becomes_descending_pseudo_scores(tmp_path):
    # rank column decides, not file order nor the score column
    path = write(tmp_path, "r.run", "q1 Q0 a 2 0.9 llm\nq1 Q0 b 1 0.1 llm\nq1 Q0 c 3 5.0 llm\nq2 Q0 a 1 0 llm\n")
    assert read_llm_ranking(path) == {"q1": {"b": 3.0, "a": 2.0, "c": 1.0}, "q2": {"a": 1.0}}


def test_llm_ranking_real_rankzephyr_file(shared_data):
    path = shared_data / "rank-distillm" / "rankzephyr-msmarco-train-100q.run"
    ranking = read_llm_ranking(path)
    original = read_trec_run(path)
    assert len(ranking) == 100
    for qid, docs in ranking.items():
        values = sorted(docs.values(), reverse=True)
        assert values == [float(len(docs) - i) for i in range(len(docs))]  # n..1, no ties
        # the pseudo-score order is the file's rank order
        with open(path) as f:
            by_rank = sorted(((int(line.split()[3]), line.split()[2]) for line in f if line.split()[0] == qid))
        assert [docid for _, docid in by_rank] == sorted(docs, key=docs.get, reverse=True)
        assert set(docs) == set(original[qid])


@pytest.mark.parametrize(
    "line, message",
    [
        ("q1 Q0 b 1 0.5 llm", "rank 1 appears twice"),
        ("q1 Q0 a 2 0.5 llm", "document 'a' appears twice"),
        ("q1 Q0 z 2 0.5 llm", "unknown document id 'z'"),
        ("q9 Q0 a 1 0.5 llm", "unknown query id 'q9'"),
        ("q1 Q0 b 2 nan llm", "not a finite number"),
        ("q1 Q0 b 2", "expected 6 fields"),
    ],
)
def test_llm_ranking_rejects_bad_lines(tmp_path, line, message):
    path = write(tmp_path, "r.run", f"q1 Q0 a 1 1.0 llm\n{line}\n")
    with pytest.raises(FormatError, match=message) as info:
        read_llm_ranking(path, query_ids={"q1"}, doc_ids={"a", "b"})
    assert str(info.value).startswith(f"{path}:2:")


def test_llm_ranking_skip_invalid(tmp_path):
    path = write(tmp_path, "r.run", "q1 Q0 a 1 1 x\nq1 Q0 b 1 1 x\nq1 Q0 c 5 1 x\n")
    skipped = Counter()
    assert read_llm_ranking(path, skip_invalid=True, skipped=skipped) == {"q1": {"a": 2.0, "c": 1.0}}
    assert skipped == Counter({"duplicate rank": 1})


def test_text_store_from_tsv_and_lookup(tmp_path):
    source = write(tmp_path, "c.tsv", "d1\tfirst text\n\nd2\t second \nd3\tthird\n")
    store = TextStore.from_file(source, tmp_path / "c.arrow")
    assert len(store) == 3 and store["d2"] == "second" and "d3" in store and "d4" not in store
    rows = store.rows(["d3", "d4", "d1"])
    assert rows.tolist() == [2, -1, 0]
    assert store.texts([2, 0]) == ["third", "first text"]
    import pickle

    assert pickle.loads(pickle.dumps(store)).texts([1]) == ["second"]


@pytest.mark.parametrize(
    "text, message",
    [("d1\tone\nd2\n", ":2: expected 'id<TAB>text'"), ("d1\tone\nd1\tagain\n", ":2: id 'd1' appears twice")],
)
def test_text_store_bad_line_is_located(tmp_path, text, message):
    with pytest.raises(FormatError, match=message):
        TextStore.from_file(write(tmp_path, "c.tsv", text), tmp_path / "c.arrow")
    assert not (tmp_path / "c.arrow").exists()


def test_text_store_skip_invalid(tmp_path):
    skipped = Counter()
    store = TextStore.from_file(write(tmp_path, "c.tsv", "d1\tone\nbad\nd2\ttwo\n"), tmp_path / "c.arrow", True, skipped)
    assert dict(store.items()) == {"d1": "one", "d2": "two"} and skipped == Counter({"malformed line": 1})


def test_top_k_cuts_in_trec_eval_order():
    from st_distill.data.formats import top_k

    run = {"q": {"a": 1.0, "b": 3.0, "c": 1.0}, "r": {"x": 0.0}}
    assert top_k(run, 2) == {"q": {"b": 3.0, "c": 1.0}, "r": {"x": 0.0}}
    assert top_k(run, None) == {"q": {"b": 3.0, "c": 1.0, "a": 1.0}, "r": {"x": 0.0}}


def test_text_store_integer_ids_fast_path_matches_hash_lookup(tmp_path):
    # MS MARCO-like integer ids take the dense path; non-canonical spellings cannot match
    store = TextStore.from_texts({"10": "a", "3": "b", "7": "c"}, tmp_path / "ints.arrow")
    assert store._dense_index() is not None
    queries = ["7", "3", "10", "007", "+7", "-3", "4", "99999999999", "x"]
    assert store.rows(queries).tolist() == [2, 1, 0, -1, -1, -1, -1, -1, -1]
    mixed = TextStore.from_texts({"10": "a", "3": "b", "d7": "c"}, tmp_path / "mixed.arrow")
    assert mixed._dense_index() is None and mixed.rows(["d7", "3", "7"]).tolist() == [2, 1, -1]
    with pytest.raises(FormatError, match="appears more than once"):
        TextStore.write([pa.table({"id": ["1", "2", "1"], "text": ["a", "b", "c"]})], tmp_path / "dup.arrow")


def test_llm_ranking_warns_when_scores_order_documents_otherwise(tmp_path, caplog):
    path = tmp_path / "ranking.run"
    # q1: score rises with rank (the score column says d3 is best); q2 agrees; q3 has constant scores
    path.write_text(
        "q1 Q0 d1 1 1.0 llm\nq1 Q0 d2 2 2.0 llm\nq1 Q0 d3 3 3.0 llm\n"
        "q2 Q0 d1 1 9.0 llm\nq2 Q0 d2 2 8.0 llm\n"
        "q3 Q0 d1 1 0 llm\nq3 Q0 d2 2 0 llm\n"
    )
    with caplog.at_level("WARNING", logger="st_distill"):
        run = read_llm_ranking(path)
    assert run["q1"] == {"d1": 3.0, "d2": 2.0, "d3": 1.0}  # the rank column still decides
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert str(path) in warnings[0] and "1 of 3 queries" in warnings[0] and "'q1'" in warnings[0]


def test_llm_ranking_agreeing_scores_give_no_warning(shared_data, caplog):
    with caplog.at_level("WARNING", logger="st_distill"):
        read_llm_ranking(shared_data / "rank-distillm" / "rankzephyr-msmarco-train-100q.run")
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
