"""The sections of a bench config, as pydantic models; :class:`BenchConfig` is the whole config."""

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Gt, Lt, MinLen
from pydantic import AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, Strict, ValidationInfo, WithJsonSchema, field_validator, model_validator

from st_distill._deprecated import alias_names
from st_distill.bench.config.types import (
    _RESERVED_PHASES,
    _TRAIN_DEFAULTS,
    DEFAULT_MAX_LENGTH,
    CellTrainArgs,
    InputFile,
    Measure,
    Measures,
    ModelSpec,
    Names,
    NonNegativeInt,
    Normalization,
    ObjectiveName,
    PositiveInt,
    SafeName,
    Seeds,
    Sweep,
    TeacherTrainArgs,
    Text,
    TrainArgs,
    _base,
    _beir,
    _fail,
    _is_int,
    _layer_list,
    _layers,
    _missing_input,
    _num_layers,
    _scores_file,
    _slug,
    _unique_names,
)
from st_distill.data.download import BEIR_DATASETS, cached_beir
from st_distill.objectives import get_objective

__all__ = [
    "BackboneConfig", "BenchConfig", "CollectionConfig", "CurveConfig", "EvalConfig", "MtebSuite", "NegativesConfig",
    "ObjectiveConfig", "PhaseConfig", "ReportConfig", "TeacherConfig", "TeacherModel", "TrainSource",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class CollectionConfig(_Section):
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
    def _one_kind_of_data(self, info: ValidationInfo) -> "CollectionConfig":
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


#: ``Collection``: :class:`CollectionConfig`'s old name (``st_distill.data.formats.Collection`` is the loaded data).
__getattr__ = alias_names(__name__, "st_distill.bench.config", Collection=CollectionConfig)


class TrainSource(CollectionConfig):
    """A training source: a :class:`CollectionConfig` whose ``split`` defaults to ``train``, with
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
    train: TeacherTrainArgs = Field(default_factory=dict)
    batch_size: PositiveInt = 64
    max_length: PositiveInt = DEFAULT_MAX_LENGTH
    """Tokens of a (query, document) pair the teachers read (and the trained teacher learns at)."""

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
    denoise: Annotated[float, Strict(), AllowInfNan(False), Field(ge=0)] | None = None
    """Negatives without the candidates the teacher scores within this many standard deviations of
    the query's best relevant candidate, or above it (likely unjudged positives;
    :func:`st_distill.data.negatives.denoise_candidates`); needs ``teacher.source`` ``models`` or ``train``."""
    train: CellTrainArgs = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fits_the_objective(self) -> "ObjectiveConfig":
        fmt = get_objective(self.name).dataset_format
        kind = fmt.kind
        if self.data == "triples" and kind == "listwise":
            raise _fail(f"{self.name!r} is listwise: it cannot train on triples", "data")
        if self.denoise is not None and (fmt.from_candidates or self.data == "triples"):
            raise _fail(f"{self.name!r} draws no negatives from the first-stage run: denoise does not apply", "denoise")
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
    :func:`st_distill.training.make_student`. ``train_layers``: the indices, counted after
    truncation, of the layers that train (default: all; ``[]``: the head alone). ``max_length``:
    the student's tokens per pair.
    """

    name: SafeName
    """The folder name of its cells (default: the model's last path component)."""
    model: ModelSpec
    layers: Annotated[PositiveInt | tuple[NonNegativeInt, ...], BeforeValidator(_layers)] | None = None
    head: Literal["cls", "mean", "cosine"] = "cls"
    train_layers: Annotated[tuple[NonNegativeInt, ...], BeforeValidator(lambda v: _layer_list(v, empty=True))] | None = None
    max_length: PositiveInt = DEFAULT_MAX_LENGTH
    """Tokens of a (query, document) pair the student reads (its ``max_seq_length``; longer pairs are
    truncated), in training and evaluation."""
    train: CellTrainArgs = Field(default_factory=dict)

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

    suites: Annotated[dict[SafeName, CollectionConfig], BeforeValidator(_suite_names), MinLen(1)]
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
    train: CellTrainArgs = Field(default_factory=dict)
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

    @model_validator(mode="before")
    @classmethod
    def _max_length_is_the_backbones(cls, data: Any, info: ValidationInfo) -> Any:
        """``[train] max_length`` and ``backbones[i].train.max_length``, the deprecated spellings of
        ``backbones[i].max_length``: moved there (``[train]``'s to every backbone that sets none), with
        a deprecation naming the key (see :func:`_deprecated_key`)."""
        if not isinstance(data, dict):
            return data
        data, default = dict(data), None
        train = data.get("train")
        if isinstance(train, dict) and "max_length" in train:
            data["train"] = {k: v for k, v in train.items() if k != "max_length"}
            default = train["max_length"]
            if not (_is_int(default) and default > 0):
                raise _fail(f"must be an int > 0, got {default!r}", "train", "max_length")
            _deprecated_key(info, "train.max_length", "max_length is a property of the model: set it per backbone "
                            "([[backbones]] max_length = ...)")
        backbones = data.get("backbones")
        if not isinstance(backbones, (list, tuple)):
            return data
        moved = []
        for i, backbone in enumerate(backbones):
            if isinstance(backbone, BackboneConfig):
                if default is not None and "max_length" not in backbone.model_fields_set:
                    backbone = backbone.model_copy(update={"max_length": default})
            elif isinstance(backbone, dict):
                backbone = dict(backbone)
                own = backbone.get("train")
                if isinstance(own, dict) and "max_length" in own:
                    if "max_length" in backbone:
                        raise _fail("given twice: keep backbones[].max_length only", "backbones", i, "train", "max_length")
                    backbone["train"] = {k: v for k, v in own.items() if k != "max_length"}
                    backbone["max_length"] = own["max_length"]
                    _deprecated_key(info, f"backbones[{i}].train.max_length", f"set backbones[{i}].max_length")
                if default is not None:
                    backbone.setdefault("max_length", default)
            moved.append(backbone)
        data["backbones"] = moved
        return data

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

        for i, objective in enumerate(config.objectives):
            if objective.data == "triples" and teacher.scores_file is None:
                raise _fail("'triples' needs teacher.scores_file", "objectives", i, "data")
            if get_objective(objective.name).dataset_format.teacher and teacher.source == "none" and not teacher.rankings:
                raise _fail(f"{objective.name!r} needs a teacher, but teacher.source is 'none'", "objectives", i, "name")
            if objective.denoise is not None and teacher.source not in ("models", "train"):
                raise _fail(f"denoise needs a teacher that scores the run's candidates (teacher.source 'models' or 'train'), "
                            f"not {teacher.source!r}", "objectives", i, "denoise")
        objectives = tuple(o.name for o in config.objectives)
        backbones = tuple(b.name for b in config.backbones)
        baseline = config.report.baseline or ("bce" if "bce" in objectives else objectives[0])
        if baseline not in objectives:
            raise _fail(f"{baseline!r} is not one of the config's objectives ({', '.join(objectives)})", "report", "baseline")
        update["report"] = config.report.model_copy(update={"baseline": baseline})
        for i, measure in enumerate(config.report.metrics):
            if measure not in config.eval.metrics:
                raise _fail(f"{measure!r} is not evaluated: add it to eval.metrics ({', '.join(config.eval.metrics)})", "report", "metrics", i)
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


def _deprecated_key(info: ValidationInfo, key: str, instead: str) -> None:
    """A deprecated key: noted in the validation context's ``"deprecated"`` dict (which
    :func:`~st_distill.bench.config.load_config` logs once, naming the config file), else warned."""
    message = f"deprecated: {instead}"
    notes = (info.context or {}).get("deprecated")
    if notes is None:
        warnings.warn(f"{key}: {message}", DeprecationWarning, stacklevel=2)
    else:
        notes[key] = message


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
