"""bf16 training on CPU autocast: every objective's loss is computed in float32 and its gradients are finite.

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` the model's linear layers, and so its logits,
run in bf16; the losses cast the logits to float32 before any math. Each objective of the registry
(with its defaults, so the 50-document objectives run cached, in mini-batches of 2 pairs) does one
forward and backward step on a tiny random BERT; one goes through ``CrossEncoderTrainer(bf16=True)``.
"""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset

from st_distill.losses import ADRMSELoss, DistillRankNetLoss, KLDistillLoss
from st_distill.losses import functional as F
from st_distill.objectives import OBJECTIVES, get_objective

pytestmark = pytest.mark.usefixtures("torch_one_thread")

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)
QUERIES = ["what do pandas eat", "capital of france"]
DOCS = [
    ["Pandas eat bamboo.", "Pandas are bears.", "Fish swim in the sea.", "Bamboo grows fast."],
    ["Paris is the capital of France.", "France borders Spain.", "Berlin is in Germany."],
]
TEACHER = [torch.tensor([3.0, 1.5, -1.0, 0.2]), torch.tensor([2.0, 0.5, -2.0])]


def batch(name: str) -> tuple[list, object]:
    """One collated batch (inputs, labels) in the objective's dataset format."""
    fmt = get_objective(name).dataset_format
    if fmt.kind == "pointwise":
        return [[QUERIES[0]] * 2 + [QUERIES[1]] * 2, DOCS[0][:2] + DOCS[1][:2]], torch.tensor([1.0, 0.0, 1.0, 0.0])
    if fmt.kind == "ntuple":
        columns = [QUERIES, *([docs[i] for docs in DOCS] for i in range(3))]
        labels = [t[:3] for t in TEACHER] if fmt.label_column else None
        return columns, labels
    return [QUERIES, DOCS], TEACHER


def parts(value) -> list[torch.Tensor]:
    return list(value.values()) if isinstance(value, dict) else [value]


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_step_under_bf16_autocast_computes_the_loss_in_fp32(tiny_model, name):
    tiny_model.train()
    objective = get_objective(name)
    # the cache is skipped for a batch that fits in one mini-batch: make this one need several
    loss = objective.loss(tiny_model, **({"mini_batch_size": 2} if objective.loss_kwargs.get("cached") else {}))
    inputs, labels = batch(name)
    with torch.autocast(**BF16):
        value = loss(inputs, labels)
    for part in parts(value):
        assert part.dtype == torch.float32 and torch.isfinite(part)
    torch.stack(parts(value)).sum().backward()  # outside autocast, as PyTorch recommends
    grads = [p.grad for p in tiny_model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(
    "make, reference",
    [
        (lambda m: DistillRankNetLoss(m), lambda s, t, mask: F.distill_ranknet(s, t, mask)),
        (lambda m: ADRMSELoss(m, mini_batch_size=3, cached=True), lambda s, t, mask: F.adr_mse(s, t, mask)),
        (lambda m: KLDistillLoss(m, temperature=0.5), lambda s, t, mask: F.kl_distill(s, t, mask, temperature=0.5)),
    ],
)
def test_losses_do_their_math_in_fp32_on_bf16_logits(tiny_model, make, reference):
    """The value is the fp32 formula on the model's bf16 logits, not a bf16 computation."""
    tiny_model.eval()
    with torch.no_grad(), torch.autocast(**BF16):
        logits = [tiny_model(tiny_model.preprocess([(q, d) for d in docs]))["scores"].view(-1) for q, docs in zip(QUERIES, DOCS)]
        value = make(tiny_model)([QUERIES, DOCS], TEACHER)
    assert all(row.dtype == torch.bfloat16 for row in logits)  # the premise: autocast is on
    scores = torch.nn.utils.rnn.pad_sequence([row.float() for row in logits], batch_first=True)
    mask = torch.tensor([[True] * 4, [True] * 3 + [False]])
    expected = reference(scores, torch.nn.utils.rnn.pad_sequence(TEACHER, batch_first=True), mask)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-7)


def test_cached_replay_reenters_autocast(tiny_model):
    """backward() outside autocast: the cached replay re-runs the forward in bf16, as the first pass ran."""
    tiny_model.eval()
    classifier = next(module for name, module in tiny_model.named_modules() if name.endswith("classifier"))
    dtypes = []
    handle = classifier.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    with torch.autocast(**BF16):
        value = ADRMSELoss(tiny_model, mini_batch_size=3, cached=True)([QUERIES, DOCS], TEACHER)
    assert dtypes == [torch.bfloat16] * 3  # 7 pairs in 3 mini-batches, no graph kept
    value.backward()
    handle.remove()
    assert dtypes == [torch.bfloat16] * 6  # the replay, with gradients, outside the autocast block
    assert all(torch.isfinite(p.grad).all() for p in tiny_model.parameters() if p.grad is not None)


def test_trainer_step_in_bf16_with_a_cached_loss(tiny_model, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    dataset = Dataset.from_dict({"query": QUERIES, "docs": DOCS, "scores": [t.tolist() for t in TEACHER]})
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3, bf16=True,
        use_cpu=True, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    trainer = CrossEncoderTrainer(model=tiny_model, args=args, train_dataset=dataset, loss=get_objective("adrmse").loss(tiny_model, mini_batch_size=3))
    trainer.train()
    assert trainer.loss.cached
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    assert all(torch.isfinite(p).all() for p in tiny_model.parameters())
    assert any(not torch.equal(p.detach(), before[n]) for n, p in tiny_model.named_parameters())
