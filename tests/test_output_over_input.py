"""An output path that resolves to an input is refused before any work (reliability #20, item 6)."""

from __future__ import annotations

import os

import pytest

from st_distill import cli
from st_distill.io import refuse_output_over_input

CORPUS = "d1\tchocolate cake recipe\nd2\tdogs are loyal\nd3\tcats sleep a lot\n"
QUERIES = "q1\tchocolate\nq2\tdogs\n"
RUN = "q1 Q0 d1 1 3.0 bm25\nq1 Q0 d2 2 2.0 bm25\nq2 Q0 d2 1 3.0 bm25\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "passages.tsv").write_text(CORPUS)
    (tmp_path / "queries.tsv").write_text(QUERIES)
    (tmp_path / "run.trec").write_text(RUN)
    return tmp_path


def test_retrieve_refuses_output_equal_to_corpus(files, capsys):
    code = cli.main(["retrieve", "--corpus", str(files / "passages.tsv"), "--queries", str(files / "queries.tsv"),
                     "--output", str(files / "passages.tsv")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--output" in err and "--corpus" in err and "passages.tsv" in err
    assert (files / "passages.tsv").read_text() == CORPUS  # untouched


def test_retrieve_refuses_output_through_a_symlink(files, capsys):
    os.symlink(files / "queries.tsv", files / "link.trec")
    code = cli.main(["retrieve", "--corpus", str(files / "passages.tsv"), "--queries", str(files / "queries.tsv"),
                     "--output", str(files / "link.trec")])
    assert code == 2
    assert "--queries" in capsys.readouterr().err
    assert (files / "queries.tsv").read_text() == QUERIES


def test_retrieve_refuses_output_over_a_beir_file(tmp_path, capsys):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    corpus = '{"_id": "d1", "title": "", "text": "chocolate"}\n'
    (beir / "corpus.jsonl").write_text(corpus)
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "chocolate"}\n')
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert cli.main(["retrieve", "--beir", str(beir), "--output", str(beir / "corpus.jsonl")]) == 2
    assert "corpus.jsonl" in capsys.readouterr().err
    assert (beir / "corpus.jsonl").read_text() == corpus


def test_teacher_refuses_output_equal_to_run(files, capsys):
    # refused before any model is loaded: the teacher named does not even exist
    code = cli.main(["teacher", "--corpus", str(files / "passages.tsv"), "--queries", str(files / "queries.tsv"),
                     "--run", str(files / "run.trec"), "--cross-encoder", str(files / "no-such-model"),
                     "--cache", str(files / "cache"), "--output", str(files / "run.trec")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--output" in err and "--run" in err
    assert (files / "run.trec").read_text() == RUN
    assert not (files / "cache").exists()


def test_build_refuses_output_folder_equal_to_an_input_file_in_it(files, capsys):
    # the qrels file is where the build would write its report
    (files / "out").mkdir()
    (files / "out" / "report.json").write_text("q1 0 d1 1\n")
    code = cli.main(["build", "infonce", "--corpus", str(files / "passages.tsv"), "--queries", str(files / "queries.tsv"),
                     "--qrels", str(files / "out" / "report.json"), "--negatives-run", str(files / "run.trec"),
                     "--output", str(files / "out")])
    assert code == 2
    assert "--qrels" in capsys.readouterr().err
    assert (files / "out" / "report.json").read_text() == "q1 0 d1 1\n"


def test_helper_accepts_distinct_paths_and_ignores_missing_options(files):
    refuse_output_over_input({"--output": files / "new.trec", "--cache": None}, {"--run": files / "run.trec", "--qrels": None})


def test_helper_sees_hard_links(files):
    os.link(files / "run.trec", files / "hard.trec")
    with pytest.raises(ValueError, match="--run"):
        refuse_output_over_input({"--output": files / "hard.trec"}, {"--run": files / "run.trec"})
