"""Tests of the fast pair scorer against CrossEncoder.predict on the tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from st_distill.models import scoring
from st_distill.models.scoring import score_pairs, unique_pairs

QUERIES = ["what is a cat", "how tall is the eiffel tower", "boiling point of water at altitude"]
DOCS = [
    "A cat is a small domesticated carnivorous mammal.",
    "The Eiffel Tower is 330 metres tall.",
    "Water boils at lower temperatures at high altitude because the air pressure is lower. " * 6,
    "short",
    "Paris is the capital of France and home to many museums, parks and monuments " * 12,
]


def _pairs() -> list[tuple[str, str]]:
    return [(q, d) for q in QUERIES for d in DOCS]


def _predict(model, pairs, activation=True):
    kwargs = {} if activation else {"activation_fn": torch.nn.Identity()}
    return model.predict(pairs, batch_size=4, show_progress_bar=False, **kwargs)


@pytest.mark.parametrize("activation", [True, False])
def test_scores_equal_predict(tiny_model, activation):
    pairs = _pairs()
    ours = score_pairs(tiny_model, pairs, batch_size=4, activation=activation, show_progress_bar=False)
    assert ours.dtype == np.float32 and ours.shape == (len(pairs),)
    np.testing.assert_allclose(ours, _predict(tiny_model, pairs, activation), atol=1e-4, rtol=0)
    if activation:  # the sigmoid of the logits, as predict applies it
        raw = score_pairs(tiny_model, pairs, activation=False, show_progress_bar=False)
        np.testing.assert_allclose(ours, 1 / (1 + np.exp(-raw)), atol=1e-6)


def test_duplicates_scored_once(tiny_model, monkeypatch):
    pairs = _pairs()
    repeated = pairs + pairs[::-1] + pairs[:3]
    seen: list[int] = []
    forward = type(tiny_model).forward

    def counting_forward(self, features, **kwargs):
        seen.append(int(features["input_ids"].shape[0]))
        return forward(self, features, **kwargs)

    monkeypatch.setattr(type(tiny_model), "forward", counting_forward)
    ours = score_pairs(tiny_model, repeated, batch_size=4, show_progress_bar=False)
    assert sum(seen) == len(pairs)  # every unique pair once, no repeat
    monkeypatch.undo()
    np.testing.assert_allclose(ours, _predict(tiny_model, repeated), atol=1e-4, rtol=0)
    # repeats get exactly the score of their first occurrence
    assert np.array_equal(ours[len(pairs) : 2 * len(pairs)], ours[: len(pairs)][::-1])


def test_unique_pairs_inverse():
    pairs = [("a", "x"), ("b", "y"), ("a", "x"), ("a", "y")]
    unique, inverse = unique_pairs(pairs)
    assert unique == [("a", "x"), ("b", "y"), ("a", "y")]
    assert [unique[i] for i in inverse] == pairs


def test_max_length_truncation(tiny_model):
    assert tiny_model.max_length == 64
    long_doc = "word " * 100
    tail = " an extra tail far past the limit"
    pairs = [("q", long_doc), ("q", long_doc + tail), ("q", "a short document")]
    # the premise, checked on the tokenizer rather than assumed: both documents pass 64 tokens,
    # and both fit in 256, so only the larger limit sees the tail
    lengths = [len(tiny_model.tokenizer(q, d)["input_ids"]) for q, d in pairs[:2]]
    assert 64 < lengths[0] < lengths[1] <= 256, lengths
    ours = score_pairs(tiny_model, pairs, show_progress_bar=False)
    np.testing.assert_allclose(ours, _predict(tiny_model, pairs), atol=1e-4, rtol=0)
    assert ours[0] == ours[1]  # both cut at 64 tokens: the tail beyond the limit is never seen
    short_logits = score_pairs(tiny_model, pairs[:2], activation=False, show_progress_bar=False)
    tiny_model.max_length = 256  # now the 100 words and the tail are all read
    longer = score_pairs(tiny_model, pairs[:2], activation=False, show_progress_bar=False)
    np.testing.assert_allclose(longer, _predict(tiny_model, pairs[:2], activation=False), atol=1e-4, rtol=0)
    assert longer[0] != short_logits[0] and longer[0] != longer[1]


def test_batches_sorted_by_token_length(tiny_model, monkeypatch):
    pairs = _pairs()
    widths: list[tuple[int, int]] = []  # (padded width, real tokens) per batch
    forward = type(tiny_model).forward

    def recording_forward(self, features, **kwargs):
        mask = features["attention_mask"]
        widths.append((mask.shape[1], int(mask.sum(dim=1).min())))
        return forward(self, features, **kwargs)

    monkeypatch.setattr(type(tiny_model), "forward", recording_forward)
    score_pairs(tiny_model, pairs, batch_size=3, show_progress_bar=False)
    padded = [w for w, _ in widths]
    assert padded == sorted(padded, reverse=True)  # longest batch first
    # each batch's shortest row is at least as long as the next batch's longest
    assert all(widths[i][1] >= widths[i + 1][0] for i in range(len(widths) - 1))


def test_batch_by_batch_fallback(tiny_model, monkeypatch):
    """Models whose preprocessing yields no token lists are preprocessed batch by batch, same scores."""
    monkeypatch.setattr(scoring, "_pretokenise", lambda model, pairs: None)
    pairs = _pairs()
    ours = score_pairs(tiny_model, pairs, batch_size=4, show_progress_bar=False)
    np.testing.assert_allclose(ours, _predict(tiny_model, pairs), atol=1e-4, rtol=0)


def test_multi_label_model(tiny_model_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    torch.manual_seed(0)
    model = CrossEncoder(
        tiny_model_path, num_labels=3, max_length=64, device="cpu", model_kwargs={"ignore_mismatched_sizes": True}
    )
    pairs = _pairs()[:6]
    ours = score_pairs(model, pairs, show_progress_bar=False)
    assert ours.shape == (6, 3)
    np.testing.assert_allclose(ours, model.predict(pairs, show_progress_bar=False), atol=1e-4, rtol=0)


def test_empty_and_invalid(tiny_model):
    assert score_pairs(tiny_model, [], show_progress_bar=False).shape == (0,)
    with pytest.raises(ValueError, match="batch_size"):
        score_pairs(tiny_model, _pairs(), batch_size=0)


def test_restores_training_mode(tiny_model):
    tiny_model.train()
    score_pairs(tiny_model, _pairs()[:2], show_progress_bar=False)
    assert tiny_model.training


def test_token_budget_batches(tiny_model, monkeypatch):
    lengths = np.array([50, 10, 30, 30, 120, 10])
    order = np.argsort(-lengths, kind="stable")  # 120, 50, 30, 30, 10, 10
    batches = scoring.length_batches(lengths, order, batch_size=3, max_tokens=100)
    assert [b.tolist() for b in batches] == [[4], [0, 2], [3, 1, 5]]  # 120 alone; 2 x 50; 3 x 30 (<= 3 rows)
    assert [b.tolist() for b in scoring.length_batches(lengths, order, 4, None)] == [[4, 0, 2, 3], [1, 5]]

    pairs = _pairs()
    shapes: list[tuple[int, int]] = []
    forward = type(tiny_model).forward

    def recording_forward(self, features, **kwargs):
        shapes.append(tuple(features["input_ids"].shape))
        return forward(self, features, **kwargs)

    monkeypatch.setattr(type(tiny_model), "forward", recording_forward)
    ours = score_pairs(tiny_model, pairs, batch_size=8, tokens_per_batch=128, show_progress_bar=False)
    monkeypatch.undo()
    assert all(rows * width <= 128 or rows == 1 for rows, width in shapes) and sum(r for r, _ in shapes) == len(pairs)
    np.testing.assert_allclose(ours, _predict(tiny_model, pairs), atol=1e-4, rtol=0)


def test_bf16_where_native_keeps_the_head_in_float32(tiny_model, monkeypatch):
    from st_distill.models import precision

    pairs = _pairs()
    full = score_pairs(tiny_model, pairs, activation=False, show_progress_bar=False)
    heads = []
    forward = type(tiny_model).forward

    def recording_forward(self, features, **kwargs):
        heads.append((torch.get_autocast_dtype("cpu"), torch.is_autocast_enabled("cpu"), list(self.keep_in_fp32_modules)))
        return forward(self, features, **kwargs)

    monkeypatch.setattr(precision, "native_bf16", lambda device: True)  # bfloat16 autocast runs (emulated) on any CPU
    monkeypatch.setattr(type(tiny_model), "forward", recording_forward)
    reduced = score_pairs(tiny_model, pairs, activation=False, show_progress_bar=False)
    assert heads and all(h == (torch.bfloat16, True, ["0.model.classifier"]) for h in heads)
    assert tiny_model.keep_in_fp32_modules == []  # restored
    assert reduced.dtype == np.float32 and not np.array_equal(reduced, full)
    np.testing.assert_allclose(reduced, full, atol=0.05, rtol=0)
    # float32 on request, even where bfloat16 is native
    np.testing.assert_array_equal(score_pairs(tiny_model, pairs, activation=False, show_progress_bar=False, autocast=False), full)


def test_precision_choices(tiny_model, monkeypatch):
    from st_distill.models import precision

    assert precision.autocast_dtype("cpu") is None and not torch.is_autocast_enabled("cpu")
    with precision.autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")  # float32 where bfloat16 is not native
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.autocast_dtype("cpu") == torch.bfloat16
    with precision.autocast("cpu"):
        assert torch.is_autocast_enabled("cpu")
    with precision.autocast("cpu", enabled=False):
        assert not torch.is_autocast_enabled("cpu")
    assert precision.score_head(tiny_model) == "0.model.classifier"
    monkeypatch.undo()
    assert not precision.native_bf16("meta")
    cpu_probe = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)() or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    assert precision.native_bf16("cpu") == bool(cpu_probe)
