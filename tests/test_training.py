"""Tests of the bench's student construction: layer truncation by count or by indices."""

from __future__ import annotations

import pytest
import torch

from st_distill.bench.training import make_student, truncate_layers


@pytest.mark.parametrize("layers, kept", [(1, [0]), ([1], [1]), ([0, 1], [0, 1])])
def test_truncation_keeps_the_chosen_layers_and_reloads(tiny_model_path, tmp_path, layers, kept):
    full = make_student(tiny_model_path, seed=0, max_length=32, device="cpu")
    student = make_student(tiny_model_path, seed=0, layers=layers, max_length=32, device="cpu")
    stack, original = student.model.bert.encoder.layer, full.model.bert.encoder.layer
    assert len(stack) == len(kept) == student.model.config.num_hidden_layers
    for layer, index in zip(stack, kept):
        for (name, value), (_, reference) in zip(layer.state_dict().items(), original[index].state_dict().items()):
            assert torch.equal(value, reference), name
    pairs = [("a query", "a relevant document"), ("a query", "something else")]
    student.save_pretrained(str(tmp_path / "student"))
    reloaded = make_student(str(tmp_path / "student"), seed=1, max_length=32, device="cpu")
    assert len(reloaded.model.bert.encoder.layer) == len(kept)
    torch.testing.assert_close(torch.as_tensor(reloaded.predict(pairs)), torch.as_tensor(student.predict(pairs)))


@pytest.mark.parametrize("layers", [3, [0, 2], []])
def test_truncation_rejects_layers_the_model_lacks(tiny_model, layers):
    with pytest.raises(ValueError, match="cannot keep layers"):
        truncate_layers(tiny_model, layers)
