"""Gradient caching (``cached=True``): the same loss and parameter gradients as ``cached=False``.

Every list and tuple loss runs on a tiny random BERT in train mode (dropout active), once without and
once with the cache, from the same RNG seed and at the same ``mini_batch_size``; the cached pass must
replay each mini-batch's dropout (the library's ``RandContext``) for the gradients to match.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from st_distill.losses import (
    ADRMSELoss,
    CombinedDistillationLoss,
    DistillRankNetLoss,
    HingeLoss,
    InfoNCELoss,
    KLDistillLoss,
    MarginMSELoss,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

QUERIES = ["what do pandas eat", "capital of france", "how tall is everest"]
# ragged lists (padding exercised); 9 pairs, so mini_batch_size=2 makes 5 chunks, the last of one pair
LISTS = [
    ["Pandas eat bamboo.", "Pandas are bears that live in the mountains of China.", "Fish swim.", "Bamboo grows fast."],
    ["Paris is the capital of France.", "Lyon is a large city in the south east of France."],
    ["Everest is 8849 m tall.", "Mountains are tall.", "Nepal borders China and India to the north."],
]
TEACHER = [torch.tensor([3.0, 1.0, 1.0, -2.0]), torch.tensor([0.5, -0.5]), torch.tensor([2.0, 2.0, -1.0])]
TUPLES = [
    QUERIES,
    ["Pandas eat bamboo.", "Paris is the capital of France.", "Everest is 8849 m tall."],
    ["Fish swim in the sea.", "Berlin is in Germany.", "Hills are small."],
    ["Bears sleep in winter.", "France makes wine.", "Nepal is a country in Asia."],
]
TUPLE_TEACHER = [torch.tensor([4.0, -1.0, 0.5]), torch.tensor([3.0, 2.5, -2.0]), torch.tensor([1.0, 0.0, 0.2])]

CASES = {
    "distillranknet": (lambda m, **kw: DistillRankNetLoss(m, **kw), [QUERIES, LISTS], TEACHER),
    "adrmse": (lambda m, **kw: ADRMSELoss(m, temperature=0.5, **kw), [QUERIES, LISTS], TEACHER),
    "kldistill": (lambda m, **kw: KLDistillLoss(m, temperature=2.0, **kw), [QUERIES, LISTS], TEACHER),
    "infonce": (lambda m, **kw: InfoNCELoss(m, **kw), [QUERIES, LISTS], None),
    "hinge": (lambda m, **kw: HingeLoss(m, margin=0.5, **kw), TUPLES, None),
    "marginmse": (lambda m, **kw: MarginMSELoss(m, **kw), TUPLES, TUPLE_TEACHER),
    "kldistill+infonce": (lambda m, **kw: CombinedDistillationLoss(m, hard_weight=0.5, **kw), [QUERIES, LISTS], TEACHER),
    "adrmse+bce": (
        lambda m, **kw: CombinedDistillationLoss(m, teacher_loss="adrmse", hard_loss="bce", **kw),
        [QUERIES, LISTS],
        TEACHER,
    ),
}


def total(value):
    return torch.stack(list(value.values())).sum() if isinstance(value, dict) else value


def loss_and_grads(loss, inputs, labels, seed: int, scale: float = 0.5):
    """The loss value and the parameter gradients of ``scale * loss`` (the trainer divides by accumulation steps)."""
    loss.model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    value = loss(inputs, labels)
    (scale * total(value)).backward()
    grads = {name: p.grad.clone() for name, p in loss.model.named_parameters() if p.grad is not None}
    return value, grads


def assert_same_grads(expected: dict, actual: dict, atol: float = 1e-5) -> None:
    assert expected.keys() == actual.keys()
    assert sum(g.abs().sum() for g in expected.values()) > 0  # there is something to compare
    for name, grad in expected.items():
        assert torch.allclose(grad, actual[name], atol=atol, rtol=0), f"{name}: max diff {(grad - actual[name]).abs().max()}"


@pytest.mark.parametrize("name", CASES)
def test_cached_loss_and_gradients_equal_uncached_with_dropout(tiny_model, name):
    make, inputs, labels = CASES[name]
    tiny_model.train()
    reference, reference_grads = loss_and_grads(make(tiny_model, mini_batch_size=2), inputs, labels, seed=7)
    cached_loss = make(tiny_model, mini_batch_size=2, cached=True)
    assert cached_loss.uses_gradient_cache and cached_loss.get_config_dict()["cached"] is True
    value, grads = loss_and_grads(cached_loss, inputs, labels, seed=7)

    assert torch.allclose(total(reference), total(value), atol=1e-5, rtol=0)
    if isinstance(reference, dict):  # each named part keeps its value
        assert reference.keys() == value.keys()
        assert all(torch.allclose(reference[k], value[k], atol=1e-5, rtol=0) for k in reference)
    assert_same_grads(reference_grads, grads)

    # the premise: dropout is active, so another seed gives another loss (the replay is what matched them)
    other, _ = loss_and_grads(make(tiny_model, mini_batch_size=2), inputs, labels, seed=8)
    assert not torch.allclose(total(reference), total(other), atol=1e-4)


@pytest.mark.parametrize("name", ["distillranknet", "adrmse", "kldistill"])
def test_cached_in_eval_mode_equals_one_uncached_pass(tiny_model, name):
    """Without dropout the chunking is invisible: cached chunks of 2 = all pairs in one uncached pass."""
    make, inputs, labels = CASES[name]
    tiny_model.eval()
    reference, reference_grads = loss_and_grads(make(tiny_model), inputs, labels, seed=0)
    value, grads = loss_and_grads(make(tiny_model, mini_batch_size=2, cached=True), inputs, labels, seed=0)
    assert torch.allclose(reference, value, atol=1e-5, rtol=0)
    assert_same_grads(reference_grads, grads)


def test_cached_without_gradients_returns_the_value(tiny_model):
    tiny_model.eval()
    with torch.no_grad():
        reference = KLDistillLoss(tiny_model)([QUERIES, LISTS], TEACHER)
        value = KLDistillLoss(tiny_model, mini_batch_size=2, cached=True)([QUERIES, LISTS], TEACHER)
    assert not value.requires_grad
    assert torch.allclose(reference, value, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mini_batch_size", [None, 0, -1])
def test_cached_needs_a_positive_mini_batch_size(tiny_model, mini_batch_size):
    with pytest.raises(ValueError, match=r"ADRMSELoss: cached=True needs a positive mini_batch_size"):
        ADRMSELoss(tiny_model, mini_batch_size=mini_batch_size, cached=True)


def test_two_forwards_before_backward_keep_their_own_cache(tiny_model):
    """Each forward call owns its cache: backward of the first after a second forward is still the first's."""
    tiny_model.eval()
    loss = DistillRankNetLoss(tiny_model, mini_batch_size=2, cached=True)
    _, expected = loss_and_grads(loss, [QUERIES, LISTS], TEACHER, seed=0, scale=1.0)
    tiny_model.zero_grad(set_to_none=True)
    first = loss([QUERIES, LISTS], TEACHER)
    loss([QUERIES[:1], LISTS[:1]], TEACHER[:1])  # a second batch, never back-propagated
    first.backward()
    assert_same_grads(expected, {n: p.grad for n, p in tiny_model.named_parameters() if p.grad is not None})


def test_trainer_step_with_cache_equals_uncached(tiny_model_path, tmp_path):
    """One CrossEncoderTrainer step (SGD, lr 1, dropout on): the cached loss moves the weights as the uncached one."""
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    dataset = Dataset.from_dict({"query": QUERIES, "docs": LISTS, "scores": [t.tolist() for t in TEACHER]})
    weights = []
    for cached in (False, True):
        model = CrossEncoder(tiny_model_path, num_labels=1, max_length=64, device="cpu")
        args = CrossEncoderTrainingArguments(
            output_dir=str(tmp_path / str(cached)), max_steps=1, per_device_train_batch_size=3, learning_rate=1.0,
            optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0, seed=3, save_strategy="no",
            report_to="none", disable_tqdm=True, dataloader_drop_last=False, dataloader_pin_memory=False,
        )
        loss = ADRMSELoss(model, mini_batch_size=2, cached=cached)
        CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss).train()
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    initial = CrossEncoder(tiny_model_path, num_labels=1, max_length=64, device="cpu")
    moved = {n: (weights[0][n] - p).abs().max().item() for n, p in initial.named_parameters()}
    assert max(moved.values()) > 1e-4  # the step did something
    for name, weight in weights[0].items():
        assert torch.allclose(weight, weights[1][name], atol=1e-5, rtol=0), name


def test_registry_caches_the_50_document_objectives(tiny_model):
    from st_distill.objectives import OBJECTIVES

    for name, objective in OBJECTIVES.items():
        loss = objective.loss(tiny_model)
        long_lists = objective.dataset_format.kind == "listwise"
        assert getattr(loss, "cached", False) is long_lists, name
        if long_lists:
            assert objective.dataset_format.n_negatives + 1 == 50 and loss.mini_batch_size == 16
    assert OBJECTIVES["adrmse"].loss(tiny_model, cached=False).cached is False  # a config can turn it off


def test_a_batch_within_one_mini_batch_skips_the_cache(tiny_model, monkeypatch):
    from st_distill.losses import base

    def fail(*args, **kwargs):
        raise AssertionError("the cache ran")

    monkeypatch.setattr(base._ListGradCache, "run", fail)
    tiny_model.eval()
    reference = KLDistillLoss(tiny_model)([QUERIES, LISTS], TEACHER)
    assert torch.allclose(KLDistillLoss(tiny_model, mini_batch_size=9, cached=True)([QUERIES, LISTS], TEACHER), reference, atol=1e-5)
    with pytest.raises(AssertionError, match="the cache ran"):
        KLDistillLoss(tiny_model, mini_batch_size=8, cached=True)([QUERIES, LISTS], TEACHER)
