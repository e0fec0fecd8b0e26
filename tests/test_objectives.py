"""The objectives registry: names, dataset formats, defaults, loss factories, and 5 training steps of each."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
import torch

from st_distill.objectives import (
    OBJECTIVES,
    SMALL_MODEL_DEFAULTS,
    STUDY_DEFAULTS,
    STUDY_OBJECTIVES,
    DatasetFormat,
    get_objective,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

REQUIRED = ("bce", "hinge", "marginmse", "infonce", "distillranknet", "adrmse", "kldistill")


def test_registry_holds_the_study_objectives_and_kldistill():
    assert set(REQUIRED) <= set(OBJECTIVES)
    assert STUDY_OBJECTIVES == REQUIRED[:6]
    assert all(name == objective.name for name, objective in OBJECTIVES.items())


def test_unknown_objective_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown objective 'listmle'.*bce.*adrmse.*kldistill"):
        get_objective("listmle")


@pytest.mark.parametrize(
    "name, columns, label_column, teacher",
    [
        ("bce", ["query", "document", "label"], "label", None),
        ("hinge", ["query", "positive", "negative_1"], None, None),
        ("infonce", ["query", "positive", *(f"negative_{i}" for i in range(1, 8))], None, None),
        ("marginmse", ["query", "positive", "negative_1", "scores"], "scores", "scores"),
        ("distillranknet", ["query", "docs", "scores"], "scores", "ranking"),
        ("adrmse", ["query", "docs", "scores"], "scores", "ranking"),
        ("kldistill", ["query", "docs", "scores"], "scores", "scores"),
        ("mse", ["query", "document", "score"], "score", "scores"),
    ],
)
def test_dataset_contract(name, columns, label_column, teacher):
    fmt = get_objective(name).dataset_format
    assert fmt.columns() == columns
    assert fmt.label_column == label_column and fmt.teacher == teacher
    assert fmt.description


def test_study_negatives_and_columns_override():
    n = {name: OBJECTIVES[name].dataset_format.n_negatives for name in REQUIRED}
    assert n == {"bce": None, "hinge": 1, "marginmse": 1, "infonce": 7, "distillranknet": 49, "adrmse": 49, "kldistill": 49}
    assert get_objective("marginmse").dataset_format.columns(3)[-4:] == ["negative_1", "negative_2", "negative_3", "scores"]
    assert get_objective("adrmse").dataset_format.columns(9) == ["query", "docs", "scores"]
    with pytest.raises(ValueError, match="at least one negative"):
        get_objective("hinge").dataset_format.columns(0)
    with pytest.raises(ValueError, match="kind"):
        DatasetFormat(kind="pairs", label_column=None, n_negatives=1, teacher=None, description="")


def test_defaults_follow_the_study():
    assert STUDY_DEFAULTS["learning_rate"] == 1e-5 and SMALL_MODEL_DEFAULTS["learning_rate"] == 7e-6
    for objective in OBJECTIVES.values():
        d = objective.defaults
        assert (d["warmup_steps"], d["weight_decay"], d["max_grad_norm"], d["passages_per_batch"]) == (5000, 0.0, 1.0, 32)
    # dataset rows per batch that make 32 passages: 32 pairs, 16 triples, 4 octuples, 1 list of 50
    batch = {name: OBJECTIVES[name].defaults["batch_size"] for name in REQUIRED}
    assert batch == {"bce": 32, "hinge": 16, "marginmse": 16, "infonce": 4, "distillranknet": 1, "adrmse": 1, "kldistill": 1}


def test_importing_the_registry_does_not_import_torch():
    code = "import sys, st_distill.objectives; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_loss_factory_applies_defaults_and_overrides(tiny_model):
    from sentence_transformers.cross_encoder import losses as st_losses

    from st_distill.losses import ADRMSELoss, CombinedDistillationLoss

    assert isinstance(get_objective("bce").loss(tiny_model), st_losses.BinaryCrossEntropyLoss)
    loss = get_objective("adrmse").loss(tiny_model, discount="reciprocal")
    assert isinstance(loss, ADRMSELoss) and (loss.temperature, loss.discount) == (1.0, "reciprocal")
    combined = get_objective("kldistill+infonce").loss(tiny_model, hard_weight=0.25)
    assert isinstance(combined, CombinedDistillationLoss) and combined.hard_weight == 0.25
    assert get_objective("kldistill+infonce").dataset_format.positive_first


# ---------------------------------------------------------------------------------------------
# End to end: a toy dataset in the registry's format, 5 steps of CrossEncoderTrainer.

QUERIES = ["what do pandas eat", "capital of france", "how tall is everest", "who wrote hamlet"]
TEXTS = [
    "Pandas eat bamboo almost exclusively.",
    "Paris is the capital and largest city of France.",
    "Mount Everest is 8,849 metres tall.",
    "Hamlet is a tragedy written by William Shakespeare.",
    "The stock market fell on Monday.",
    "Bamboo is a fast growing grass.",
    "France borders Spain and Italy.",
    "Tides are caused by the moon.",
]


def toy_dataset(name: str, rows: int = 8):
    """``rows`` rows in exactly the columns the registry lists, with ragged lists for listwise formats."""
    from datasets import Dataset

    fmt = get_objective(name).dataset_format
    generator = torch.Generator().manual_seed(0)
    data: dict[str, list] = {column: [] for column in fmt.columns(n_negatives=min(fmt.n_negatives or 1, 3))}
    for r in range(rows):
        query, positive = QUERIES[r % 4], TEXTS[r % 4]
        negatives = [TEXTS[4 + (r + k) % 4] for k in range(3)]
        if fmt.kind == "pointwise":
            data["query"].append(query)
            data["document"].append(positive if r % 2 == 0 else negatives[0])
            data[fmt.label_column].append((1.0 if r % 2 == 0 else 0.0) if fmt.teacher is None else float(r) - 3.5)
        elif fmt.kind == "ntuple":
            data["query"].append(query)
            data["positive"].append(positive)
            for column, negative in zip([c for c in data if c.startswith("negative_")], negatives):
                data[column].append(negative)
            if fmt.label_column:
                n = len([c for c in data if c.startswith("negative_")])
                data["scores"].append([5.0, *torch.randn(n, generator=generator).tolist()])
        else:
            docs = [positive, *negatives[: 1 + r % 3]]  # 2 to 4 documents
            data["query"].append(query)
            data["docs"].append(docs)
            data["scores"].append([float(len(docs) - i) for i in range(len(docs))])
    assert list(data) == fmt.columns(n_negatives=min(fmt.n_negatives or 1, 3))
    return Dataset.from_dict(data)


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_trains_five_steps(name, tiny_model, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    before = {k: v.detach().clone() for k, v in tiny_model.named_parameters()}
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=5,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = CrossEncoderTrainer(
        model=tiny_model, args=args, train_dataset=toy_dataset(name), loss=get_objective(name).loss(tiny_model)
    )
    trainer.train()

    step_logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(step_logs) == 5
    assert all(math.isfinite(log["loss"]) for log in step_logs)
    if get_objective(name).family == "combined":  # each part is logged under its name
        assert all(math.isfinite(log["kldistill"]) and math.isfinite(log["infonce"]) for log in step_logs)
    changed = [k for k, v in tiny_model.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert "classifier.weight" in "".join(changed) and len(changed) > len(before) // 2


# ---------------------------------------------------------------------------------------------
# Loss arguments are checked by the registry (names, types and values), for every objective.


def test_registry_defaults_pass_the_loss_argument_check():
    for objective in OBJECTIVES.values():
        assert objective.check_loss_arguments(objective.loss_kwargs) == [], objective.name


@pytest.mark.parametrize(
    ("name", "arguments", "problem"),
    [
        ("infonce", {"temperature": 0}, ("temperature", "must be > 0.0, got 0")),
        ("infonce", {"temperature": math.nan}, ("temperature", "must be finite, got nan")),
        ("infonce", {"temperature": -1.0}, ("temperature", "must be > 0.0, got -1.0")),
        ("kldistill", {"temperature": math.inf}, ("temperature", "must be finite, got inf")),
        # MarginMSELoss takes **kwargs (for torch's MSELoss), which used to end the name check early
        ("marginmse", {"bogus": 1}, ("bogus", "unknown argument 'bogus' of MarginMSELoss (known: activation_fn, mini_batch_size, cached)")),
        ("bce", {"reduction": "sum"}, ("reduction", "unknown argument 'reduction' of BinaryCrossEntropyLoss (known: activation_fn, pos_weight)")),
        ("hinge", {"margin": math.nan}, ("margin", "must be finite, got nan")),
        ("hinge", {"margin": "big"}, ("margin", "expected float, got 'big'")),
        ("hinge", {"mini_batch_size": 0}, ("mini_batch_size", "must be >= 1, got 0")),
        ("hinge", {"cached": 1}, ("cached", "expected bool, got 1")),
        ("adrmse", {"discount": "log10"}, ("discount", "must be one of 'log2', 'reciprocal', None, got 'log10'")),
        ("kldistill+infonce", {"hard_weight": -0.5}, ("hard_weight", "must be >= 0.0, got -0.5")),
        ("kldistill+infonce", {"teacher_loss": "mse"}, ("teacher_loss", "must be one of 'kldistill', 'distillranknet', 'adrmse', got 'mse'")),
        ("distillranknet", {"mini_batch_size": None}, ("cached", "cached = true needs a mini_batch_size >= 1, got None")),
    ],
)
def test_loss_arguments_that_cannot_train_are_refused(name, arguments, problem, tiny_model):
    objective = get_objective(name)
    assert objective.check_loss_arguments(arguments) == [problem]
    with pytest.raises(ValueError, match=re.escape(f"{problem[0]}: {problem[1]}")):
        objective.loss(tiny_model, **arguments)  # refused before the loss is built


@pytest.mark.parametrize(
    ("objective", "loss", "key", "message"),
    [
        ("infonce", "{ temperature = 0.0 }", "loss.temperature", "must be > 0.0, got 0.0"),
        ("infonce", "{ temperature = -1.0 }", "loss.temperature", "must be > 0.0, got -1.0"),
        ("infonce", "{ temperature = nan }", "loss.temperature", "must be finite, got nan"),
        ("hinge", "{ mini_batch_size = 0 }", "loss.mini_batch_size", "must be >= 1, got 0"),
        ("marginmse", "{ bogus = 1 }", "loss.bogus", "unknown argument 'bogus' of MarginMSELoss"),
    ],
)
def test_the_bench_config_refuses_them_naming_the_key(tmp_path, objective, loss, key, message):
    from st_distill.bench.config import ConfigError, load_config

    (tmp_path / "q.tsv").write_text("1\tbest pizza\n", encoding="utf-8")
    (tmp_path / "c.tsv").write_text("a\tpizza place\nb\tweather\n", encoding="utf-8")
    (tmp_path / "qrels.txt").write_text("1 0 a 1\n", encoding="utf-8")
    (tmp_path / "run.trec").write_text("1 Q0 a 1 2.0 x\n1 Q0 b 2 1.0 x\n", encoding="utf-8")
    source = 'queries = "q.tsv"\ncorpus = "c.tsv"\nqrels = "qrels.txt"\nrun = "run.trec"\n'
    path = tmp_path / "bench.toml"
    path.write_text(f'name = "t"\n[[train_sources]]\nname = "toy"\n{source}[[backbones]]\nname = "tiny"\nmodel = "."\n'
                    f"[train]\nmax_steps = 5\n[eval.suites.toy]\n{source}depth = 10\n"
                    f'[[objectives]]\nname = "{objective}"\nloss = {loss}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"objectives[0].{key}: {message}" in str(info.value)
