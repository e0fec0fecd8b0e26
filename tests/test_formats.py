"""Tests of the field-format readers and writers in st_distill.data.formats."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from st_distill.data.formats import (
    FormatError,
    load_beir,
    ranked,
    read_qrels,
    read_texts,
    read_trec_run,
    write_trec_run,
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_trec_run_spaces_and_tabs(tmp_path):
    path = write(tmp_path, "run.trec", "q1 Q0 d1 1 2.5 t\nq1\tQ0\td2\t2\t1.0\tt\n\nq2 Q0 d1 1 -3e-1 t\n")
    assert read_trec_run(path) == {"q1": {"d1": 2.5, "d2": 1.0}, "q2": {"d1": -0.3}}


@pytest.mark.parametrize(
    "line, message",
    [
        ("q1 Q0 d1 1 2.5", "expected 6 fields"),
        ("q1 Q0 d1 one 2.5 t", "rank 'one' is not an integer"),
        ("q1 Q0 d1 1 nan t", "not a finite number"),
        ("q1 Q0 d1 1 inf t", "not a finite number"),
        ("q1 Q0 d0 2 1.0 t", "appears twice"),
    ],
)
def test_trec_run_bad_line_names_file_and_line(tmp_path, line, message):
    path = write(tmp_path, "run.trec", f"q1 Q0 d0 1 3.0 t\n{line}\n")
    with pytest.raises(FormatError, match=message) as info:
        read_trec_run(path)
    assert str(info.value).startswith(f"{path}:2:")
    assert info.value.line == 2


def test_trec_run_skip_invalid_counts_and_warns(tmp_path, caplog):
    path = write(tmp_path, "run.trec", "q1 Q0 d1 1 2.5 t\nbroken\nq1 Q0 d2 2 nan t\nq1 Q0 d3 3 1 t\n")
    skipped = Counter()
    with caplog.at_level(logging.WARNING):
        run = read_trec_run(path, skip_invalid=True, skipped=skipped)
    assert run == {"q1": {"d1": 2.5, "d3": 1.0}}
    assert skipped == Counter({"malformed line": 1, "non-finite score": 1})
    assert "skipped 2 invalid line(s)" in caplog.text and ":2:" in caplog.text


def test_empty_run_is_an_error(tmp_path):
    with pytest.raises(FormatError, match="the run is empty"):
        read_trec_run(write(tmp_path, "run.trec", "\n"))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_trec_run(tmp_path / "nope.trec")


def test_write_trec_run_roundtrip_in_trec_eval_order(tmp_path):
    run = {"q1": {"a": 1.0, "b": 3.0, "c": 1.0}}
    path = tmp_path / "out" / "run.trec"
    write_trec_run(run, path, tag="x")
    lines = path.read_text().splitlines()
    # score descending, ties by docid descending (trec_eval's order)
    assert [line.split()[2] for line in lines] == ["b", "c", "a"]
    assert [line.split()[3] for line in lines] == ["1", "2", "3"]
    assert read_trec_run(path) == run
    assert ranked(run["q1"])[0] == ("b", 3.0)
    assert not list(path.parent.glob(".*.tmp"))


def test_qrels_trec_and_beir(tmp_path):
    trec = write(tmp_path, "qrels.txt", "q1 0 d1 2\nq1 0 d2 0\nq2 Q0 d3 -1\n")
    assert read_qrels(trec) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": -1}}
    beir = write(tmp_path, "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\n")
    assert read_qrels(beir) == {"q1": {"d1": 1, "d2": 2}}


@pytest.mark.parametrize(
    "text, message",
    [
        ("q1 0 d1\n", "expected 'qid iter docid grade'"),
        ("q1 0 d1 high\n", "grade 'high' is not an integer"),
        ("q1 0 d1 1\nq1 0 d1 2\n", "judged twice"),
    ],
)
def test_qrels_errors(tmp_path, text, message):
    with pytest.raises(FormatError, match=message):
        read_qrels(write(tmp_path, "qrels.txt", text))


def test_tsv_and_jsonl_texts(tmp_path):
    assert read_texts(write(tmp_path, "q.tsv", "1\thello world\n2\tbye\n")) == {"1": "hello world", "2": "bye"}
    corpus = write(tmp_path, "corpus.jsonl", '{"_id": "d1", "title": "T", "text": "body"}\n{"_id": 7, "text": "x"}\n')
    assert read_texts(corpus) == {"d1": "T body", "7": "x"}
    with pytest.raises(FormatError, match=r"q\.tsv:2: expected 'id<TAB>text'"):
        read_texts(write(tmp_path, "q.tsv", "1\thello\nno tab here\n"))
    with pytest.raises(FormatError, match=r"c\.jsonl:1: invalid JSON"):
        read_texts(write(tmp_path, "c.jsonl", "{oops\n"))
    with pytest.raises(FormatError, match="unknown text format"):
        read_texts(write(tmp_path, "c.csv", "a,b\n"))


def test_real_trec_dl_2019(shared_data):
    run = read_trec_run(shared_data / "trec-dl-2019" / "run.bm25.top100.trec")
    qrels = read_qrels(shared_data / "trec-dl-2019" / "qrels.txt")
    assert len(run) == 43 and sum(map(len, run.values())) == 4300
    assert set(run) <= set(qrels)


def test_real_beir_scifact(shared_data):
    data = load_beir(shared_data / "scifact", "test")
    assert (len(data.corpus), len(data.queries), len(data.qrels)) == (5183, 1109, 300)
    with pytest.raises(FileNotFoundError, match="splits here: test, train"):
        load_beir(shared_data / "scifact", "dev")


def test_write_trec_run_keeps_close_scores_apart(tmp_path):
    # two scores 1e-8 apart: fixed six decimals would tie them and trec_eval would reorder by docid
    run = {"q1": {"a": 0.10000001, "b": 0.10000002, "c": -1e-12}}
    path = tmp_path / "run.trec"
    write_trec_run(run, path)
    assert read_trec_run(path) == run
    assert [line.split()[2] for line in path.read_text().splitlines()] == ["b", "a", "c"]


@pytest.mark.parametrize(
    "reader, data",
    [
        (read_trec_run, b"q1 Q0 d1 1 2.0 run\nq1 Q0 d\xe92 2 1.0 run\n"),
        (read_qrels, b"q1 0 d1 1\nq1 0 d\xe92 0\n"),
    ],
)
def test_invalid_utf8_names_the_line(tmp_path, reader, data):
    path = tmp_path / "file.txt"
    path.write_bytes(data)
    with pytest.raises(FormatError, match=r"file\.txt:2: not valid UTF-8"):
        reader(path)
