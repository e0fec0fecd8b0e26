"""st_distill.losses.functional against naive Python-loop references, gradients, padding and edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from st_distill.losses import functional as F

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# ---------------------------------------------------------------------------------------------
# Naive references: plain Python floats and loops over documents and pairs, no tensor math.


def ref_hinge(pos, neg, margin):
    terms = [max(0.0, margin - (p - n)) for p, row in zip(pos, neg) for n in row]
    return sum(terms) / len(terms)


def ref_margin_mse(student, teacher):
    terms = [
        ((s_row[0] - s_row[i]) - (t_row[0] - t_row[i])) ** 2
        for s_row, t_row in zip(student, teacher)
        for i in range(1, len(s_row))
    ]
    return sum(terms) / len(terms)


def ref_infonce(lists, temperature):
    losses = []
    for scores in lists:
        total = sum(math.exp(s / temperature) for s in scores)
        losses.append(-math.log(math.exp(scores[0] / temperature) / total))
    return sum(losses) / len(losses)


def ref_distill_ranknet(lists):
    terms = []
    for scores, teacher in lists:
        for i in range(len(scores)):
            for j in range(len(scores)):
                if teacher[i] > teacher[j]:
                    terms.append(-math.log(1.0 / (1.0 + math.exp(-(scores[i] - scores[j])))))
    return sum(terms) / len(terms) if terms else 0.0


def ref_ranks(teacher):
    """Average ranks by sorting: the documents tied at sorted positions a..b all get (a + b) / 2."""
    order = sorted(range(len(teacher)), key=lambda i: -teacher[i])
    ranks = [0.0] * len(teacher)
    position = 0
    while position < len(order):
        end = position
        while end + 1 < len(order) and teacher[order[end + 1]] == teacher[order[position]]:
            end += 1
        for k in range(position, end + 1):
            ranks[order[k]] = (position + 1 + end + 1) / 2
        position = end + 1
    return ranks


def ref_adr_mse(lists, temperature, discount):
    terms = []
    for scores, teacher in lists:
        ranks = ref_ranks(teacher)
        for i in range(len(scores)):
            approx = 1.0 + sum(
                1.0 / (1.0 + math.exp(-(scores[j] - scores[i]) / temperature)) for j in range(len(scores)) if j != i
            )
            weight = {"log2": 1.0 / math.log2(ranks[i] + 1.0), "reciprocal": 1.0 / ranks[i], None: 1.0}[discount]
            terms.append(weight * (approx - ranks[i]) ** 2)
    return sum(terms) / len(terms)


def ref_kl(lists, temperature):
    losses = []
    for scores, teacher in lists:
        z_t = sum(math.exp(t / temperature) for t in teacher)
        z_s = sum(math.exp(s / temperature) for s in scores)
        kl = 0.0
        for s, t in zip(scores, teacher):
            p, q = math.exp(t / temperature) / z_t, math.exp(s / temperature) / z_s
            kl += p * math.log(p / q)
        losses.append(kl * temperature**2)
    return sum(losses) / len(losses)


# ---------------------------------------------------------------------------------------------
# Random ragged batches: lengths include 1 (a single document), teacher scores have ties, padding
# holds garbage (inf, NaN, huge values) that must never leak into values or gradients.


def ragged_batch(seed: int, lengths=(5, 1, 3, 6, 2), dtype=torch.float32, garbage=True):
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    scores = torch.randn(len(lengths), width, generator=generator, dtype=dtype) * 2
    teacher = torch.randint(0, 3, (len(lengths), width), generator=generator).to(dtype)  # many ties
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    if garbage:
        scores = scores.masked_fill(~mask, float("inf"))
        scores[~mask & (torch.arange(width) % 2 == 0)] = float("nan")
        teacher = teacher.masked_fill(~mask, float("nan"))
    lists = [
        ([float(x) for x in scores[b, :n]], [float(x) for x in teacher[b, :n]]) for b, n in enumerate(lengths)
    ]
    return scores, teacher, mask, lists


SEEDS = range(5)


@pytest.mark.parametrize("seed", SEEDS)
def test_hinge_matches_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    pos, neg = torch.randn(6, generator=generator), torch.randn(6, 3, generator=generator)
    for margin in (0.0, 1.0, 2.5):
        expected = ref_hinge(pos.tolist(), neg.tolist(), margin)
        assert F.hinge(pos, neg, margin=margin).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # a [B] negative is one negative per positive
    assert F.hinge(pos, neg[:, 0]).item() == pytest.approx(ref_hinge(pos.tolist(), neg[:, :1].tolist(), 1.0), rel=1e-5)


def test_hinge_hand_computed():
    # margins: 2 - 0 = 2 -> 0 ; 0.5 - 0 = 0.5 -> 0.5 ; 0 - 1 = -1 -> 2
    value = F.hinge(torch.tensor([2.0, 0.5, 0.0]), torch.tensor([0.0, 0.0, 1.0]))
    assert value.item() == pytest.approx((0.0 + 0.5 + 2.0) / 3)


@pytest.mark.parametrize("seed", SEEDS)
def test_margin_mse_matches_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(4, 5, generator=generator), torch.randn(4, 5, generator=generator) * 3
    expected = ref_margin_mse(student.tolist(), teacher.tolist())
    assert F.margin_mse(student, teacher).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_infonce_matches_reference(seed, temperature):
    scores, _, mask, lists = ragged_batch(seed)
    expected = ref_infonce([s for s, _ in lists], temperature)
    assert F.infonce(scores, mask, temperature).item() == pytest.approx(expected, rel=1e-5)


def test_infonce_hand_computed():
    # positive 0 against two negatives at 0: -log(1/3)
    assert F.infonce(torch.zeros(1, 3)).item() == pytest.approx(math.log(3.0))


@pytest.mark.parametrize("seed", SEEDS)
def test_distill_ranknet_matches_reference(seed):
    scores, teacher, mask, lists = ragged_batch(seed)
    assert F.distill_ranknet(scores, teacher, mask).item() == pytest.approx(ref_distill_ranknet(lists), rel=1e-5)


def test_distill_ranknet_pools_pairs_over_the_batch():
    # query 1 has 1 ordered pair, query 2 has 3: the mean is over the 4 pairs, not over queries
    scores = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, -1.0]])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [3.0, 2.0, 1.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    pairs = [math.log(2.0), math.log1p(math.exp(-1.0)), math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0))]
    assert F.distill_ranknet(scores, teacher, mask).item() == pytest.approx(sum(pairs) / 4, rel=1e-6)


def test_distill_ranknet_is_stable_for_huge_gaps():
    scores = torch.tensor([[-1e4, 1e4]], requires_grad=True)
    value = F.distill_ranknet(scores, torch.tensor([[1.0, 0.0]]))
    value.backward()
    assert value.item() == pytest.approx(2e4)
    assert torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_teacher_ranks_average_ties(seed):
    _, teacher, mask, lists = ragged_batch(seed)
    ranks = F.teacher_ranks(teacher, mask)
    for b, (_, row) in enumerate(lists):
        assert ranks[b, : len(row)].tolist() == pytest.approx(ref_ranks(row))
    assert (ranks[~mask] == 0).all()


def test_teacher_ranks_hand_computed():
    ranks = F.teacher_ranks(torch.tensor([[5.0, 7.0, 7.0, 1.0, 7.0]]))
    assert ranks.tolist() == [[4.0, 2.0, 2.0, 5.0, 2.0]]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("discount", ["log2", "reciprocal", None])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_adr_mse_matches_reference(seed, discount, temperature):
    scores, teacher, mask, lists = ragged_batch(seed)
    expected = ref_adr_mse(lists, temperature, discount)
    value = F.adr_mse(scores, teacher, mask, temperature=temperature, discount=discount)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_adr_mse_zero_when_ties_are_scored_equal_and_order_is_perfect():
    # tied teacher documents scored equally and far from the rest: approx ranks ~ average ranks
    scores = torch.tensor([[50.0, 0.0, 0.0, -50.0]])
    teacher = torch.tensor([[3.0, 1.0, 1.0, 0.0]])
    assert F.adr_mse(scores, teacher).item() == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_kl_distill_matches_reference(seed, temperature):
    scores, teacher, mask, lists = ragged_batch(seed)
    teacher = teacher + torch.randn_like(teacher)  # continuous teacher logits (padding stays NaN)
    lists = [(s, [float(x) for x in teacher[b, : len(s)]]) for b, (s, _) in enumerate(lists)]
    assert F.kl_distill(scores, teacher, mask, temperature).item() == pytest.approx(ref_kl(lists, temperature), rel=1e-4)


def test_kl_distill_is_zero_for_a_perfect_student():
    teacher = torch.tensor([[2.0, -1.0, 0.5]])
    assert F.kl_distill(teacher.clone(), teacher, temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Gradients (float64 gradcheck) on ragged, padded batches.


def _listwise_cases():
    return {
        "infonce": lambda s, t, m: F.infonce(s, m, temperature=0.7),
        "distill_ranknet": lambda s, t, m: F.distill_ranknet(s, t, m),
        "adr_mse_log2": lambda s, t, m: F.adr_mse(s, t, m, temperature=0.8, discount="log2"),
        "adr_mse_reciprocal": lambda s, t, m: F.adr_mse(s, t, m, discount="reciprocal"),
        "adr_mse_none": lambda s, t, m: F.adr_mse(s, t, m, discount=None),
        "kl_distill": lambda s, t, m: F.kl_distill(s, t, m, temperature=2.0),
    }


@pytest.mark.parametrize("name", list(_listwise_cases()))
def test_gradcheck_listwise(name):
    fn = _listwise_cases()[name]
    scores, teacher, mask, _ = ragged_batch(0, dtype=torch.float64, garbage=False)
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: fn(s, teacher, mask), (scores,))


def test_gradcheck_pairwise():
    generator = torch.Generator().manual_seed(3)
    pos = torch.randn(5, generator=generator, dtype=torch.float64, requires_grad=True)
    neg = torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, n: F.hinge(p, n, margin=0.5), (pos, neg))
    student = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: F.margin_mse(s, teacher), (student,))


@pytest.mark.parametrize("name", list(_listwise_cases()))
def test_padding_is_inert(name):
    """Garbage (inf / NaN) in padded cells changes neither the value nor any gradient."""
    fn = _listwise_cases()[name]
    dirty, teacher, mask, _ = ragged_batch(1)
    clean = torch.where(mask, dirty, 0.0).detach().requires_grad_(True)
    dirty = dirty.detach().requires_grad_(True)
    clean_teacher = torch.where(mask, teacher, 0.0)
    value_dirty, value_clean = fn(dirty, teacher, mask), fn(clean, clean_teacher, mask)
    value_dirty.backward()
    value_clean.backward()
    assert torch.isfinite(value_dirty) and value_dirty.item() == pytest.approx(value_clean.item(), rel=1e-6)
    assert torch.isfinite(dirty.grad).all()
    assert torch.equal(dirty.grad, clean.grad)
    assert (dirty.grad[~mask] == 0).all()


@pytest.mark.parametrize("name", list(_listwise_cases()))
def test_single_document_lists_and_empty_batches_give_zero_not_nan(name):
    fn = _listwise_cases()[name]
    single = torch.tensor([[1.5], [-2.0]], requires_grad=True)
    value = fn(single, torch.tensor([[1.0], [0.0]]), None)
    value.backward()
    assert value.item() == 0.0 and torch.equal(single.grad, torch.zeros_like(single))

    nothing = torch.full((2, 3), float("nan"), requires_grad=True)
    value = fn(nothing, torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    value.backward()
    assert value.item() == 0.0 and torch.equal(nothing.grad, torch.zeros_like(nothing))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="discount"):
        F.adr_mse(torch.zeros(1, 2), torch.zeros(1, 2), discount="log10")
    with pytest.raises(ValueError, match="teacher shape"):
        F.kl_distill(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mask shape"):
        F.infonce(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="N >= 1"):
        F.margin_mse(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="neg must be"):
        F.hinge(torch.zeros(2), torch.zeros(3, 1))
