"""The `mse` objective: the loss against a by-hand reference, its registry entry, builder format and CLI path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from st_distill.data.builder import build_dataset, load_built_dataset, load_report
from st_distill.losses import MSELoss
from st_distill.objectives import get_objective

pytestmark = pytest.mark.usefixtures("torch_one_thread")

QUERIES = {"q1": "what do pandas eat", "q2": "capital of france", "q3": "how tall is everest"}
CORPUS = {
    "d1": "Pandas eat bamboo.",
    "d2": "Pandas are bears.",
    "d3": "Fish swim.",
    "d4": "Paris is the capital of France.",
    "d5": "France borders Spain.",
    "d6": "Everest is 8849 m tall.",
}
# first-stage candidates (d9 has no text) and raw teacher logits in the Ettin teacher's range
CANDIDATES = {
    "q1": {"d1": 30.0, "d2": 20.0, "d3": 10.0, "d9": 5.0},
    "q2": {"d4": 9.0, "d5": 8.0, "d1": 7.0},
    "q3": {"d6": 1.0},
}
TEACHER = {
    "q1": {"d1": 21.5, "d2": 3.25, "d3": -11.0, "d9": 0.0},
    "q2": {"d4": 17.0, "d1": -9.5},  # no score for d5
    "q3": {"d6": 12.0},
}


@pytest.fixture
def model(tiny_model):
    tiny_model.eval()  # no dropout: the loss and the reference see the same logits
    return tiny_model


def test_loss_value_and_gradient_match_a_hand_computation(model):
    queries = ["what do pandas eat", "what do pandas eat", "capital of france"]
    documents = ["Pandas eat bamboo.", "Fish swim.", "Paris is the capital of France."]
    teacher = torch.tensor([21.5, -11.0, 17.0])
    loss = MSELoss(model)
    value = loss([queries, documents], teacher)
    value.backward()

    # the reference: the logits and the pooled features the classifier sees, read through hooks
    features = {}
    hook = model.model.classifier.register_forward_hook(lambda module, inputs, output: features.update(h=inputs[0]))
    with torch.no_grad():
        logits = model(model.preprocess(list(zip(queries, documents))))["scores"].view(-1).double().numpy()
    hook.remove()
    residual = logits - teacher.double().numpy()
    assert value.item() == pytest.approx(np.mean(residual**2), rel=1e-5)
    # s_i = w . h_i + b, so dL/db = 2/B sum(s_i - t_i) and dL/dw = 2/B sum((s_i - t_i) h_i)
    h = features["h"].double().numpy()
    classifier = model.model.classifier
    assert classifier.bias.grad.item() == pytest.approx(2 * residual.mean(), rel=1e-4)
    np.testing.assert_allclose(classifier.weight.grad.double().numpy()[0], 2 * (residual[:, None] * h).mean(0), rtol=1e-4, atol=1e-6)


def test_loss_equals_the_library_loss_and_rejects_bad_teacher_scores(model):
    from sentence_transformers.cross_encoder import losses as st_losses

    inputs = [["what do pandas eat"] * 2, ["Pandas eat bamboo.", "Fish swim."]]
    labels = torch.tensor([3.0, -2.0])
    assert MSELoss(model)(inputs, labels).item() == st_losses.MSELoss(model)(inputs, labels).item()
    with pytest.raises(ValueError, match=r"MSELoss: teacher scores of batch row\(s\) \[1\] contain NaN"):
        MSELoss(model)(inputs, torch.tensor([3.0, float("nan")]))
    with pytest.raises(ValueError, match="needs a teacher-score column"):
        MSELoss(model)(inputs, None)
    assert "2010.02666" in MSELoss(model).citation


def test_registry_entry():
    objective = get_objective("mse")
    fmt = objective.dataset_format
    assert fmt.columns() == ["query", "document", "score"] and fmt.label_column == "score"
    assert (fmt.kind, fmt.teacher, fmt.n_negatives, fmt.from_candidates) == ("pointwise", "scores", 49, True)
    assert not get_objective("bce").dataset_format.from_candidates and get_objective("bce").dataset_format.columns()[-1] == "label"
    assert objective.family == "pointwise distillation" and objective.defaults["batch_size"] == 32
    assert objective.loss_class == "st_distill.losses.pointwise:MSELoss"


def test_builder_gives_one_row_per_scored_candidate(tiny_model_path, tmp_path):
    dataset, report = build_dataset("mse", QUERIES, CORPUS, candidates=CANDIDATES, teacher_scores=TEACHER, n_negatives=2)
    # q1: its top 3 (d1, d2, d3); q2: d4, d1 (d5 has no teacher score); q3: d6
    expected = [("q1", "d1"), ("q1", "d2"), ("q1", "d3"), ("q2", "d4"), ("q2", "d1"), ("q3", "d6")]
    assert dataset.column_names == ["query", "document", "score"] == report.columns
    assert dataset[:] == {
        "query": [QUERIES[q] for q, _ in expected],
        "document": [CORPUS[d] for _, d in expected],
        "score": [TEACHER[q][d] for q, d in expected],
    }
    assert (report.rows, report.queries, report.n_negatives) == (6, 3, 2)
    assert report.skipped == {"missing teacher score": 1}
    # n + 1 = 4 candidates: q1's fourth has no text
    _, wider = build_dataset("mse", QUERIES, CORPUS, candidates=CANDIDATES, teacher_scores=TEACHER, n_negatives=3)
    assert wider.rows == 6 and wider.skipped == {"document without text": 1, "missing teacher score": 1}
    with pytest.raises(ValueError, match="teacher scores"):
        build_dataset("mse", QUERIES, CORPUS, candidates=CANDIDATES)
    with pytest.raises(ValueError, match="needs candidates"):
        build_dataset("mse", QUERIES, CORPUS, teacher_scores=TEACHER, qrels={"q1": {"d1": 1}})
    train_one_step(tiny_model_path, dataset, tmp_path)


def test_builder_from_teacher_triples(tmp_path):
    path = tmp_path / "triples.tsv"
    path.write_text("21.5\t-11.0\tq1\td1\td3\n17.0\t-9.5\tq2\td4\td1\n")
    dataset, report = build_dataset("mse", QUERIES, CORPUS, triples=path)
    assert dataset[:] == {
        "query": [QUERIES["q1"]] * 2 + [QUERIES["q2"]] * 2,
        "document": [CORPUS["d1"], CORPUS["d3"], CORPUS["d4"], CORPUS["d1"]],
        "score": [21.5, -11.0, 17.0, -9.5],
    }
    assert report.rows == 4


def test_build_command(tiny_model_path, tmp_path, capsys):
    from st_distill.cli import main
    from st_distill.data.formats import write_trec_run

    (tmp_path / "queries.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in QUERIES.items()))
    (tmp_path / "corpus.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in CORPUS.items()))
    write_trec_run(CANDIDATES, tmp_path / "bm25.trec")
    write_trec_run(TEACHER, tmp_path / "teacher.trec")
    out = tmp_path / "mse"
    argv = ["build", "mse", "--queries", str(tmp_path / "queries.tsv"), "--corpus", str(tmp_path / "corpus.tsv"),
            "--candidates", str(tmp_path / "bm25.trec"), "--teacher-run", str(tmp_path / "teacher.trec"),
            "--n-negatives", "2", "--output", str(out)]
    assert main(argv) == 0
    dataset = load_built_dataset(out)
    expected, _ = build_dataset("mse", QUERIES, CORPUS, candidates=CANDIDATES, teacher_scores=TEACHER, n_negatives=2)
    assert dataset[:] == expected[:] and load_report(out)["objective"] == "mse"
    assert '"rows": 6' in capsys.readouterr().out
    train_one_step(tiny_model_path, dataset, tmp_path)


def train_one_step(model_path, dataset, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(model_path, num_labels=1, max_length=64, device="cpu")
    before = model.model.classifier.weight.detach().clone()
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / "train"), max_steps=1, per_device_train_batch_size=4, use_cpu=True,
        report_to="none", save_strategy="no", learning_rate=1e-2, seed=0, disable_tqdm=True,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=get_objective("mse").loss(model))
    assert np.isfinite(trainer.train().training_loss)
    assert not torch.equal(before, model.model.classifier.weight.detach())
