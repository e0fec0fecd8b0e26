"""Tests of the bench's students: layer truncation, score heads, trained layers, and the fast training forward."""

from __future__ import annotations

import json

import pytest
import torch

from st_distill.training import fast_forward, freeze_layers, make_student, truncate_layers


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


PAIRS = [("what is a cat", "A cat is a small domesticated carnivorous mammal with soft fur."),
         ("what is a cat", "short"),
         ("how tall is the eiffel tower", "The Eiffel Tower in Paris is 330 metres tall and was built for the 1889 fair " * 2),
         ("boiling point", "Water boils at lower temperatures at altitude."),
         ("q", "a b c d e f g h i j k l m n o p")]


def test_mean_head_scores_the_mean_pooled_embedding(tiny_model_path, tmp_path, torch_one_thread):
    from sentence_transformers.base.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoModel, AutoTokenizer

    student = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head="mean")
    assert [type(m) for m in student] == [Transformer, Pooling, Dense]
    assert student[0].transformer_task == "feature-extraction" and student[1].pooling_mode == "mean"
    assert student.num_labels == 1 and student[2].module_output_name == "scores"
    # reference: the backbone's token states, averaged over real tokens, times the dense layer
    tokenizer, backbone = AutoTokenizer.from_pretrained(tiny_model_path), AutoModel.from_pretrained(tiny_model_path).eval()
    batch = tokenizer([q for q, _ in PAIRS], [d for _, d in PAIRS], padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        states = backbone(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (states * mask).sum(1) / mask.sum(1)
        expected = student[2].linear(pooled).squeeze(-1)
    logits = student.predict(PAIRS, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    # the new layer depends on the seed only, and the model reloads as a CrossEncoder
    again = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head="mean")
    assert torch.equal(again[2].linear.weight, student[2].linear.weight)
    from sentence_transformers.cross_encoder import CrossEncoder

    student.save_pretrained(str(tmp_path / "mean"))
    reloaded = CrossEncoder(str(tmp_path / "mean"), device="cpu")
    torch.testing.assert_close(torch.as_tensor(reloaded.predict(PAIRS)), torch.as_tensor(student.predict(PAIRS)))


def test_unknown_head(tiny_model_path):
    with pytest.raises(ValueError, match="unknown head 'max'"):
        make_student(tiny_model_path, seed=0, head="max")


@pytest.mark.parametrize("head", ["cls", "mean"])
def test_train_layers_freezes_the_rest(tiny_model_path, head, torch_one_thread):
    # keep layers 0 and 1 of two, train the second only
    student = make_student(tiny_model_path, seed=0, layers=[0, 1], max_length=32, device="cpu", head=head, train_layers=[1])
    backbone = student[0].auto_model.base_model
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all("embeddings" not in n and ".layer.0." not in n for n in trainable)
    assert any(".layer.1." in n for n in trainable)
    assert any("classifier" in n or "linear" in n for n in trainable)  # the head trains
    assert not any(p.requires_grad for p in backbone.embeddings.parameters())
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.1)
    features = student.preprocess(PAIRS)
    student(features)["scores"].sum().backward()
    optimizer.step()
    changed = {n for n, p in student.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable  # nothing frozen moved
    assert any(".layer.1." in n for n in changed) and any("classifier" in n or "linear" in n for n in changed)


def test_train_layers_count_after_truncation(tiny_model_path):
    student = make_student(tiny_model_path, seed=0, layers=[1], device="cpu", train_layers=[0])  # the backbone's layer 1
    assert all(p.requires_grad for p in student.model.bert.encoder.layer[0].parameters())
    with pytest.raises(ValueError, match=r"cannot train layers \[1\] of a 1-layer model"):
        make_student(tiny_model_path, seed=0, layers=[1], device="cpu", train_layers=[1])
    with pytest.raises(ValueError, match="cannot train layers"):
        freeze_layers(make_student(tiny_model_path, seed=0, device="cpu"), [2])


@pytest.mark.parametrize("head", ["cls", "mean"])
def test_fast_forward_chunks_give_the_batch_scores_and_gradients(tiny_model_path, head, torch_one_thread):
    student = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head=head)
    student.eval()  # no dropout: the two passes must agree exactly
    features = student.preprocess(PAIRS)
    whole = student(dict(features))["scores"].view(-1)
    whole.square().sum().backward()
    reference = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    student.zero_grad()
    seen = []
    forward = type(student).forward

    def counting(self, part, **kwargs):
        seen.append(tuple(part["input_ids"].shape))
        return forward(self, part, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(student), "forward", counting)
        with fast_forward(student, bf16=False, tokens_per_chunk=40):
            chunked = student(dict(features))["scores"].view(-1)
        assert "forward" not in vars(student)  # the class's forward is back
    lengths = features["attention_mask"].sum(1).tolist()
    assert sorted(r for r, _ in seen) and sum(r for r, _ in seen) == len(PAIRS) and len(seen) > 1
    assert all(r * t <= 40 or r == 1 for r, t in seen)  # each chunk within budget, cut to its longest row
    assert sorted(t for _, t in seen) != [max(lengths)] * len(seen)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    chunked.square().sum().backward()
    for name, grad in reference.items():
        torch.testing.assert_close(dict(student.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-4)


def test_fast_forward_left_padding_is_scored_whole(tiny_model, torch_one_thread):
    features = tiny_model.preprocess(PAIRS)
    features = {k: v.flip(1) if isinstance(v, torch.Tensor) and v.dim() == 2 else v for k, v in features.items()}
    calls = []
    forward = type(tiny_model).forward

    def counting(self, part, **kwargs):
        calls.append(part["input_ids"].shape[0])
        return forward(self, part, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(tiny_model), "forward", counting)
        with fast_forward(tiny_model, bf16=False, tokens_per_chunk=40):
            tiny_model(features)
    assert calls == [len(PAIRS)]


def test_fast_forward_bf16_keeps_the_head_and_scores_float32(tiny_model_path, monkeypatch, torch_one_thread):
    from st_distill.models import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: True)  # bfloat16 autocast runs (emulated) on any CPU
    student = make_student(tiny_model_path, seed=0, max_length=32, device="cpu").eval()
    features = student.preprocess(PAIRS)
    with torch.no_grad():
        full = student(dict(features))["scores"].view(-1)
        with fast_forward(student, bf16=True, tokens_per_chunk=None):
            assert student.keep_in_fp32_modules == ["0.model.classifier"]
            reduced = student(dict(features))["scores"].view(-1)
    assert student.keep_in_fp32_modules == []
    assert reduced.dtype == torch.float32 and not torch.equal(reduced, full)  # it did run in bfloat16
    torch.testing.assert_close(reduced, full, atol=0.05, rtol=0)


def test_cosine_head_scores_the_segment_cosine_and_starts_standardised(tiny_model_path, tmp_path, torch_one_thread):
    from transformers import AutoModel, AutoTokenizer

    from st_distill.training import load_student
    from st_distill.models.heads import SegmentCosine

    student = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head="cosine", calibration_pairs=PAIRS)
    assert isinstance(student[1], SegmentCosine) and student.num_labels == 1
    # reference: the backbone's token states, averaged per segment (token_type_ids), cosine, then the dense layer
    tokenizer, backbone = AutoTokenizer.from_pretrained(tiny_model_path), AutoModel.from_pretrained(tiny_model_path).eval()
    batch = tokenizer([q for q, _ in PAIRS], [d for _, d in PAIRS], padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        states = backbone(**batch).last_hidden_state
        cosines = []
        for row in range(len(PAIRS)):
            real = batch["attention_mask"][row].bool()
            segment = batch["token_type_ids"][row]
            query, doc = states[row][real & (segment == 0)].mean(0), states[row][real & (segment == 1)].mean(0)
            cosines.append(torch.dot(query, doc) / (query.norm() * doc.norm()))
        cosines = torch.stack(cosines)
    expected = (cosines - cosines.mean()) / cosines.std()  # calibrated on these very pairs: z-scores
    logits = student.predict(PAIRS, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    uncalibrated = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head="cosine")
    torch.testing.assert_close(uncalibrated.predict(PAIRS, activation_fn=torch.nn.Identity(), convert_to_tensor=True),
                               20 * cosines, atol=1e-4, rtol=1e-4)
    student.save_pretrained(str(tmp_path / "cosine"))
    reloaded = load_student(tmp_path / "cosine", max_length=32, device="cpu")
    torch.testing.assert_close(torch.as_tensor(reloaded.predict(PAIRS)), torch.as_tensor(student.predict(PAIRS)))


def test_cosine_head_needs_segment_ids_and_load_student_trusts_only_its_own(tiny_model_path, tmp_path):
    from st_distill.training import load_student
    from st_distill.models.heads import SegmentCosine

    features = {"token_embeddings": torch.ones(1, 3, 4), "attention_mask": torch.ones(1, 3)}
    with pytest.raises(ValueError, match="SegmentCosine needs token_type_ids"):
        SegmentCosine()(features)
    student = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head="cosine")
    student.save_pretrained(str(tmp_path / "m"))
    modules = json.loads((tmp_path / "m" / "modules.json").read_text())
    assert modules[1]["type"] == "st_distill.models.heads.SegmentCosine"
    modules[1]["type"] = "evil.Module"
    (tmp_path / "m" / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"outside sentence-transformers and st-distill: \['evil.Module'\]"):
        load_student(tmp_path / "m")


def test_sample_pairs_reads_every_format():
    from datasets import Dataset

    from st_distill.training import sample_pairs

    pointwise = Dataset.from_dict({"query": ["a", "b", "c"], "document": ["x", "y", "z"], "label": [1.0, 0.0, 1.0]})
    assert sample_pairs(pointwise, 2) == [("a", "x"), ("b", "y")]
    ntuple = Dataset.from_dict({"query": ["a", "b"], "positive": ["p", "q"], "negative_1": ["n", "m"], "scores": [[1, 0], [1, 0]]})
    assert sample_pairs(ntuple, 4) == [("a", "p"), ("a", "n"), ("b", "q"), ("b", "m")]
    listwise = Dataset.from_dict({"query": ["a", "b"], "docs": [["x", "y"], ["z"]], "scores": [[1.0, 0.0], [0.5]]})
    assert sample_pairs(listwise, 10) == [("a", "x"), ("a", "y"), ("b", "z")]
    assert sample_pairs(Dataset.from_dict({"query": [f"q{i}" for i in range(100)], "document": ["d"] * 100, "label": [0.0] * 100}), 4) \
        == [("q0", "d"), ("q25", "d"), ("q50", "d"), ("q75", "d")]  # spread over the dataset


def test_last_checkpoint_skips_unfinished_ones(tmp_path):
    """Resuming takes the newest checkpoint with a trainer state whose JSON files all parse: a kill
    during a save can leave the state written and a tokenizer file empty (seen in a DDP run)."""
    from st_distill.training.trainer import _last_checkpoint

    def checkpoint(step, state=True, tokenizer='{"model": {}}'):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state:
            (folder / "trainer_state.json").write_text('{"global_step": %d}' % step)
        (folder / "tokenizer.json").write_text(tokenizer)

    assert _last_checkpoint(tmp_path) is None
    checkpoint(2)
    checkpoint(4, state=False)  # the state is not written yet
    assert _last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    checkpoint(6, tokenizer="")  # the state is there, a file is truncated
    assert _last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    checkpoint(10)
    assert _last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")  # by step number, not name order


def test_an_incomplete_newest_checkpoint_is_removed_so_the_trainer_keeps_the_complete_ones(tmp_path):
    """A kill during a save leaves an incomplete newest checkpoint; resuming takes the one before.
    Left in place, the trainer's rotation (``save_total_limit=1``) would keep it as the newest and
    remove the complete checkpoint saved after resuming, so that the next resume found none."""
    from transformers.trainer_utils import rotate_checkpoints

    from st_distill.training.trainer import _last_checkpoint

    def checkpoint(step, state=True):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state:
            (folder / "trainer_state.json").write_text('{"global_step": %d}' % step)

    assert _last_checkpoint(tmp_path / "nowhere") is None
    checkpoint(2)
    checkpoint(6, state=False)  # killed while saving step 6
    assert _last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    checkpoint(4)  # the resumed run saves step 4, and the trainer rotates
    rotate_checkpoints(str(tmp_path), save_total_limit=1)
    assert _last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
