"""The teacher cache is keyed by content and verified when read (issue 11, findings 1 and 2).

Each test alters what a cache was computed from, or the cache itself, the way a user or a
file system might, and checks that no score of another model, another text or altered bytes is
ever served: either the pair is scored again, or the run stops naming the file.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from st_distill.teachers import CrossEncoderTeacher, load_cached_scores, score_with_teachers

pytestmark = pytest.mark.usefixtures("torch_one_thread")

QUERIES = {"q1": "what do cats eat", "q2": "how tall is the eiffel tower", "q3": "boiling point of water"}
CORPUS = {
    "d1": "Cats are carnivores and eat mostly meat.",
    "d2": "The Eiffel Tower is 330 metres tall.",
    "d3": "Water boils at 100 degrees Celsius at sea level.",
    "d4": "Dogs are loyal companions.",
    "d5": "Paris is the capital of France.",
}
PAIRS = [(q, d) for q in QUERIES for d in CORPUS]


def predict(model_path: str, pairs, corpus=CORPUS) -> np.ndarray:
    """Raw logits of a freshly loaded model: the reference every served score must equal."""
    from sentence_transformers.cross_encoder import CrossEncoder

    model = CrossEncoder(model_path, num_labels=1, max_length=64, device="cpu")
    texts = [(QUERIES[q], corpus[d]) for q, d in pairs]
    return model.predict(texts, activation_fn=torch.nn.Identity(), convert_to_numpy=True, batch_size=64)


def served(result, pairs) -> np.ndarray:
    run = result.to_run()
    return np.array([run[q][d] for q, d in pairs], dtype=np.float32)


def save_other_weights(source: str, target) -> str:
    """Saves the model at ``source`` with perturbed weights (same architecture, tokenizer, config) into ``target``."""
    from sentence_transformers.cross_encoder import CrossEncoder

    model = CrossEncoder(source, num_labels=1, device="cpu")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(str(target))
    return str(target)


def test_a_flipped_byte_in_a_shard_stops_the_run_naming_the_shard(tiny_model_path, tmp_path):
    first = score_with_teachers([CrossEncoderTeacher(tiny_model_path, name="t", max_length=64)], PAIRS, QUERIES, CORPUS, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (entry,) = manifest["teachers"].values()
    shard = tmp_path / entry["shards"][0]["file"]
    # flip the exponent byte of one stored float32 score (as in the issue: 0.11 -> -7.66e+36-like values)
    data = bytearray(shard.read_bytes())
    value = np.float32(first.scores[0]).tobytes()
    assert data.count(value) == 1
    position = data.index(value) + 3
    data[position] ^= 0x7C
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{shard.name}.*checksum"):
        score_with_teachers([CrossEncoderTeacher(tiny_model_path, name="t", max_length=64)], PAIRS, QUERIES, CORPUS, tmp_path)
    with pytest.raises(ValueError, match=rf"{shard.name}.*checksum"):
        load_cached_scores(tmp_path)
    # repair: the altered shard is moved aside, its pairs are scored again, every score is right
    repaired = score_with_teachers(
        [CrossEncoderTeacher(tiny_model_path, name="t", max_length=64)], PAIRS, QUERIES, CORPUS, tmp_path, repair=True
    )
    assert repaired.scored == {"t": entry["shards"][0]["rows"]}
    np.testing.assert_allclose(served(repaired, PAIRS), predict(tiny_model_path, PAIRS), rtol=1e-4, atol=1e-5)
    assert shard.with_name(shard.name + ".corrupt").is_file()


def test_new_weights_at_a_cached_path_are_scored_not_mixed(tiny_model_path, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(tiny_model_path, path)
    cache = tmp_path / "cache"
    score_with_teachers([CrossEncoderTeacher(str(path), max_length=64)], PAIRS[:6], QUERIES, CORPUS, cache)
    shutil.rmtree(path)
    save_other_weights(tiny_model_path, path)  # new weights, same path, same name
    teacher = CrossEncoderTeacher(str(path), max_length=64)
    result = score_with_teachers([teacher], PAIRS, QUERIES, CORPUS, cache)
    assert result.scored == {teacher.name: len(PAIRS)} and result.cached == {teacher.name: 0}
    np.testing.assert_allclose(served(result, PAIRS), predict(str(path), PAIRS), rtol=1e-4, atol=1e-5)
    assert not np.allclose(served(result, PAIRS[:6]), predict(tiny_model_path, PAIRS[:6]), atol=1e-3)
    # the build reads the scores of the last run's teacher, not the earlier model's
    np.testing.assert_allclose(served(load_cached_scores(cache), PAIRS), served(result, PAIRS))


def test_the_same_model_by_another_path_spelling_is_served_from_the_cache(tiny_model_path, tmp_path):
    first = score_with_teachers([CrossEncoderTeacher(tiny_model_path, max_length=64)], PAIRS, QUERIES, CORPUS, tmp_path / "cache")
    copy = tmp_path / "elsewhere" / "copy-of-the-model"
    shutil.copytree(tiny_model_path, copy)
    for spelling in (tiny_model_path + "/", str(tmp_path / "elsewhere" / ".." / "elsewhere" / "copy-of-the-model")):
        teacher = CrossEncoderTeacher(spelling, max_length=64)
        again = score_with_teachers([teacher], PAIRS, QUERIES, CORPUS, tmp_path / "cache")
        assert again.scored == {teacher.name: 0} and again.cached == {teacher.name: len(PAIRS)}
        np.testing.assert_array_equal(served(again, PAIRS), served(first, PAIRS))


def test_a_passage_whose_text_changed_is_scored_again(tiny_model_path, tmp_path):
    teacher = CrossEncoderTeacher(tiny_model_path, name="t", max_length=64)
    score_with_teachers([teacher], PAIRS, QUERIES, CORPUS, tmp_path)
    changed = {**CORPUS, "d2": "The Eiffel Tower, in Paris, is 330 metres tall including its antennas."}
    result = score_with_teachers([CrossEncoderTeacher(tiny_model_path, name="t", max_length=64)], PAIRS, QUERIES, changed, tmp_path)
    assert result.scored == {"t": len(QUERIES)} and result.cached == {"t": len(PAIRS) - len(QUERIES)}
    np.testing.assert_allclose(served(result, PAIRS), predict(tiny_model_path, PAIRS, changed), rtol=1e-4, atol=1e-5)
    # reading the cache back for a build: the scores of the texts given, never the stale ones
    current = load_cached_scores(tmp_path, queries=QUERIES, corpus=changed)
    np.testing.assert_allclose(served(current, PAIRS), served(result, PAIRS))
    with pytest.raises(ValueError, match="more than one text"):
        load_cached_scores(tmp_path)


def test_a_damaged_manifest_or_a_missing_shard_is_named(tiny_model_path, tmp_path):
    teacher = CrossEncoderTeacher(tiny_model_path, name="t", max_length=64)
    score_with_teachers([teacher], PAIRS, QUERIES, CORPUS, tmp_path, shard_size=5)
    manifest = tmp_path / "manifest.json"
    text = manifest.read_text()
    (entry,) = json.loads(text)["teachers"].values()
    shard = tmp_path / entry["shards"][1]["file"]
    shard.unlink()
    with pytest.raises(ValueError, match=rf"{shard.name}.*missing.*{manifest.name}"):
        score_with_teachers([teacher], PAIRS, QUERIES, CORPUS, tmp_path)
    repaired = score_with_teachers([teacher], PAIRS, QUERIES, CORPUS, tmp_path, repair=True)
    assert repaired.scored == {"t": 5}
    manifest.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=rf"{manifest}: not valid JSON"):
        load_cached_scores(tmp_path)
    manifest.write_text(text.replace('"rows"', '"rowz"', 1))
    with pytest.raises(ValueError, match=rf"{manifest}: .*rows"):
        load_cached_scores(tmp_path)
