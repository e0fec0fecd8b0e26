"""One name per thing a row's size counts (negatives per row, list size, candidates per query,
negatives per query of a run); the old ``n_negatives`` / ``--n-negatives`` / ``--negatives`` still work, deprecated."""

from __future__ import annotations

import hashlib

import pytest

from st_distill import cli
from st_distill.dataset import build_dataset, resolve_negatives, size_argument
from st_distill.objectives import get_objective

QUERIES = {"q1": "cats", "q2": "dogs"}
CORPUS = {f"d{i}": f"document {i}" for i in range(8)}
QRELS = {"q1": {"d0": 1}, "q2": {"d4": 1}}
RUN = {"q1": {f"d{i}": 8.0 - i for i in range(8)}, "q2": {f"d{i}": float(i) for i in range(8)}}


@pytest.mark.parametrize(
    "objective, kwargs, n, rows",
    [
        ("infonce", dict(qrels=QRELS, candidates=RUN), {"negatives_per_row": 3}, 3),
        ("bce", dict(qrels=QRELS, candidates=RUN), {"negatives_per_row": 2}, 2),
        ("kldistill", dict(candidates=RUN, teacher_scores=RUN), {"list_size": 4}, 3),
        ("mse", dict(candidates=RUN, teacher_scores=RUN), {"candidates_per_query": 5}, 4),
    ],
)
def test_each_size_keyword_equals_the_deprecated_n_negatives(objective, kwargs, n, rows):
    new, report = build_dataset(objective, QUERIES, CORPUS, **kwargs, **n)
    with pytest.warns(DeprecationWarning, match=f"n_negatives is deprecated: give {next(iter(n))}"):
        old, _ = build_dataset(objective, QUERIES, CORPUS, **kwargs, n_negatives=rows)
    assert new.data.table.equals(old.data.table)
    assert report.n_negatives == rows
    if objective == "kldistill":
        assert all(len(docs) == 4 for docs in new["docs"])
    if objective == "mse":
        assert len(new) == 2 * 5  # five ranked candidates per query


def test_a_size_the_format_does_not_count_is_refused():
    with pytest.raises(ValueError, match="kldistill: a listwise dataset counts list_size, not negatives_per_row"):
        build_dataset("kldistill", QUERIES, CORPUS, candidates=RUN, teacher_scores=RUN, negatives_per_row=3)
    with pytest.raises(ValueError, match="mse: .* counts candidates_per_query, not list_size"):
        build_dataset("mse", QUERIES, CORPUS, candidates=RUN, teacher_scores=RUN, list_size=3)
    with pytest.raises(ValueError, match="list_size must be at least 2, got 1"):
        build_dataset("kldistill", QUERIES, CORPUS, candidates=RUN, teacher_scores=RUN, list_size=1)


def test_defaults_have_one_home():
    for name, expected in (("infonce", 7), ("marginmse", 1), ("kldistill", 49), ("mse", 49), ("bce", 1), ("hinge", 1)):
        fmt = get_objective(name).dataset_format
        assert resolve_negatives(fmt, name) == expected
    assert size_argument(get_objective("kldistill").dataset_format, 49) == {"list_size": 50}
    assert size_argument(get_objective("mse").dataset_format, 49) == {"candidates_per_query": 50}
    assert size_argument(get_objective("infonce").dataset_format, 7) == {"negatives_per_row": 7}


def _build(tmp_path, name, flags):
    (tmp_path / "q.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in QUERIES.items()))
    (tmp_path / "c.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in CORPUS.items()))
    (tmp_path / "qrels.txt").write_text("q1 0 d0 1\nq2 0 d4 1\n")
    (tmp_path / "run.trec").write_text(
        "".join(f"{q} Q0 {d} {r + 1} {s} bm25\n" for q, docs in RUN.items() for r, (d, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1])))
    )
    out = tmp_path / name
    code = cli.main(["build", "infonce", "--queries", str(tmp_path / "q.tsv"), "--corpus", str(tmp_path / "c.tsv"),
                     "--qrels", str(tmp_path / "qrels.txt"), "--negatives-run", str(tmp_path / "run.trec"), *flags,
                     "--output", str(out)])
    assert code == 0
    return hashlib.sha256((out / "dataset.arrow").read_bytes()).hexdigest()


def test_cli_old_flags_are_deprecated_aliases(tmp_path, capsys):
    new = _build(tmp_path, "new", ["--negatives-per-query", "4", "--negatives-per-row", "3"])
    assert "deprecated" not in capsys.readouterr().err
    old = _build(tmp_path, "old", ["--negatives", "4", "--n-negatives", "3"])
    err = capsys.readouterr().err
    assert "--negatives is deprecated, use --negatives-per-query" in err and "--n-negatives is deprecated" in err
    assert new == old


def test_cli_refuses_both_spellings(tmp_path, capsys):
    with pytest.raises(AssertionError):
        _build(tmp_path, "both", ["--negatives-per-query", "4", "--negatives", "4"])
    assert "--negatives-per-query or the deprecated --negatives" in capsys.readouterr().err
