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
    entry = manifest["teachers"]["tiny"]
    assert entry["kind"] == "cross-encoder" and entry["activation"] is False and entry["max_length"] == 64
    assert "revision" in entry and entry["model"] == tiny_model.model.name_or_path
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
    assert TeacherCache(tmp_path).scores("tiny").num_rows == 14  # both finished shards survived
    resumed = CountingTeacher(tiny_model, name="tiny")
    result = score_with_teachers([resumed], pairs, queries, corpus, tmp_path, shard_size=7)
    assert resumed.pairs_scored == len(pairs) - 14
    assert result.scored == {"tiny": len(pairs) - 14} and result.cached == {"tiny": 14}
    fresh = score_with_teachers([CrossEncoderTeacher(tiny_model, name="tiny")], pairs, queries, corpus, tmp_path / "fresh")
    np.testing.assert_allclose(result.scores, fresh.scores, rtol=1e-5, atol=1e-6)


def test_shard_written_but_not_recorded_is_adopted(tiny_model, dl21, tmp_path):
    # a kill between the shard's rename and the manifest's: the next run must not rescore that shard
    queries, corpus, pairs = dl21
    score_with_teachers([CrossEncoderTeacher(tiny_model, name="tiny")], pairs[:20], queries, corpus, tmp_path, shard_size=10)
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["teachers"]["tiny"]["shards"].pop()
    manifest_path.write_text(json.dumps(manifest))
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
    assert manifest["teachers"]["bi"]["similarity"] == "cosine"
    mean, recipe = combine({"a": np.array([1.0, 3.0]), "b": np.array([5.0, 9.0])}, "mean")
    assert mean.tolist() == [3.0, 6.0] and recipe["stats"]["b"] == {"mean": 7.0, "std": 2.0}


def test_errors(tiny_model, dl21, tmp_path):
    queries, corpus, pairs = dl21
    score_with_teachers([CrossEncoderTeacher(tiny_model, name="t", max_length=32)], pairs[:3], queries, corpus, tmp_path)
    with pytest.raises(ValueError, match="max_length: cached 32, now 64"):
        score_with_teachers([CrossEncoderTeacher(tiny_model, name="t", max_length=64)], pairs[:3], queries, corpus, tmp_path)
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
    assert main(["teacher", *argv[1:9], "--cache", str(tmp_path / "c2")]) == 2  # no teacher given
    assert "give at least one --cross-encoder or --bi-encoder" in capsys.readouterr().err
