"""st_distill.training.dropout: torch's dropout distribution, a reproducible mask, and a model unchanged outside training.

References: the binomial law of the keep mask (counts within 5 standard deviations), independence
between neighbouring elements, the gradient of inverted dropout (the mask times 1 / keep), the
library's eager attention with the same mask, and the model's own forward in ``eval()`` mode.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.models.bert.modeling_bert import eager_attention_forward

from st_distill.losses import InfoNCELoss, MarginMSELoss
from st_distill.training import cpu_dropout
from st_distill.training.dropout import ATTENTION, Dropout, dropout, dropout_attention

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_keep_rate_is_binomial_and_neighbours_independent(p):
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of the 4 lanes of a word
    out = dropout(torch.ones(n), p)
    kept = out != 0
    keep = 1 - p
    assert abs(int(kept.sum()) - n * keep) < 5 * math.sqrt(n * keep * p)
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / keep), rtol=1e-4)  # scaled by 1 / keep
    assert abs(float(out.mean()) - 1.0) < 5 * math.sqrt(p / keep / n)  # expectation: the input
    a, b = kept[:-1].float(), kept[1:].float()
    both = float((a * b).mean())
    assert abs(both - keep * keep) < 5 * math.sqrt(keep * keep * (1 - keep * keep) / n)  # P(both kept) = keep^2
    a4, b4 = kept[:-4].float(), kept[4:].float()  # the next word's same lane
    assert abs(float((a4 * b4).mean()) - keep * keep) < 5 * math.sqrt(keep * keep * (1 - keep * keep) / n)


def test_gradient_is_the_scaled_mask_and_the_seed_reproduces_it():
    x = torch.randn(3, 7, 5, requires_grad=True)
    torch.manual_seed(4)
    out = dropout(x, 0.3)
    out.backward(torch.ones_like(out))
    torch.manual_seed(4)
    again = dropout(x.detach(), 0.3)
    assert torch.equal(out.detach(), again)
    mask = (again != 0).float()
    keep = round(0.7 * 2**16) / 2**16
    assert torch.allclose(x.grad, mask / keep)
    assert torch.allclose(out.detach(), x.detach() * mask / keep)


def test_edges_and_bad_probabilities():
    x = torch.randn(4, 4)
    assert dropout(x, 0.0) is x
    assert dropout(x, 0.5, training=False) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout(x, 1.5)
    layer = Dropout(0.2)
    layer.eval()
    assert layer(x) is x


def test_attention_equals_eager_attention_with_the_same_mask():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    padding = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    sdpa_mask = padding[:, None, None, :].expand(2, 1, 5, 5)
    additive = torch.zeros(2, 1, 5, 5).masked_fill(~sdpa_mask, torch.finfo(torch.float32).min)
    module = nn.Module()
    module.training = True
    torch.manual_seed(1)
    ours, weights = dropout_attention(module, q, k, v, sdpa_mask, dropout=0.2, scaling=0.3)
    # the eager attention without dropout, then the mask our call drew, drawn again from the same seed
    module.training = False
    _, probs = eager_attention_forward(module, q, k, v, additive, scaling=0.3)
    torch.manual_seed(1)
    dropped = dropout(probs, 0.2)
    assert torch.allclose(weights, dropped, atol=1e-6)
    assert torch.allclose(ours, torch.matmul(dropped, v).transpose(1, 2), atol=1e-5)
    # without dropout it is SDPA, which equals eager attention
    plain, _ = dropout_attention(module, q, k, v, sdpa_mask, dropout=0.0, scaling=0.3)
    eager, _ = eager_attention_forward(module, q, k, v, additive, scaling=0.3)
    assert torch.allclose(plain, eager, atol=1e-5)


def _implementations(model):
    return {m.config._attn_implementation for m in model.modules() if isinstance(m, PreTrainedModel)}


def test_model_is_unchanged_outside_training_and_restored(tiny_model):
    pairs = [("what do pandas eat", "Pandas eat bamboo."), ("capital of france", "Paris is the capital of a country in Europe.")]
    features = tiny_model.preprocess(pairs)
    tiny_model.eval()
    with torch.no_grad():
        before = tiny_model(features)["scores"]
    assert _implementations(tiny_model) == {"sdpa"}
    with cpu_dropout(tiny_model):
        assert _implementations(tiny_model) == {ATTENTION}
        assert all(type(m) is Dropout for m in tiny_model.modules() if isinstance(m, nn.Dropout))
        with torch.no_grad():
            assert torch.allclose(tiny_model(features)["scores"], before, atol=1e-6)
        tiny_model.train()
        torch.manual_seed(0)
        first = tiny_model(features)["scores"]
        torch.manual_seed(0)
        assert torch.equal(tiny_model(features)["scores"], first)  # reproducible from the seed
        assert not torch.allclose(first, before)  # dropout is active
    assert _implementations(tiny_model) == {"sdpa"}
    assert all(type(m) is nn.Dropout for m in tiny_model.modules() if isinstance(m, nn.Dropout))


@pytest.mark.parametrize("make", [lambda m: InfoNCELoss(m, mini_batch_size=2, cached=True),
                                  lambda m: MarginMSELoss(m, mini_batch_size=2, cached=True)])
def test_gradient_cache_replays_the_new_masks(tiny_model, make):
    """The GradCache replay restores torch's RNG state, so the masks drawn by :func:`dropout` replay too."""
    tuples = [["q one", "q two"], ["pos one is here", "pos two"], ["neg one", "neg two is longer"], ["neg three", "n4"]]
    teacher = [torch.tensor([2.0, 0.0, -1.0]), torch.tensor([1.0, 0.5, -0.5])]
    tiny_model.train()
    results = []
    with cpu_dropout(tiny_model):
        for cached in (False, True):
            loss = make(tiny_model)
            loss.cached = cached
            tiny_model.zero_grad(set_to_none=True)
            torch.manual_seed(3)
            value = loss(tuples, teacher)
            value.backward()
            results.append((value.detach(), {n: p.grad.clone() for n, p in tiny_model.named_parameters()}))
    (v0, g0), (v1, g1) = results
    assert torch.allclose(v0, v1, atol=1e-6)
    assert sum(g.abs().sum() for g in g0.values()) > 0
    for name in g0:
        assert torch.allclose(g0[name], g1[name], atol=1e-5), name
