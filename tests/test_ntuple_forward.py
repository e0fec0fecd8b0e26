"""n-tuple losses score every (query, document) pair of a batch in one forward: the same loss and gradients as one forward per column.

The per-column form is what the library's ``MarginMSELoss`` does (one forward for the positives,
one per negative column); here it is written out for hinge and InfoNCE from the definitions, and
the library's own loss is the reference for MarginMSE. Dropout is off (``eval()``), so the forms
can only differ by the padding each forward sees; each comparison runs with and without the
gradient cache.
"""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.cross_encoder import losses as library
from sentence_transformers.util import batch_to_device

from st_distill.losses import HingeLoss, InfoNCELoss, MarginMSELoss

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TUPLES = [
    ["what do pandas eat", "capital of france", "how tall is everest"],
    ["Pandas eat bamboo.", "Paris is the capital of France and its largest city.", "Everest is 8849 m tall."],
    ["Fish swim in the sea.", "Berlin.", "Hills are small and green in the spring."],
    ["Bears sleep in winter, some of them for months.", "France makes wine.", "Nepal."],
]
TEACHER = [torch.tensor([4.0, -1.0, 0.5]), torch.tensor([3.0, 2.5, -2.0]), torch.tensor([1.0, 0.0, 0.2])]


def per_column_scores(model, inputs):
    """``[B, 1 + n]`` logits, one forward per document column (positives first)."""
    columns = []
    for docs in inputs[1:]:
        features = batch_to_device(model.preprocess(list(zip(inputs[0], docs))), model.device)
        columns.append(model(features)["scores"].view(-1).float())
    return torch.stack(columns, dim=1)


def hinge_reference(model, inputs, labels, margin=0.7):
    s = per_column_scores(model, inputs)
    return torch.clamp(margin - (s[:, :1] - s[:, 1:]), min=0).mean()


def infonce_reference(model, inputs, labels, temperature=0.5):
    s = per_column_scores(model, inputs) / temperature
    return (torch.logsumexp(s, dim=1) - s[:, 0]).mean()


def marginmse_reference(model, inputs, labels):
    return library.MarginMSELoss(model)(inputs, labels)


CASES = {
    "hinge": (lambda m, **kw: HingeLoss(m, margin=0.7, **kw), hinge_reference, None),
    "infonce": (lambda m, **kw: InfoNCELoss(m, temperature=0.5, **kw), infonce_reference, None),
    "marginmse": (lambda m, **kw: MarginMSELoss(m, **kw), marginmse_reference, TEACHER),
}


def value_and_grads(model, compute):
    model.zero_grad(set_to_none=True)
    value = compute()
    value.backward()
    return value.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_one_forward_equals_one_forward_per_column(tiny_model, name, cached):
    make, reference, labels = CASES[name]
    tiny_model.eval()
    calls = []
    hook = tiny_model.register_forward_hook(lambda module, args, output: calls.append(1))
    loss = make(tiny_model, mini_batch_size=4 if cached else None, cached=cached)
    ours, our_grads = value_and_grads(tiny_model, lambda: loss(TUPLES, labels))
    forwards = len(calls)
    hook.remove()
    expected, expected_grads = value_and_grads(tiny_model, lambda: reference(tiny_model, TUPLES, labels))
    assert forwards == (1 if not cached else 2 * 3)  # 12 pairs: one pass, or 3 mini-batches of 4 twice (no graph, replay)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert expected_grads.keys() == our_grads.keys()
    assert sum(g.abs().sum() for g in expected_grads.values()) > 0
    for key, grad in expected_grads.items():
        assert torch.allclose(our_grads[key], grad, atol=1e-5, rtol=1e-4), f"{key}: max diff {(our_grads[key] - grad).abs().max()}"
