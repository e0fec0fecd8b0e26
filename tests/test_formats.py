"""Tests of the field-format readers and writers in st_distill.data.formats."""

from __future__ import annotations

import gzip
import logging
import os
from collections import Counter

import pytest

from st_distill.data.formats import (
    FormatError,
    load_beir,
    ranked,
    read_jsonl,
    read_qrels,
    read_texts,
    read_trec_run,
    read_tsv,
    top_k,
    write_trec_run,
)
from st_distill.data.teacher_files import read_llm_ranking, read_teacher_triples
from st_distill.evaluation.metrics import evaluate
from st_distill.io import atomic_write, write_json

BOM = "\ufeff"


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


# --- byte order marks (issue 11, finding 3) ---------------------------------------------------


def test_bom_before_a_relevant_qrels_line_keeps_ndcg(tmp_path):
    run = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "q2": {"d4": 2.0, "d5": 1.0}}
    lines = "q1 0 d2 2\nq1 0 d3 1\nq2 0 d5 1\n"
    plain = evaluate(run, read_qrels(write(tmp_path, "plain.txt", lines)), ["nDCG@10"]).aggregate
    with_bom = evaluate(run, read_qrels(write(tmp_path, "bom.txt", BOM + lines)), ["nDCG@10"]).aggregate
    assert with_bom == plain
    # the reference (trec_eval: linear gains, log2(rank + 1) discounts): q1's ideal order is
    # d2 (grade 2), d3 (grade 1); the run ranks them 2nd and 3rd
    ideal = 2 / 1 + 1 / 1.5849625007211562
    q1 = (2 / 1.5849625007211562 + 1 / 2) / ideal
    q2 = (1 / 1.5849625007211562) / 1
    assert plain["nDCG@10"] == pytest.approx((q1 + q2) / 2)


@pytest.mark.parametrize(
    "reader, name, text",
    [
        (read_trec_run, "run.trec", "q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 1.5 t\n"),
        (read_llm_ranking, "llm.trec", "q1 Q0 d1 1 0 t\nq1 Q0 d2 2 0 t\n"),
        (read_qrels, "qrels.txt", "q1 0 d1 2\n"),
        (read_qrels, "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n"),
        (read_tsv, "queries.tsv", "q1\thello\n"),
        (read_jsonl, "corpus.jsonl", '{"_id": "d1", "text": "hello"}\n'),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_every_line_reader_drops_a_leading_bom(tmp_path, reader, name, text, gz):
    def put(file_name, content):
        path = tmp_path / (file_name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(content.encode()) if gz else content.encode())
        return path

    assert reader(put("bom-" + name, BOM + text)) == reader(put(name, text))


@pytest.mark.parametrize("name", ["q.tsv", "q.tsv.gz", "q.jsonl"])  # indexed in place, copied, read by line
def test_text_store_drops_a_leading_bom(tmp_path, name):
    from st_distill.data.store import TextStore

    text = '{"_id": "q1", "text": "hello"}\n' if name.endswith(".jsonl") else "q1\thello\nq2\tbye\n"
    data = (BOM + text).encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert list(TextStore.from_file(path, tmp_path / "store.arrow"))[0] == "q1"


@pytest.mark.parametrize("name", ["t.tsv", "t.tsv.gz"])  # the fast (pyarrow) and the line-by-line pass
def test_triples_drop_a_leading_bom(tmp_path, name):
    data = (BOM + "1.5\t0.5\tq1\td1\td2\n").encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert read_teacher_triples(path).column("qid").to_pylist() == ["q1"]


# --- empty texts and BEIR ids (findings 4 and 9) -----------------------------------------------


@pytest.mark.parametrize(
    "name, text",
    [
        ("q.tsv", "q1\tfine\nq2\t  \n"),
        ("q.tsv", "q1\tfine\nq2\t\n"),
        ("queries.jsonl", '{"_id": "q1", "text": "fine"}\n{"_id": "q2", "text": ""}\n'),
        ("corpus.jsonl", '{"_id": "q1", "text": "fine"}\n{"_id": "q2", "title": " ", "text": " "}\n'),
    ],
)
def test_empty_text_is_an_error_or_a_counted_skip(tmp_path, name, text):
    path = write(tmp_path, name, text)
    with pytest.raises(FormatError, match=r":2: empty text for id 'q2'") as info:
        read_texts(path)
    assert info.value.line == 2
    skipped = Counter()
    assert read_texts(path, skip_invalid=True, skipped=skipped) == {"q1": "fine"}
    assert skipped == Counter({"empty text": 1})


def test_empty_text_in_a_hugging_face_subset_is_an_error(tmp_path):
    from datasets import Dataset

    from st_distill.data.sources import msmarco_text_store

    dataset = Dataset.from_dict({"passage_id": [7, 8], "passage": ["a passage", " "]})
    with pytest.raises(ValueError, match=r"corpus: row 1 \(id '8'\) has an empty passage"):
        msmarco_text_store(dataset, tmp_path / "corpus.arrow")


def test_beir_integer_id_reads_as_its_digits(tmp_path):
    corpus = write(tmp_path, "corpus.jsonl", '{"_id": 4983, "text": "x"}\n{"_id": -7, "title": "T", "text": "y"}\n')
    assert read_jsonl(corpus) == {"4983": "x", "-7": "T y"}


@pytest.mark.parametrize(
    "value, message",
    [
        ("4983.0", "'_id' must be a string \\(or an integer\\), got float 4983.0"),
        ("null", "got NoneType null"),
        ("[4983]", "got list \\[4983\\]"),
        ("true", "got bool true"),
        ('""', "empty '_id'"),
    ],
)
def test_beir_id_of_another_type_is_an_error(tmp_path, value, message):
    corpus = write(tmp_path, "corpus.jsonl", f'{{"_id": "d1", "text": "x"}}\n{{"_id": {value}, "text": "a passage"}}\n')
    with pytest.raises(FormatError, match=f"corpus.jsonl:2: .*{message}"):
        read_jsonl(corpus)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"_id": "d1", "title": 5, "text": "x"}', "'title' must be a string"),
        ('{"_id": "d\\ud800", "text": "x"}', "lone surrogate"),
        ("[" * 100_000, "invalid JSON"),
        ('{"_id": ' + "9" * 5000 + ', "text": "x"}', "invalid JSON"),
    ],
)
def test_beir_record_that_is_not_text_is_an_error(tmp_path, line, message):
    with pytest.raises(FormatError, match=f"c.jsonl:1: .*{message}"):
        read_jsonl(write(tmp_path, "c.jsonl", line + "\n"))


# --- numbers (finding 13) and grades (finding 10) ------------------------------------------------


@pytest.mark.parametrize(
    "reader, text, message",
    [
        (read_trec_run, "q1 Q0 d1 1 1_000 t\n", "score '1_000' is not a finite number"),
        (read_trec_run, "q1 Q0 d1 1 \u0661 t\n", "score '\u0661' is not a finite number"),
        (read_trec_run, "q1 Q0 d1 1 1e400 t\n", "score '1e400' is not a finite number"),
        (read_trec_run, "q1 Q0 d1 1_0 1.0 t\n", "rank '1_0' is not an integer"),
        (read_llm_ranking, "q1 Q0 d1 \u0661 1.0 t\n", "rank '\u0661' is not an integer"),
        (read_qrels, "q1 0 d1 1_0\n", "grade '1_0' is not an integer"),
        (read_qrels, "query-id\tcorpus-id\tscore\nq1\td1\t1_0\n", "grade '1_0' is not an integer"),
        (read_teacher_triples, "1_0\t0.5\tq1\td1\td2\n", "score '1_0' is not a finite number"),
    ],
)
def test_python_only_number_spellings_are_errors(tmp_path, reader, text, message):
    path = write(tmp_path, "file.txt", text)
    with pytest.raises(FormatError, match=message) as info:
        reader(path)
    assert info.value.line == text.count("\n")


def test_qrels_grade_out_of_range_is_an_error_at_read_time(tmp_path):
    path = write(tmp_path, "qrels.txt", f"q1 0 d1 1\nq1 0 d2 {10**20}\n")
    with pytest.raises(FormatError, match=r"qrels.txt:2: grade 100000000000000000000 is out of range"):
        read_qrels(path)
    assert read_qrels(write(tmp_path, "ok.txt", "q1 0 d1 10000\nq1 0 d2 -10000\n")) == {"q1": {"d1": 10000, "d2": -10000}}


@pytest.mark.parametrize("grade", [10**20, 10_001, 1.5])
def test_evaluate_rejects_grades_trec_eval_cannot_take(grade):
    with pytest.raises(ValueError, match=f"grade {grade!r} of document 'd1' for query 'q1'"):
        evaluate({"q1": {"d1": 1.0}}, {"q1": {"d1": grade}}, ["nDCG@10", "AP"])


def test_unicode_space_inside_a_trec_line_is_an_error(tmp_path):
    # Python's str.split (and ir_measures' reader) would cut 'd\xa01' in two; trec_eval would not
    with pytest.raises(FormatError, match=r"run.trec:1: holds U\+00A0, a Unicode space"):
        read_trec_run(write(tmp_path, "run.trec", "q1 Q0 d\xa01 1 2.5 t\n"))


def test_lone_carriage_return_ends_a_line(tmp_path):
    # as Python's text mode and pyarrow read it; the line number counts newlines
    path = write(tmp_path, "q.tsv", "q1\tone\rq2\ttwo\nq3\tthree\r\n")
    assert read_tsv(path) == {"q1": "one", "q2": "two", "q3": "three"}
    with pytest.raises(FormatError, match=r"q.tsv:2: id 'q1' appears twice"):
        read_tsv(write(tmp_path, "q.tsv", "q0\tzero\nq2\ttwo\rq1\tone\rq1\tagain\n"))


# --- files: gzip, folders, modes (findings 10 and 11) ------------------------------------------------


def test_gz_that_is_not_gzip_names_the_file(tmp_path):
    path = write(tmp_path, "queries.tsv.gz", "q1\tnot compressed\n")
    with pytest.raises(FormatError, match=r"queries.tsv.gz: not a gzip file"):
        read_texts(path)


def test_cut_short_gzip_names_the_file_and_line(tmp_path):
    data = gzip.compress("".join(f"q{i}\tquery number {i}\n" for i in range(2000)).encode())
    path = tmp_path / "queries.tsv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"queries.tsv.gz:\d+: the gzip data is corrupt or cut short"):
        read_texts(path)


@pytest.mark.parametrize("reader", [read_trec_run, read_qrels, read_tsv, read_teacher_triples])
def test_a_folder_given_as_a_file_is_named_as_such(tmp_path, reader):
    with pytest.raises(IsADirectoryError, match="is a directory, expected a file"):
        reader(tmp_path)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_atomic_write_honours_the_umask(tmp_path, umask_022):
    write_json(tmp_path / "sub" / "metrics.json", {"a": 1})
    with atomic_write(tmp_path / "run.trec") as f:
        f.write("x")
    assert oct((tmp_path / "sub" / "metrics.json").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "run.trec").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "sub").stat().st_mode & 0o777) == "0o755"
    os.umask(0o077)
    write_json(tmp_path / "private.json", {})
    assert oct((tmp_path / "private.json").stat().st_mode & 0o777) == "0o600"


# --- writing runs that read back (finding 9) and depths (finding 5) ----------------------------


@pytest.mark.parametrize(
    "run, message",
    [
        ({"q1": {"d 1": 1.0}}, "document id 'd 1' \\(query 'q1'\\) holds whitespace"),
        ({"q 1": {"d1": 1.0}}, "query id 'q 1' holds whitespace"),
        ({"q1": {"": 1.0}}, "document id '' \\(query 'q1'\\) is empty"),
        ({"q1": {"d\u20281": 1.0}}, "holds whitespace \\(U\\+2028\\)"),
        ({"q1": {"d1": float("nan")}}, "score nan of document 'd1'"),
    ],
)
def test_write_trec_run_refuses_what_it_could_not_read_back(tmp_path, run, message):
    path = tmp_path / "run.trec"
    path.write_text("previous\n")
    with pytest.raises(ValueError, match=message):
        write_trec_run(run, path)
    assert path.read_text() == "previous\n"  # untouched
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("k", [0, -1])
def test_top_k_rejects_a_depth_below_one(k):
    with pytest.raises(ValueError, match=f"must be at least 1, got {k}"):
        top_k({"q1": {"d1": 1.0, "d2": 0.5}}, k)


def test_the_readers_split_by_format_keep_every_name_in_formats():
    """formats.py was split (line machinery, TREC runs and qrels, texts): each public name still imports from it."""
    import st_distill.data.formats as formats
    from st_distill.data import lines, texts, trec

    before = ["GRADE_LIMIT", "UTF8_BOM", "BadLine", "Collection", "FormatError", "LineChecker", "Qrels", "Run", "Texts", "check_run_ids",
              "iter_trec_run", "line_of_id", "load_beir", "numbered_lines", "parse_int", "parse_score", "ranked", "read_jsonl",
              "read_qrels", "read_texts", "read_trec_run", "read_tsv", "run_id_problem", "split_fields", "top_k", "write_trec_run"]
    assert sorted(formats.__all__) == sorted(before)
    for module in (lines, texts, trec):
        for name in module.__all__:
            assert name == "records" or getattr(formats, name) is getattr(module, name)
