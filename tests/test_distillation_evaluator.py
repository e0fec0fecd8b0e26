"""DistillationEvaluator: per-query Spearman / Kendall against scipy and hand values, KL against a hand
computation, top-k overlap, the evaluator on a tiny model, and inside a CrossEncoderTrainer run."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau, spearmanr

from st_distill.evaluation import DistillationEvaluator, fidelity

pytestmark = pytest.mark.usefixtures("torch_one_thread")

QUERIES = ["what do pandas eat", "capital of france", "how tall is everest"]
DOCS = [
    ["Pandas eat bamboo.", "Pandas are bears.", "Fish swim.", "Bamboo grows fast."],
    ["Paris is the capital of France.", "France borders Spain."],
    ["Everest is 8849 m tall.", "Mountains are tall.", "Nepal borders China."],
]


def test_identical_order_gives_one_and_reversed_gives_minus_one():
    teacher = [[5.0, 3.0, 1.0, -2.0], [2.0, 1.0], [0.3, 0.2, 0.1]]
    same_order = [[40.0, 30.0, 20.0, 10.0], [1.0, 0.0], [9.0, 8.0, -7.0]]  # monotone, other scale
    result = fidelity(teacher, same_order)
    assert (result["spearman"], result["kendall"], result["top10_overlap"]) == (1.0, 1.0, 1.0)
    reversed_order = [[-s for s in row] for row in teacher]
    result = fidelity(teacher, reversed_order)
    assert result["spearman"] == pytest.approx(-1.0) and result["kendall"] == pytest.approx(-1.0)
    # the student equal to the teacher up to a per-query constant: no KL divergence
    shifted = [[s + 7.0 for s in row] for row in teacher]
    assert fidelity(teacher, shifted)["kl_divergence"] == pytest.approx(0.0, abs=1e-12)


def test_ties_are_handled_as_scipy_does():
    teacher, student = [3.0, 1.0, 1.0, -2.0], [4.0, 3.0, 2.0, 1.0]
    result = fidelity([teacher], [student])
    # by hand: teacher ranks (4, 2.5, 2.5, 1) against (4, 3, 2, 1): rho = 4.5 / sqrt(4.5 * 5);
    # tau-b: 5 concordant pairs, 0 discordant, one tie in the teacher: 5 / sqrt((6 - 1) * 6)
    assert result["spearman"] == pytest.approx(4.5 / math.sqrt(22.5)) == spearmanr(teacher, student).statistic
    assert result["kendall"] == pytest.approx(5 / math.sqrt(30)) == kendalltau(teacher, student).statistic
    both_tied = fidelity([[2.0, 2.0, 1.0, 0.0]], [[1.0, 1.0, 3.0, 0.0]])
    assert both_tied["spearman"] == pytest.approx(spearmanr([2, 2, 1, 0], [1, 1, 3, 0]).statistic)
    assert both_tied["kendall"] == pytest.approx(kendalltau([2, 2, 1, 0], [1, 1, 3, 0]).statistic)


def test_ragged_lists_average_per_query_as_scipy():
    rng = np.random.default_rng(0)
    teacher = [rng.normal(size=n).round(1).tolist() for n in (2, 5, 9, 30)]  # rounding makes ties
    student = [(np.asarray(t) + rng.normal(size=len(t))).tolist() for t in teacher]
    result = fidelity(teacher, student)
    assert result["spearman"] == pytest.approx(np.mean([spearmanr(t, s).statistic for t, s in zip(teacher, student)]))
    assert result["kendall"] == pytest.approx(np.mean([kendalltau(t, s).statistic for t, s in zip(teacher, student)]))
    assert (result["queries"], result["rank_correlation_queries"]) == (4, 4)


def test_undefined_rank_correlations_are_left_out_and_counted():
    # a single document, and a constant teacher list: no rank correlation; the reversed list counts
    result = fidelity([[1.0], [2.0, 2.0, 2.0], [3.0, 2.0, 1.0]], [[5.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    assert (result["spearman"], result["kendall"]) == (pytest.approx(-1.0), pytest.approx(-1.0))
    assert (result["queries"], result["rank_correlation_queries"]) == (3, 1)
    assert fidelity([[1.0]], [[2.0]])["spearman"] == 0.0


def test_kl_divergence_matches_a_hand_computation():
    teacher, student, temperature = [[2.0, 1.0, 0.0], [4.0, -1.0]], [[0.0, 1.0, 0.0], [1.0, 1.5]], 2.0

    def softmax(row):
        exps = [math.exp(v / temperature) for v in row]
        return [e / sum(exps) for e in exps]

    per_query = []
    for t, s in zip(teacher, student):
        p, q = softmax(t), softmax(s)
        per_query.append(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) * temperature**2)
    result = fidelity(teacher, student, temperature=temperature)
    assert result["kl_divergence"] == pytest.approx(sum(per_query) / 2, rel=1e-9)


def test_top_k_overlap():
    teacher = list(range(12, 0, -1))  # documents 0..11, best first
    student = [*range(12, 2, -1), 100.0, 99.0]  # documents 10 and 11 promoted to the top two
    assert fidelity([teacher], [student], k=10)["top10_overlap"] == pytest.approx(8 / 10)
    assert fidelity([teacher], [student], k=3)["top3_overlap"] == pytest.approx(1 / 3)
    # a list shorter than k: the overlap is over its length, so always 1
    assert fidelity([[1.0, 2.0]], [[2.0, 1.0]], k=10)["top10_overlap"] == 1.0


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="list 1: a score is NaN"):
        fidelity([[1.0], [float("nan"), 1.0]], [[1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="list 0: 2 teacher scores but 1 student"):
        fidelity([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="temperature"):
        fidelity([[1.0]], [[1.0]], temperature=0.0)
    with pytest.raises(ValueError, match="query 1: 2 documents but 1 teacher scores"):
        DistillationEvaluator(QUERIES[:2], DOCS[:2], [[1.0] * 4, [1.0]])
    with pytest.raises(ValueError, match="a score is NaN"):
        DistillationEvaluator(QUERIES[:1], DOCS[:1], [[1.0, 2.0, float("inf"), 0.0]])


@pytest.fixture
def model(tiny_model):
    tiny_model.eval()
    return tiny_model


def own_scores(model):
    """The tiny model's raw logits of DOCS, computed independently of the evaluator (plain predict)."""
    return [model.predict([(q, d) for d in docs], activation_fn=torch.nn.Identity()).tolist() for q, docs in zip(QUERIES, DOCS)]


def test_evaluator_on_a_model(model, tmp_path):
    student = own_scores(model)
    evaluator = DistillationEvaluator(QUERIES, DOCS, student, name="held", temperature=0.5)
    metrics = evaluator(model, output_path=str(tmp_path), epoch=1, steps=5)
    assert set(metrics) == {"held_spearman", "held_kendall", "held_kl_divergence", "held_top10_overlap"}
    assert evaluator.primary_metric == "held_spearman" and evaluator.greater_is_better
    assert metrics["held_spearman"] == pytest.approx(1.0) and metrics["held_kendall"] == pytest.approx(1.0)
    assert metrics["held_kl_divergence"] == pytest.approx(0.0, abs=1e-6) and metrics["held_top10_overlap"] == 1.0
    reversed_teacher = DistillationEvaluator(QUERIES, DOCS, [[-s for s in row] for row in student], write_csv=False)
    metrics = reversed_teacher(model)
    assert metrics["spearman"] == pytest.approx(-1.0) and metrics["kendall"] == pytest.approx(-1.0)
    # any teacher: the evaluator's metrics are fidelity() of the teacher and the model's own scores
    teacher = [[3.0, 1.0, 1.0, -2.0], [0.5, 2.0], [1.0, 2.0, 0.0]]
    metrics = DistillationEvaluator(QUERIES, DOCS, teacher, temperature=2.0, k=2, write_csv=False)(model)
    expected = fidelity(teacher, student, temperature=2.0, k=2)
    assert metrics == pytest.approx({key: expected[key] for key in metrics}, rel=1e-5, abs=1e-6)
    with open(tmp_path / "DistillationEvaluator_held_results.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "steps", "spearman", "kendall", "kl_divergence", "top10_overlap"] and rows[1][:2] == ["1", "5"]


def test_from_run_takes_the_teacher_lists():
    corpus = {f"d{i}": text for i, text in enumerate(DOCS[0])}
    teacher = {"q1": {"d0": 1.0, "d1": 3.0, "d2": 2.0, "d3": -1.0}}
    evaluator = DistillationEvaluator.from_run(teacher, {"q1": QUERIES[0]}, corpus, depth=3, name="suite")
    assert evaluator.queries == [QUERIES[0]] and evaluator.name == "suite"
    assert evaluator.documents == [[DOCS[0][1], DOCS[0][2], DOCS[0][0]]] and evaluator.scores == [[3.0, 2.0, 1.0]]
    with pytest.raises(ValueError, match="d7"):
        DistillationEvaluator.from_run({"q1": {"d7": 1.0}}, {"q1": QUERIES[0]}, corpus)


def test_in_a_cross_encoder_trainer_run(tiny_model, tmp_path):
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from st_distill.objectives import get_objective

    teacher = [[3.0, 1.0, 0.5, -2.0], [2.0, -1.0], [4.0, 1.0, 0.0]]
    train = Dataset.from_dict({"query": QUERIES, "docs": DOCS, "scores": teacher})
    evaluator = DistillationEvaluator(QUERIES, DOCS, teacher, name="held")
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3, use_cpu=True,
        report_to="none", save_strategy="no", disable_tqdm=True, eval_strategy="steps", eval_steps=1, logging_steps=1,
    )
    trainer = CrossEncoderTrainer(
        model=tiny_model, args=args, train_dataset=train, loss=get_objective("kldistill").loss(tiny_model), evaluator=evaluator
    )
    trainer.train()
    evaluations = [log for log in trainer.state.log_history if "eval_held_spearman" in log]
    assert [log["step"] for log in evaluations] == [1, 2]
    for log in evaluations:
        assert -1.0 <= log["eval_held_spearman"] <= 1.0 and log["eval_held_kl_divergence"] >= 0.0
        assert 0.0 <= log["eval_held_top10_overlap"] <= 1.0 and math.isfinite(log["eval_held_kendall"])
    # the last evaluation is that of the final weights
    final = evaluator(tiny_model.eval())
    assert evaluations[-1]["eval_held_spearman"] == pytest.approx(final["held_spearman"], abs=1e-6)


def test_readme_example_runs(shared_data, tiny_model_path, tmp_path, monkeypatch):
    """The README's example as written, with ../shared/data made absolute and both hub models (teacher and
    student) swapped for the local tiny model, so that the student is its own teacher."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Distillation fidelity\n(.*?)(?=^## )", text, flags=re.S | re.M).group(1)
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    code = blocks[0].replace("../shared/data", str(shared_data))
    for name in ("cross-encoder/ms-marco-MiniLM-L6-v2", "cross-encoder/ms-marco-TinyBERT-L2-v2"):
        assert code.count(f'"{name}"') == 1
        code = code.replace(f'"{name}"', repr(tiny_model_path))
    code = code.replace("max_length=256", "max_length=512")  # the tiny student's own limit: same scores
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md:Distillation fidelity", "exec"), namespace)
    metrics = namespace["metrics"]
    assert len(namespace["evaluator"].queries) == 43
    assert metrics["dl19_spearman"] == pytest.approx(1.0) and metrics["dl19_kendall"] == pytest.approx(1.0)
    assert metrics["dl19_kl_divergence"] == pytest.approx(0.0, abs=1e-6) and metrics["dl19_top10_overlap"] == 1.0
