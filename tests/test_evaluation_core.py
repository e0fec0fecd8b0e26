"""Tests of the one re-rank + evaluate step (``rerank_and_measure``), measure names as given, reading
metrics back, and the early refusals of ``st-distill eval`` (output folder, corpus folder)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from st_distill import cli
from st_distill.bench.curves import read_curve
from st_distill.bench.phases.evaluate import evaluate_model, reference_metrics
from st_distill.bench.workspace import Workspace
from st_distill.evaluation import (
    evaluate,
    read_metrics,
    rerank_and_measure,
    score_candidates,
    top_candidates,
)
from st_distill.io import require_output_folder

QUERIES = {"q1": "what is a cat", "q2": "capital of france", "q3": "unjudged query"}
CORPUS = {
    "d1": "a cat is a small animal",
    "d2": "paris is the capital of france",
    "d3": "dogs bark",
    "d4": "france is in europe",
    "d5": "cats purr when happy",
}
RUN = {
    "q1": {"d1": 3.0, "d3": 2.0, "d5": 1.0, "d4": 0.5},
    "q2": {"d2": 1.0, "d4": 2.0, "d3": 3.0},
    "q3": {"d1": 1.0, "d2": 0.5},
}
QRELS = {"q1": {"d1": 1, "d5": 3, "d3": 0}, "q2": {"d2": 2, "d4": 1}}


def _ndcg10(ranking: list[str], grades: dict[str, int]) -> float:
    dcg = sum(grades.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:10]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def _rr10(ranking: list[str], grades: dict[str, int], rel: int) -> float:
    return next((1.0 / (i + 1) for i, d in enumerate(ranking[:10]) if grades.get(d, 0) >= rel), 0.0)


def _ranking(docs: dict[str, float]) -> list[str]:
    """trec_eval order by hand: score descending, then document id descending."""
    return [d for d, _ in sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)]


# ---------------------------------------------------------------- measure names as given


def test_given_names_key_the_values_trec_eval_computes():
    """``given_names`` keys by the config's names; the values are the hand-computed ones at the threshold."""
    result = evaluate(RUN, QRELS, ["nDCG@10", "RR@10", "RR(rel=2)@10"], rel_level=2, given_names=True)
    assert list(result.aggregate) == ["nDCG@10", "RR@10", "RR(rel=2)@10"]
    expected_rr = {q: _rr10(_ranking(RUN[q]), QRELS[q], rel=2) for q in QRELS}
    expected_ndcg = {q: _ndcg10(_ranking(RUN[q]), QRELS[q]) for q in QRELS}
    # RR@10 at rel_level 2 and RR(rel=2)@10 are one measure: both names get its values
    for name in ("RR@10", "RR(rel=2)@10"):
        assert result.per_query[name] == pytest.approx(expected_rr)
        assert result.aggregate[name] == pytest.approx(sum(expected_rr.values()) / 2)
    assert result.per_query["nDCG@10"] == pytest.approx(expected_ndcg)
    assert result.queries == {"evaluated": 2, "unjudged": 1, "judged_not_in_run": 0}
    # the default keys are ir_measures' spelling, one per distinct measure, with the same values
    plain = evaluate(RUN, QRELS, ["nDCG@10", "RR@10", "RR(rel=2)@10"], rel_level=2)
    assert list(plain.aggregate) == ["nDCG@10", "RR(rel=2)@10"]
    assert plain.per_query["RR(rel=2)@10"] == result.per_query["RR@10"]


# ---------------------------------------------------------------- the re-rank core


class _LengthModel:
    """A stand-in CrossEncoder: the scores come from the patched ``score_pairs`` (:func:`_score_by_length`)."""


def _score_by_length(monkeypatch):
    """Makes ``score_pairs`` score a pair by its document's length (an independent, known scorer)."""
    import numpy as np

    from st_distill.evaluation import rerank

    def fake(model, pairs, batch_size=64, activation=True, show_progress_bar=None):
        return np.array([float(len(doc)) for _, doc in pairs], dtype=np.float32)

    monkeypatch.setattr(rerank, "score_pairs", fake)


def test_rerank_and_measure_ranks_by_the_scores_and_evaluates_that_ranking(monkeypatch):
    _score_by_length(monkeypatch)
    candidates = top_candidates(RUN, QUERIES, CORPUS, depth=3)
    assert candidates.first_stage["q1"] == {"d1": 3.0, "d3": 2.0, "d5": 1.0}  # the top 3, d4 cut
    result = rerank_and_measure(_LengthModel(), candidates, QRELS, ["nDCG@10", "RR@10"], rel_level=2, given_names=True)
    assert result.run == {q: {d: float(len(CORPUS[d])) for d in docs} for q, docs in candidates.first_stage.items()}
    assert result.run == score_candidates(_LengthModel(), candidates)
    expected = {q: _ndcg10(_ranking(result.run[q]), QRELS[q]) for q in QRELS}
    assert result.evaluation.per_query["nDCG@10"] == pytest.approx(expected)
    assert result.evaluation.aggregate["RR@10"] == pytest.approx(
        sum(_rr10(_ranking(result.run[q]), QRELS[q], 2) for q in QRELS) / 2
    )
    assert result.seconds >= 0


def test_depth_none_keeps_every_candidate():
    candidates = top_candidates(RUN, QUERIES, CORPUS, depth=None)
    assert candidates.first_stage == {q: dict(sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)) for q, docs in RUN.items()}
    assert len(candidates.pairs) == sum(len(docs) for docs in RUN.values())


def test_bench_phase_metrics_are_keyed_by_the_config_names(monkeypatch, tmp_path):
    _score_by_length(monkeypatch)
    suite = SimpleNamespace(run=RUN, queries=QUERIES, corpus=CORPUS, qrels=QRELS, relevance_level=2)
    out = evaluate_model(_LengthModel(), {"toy": suite}, ("nDCG@10", "RR@10"), 8, tmp_path / "runs")
    reranked = {q: {d: float(len(CORPUS[d])) for d in docs} for q, docs in RUN.items()}
    assert list(out["toy"]) == ["aggregate", "per_query", "queries"]
    assert out["toy"]["per_query"]["RR@10"] == pytest.approx({q: _rr10(_ranking(reranked[q]), QRELS[q], 2) for q in QRELS})
    assert (tmp_path / "runs" / "toy.trec").is_file()


# ---------------------------------------------------------------- reading metrics back (#20, 17)


def test_damaged_metrics_file_is_named(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"aggregate": {"nDCG@10": 0.4')
    with pytest.raises(ValueError, match=rf"{path}, line 1 column \d+: not valid JSON"):
        read_metrics(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{path}: expected a JSON object"):
        read_metrics(path)
    path.write_text('{"nDCG@10": 0.5}')
    assert read_metrics(path) == {"nDCG@10": 0.5}


def test_damaged_reference_row_is_named_not_skipped(tmp_path):
    """A finished reference file that is damaged fails naming the file (it was silently kept before)."""
    suite = SimpleNamespace(run=RUN, queries=QUERIES, corpus=CORPUS, qrels=QRELS, relevance_level=2)
    config = SimpleNamespace(teacher=SimpleNamespace(source="file"), eval=SimpleNamespace(metrics=("nDCG@10",)))
    reference_metrics(config, Workspace(tmp_path), {"toy": suite})
    first = tmp_path / "eval" / "toy" / "first_stage.json"
    assert json.loads(first.read_text()) == pytest.approx({"nDCG@10": sum(_ndcg10(_ranking(RUN[q]), QRELS[q]) for q in QRELS) / 2})
    first.write_text('{"nDCG@10": ')
    with pytest.raises(ValueError, match=str(first)):
        reference_metrics(config, Workspace(tmp_path), {"toy": suite})


def test_damaged_curve_line_is_named(tmp_path):
    path = tmp_path / "curve.jsonl"
    path.write_text('{"step": 0, "pairs": 0}\n{"step": 2, "pai\n')
    with pytest.raises(ValueError, match=rf"{path}, line 2: not valid JSON"):
        read_curve(path)
    path.write_text('{"step": 0}\n{"pairs": 3}\n')
    with pytest.raises(ValueError, match=rf"{path}, line 2: expected a JSON object with an integer 'step'"):
        read_curve(path)


# ---------------------------------------------------------------- early refusals of `st-distill eval` (#20, 16 and 18)


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fails the test if the model is loaded or anything is scored."""
    from st_distill.commands import eval as eval_command
    from st_distill.evaluation import rerank

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded (or pairs scored) before the input was refused")

    for module in (rerank, eval_command):
        if hasattr(module, "load_cross_encoder"):
            monkeypatch.setattr(module, "load_cross_encoder", refuse)
    monkeypatch.setattr(rerank, "score_pairs", refuse)


@pytest.fixture
def toy_files(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "toy"
    folder.mkdir()
    files = {name: folder / f for name, f in [("run", "run.trec"), ("queries", "q.tsv"), ("corpus", "c.tsv"), ("qrels", "qrels.txt")]}
    files["run"].write_text("".join(f"{q} Q0 {d} {r} {s} bm25\n" for q, docs in RUN.items() for r, (d, s) in enumerate(docs.items(), 1)))
    files["queries"].write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    files["corpus"].write_text("".join(f"{d}\t{t}\n" for d, t in CORPUS.items()))
    files["qrels"].write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in QRELS.items() for d, g in docs.items()))
    return files


def _eval_argv(files, model, output_dir, corpus=None):
    return ["eval", "--model", model, "--run", str(files["run"]), "--corpus", str(corpus or files["corpus"]),
            "--queries", str(files["queries"]), "--qrels", str(files["qrels"]), "--output-dir", str(output_dir)]


def test_output_folder_that_takes_no_files_is_refused():
    # /proc takes no new folders, even for the superuser: writability is tried, not read from mode bits
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    with pytest.raises(PermissionError, match="/proc/st-distill-test/out: cannot write there"):
        require_output_folder("/proc/st-distill-test/out")
    with pytest.raises(PermissionError, match="/proc: cannot write there"):
        require_output_folder("/proc")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="the superuser writes into read-only folders")
def test_read_only_output_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="cannot write there"):
            require_output_folder(folder)
        with pytest.raises(PermissionError, match="nearest existing parent"):
            require_output_folder(folder / "new")
    finally:
        folder.chmod(0o755)


def test_writable_output_folder_is_left_as_it_was(tmp_path):
    assert require_output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []  # the check creates nothing
    require_output_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_eval_refuses_an_unwritable_output_folder_before_loading_the_model(toy_files, tiny_model_path, no_model_loading, capsys):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    assert cli.main(_eval_argv(toy_files, tiny_model_path, "/proc/st-distill-test")) == 2
    assert "/proc/st-distill-test: cannot write there" in capsys.readouterr().err


def test_eval_refuses_a_corpus_folder_with_queries_and_qrels(toy_files, tiny_model_path, tmp_path, no_model_loading, capsys):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "other text"}\n')
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "other query"}\n')
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert cli.main(_eval_argv(toy_files, tiny_model_path, tmp_path / "out", corpus=beir)) == 2
    err = capsys.readouterr().err
    assert f"--corpus {beir}: is a folder" in err and "--beir" in err
    assert not (tmp_path / "out").exists()
