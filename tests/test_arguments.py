"""Tests of the shared argparse range types and of the commands' early checks of output paths (issue 11)."""

from __future__ import annotations

import argparse

import pytest

from st_distill import cli
from st_distill.commands.arguments import non_negative_float, non_negative_int, positive_int, unit_interval


@pytest.mark.parametrize(
    "kind, text, expected",
    [
        (positive_int, "1", 1),
        (positive_int, "+7", 7),
        (non_negative_int, "0", 0),
        (non_negative_float, "0", 0.0),
        (non_negative_float, "0.9", 0.9),
        (non_negative_float, "1e3", 1000.0),
        (unit_interval, "1", 1.0),
        (unit_interval, "0.4", 0.4),
    ],
)
def test_values_in_range(kind, text, expected):
    assert kind(text) == expected


@pytest.mark.parametrize(
    "kind, text, allowed",
    [
        (positive_int, "0", "an integer >= 1"),
        (positive_int, "-1", "an integer >= 1"),
        (positive_int, "1_000", "an integer >= 1"),  # Python's int() reads 1000
        (positive_int, "\u0661", "an integer >= 1"),  # Python's int() reads 1
        (positive_int, "2.0", "an integer >= 1"),
        (non_negative_int, "-1", "an integer >= 0"),
        (non_negative_float, "-1", "a number >= 0"),
        (non_negative_float, "nan", "a number >= 0"),
        (non_negative_float, "inf", "a number >= 0"),
        (unit_interval, "-3", "a number in [0, 1]"),
        (unit_interval, "1.01", "a number in [0, 1]"),
    ],
)
def test_values_out_of_range_name_the_range(kind, text, allowed):
    with pytest.raises(argparse.ArgumentTypeError, match=f"expected {allowed.replace('[', '.').replace(']', '.')}, got {text!r}"):
        kind(text)


EVAL = ["eval", "--model", "no-such-model", "--run", "run.trec", "--corpus", "c.tsv", "--queries", "q.tsv", "--qrels", "qrels.txt"]
BUILD = ["build", "bce", "--queries", "q.tsv", "--corpus", "c.tsv", "--output", "out"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (EVAL + ["--output-dir", "o", "--depth", "-1"], "argument --depth: expected an integer >= 1, got '-1'"),
        (EVAL + ["--output-dir", "o", "--depth", "0"], "argument --depth: expected an integer >= 1, got '0'"),
        (EVAL + ["--output-dir", "o", "--max-length", "0"], "argument --max-length: expected an integer >= 1, got '0'"),
        (EVAL + ["--output-dir", "o", "--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got '0'"),
        (EVAL + ["--output-dir", "o", "--rel-level", "0"], "argument --rel-level: expected an integer >= 1, got '0'"),
        (BUILD + ["--max-positives", "-1"], "argument --max-positives: expected an integer >= 1, got '-1'"),
        (BUILD + ["--depth", "-1"], "argument --depth: expected an integer >= 1, got '-1'"),
        (BUILD + ["--negatives", "0"], "argument --negatives: expected an integer >= 1, got '0'"),
        (BUILD + ["--n-negatives", "0"], "argument --n-negatives: expected an integer >= 1, got '0'"),
        (BUILD + ["--max-queries", "0"], "argument --max-queries: expected an integer >= 1, got '0'"),
        (BUILD + ["--relevance-threshold", "0"], "argument --relevance-threshold: expected an integer >= 1, got '0'"),
        (BUILD + ["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    ],
)
def test_commands_check_sizes_when_parsing(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_eval_output_dir_that_is_a_file_fails_before_any_work(tmp_path, capsys):
    # the model does not exist: the error must be about the output folder, found before loading anything
    (tmp_path / "a-file").write_text("x")
    argv = [*EVAL, "--output-dir", str(tmp_path / "a-file")]
    assert cli.main(argv) == 2
    assert f"{tmp_path / 'a-file'}: exists and is not a folder" in capsys.readouterr().err


def test_eval_api_output_dir_that_is_a_file_fails_before_any_work(tmp_path):
    from st_distill.evaluation.rerank import rerank_and_evaluate

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        rerank_and_evaluate("no-such-model", "run.trec", "c.tsv", "q.tsv", "qrels.txt", output_dir=tmp_path / "a-file")
    with pytest.raises(ValueError, match="max_length must be at least 1, got 0"):
        rerank_and_evaluate("no-such-model", "run.trec", "c.tsv", "q.tsv", "qrels.txt", max_length=0)


def test_build_output_under_a_file_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    argv = ["build", "bce", "--queries", "q.tsv", "--corpus", "c.tsv", "--output", str(tmp_path / "a-file" / "ds")]
    assert cli.main(argv) == 2
    assert f"{tmp_path / 'a-file' / 'ds'}: cannot be created, {tmp_path / 'a-file'} is a file" in capsys.readouterr().err


def test_a_folder_given_as_an_input_file_is_named_as_such(tmp_path, capsys):
    argv = ["retrieve", "--corpus", str(tmp_path), "--queries", str(tmp_path), "--output", str(tmp_path / "run.trec")]
    assert cli.main(argv) == 2
    assert f"{tmp_path}: is a directory, expected a file" in capsys.readouterr().err


TEACHER = ["teacher", "--queries", "q.tsv", "--corpus", "c.tsv", "--run", "run.trec", "--cross-encoder", "no-such-model"]


@pytest.mark.parametrize("option, value", [("--depth", "-1"), ("--depth", "0"), ("--max-length", "0"),
                                           ("--shard-size", "0"), ("--batch-size", "-2")])
def test_teacher_sizes_are_checked_where_they_enter(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit):
        cli.main([*TEACHER, "--cache", str(tmp_path / "cache"), option, value])
    assert f"argument {option}: expected an integer >= 1, got {value!r}" in capsys.readouterr().err


def test_teacher_cache_that_is_a_file_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    assert cli.main([*TEACHER, "--cache", str(tmp_path / "a-file")]) == 2  # nothing read, nothing scored
    assert f"{tmp_path / 'a-file'}: exists and is not a folder" in capsys.readouterr().err
