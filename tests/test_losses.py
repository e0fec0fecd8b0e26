"""Loss classes: the scoring helper, parity with the library's losses, the combined loss, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.cross_encoder import losses as st_losses

from st_distill.losses import (
    ADRMSELoss,
    CombinedDistillationLoss,
    DistillRankNetLoss,
    HingeLoss,
    InfoNCELoss,
    KLDistillLoss,
)
from st_distill.losses import functional as F
from st_distill.losses.base import score_lists

pytestmark = pytest.mark.usefixtures("torch_one_thread")

QUERIES = ["what do pandas eat", "capital of france", "how tall is everest"]
DOCS = [
    ["Pandas eat bamboo.", "Pandas are bears.", "Fish swim.", "Bamboo grows fast."],
    ["Paris is the capital of France."],
    ["Everest is 8849 m tall.", "Mountains are tall.", "Nepal borders China."],
]
# ties inside the first and third lists
TEACHER = [torch.tensor([3.0, 1.0, 1.0, -2.0]), torch.tensor([0.5]), torch.tensor([2.0, 2.0, -1.0])]


@pytest.fixture
def model(tiny_model):
    tiny_model.eval()  # no dropout: two losses on the same inputs see the same logits
    return tiny_model


def pair_logits(model, pairs):
    with torch.no_grad():
        return model(model.preprocess(pairs))["scores"].view(-1).float()


def test_score_lists_pads_in_order_and_masks(model):
    scores, mask = score_lists(model, QUERIES, DOCS)
    assert scores.dtype == torch.float32 and mask.dtype == torch.bool
    assert scores.shape == (3, 4)
    assert mask.tolist() == [[True] * 4, [True, False, False, False], [True, True, True, False]]
    for b, docs in enumerate(DOCS):
        expected = pair_logits(model, [(QUERIES[b], doc) for doc in docs])
        assert torch.allclose(scores[b, : len(docs)], expected, atol=1e-5)
    assert (scores[~mask] == 0).all()


@pytest.mark.parametrize("mini_batch_size", [2])
def test_score_lists_mini_batches_give_the_same_scores_and_gradients(model, mini_batch_size):
    full, _ = score_lists(model, QUERIES, DOCS)
    full.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    chunked, _ = score_lists(model, QUERIES, DOCS, mini_batch_size=mini_batch_size)
    chunked.sum().backward()
    assert torch.allclose(full, chunked, atol=1e-5)
    assert all(torch.allclose(g, p.grad, atol=1e-5) for g, p in zip(grads, model.parameters()))


def test_ntuple_columns_become_positive_first_lists(model):
    loss = InfoNCELoss(model)
    inputs = [QUERIES[:2], ["pos a", "pos b"], ["neg a1", "neg b1"], ["neg a2", "neg b2"]]
    value = loss(inputs, None)
    logits = pair_logits(model, [(q, d) for q, row in zip(QUERIES[:2], zip(*inputs[1:])) for d in row]).view(2, 3)
    expected = sum(-math.log(math.exp(r[0]) / sum(math.exp(x) for x in r)) for r in logits.tolist()) / 2
    assert value.item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Parity with the library where the math is the same.


def test_adr_mse_matches_library_adrmse_with_ties(model):
    ours = ADRMSELoss(model, temperature=0.5, discount="log2")([QUERIES, DOCS], TEACHER)
    library = st_losses.ADRMSELoss(model, alpha=2.0)([QUERIES, DOCS], TEACHER)
    assert ours.item() == pytest.approx(library.item(), rel=1e-5)


def test_adr_mse_other_discounts_differ_from_library(model):
    library = st_losses.ADRMSELoss(model)([QUERIES, DOCS], TEACHER).item()
    for discount in ("reciprocal", None):
        assert ADRMSELoss(model, discount=discount)([QUERIES, DOCS], TEACHER).item() != pytest.approx(library)


def test_distill_ranknet_matches_library_ranknet_natural_log(model):
    ours = DistillRankNetLoss(model)([QUERIES, DOCS], TEACHER)
    natural = st_losses.RankNetLoss(model, reduction_log="natural")([QUERIES, DOCS], TEACHER)
    binary = st_losses.RankNetLoss(model)([QUERIES, DOCS], TEACHER)  # library default: log2
    assert ours.item() == pytest.approx(natural.item(), rel=1e-5)
    assert ours.item() == pytest.approx(binary.item() * math.log(2), rel=1e-5)


def test_margin_mse_path_matches_library_and_functional(model):
    inputs = [QUERIES, ["pos a", "pos b", "pos c"], ["neg a1", "neg b1", "neg c1"], ["neg a2", "neg b2", "neg c2"]]
    teacher = [torch.tensor([5.0, 1.0, -3.0]), torch.tensor([2.0, 2.5, 0.0]), torch.tensor([0.0, -1.0, -1.5])]
    from st_distill.objectives import get_objective

    loss = get_objective("marginmse").loss(model)
    assert isinstance(loss, st_losses.MarginMSELoss)
    scores, _ = score_lists(model, inputs[0], [list(row) for row in zip(*inputs[1:])])
    expected = F.margin_mse(scores, torch.stack(teacher))
    assert loss(inputs, teacher).item() == pytest.approx(expected.item(), rel=1e-5)
    assert st_losses.MarginMSELoss(model)(inputs, teacher).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] contain NaN"):
        loss(inputs, [teacher[0], torch.tensor([2.0, float("nan"), 0.0]), teacher[2]])


def test_kl_distill_equals_library_listnet_minus_teacher_entropy(model):
    """At T = 1 the library's ListNet is cross-entropy against softmax(t): KL + H(teacher), same gradients."""
    teacher = [torch.tensor([3.0, 1.0, 0.2, -2.0]), torch.tensor([0.5]), torch.tensor([2.0, 1.5, -1.0])]
    entropy = sum(-(p * p.log()).sum() for p in (t.softmax(0) for t in teacher)) / len(teacher)

    ours = KLDistillLoss(model)([QUERIES, DOCS], teacher)
    ours.backward()
    our_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    library = st_losses.ListNetLoss(model)([QUERIES, DOCS], teacher)
    library.backward()
    assert ours.item() == pytest.approx(library.item() - entropy.item(), rel=1e-5, abs=1e-6)
    assert all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(our_grads, model.parameters()))


# ---------------------------------------------------------------------------------------------
# Combined loss


def test_combined_loss_returns_named_weighted_parts(model):
    inputs = [QUERIES, DOCS]
    parts = CombinedDistillationLoss(model, teacher_weight=0.3, hard_weight=2.0, temperature=2.0)(inputs, TEACHER)
    assert set(parts) == {"kldistill", "infonce"}
    scores, mask = score_lists(model, QUERIES, DOCS)
    teacher = torch.nn.utils.rnn.pad_sequence(TEACHER, batch_first=True)
    assert parts["kldistill"].item() == pytest.approx(0.3 * F.kl_distill(scores, teacher, mask, 2.0).item(), rel=1e-5)
    assert parts["infonce"].item() == pytest.approx(2.0 * F.infonce(scores, mask).item(), rel=1e-5)


def test_combined_loss_bce_hard_term_labels_the_first_document(model):
    parts = CombinedDistillationLoss(model, teacher_loss="adrmse", hard_loss="bce")([QUERIES, DOCS], TEACHER)
    scores, mask = score_lists(model, QUERIES, DOCS)
    terms = [
        math.log1p(math.exp(-s)) if i == 0 else math.log1p(math.exp(s))
        for b, docs in enumerate(DOCS)
        for i, s in enumerate(scores[b, : len(docs)].tolist())
    ]
    assert parts["bce"].item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    assert parts["adrmse"].item() == pytest.approx(ADRMSELoss(model)([QUERIES, DOCS], TEACHER).item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Bad input


LISTWISE = [
    lambda m: DistillRankNetLoss(m),
    lambda m: ADRMSELoss(m),
    lambda m: KLDistillLoss(m),
    lambda m: CombinedDistillationLoss(m),
]


@pytest.mark.parametrize("make", LISTWISE)
def test_listwise_bad_input_raises_value_error(model, make):
    loss = make(model)
    with pytest.raises(ValueError, match="does not match the number of teacher scores"):
        loss([QUERIES, DOCS], [TEACHER[0], TEACHER[1], TEACHER[2][:2]])
    with pytest.raises(ValueError, match="is empty"):
        loss([QUERIES, [DOCS[0], [], DOCS[2]]], [TEACHER[0], torch.tensor([]), TEACHER[2]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        loss([QUERIES, DOCS], [TEACHER[0], torch.tensor([float("nan")]), TEACHER[2]])
    with pytest.raises(ValueError, match="teacher-score column"):
        loss([QUERIES, DOCS], None)


def test_ntuple_bad_input_raises_value_error(model):
    with pytest.raises(ValueError, match="one entry per query"):
        HingeLoss(model)([QUERIES, ["p1", "p2", "p3"], ["n1", "n2"]], None)
    with pytest.raises(ValueError, match="at least one negative"):
        HingeLoss(model)([QUERIES[:1], ["p1"]], None)
    with pytest.raises(ValueError, match="same number of negatives"):
        HingeLoss(model)([QUERIES[:2], [DOCS[0], DOCS[2]]], None)
    with pytest.raises(ValueError, match="is empty"):
        InfoNCELoss(model)([QUERIES, [DOCS[0], [], DOCS[2]]], None)


@pytest.mark.parametrize(
    "make",
    [HingeLoss, InfoNCELoss, DistillRankNetLoss, ADRMSELoss, KLDistillLoss, CombinedDistillationLoss],
)
def test_two_label_model_is_rejected(two_label_model, make):
    with pytest.raises(ValueError, match="1 output label.*2 output labels"):
        make(two_label_model)


@pytest.fixture(scope="module")
def two_label_model(tiny_model_path, tmp_path_factory):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model_path, num_labels=2)
    path = tmp_path_factory.mktemp("two-labels")
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(path)
    model = CrossEncoder(str(path), device="cpu")
    assert model.num_labels == 2
    return model


def test_bad_options_raise_value_error(model):
    with pytest.raises(ValueError, match="discount"):
        ADRMSELoss(model, discount="ln")
    with pytest.raises(ValueError, match="temperature"):
        KLDistillLoss(model, temperature=0.0)
    with pytest.raises(ValueError, match="teacher_loss"):
        CombinedDistillationLoss(model, teacher_loss="marginmse")
    with pytest.raises(ValueError, match="hard_loss"):
        CombinedDistillationLoss(model, hard_loss="hinge")


def test_config_and_citation(model):
    loss = ADRMSELoss(model, temperature=0.5, discount="reciprocal", mini_batch_size=8)
    assert loss.get_config_dict() == {"temperature": 0.5, "discount": "reciprocal", "mini_batch_size": 8, "cached": False}
    for cls in (HingeLoss, InfoNCELoss, DistillRankNetLoss, ADRMSELoss, KLDistillLoss, CombinedDistillationLoss):
        instance = cls(model)
        assert instance.citation.strip().startswith("@") and instance.model is model
        assert "Inputs:" in cls.__init__.__doc__ and "Relations:" in cls.__init__.__doc__
