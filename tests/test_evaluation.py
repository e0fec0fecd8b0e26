"""Tests of metrics, re-ranking of runs, the `st-distill eval` command and the trainer evaluator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from st_distill import cli
from st_distill.data.formats import FormatError, read_qrels, read_trec_run, read_tsv, top_k
from st_distill.evaluation import (
    RerankingEvaluator,
    evaluate,
    parse_measures,
    rerank_and_evaluate,
    rerank_run,
    top_candidates,
)
from st_distill.models.scoring import score_pairs

# ---------------------------------------------------------------- metrics


def test_trec_dl_2019_bm25_reference(shared_data):
    """The trec_eval figure of the BM25 top-100 of TREC DL 2019 (nDCG@10 = 0.5058)."""
    dl19 = shared_data / "trec-dl-2019"
    result = evaluate(read_trec_run(dl19 / "run.bm25.top100.trec"), read_qrels(dl19 / "qrels.txt"), rel_level=2)
    assert result.aggregate["nDCG@10"] == pytest.approx(0.5058, abs=5e-5)
    assert set(result.aggregate) == {"nDCG@10", "RR(rel=2)@10", "AP(rel=2)", "R(rel=2)@100"}
    assert result.queries == {"evaluated": 43, "unjudged": 0, "judged_not_in_run": 0}
    assert len(result.per_query["nDCG@10"]) == 43
    assert np.mean(list(result.per_query["nDCG@10"].values())) == pytest.approx(result.aggregate["nDCG@10"])


def _dcg(gains):
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


def test_graded_and_binary_measures_by_hand():
    qrels = {"q1": {"d1": 2, "d2": 1, "d3": 0}}
    run = {"q1": {"d2": 3.0, "d3": 2.0, "d1": 1.0, "d4": 0.5}}  # ranking d2 d3 d1 d4 (d4 unjudged)
    ndcg = _dcg([1, 0, 2, 0]) / _dcg([2, 1])
    lenient = evaluate(run, qrels, ["nDCG@10", "RR@10", "AP", "P@2"], rel_level=1).aggregate
    assert lenient["nDCG@10"] == pytest.approx(ndcg)
    assert lenient["RR@10"] == pytest.approx(1.0)  # d2 (grade 1) first
    assert lenient["AP"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert lenient["P@2"] == pytest.approx(0.5)
    strict = evaluate(run, qrels, ["nDCG@10", "RR@10", "AP"], rel_level=2).aggregate
    assert strict["nDCG@10"] == pytest.approx(ndcg)  # grades are gains whatever the threshold
    assert strict["RR(rel=2)@10"] == pytest.approx(1 / 3)  # d1 (grade 2) third
    assert strict["AP(rel=2)"] == pytest.approx(1 / 3)


def test_parse_measures_threshold_rules():
    names = [str(m) for m in parse_measures(["nDCG@10", "RR@10", "RR(rel=3)@10", "NumRet", "R@100", "nDCG@10"], 2)]
    assert names == ["nDCG@10", "RR(rel=2)@10", "RR(rel=3)@10", "NumRet", "R(rel=2)@100"]
    with pytest.raises(ValueError, match="unknown measure"):
        parse_measures(["nDCG@ten"])
    with pytest.raises(ValueError, match="rel_level"):
        parse_measures(None, 0)


def test_unjudged_and_missing_queries_are_counted():
    qrels = {"q1": {"a": 1}, "q3": {"c": 1}}
    run = {"q1": {"a": 2.0, "b": 1.0}, "q2": {"a": 1.0}}
    result = evaluate(run, qrels, ["RR@10"])
    assert result.queries == {"evaluated": 1, "unjudged": 1, "judged_not_in_run": 1}
    assert result.unjudged == ["q2"] and result.judged_not_in_run == ["q3"]
    assert result.aggregate["RR@10"] == 1.0 and list(result.per_query["RR@10"]) == ["q1"]
    as_zero = evaluate(run, qrels, ["RR@10"], missing_as_zero=True)  # trec_eval -c
    assert as_zero.aggregate["RR@10"] == 0.5 and as_zero.per_query["RR@10"] == {"q1": 1.0, "q3": 0.0}
    with pytest.raises(ValueError, match="none of the run"):
        evaluate({"q9": {"a": 1.0}}, qrels)
    with pytest.raises(ValueError, match="empty"):
        evaluate({}, qrels)


# ---------------------------------------------------------------- re-ranking


@pytest.fixture(scope="module")
def dl19_small(shared_data, tmp_path_factory):
    """Five TREC DL 2019 queries with their BM25 top-30, written as small files."""
    src = shared_data / "trec-dl-2019"
    run = read_trec_run(src / "run.bm25.top100.trec")
    qids = list(run)[:5]
    small = top_k({q: run[q] for q in qids}, 30)
    queries, passages, qrels = read_tsv(src / "queries.tsv"), read_tsv(src / "passages.tsv"), read_qrels(src / "qrels.txt")
    folder = tmp_path_factory.mktemp("dl19-small")
    lines = [f"{q} Q0 {d} {r} {s} BM25\n" for q in qids for r, (d, s) in enumerate(sorted(small[q].items(), key=lambda x: -x[1]), 1)]
    (folder / "run.trec").write_text("".join(lines))
    (folder / "queries.tsv").write_text("".join(f"{q}\t{queries[q]}\n" for q in qids))
    docs = {d for q in qids for d in small[q]}
    (folder / "passages.tsv").write_text("".join(f"{d}\t{passages[d]}\n" for d in sorted(docs)))
    (folder / "qrels.txt").write_text("".join(f"{q} 0 {d} {g}\n" for q in qids for d, g in qrels[q].items()))
    return folder


def _paths(folder: Path) -> dict[str, Path]:
    return {name: folder / f for name, f in
            [("run", "run.trec"), ("queries", "queries.tsv"), ("corpus", "passages.tsv"), ("qrels", "qrels.txt")]}


def test_rerank_run_is_valid(dl19_small, tiny_model):
    p = _paths(dl19_small)
    run, queries, corpus = read_trec_run(p["run"]), read_tsv(p["queries"]), read_tsv(p["corpus"])
    reranked, candidates = rerank_run(tiny_model, run, queries, corpus, depth=20, show_progress_bar=False)
    assert list(reranked) == list(run)
    for qid, docs in reranked.items():
        assert set(docs) == {d for d, _ in sorted(run[qid].items(), key=lambda x: (x[1], x[0]), reverse=True)[:20]}
    # the scores are the model's logits of exactly those pairs
    logits = score_pairs(tiny_model, candidates.pairs, activation=False, show_progress_bar=False)
    assert np.allclose([reranked[q][d] for q, d in candidates.ids], logits)
    assert candidates.pairs[0] == (queries[candidates.ids[0][0]], corpus[candidates.ids[0][1]])


def test_eval_command_writes_run_and_metrics(dl19_small, tiny_model_path, tmp_path, capsys):
    p = _paths(dl19_small)
    out = tmp_path / "out"
    argv = ["eval", "--model", tiny_model_path, "--run", str(p["run"]), "--corpus", str(p["corpus"]),
            "--queries", str(p["queries"]), "--qrels", str(p["qrels"]), "--depth", "20", "--rel-level", "2",
            "--measures", "nDCG@10", "RR@10", "Judged@10", "--max-length", "64", "--output-dir", str(out)]
    assert cli.main(argv) == 0
    assert "nDCG@10" in capsys.readouterr().out
    reranked = read_trec_run(out / "run.reranked.trec")  # a valid TREC run
    assert len(reranked) == 5 and all(len(docs) == 20 for docs in reranked.values())
    ranks = [int(line.split()[3]) for line in (out / "run.reranked.trec").read_text().splitlines()]
    assert ranks[:20] == list(range(1, 21))
    report = json.loads((out / "metrics.json").read_text())
    assert report["measures"] == ["nDCG@10", "RR(rel=2)@10", "Judged@10"]
    assert report["pairs"]["scored"] == 100 and report["depth"] == 20 and report["max_length"] == 64
    first_stage = evaluate(top_k(read_trec_run(p["run"]), 20), read_qrels(p["qrels"]), report["measures"], 2)
    assert report["first_stage"]["aggregate"] == pytest.approx(first_stage.aggregate)
    # the in-memory re-ranking, evaluated independently (the file's 6-decimal scores may tie the tiny
    # random model's nearly equal logits, so the file is checked for validity only)
    from sentence_transformers.cross_encoder import CrossEncoder

    model = CrossEncoder(tiny_model_path, num_labels=1, max_length=64)
    in_memory, _ = rerank_run(model, read_trec_run(p["run"]), read_tsv(p["queries"]), read_tsv(p["corpus"]), 20)
    second = evaluate(in_memory, read_qrels(p["qrels"]), report["measures"], 2)
    assert report["reranked"]["aggregate"] == pytest.approx(second.aggregate, abs=1e-9)
    assert set(report["reranked"]["per_query"]["nDCG@10"]) == set(reranked)
    assert report["reranked"]["queries"] == {"evaluated": 5, "unjudged": 0, "judged_not_in_run": 0}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def toy(tmp_path):
    """A two-query collection: q1 judged, q2 unjudged."""
    return {
        "corpus": _write(tmp_path, "corpus.tsv", "d1\tcats purr\nd2\tdogs bark\nd3\tbirds sing\n"),
        "queries": _write(tmp_path, "queries.tsv", "q1\tcats\nq2\tbirds\n"),
        "qrels": _write(tmp_path, "qrels.txt", "q1 0 d1 1\nq1 0 d2 0\n"),
        "run": _write(tmp_path, "run.trec", "q1 Q0 d1 1 3.0 x\nq1 Q0 d2 2 2.0 x\nq2 Q0 d3 1 1.0 x\nq2 Q0 d1 2 0.5 x\n"),
        "dir": tmp_path,
    }


def _eval(toy, model, **kwargs):
    args = {k: toy[k] for k in ("run", "corpus", "queries", "qrels")}
    args.update(kwargs)
    return rerank_and_evaluate(model, args.pop("run"), args.pop("corpus"), show_progress_bar=False, **args)


def test_bad_run_line_names_file_and_line(toy, tiny_model_path, capsys):
    bad = _write(toy["dir"], "bad.trec", "q1 Q0 d1 1 3.0 x\nq1 Q0 d2 2 2.0\n")  # 5 fields
    argv = ["eval", "--model", tiny_model_path, "--run", str(bad), "--corpus", str(toy["corpus"]),
            "--queries", str(toy["queries"]), "--qrels", str(toy["qrels"]), "--output-dir", str(toy["dir"] / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: expected 6 fields" in err


def test_missing_document_error_or_counted_skip(toy, tiny_model):
    run = _write(toy["dir"], "run2.trec", "q1 Q0 d1 1 3.0 x\nq1 Q0 d9 2 2.0 x\n")
    toy["run"] = run
    with pytest.raises(FormatError, match=r"run2\.trec:2: document 'd9' \(query 'q1'\) is not in the corpus"):
        _eval(toy, tiny_model)
    report = _eval(toy, tiny_model, skip_missing=True, output_dir=toy["dir"] / "out")
    assert report["skipped"] == {"missing_queries": 0, "missing_documents": 1}
    assert set(read_trec_run(toy["dir"] / "out" / "run.reranked.trec")["q1"]) == {"d1"}


def test_query_without_text_error_or_counted_skip(toy, tiny_model):
    toy["run"] = _write(toy["dir"], "run3.trec", "q1 Q0 d1 1 3.0 x\nq7 Q0 d2 1 2.0 x\n")
    with pytest.raises(FormatError, match=r"run3\.trec:2: query 'q7' of the run has no text"):
        _eval(toy, tiny_model)
    report = _eval(toy, tiny_model, skip_missing=True)
    assert report["skipped"]["missing_queries"] == 1 and report["queries"] == {"in_run": 2, "reranked": 1}


def test_unjudged_query_reranked_but_not_averaged(toy, tiny_model):
    report = _eval(toy, tiny_model, measures=["RR@10"], output_dir=toy["dir"] / "out")
    assert set(read_trec_run(toy["dir"] / "out" / "run.reranked.trec")) == {"q1", "q2"}
    for block in ("first_stage", "reranked"):
        assert report[block]["queries"] == {"evaluated": 1, "unjudged": 1, "judged_not_in_run": 0}
        assert report[block]["unjudged"] == ["q2"] and list(report[block]["per_query"]["RR@10"]) == ["q1"]
    assert report["first_stage"]["aggregate"]["RR@10"] == 1.0


def test_empty_run(toy, tiny_model):
    toy["run"] = _write(toy["dir"], "empty.trec", "\n")
    with pytest.raises(FormatError, match="empty"):
        _eval(toy, tiny_model)
    with pytest.raises(ValueError, match="empty"):
        top_candidates({}, {}, {})


def test_beir_folder_as_corpus(tmp_path, tiny_model):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    _write(folder, "corpus.jsonl", '{"_id": "d1", "title": "Cats", "text": "purr"}\n{"_id": "d2", "text": "dogs"}\n')
    _write(folder, "queries.jsonl", '{"_id": "q1", "text": "cats"}\n')
    _write(folder / "qrels", "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    run = _write(tmp_path, "run.trec", "q1 Q0 d2 1 2.0 x\nq1 Q0 d1 2 1.0 x\n")
    report = rerank_and_evaluate(tiny_model, run, folder, measures=["nDCG@10"], show_progress_bar=False)
    assert report["first_stage"]["aggregate"]["nDCG@10"] == pytest.approx(1 / math.log2(3))
    assert report["pairs"]["scored"] == 2


# ---------------------------------------------------------------- trainer evaluator


def test_evaluator_matches_rerank_and_runs_in_trainer(dl19_small, tiny_model, tmp_path):
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    p = _paths(dl19_small)
    run, queries, corpus, qrels = (read_trec_run(p["run"]), read_tsv(p["queries"]), read_tsv(p["corpus"]),
                                   read_qrels(p["qrels"]))
    evaluator = RerankingEvaluator(run, queries, corpus, qrels, depth=10, rel_level=2, name="dl19")
    metrics = evaluator(tiny_model)
    assert evaluator.primary_metric == "dl19_ndcg@10"
    reranked, _ = rerank_run(tiny_model, run, queries, corpus, depth=10, show_progress_bar=False)
    expected = evaluate(reranked, qrels, ["nDCG@10"], 2).aggregate["nDCG@10"]
    assert metrics["dl19_ndcg@10"] == pytest.approx(expected)
    assert metrics["dl19_base_ndcg@10"] == pytest.approx(evaluate(top_k(run, 10), qrels, ["nDCG@10"]).aggregate["nDCG@10"])

    train = Dataset.from_dict({"query": ["cats", "cats", "dogs", "dogs"] * 2,
                               "document": ["cats purr", "dogs bark", "dogs bark", "cats purr"] * 2,
                               "label": [1.0, 0.0, 1.0, 0.0] * 2})
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / "ckpt"), max_steps=2, per_device_train_batch_size=4, eval_strategy="steps",
        eval_steps=1, save_strategy="steps", save_steps=1, load_best_model_at_end=True,
        metric_for_best_model="eval_dl19_ndcg@10", report_to="none", use_cpu=True, logging_steps=1,
    )
    trainer = CrossEncoderTrainer(model=tiny_model, args=args, train_dataset=train,
                                  loss=BinaryCrossEntropyLoss(tiny_model), evaluator=evaluator)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "eval_dl19_ndcg@10" in entry]
    assert len(logged) == 2 and all(0.0 <= entry["eval_dl19_ndcg@10"] <= 1.0 for entry in logged)
    assert trainer.state.best_metric == max(entry["eval_dl19_ndcg@10"] for entry in logged)
    rows = (tmp_path / "ckpt" / "eval" / "RerankingEvaluator_dl19_results.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,steps,nDCG@10") and len(rows) == 3  # header + one row per evaluation


# ---------------------------------------------------------------- README


def _readme_section() -> str:
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Evaluation\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has no '## Evaluation' section"
    return match.group(1)


README_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"


@pytest.mark.slow
def test_readme_evaluation_examples_run(shared_data, tiny_model_path, tmp_path, monkeypatch, capsys):
    """The README's commands and Python example, as written; only the hub model becomes the tiny local one
    and the re-ranking depth is cut to 3 for speed."""
    import re
    import shlex

    section = _readme_section().replace("../shared/data", str(shared_data))
    monkeypatch.chdir(tmp_path)
    (bash,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = [c for c in bash.replace("\\\n", " ").splitlines() if c.startswith("st-distill ")]
    assert [shlex.split(c)[1] for c in commands] == ["retrieve", "eval", "eval"]
    for command in commands:
        argv = shlex.split(command.replace(README_MODEL, tiny_model_path))[1:]
        assert cli.main(argv + (["--depth", "3"] if argv[0] == "eval" else [])) == 0
    assert len(read_trec_run(tmp_path / "runs" / "scifact.bm25.trec")) == 300
    dl19 = json.loads((tmp_path / "runs" / "dl19-eval" / "metrics.json").read_text())
    assert "Judged@10" in dl19["measures"] and dl19["first_stage"]["queries"]["evaluated"] == 43

    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert code.count(f'"{README_MODEL}"') == 1 and code.count("depth=100") == 2
    code = code.replace(f'"{README_MODEL}"', repr(tiny_model_path)).replace("depth=100", "depth=3")
    namespace: dict = {}
    exec(compile(code, "README.md:Evaluation", "exec"), namespace)
    assert namespace["first_stage"].aggregate["nDCG@10"] == pytest.approx(0.5058, abs=5e-5)
    assert namespace["first_stage"].aggregate["RR(rel=2)@10"] == pytest.approx(0.7024, abs=5e-5)
    assert namespace["result"].queries["evaluated"] == 43 and len(namespace["scores"]) == 100
    assert namespace["evaluator"].primary_metric == "dl19_ndcg@10"
