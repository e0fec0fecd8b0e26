"""The plan of a bench run: its cells, their merged settings, shards, and the human-readable plan."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from st_distill.bench.config import TRAIN_KEYS, BenchConfig, CollectionConfig, ConfigError, TrainArgs
from st_distill.bench.phases.build import build_settings, normalization
from st_distill.bench.workspace import Workspace
from st_distill.data.download import beir_cache_folder
from st_distill.data.formats import read_qrels, read_texts
from st_distill.io import file_sha256, open_bytes
from st_distill.models import RESOURCE_PREFIX, resolve_resource
from st_distill.models.fingerprint import spec_fingerprint
from st_distill.objectives import get_objective

logger = logging.getLogger(__name__)

__all__ = ["BackboneSettings", "Cell", "CellSettings", "Step0Settings", "step0_plan", "check_plan", "plan_cells", "inputs_of", "describe_input", "select_shard", "passages_per_row", "cell_settings", "describe_plan"]


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    phase: str
    backbone: str
    objective: str
    seed: int
    sweep: tuple[tuple[str, Any], ...] = ()

    @property
    def variant(self) -> str:
        """The sweep values of this cell as ``key=value`` joined by ``,`` (empty outside sweeps)."""
        return ",".join(f"{k}={v}" for k, v in self.sweep)

    @property
    def key(self) -> str:
        """The cell's folder under ``cells/``."""
        name = f"seed-{self.seed}" + (f"--{self.variant}" if self.variant else "")
        return f"{self.phase}/{self.backbone}/{self.objective}/{name}"


def plan_cells(config: BenchConfig, phase: str | None = None) -> list[Cell]:
    """Every cell of the grid, in run order (phase, backbone, objective, seed, sweep value).

    Args:
        config: The bench config.
        phase: Only this phase.

    Raises:
        ValueError: For an unknown phase name.
    """
    names = [p.name for p in config.phases]
    if phase is not None and phase not in names:
        raise ValueError(f"unknown phase {phase!r} (phases: {', '.join(names)})")
    cells = []
    for p in config.phases:
        if phase is not None and p.name != phase:
            continue
        combos: list[tuple[tuple[str, Any], ...]] = [()]
        for key, values in p.sweep.items():
            combos = [(*combo, (key, value)) for combo in combos for value in values]
        for backbone in p.backbones:
            for objective in p.objectives:
                for seed in p.seeds:
                    cells.extend(Cell(p.name, backbone, objective, seed, combo) for combo in combos)
    return cells


def inputs_of(config: BenchConfig) -> dict[str, Any]:
    """The parts of ``config`` that the shared files depend on, as plain JSON values.

    Input files are recorded by what they are, not where the package happens to be installed: a
    file shipped in the package as its ``resource://`` name and content hash, a user's file as
    its path, size and modification time (see :func:`describe_input`). Reinstalling st-distill
    (editable or not) or moving the results folder leaves the record unchanged.
    """
    parts = {"train_sources": [s.model_dump() for s in config.train_sources], "negatives": config.negatives.model_dump(),
             "teacher": config.teacher.model_dump(), "suites": {name: s.model_dump() for name, s in config.eval.suites.items()}}
    return json.loads(json.dumps(_describe_paths(parts), default=str))


def describe_input(path: Path) -> dict[str, Any] | str:
    """How an input file or folder is recorded in ``inputs.json``.

    Returns:
        ``{"resource": "resource://...", "sha256": ...}`` for one shipped in the package (a
        folder's hash covers its files' names and contents); ``{"path", "size", "mtime_ns"}`` for
        a user's file; the path alone for a user's folder, or a path that does not exist (yet).
    """
    root = resolve_resource(RESOURCE_PREFIX).resolve()
    resolved = path.resolve()
    if resolved.is_relative_to(root):
        name = RESOURCE_PREFIX + resolved.relative_to(root).as_posix()
        if resolved.is_dir():
            digest = hashlib.sha256()
            for file in sorted(p for p in resolved.rglob("*") if p.is_file()):
                digest.update(f"{file.relative_to(resolved).as_posix()}\0{file_sha256(file)}\n".encode())
            return {"resource": name, "sha256": digest.hexdigest()}
        return {"resource": name, "sha256": file_sha256(resolved)}
    if resolved.is_file():
        stat = resolved.stat()
        return {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return str(resolved)


def _describe_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _describe_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_describe_paths(item) for item in value]
    if isinstance(value, Path):
        return describe_input(value)
    return value


def select_shard(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """The slice of ``cells`` that shard ``index`` of ``count`` runs (0-based): every ``count``-th cell
    of each phase, starting at ``index``. The assignment depends only on the plan, so array jobs
    of one grid never run the same cell twice.

    Raises:
        ValueError: Unless ``0 <= index < count``.
    """
    if not 0 <= index < count:
        raise ValueError(f"--shard {index}/{count}: need 0 <= i < n")
    out, position = [], {}
    for cell in cells:
        i = position.get(cell.phase, 0)
        position[cell.phase] = i + 1
        if i % count == index:
            out.append(cell)
    return out


def passages_per_row(objective: str, n_negatives: int | None) -> int:
    fmt = get_objective(objective).dataset_format
    if fmt.kind == "pointwise":
        return 1
    return 1 + (n_negatives if n_negatives is not None else fmt.n_negatives)


class BackboneSettings(BaseModel):
    """A cell's backbone: the model spec, its fingerprint, and how the student is cut from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str
    fingerprint: str
    """:func:`~st_distill.models.fingerprint.spec_fingerprint` of ``model``: new weights behind a path are a new backbone."""
    layers: int | tuple[int, ...] | None = None
    head: Literal["cls", "mean", "cosine"] = "cls"
    train_layers: tuple[int, ...] | None = None
    max_length: int
    """Tokens of a (query, document) pair: the student's ``max_seq_length``."""


class CellSettings(BaseModel):
    """Everything that decides a cell's data, model and training (see :func:`cell_settings`); a finished
    cell is reused only while its recorded settings (:meth:`record`) equal these."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    backbone: BackboneSettings
    objective: str
    n_negatives: int | None
    data: Literal["run", "triples"]
    """Where the rows come from (``objectives[].data``)."""
    normalize: str
    """How teacher scores became labels (``objectives[].normalize`` or ``teacher.normalize``)."""
    denoise: float | None = None
    """``objectives[].denoise``: how the teacher thinned the negatives, if it did."""
    loss: dict[str, Any]
    train: TrainArgs
    passages_per_row: int

    def record(self) -> dict[str, Any]:
        """The settings as JSON values, as ``cell.json`` and ``metrics.json`` store them (``"settings"``):
        keys sorted within ``loss`` and ``train``; the backbone's ``head`` and ``train_layers`` only
        when set, ``denoise`` only when set, and its ``max_length`` under ``train``, as cells finished before those keys (and
        before ``max_length`` was the backbone's) recorded them."""
        out = self.model_dump(mode="json")
        if out["denoise"] is None:
            del out["denoise"]
        backbone = out["backbone"]
        if backbone["head"] == "cls":
            del backbone["head"]
        if backbone["train_layers"] is None:
            del backbone["train_layers"]
        out["train"]["max_length"] = backbone.pop("max_length")
        out["loss"], out["train"] = dict(sorted(out["loss"].items())), dict(sorted(out["train"].items()))
        return out


def cell_settings(config: BenchConfig, cell: Cell, selected: dict[str, dict[str, Any]] | None = None) -> CellSettings:
    """The merged settings of a cell: everything that decides its data, model and training: the
    backbone (with its fingerprint, :func:`~st_distill.models.fingerprint.spec_fingerprint`, and its ``max_length``), the
    data it trains on (negatives per row, ``data``, the teacher scores' ``normalize``, ``denoise``), training and
    loss arguments.

    Training arguments merge, later winning: the objective's registry defaults, ``[train]``, the
    backbone's ``train``, the objective's ``train``, the phase's ``train``, the values an earlier
    sweep phase selected for this objective, then this cell's own sweep values.
    """
    objective = config.objective(cell.objective)
    backbone = config.backbone(cell.backbone)
    phase = next(p for p in config.phases if p.name == cell.phase)
    registry = get_objective(cell.objective).defaults
    train = {k: v for k, v in registry.items() if k in TRAIN_KEYS}
    for layer in (config.train, backbone.train, objective.train, phase.train, (selected or {}).get(cell.objective, {}), dict(cell.sweep)):
        train.update(layer)
    n_negatives = objective.n_negatives if objective.n_negatives is not None else get_objective(cell.objective).dataset_format.n_negatives
    return CellSettings(
        backbone=BackboneSettings(model=backbone.model, fingerprint=spec_fingerprint(backbone.model), layers=backbone.layers,
                                  head=backbone.head, train_layers=backbone.train_layers, max_length=backbone.max_length),
        objective=cell.objective,
        n_negatives=n_negatives,
        data=objective.data,
        normalize=normalization(config, cell.objective),
        denoise=objective.denoise,
        loss=dict(sorted(objective.loss.items())),
        train=dict(sorted(train.items())),
        passages_per_row=passages_per_row(cell.objective, n_negatives),
    )


class Step0Settings(BaseModel):
    """Everything that decides the untrained student's evaluation (the report's step-0 reference):
    the backbone as a cell cuts it (its ``max_length`` included), the seed of a random head (``None``
    for the cosine head, which has no random weight), the dataset whose pairs calibrate a cosine
    head, and the evaluation suites. ``train_layers`` is left out: freezing changes no score."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    backbone: BackboneSettings
    seed: int | None
    calibration: dict[str, Any] | None
    """For ``head = "cosine"``: the objective whose built dataset gives the calibration pairs, with its build settings."""
    suites: dict[str, Any]

    @property
    def key(self) -> str:
        """The folder name under ``step0/``: a digest of the settings (:meth:`record`), never a name."""
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:20]

    def record(self) -> dict[str, Any]:
        """The settings as JSON values (the backbone without ``train_layers``)."""
        out = self.model_dump(mode="json")
        del out["backbone"]["train_layers"]
        return out


def step0_plan(config: BenchConfig, cells: list[Cell], selected: dict[str, dict[str, dict[str, Any]]] | None = None) -> dict[str, dict[str, list[Step0Settings]]]:
    """The step-0 references of ``cells``: per phase and backbone, one :class:`Step0Settings` per seed
    of a random head (the report shows their mean), one for the cosine head.

    Each is made from the settings of the backbone's cell of the baseline objective (``report.baseline``)
    when the phase has it, else of its first objective; the first sweep value where a phase sweeps.
    A cosine head is calibrated on that objective's pairs: another objective's pairs give another
    positive scale and shift of the same cosine, the same ranking in float32; in bfloat16 the
    rounding of the scaled scores can differ, so the other objectives' learning curves may start
    slightly off the step-0 level there.

    Args:
        config: The bench config.
        cells: The planned cells.
        selected: ``{phase: selections}``: what earlier sweep phases selected, per phase
            (:meth:`~st_distill.bench.runner.Runner.selections`); a phase missing here is left out.
    """
    suites = inputs_of(config)["suites"]
    chosen: dict[tuple[str, str, int], Cell] = {}
    for cell in cells:
        if selected is not None and cell.phase not in selected:
            continue
        key = (cell.phase, cell.backbone, cell.seed)
        if key not in chosen or (cell.objective == config.report.baseline and chosen[key].objective != config.report.baseline):
            chosen[key] = cell
    out: dict[str, dict[str, list[Step0Settings]]] = {}
    for (phase, backbone, _), cell in chosen.items():
        s = cell_settings(config, cell, (selected or {}).get(phase))
        cosine = s.backbone.head == "cosine"
        step0 = Step0Settings(
            backbone=s.backbone, seed=None if cosine else cell.seed,
            calibration={"objective": cell.objective, **build_settings(config, cell.objective)} if cosine else None, suites=suites,
        )
        listed = out.setdefault(phase, {}).setdefault(backbone, [])
        if step0 not in listed:
            listed.append(step0)
    return out


def check_plan(config: BenchConfig, cells: list[Cell]) -> None:
    """Checks, before any work, what the config's sections cannot check alone: that every evaluation
    suite given as files has a judged query in its run; and warns (with the key path) where a cell's
    ``passages_per_batch`` is smaller than one row of its objective, as a batch then still takes a
    whole row (a listwise study may want that: one list per batch).

    Raises:
        ConfigError: Naming the key path of the first problem.
    """
    warned = set()
    for cell in cells:
        s = cell_settings(config, cell)
        batch, row = s.train["passages_per_batch"], s.passages_per_row
        key = _train_key(config, cell, "passages_per_batch")
        if batch < row and (key, cell.objective) not in warned:
            warned.add((key, cell.objective))
            logger.warning("%s: %s: %d is less than the %d passages of one %s row (1 positive + %d negatives): each batch "
                           "takes a whole row of %d passages instead (first cell: %s); set it to %d or more to say so",
                           config.path, key, batch, row, cell.objective, row - 1, row, cell.key, row)
    for name, suite in config.eval.suites.items():
        if any(f is None or not f.is_file() for f in (suite.queries, suite.qrels, suite.run)):
            continue  # BEIR, ir_datasets and BM25 suites are checked when they are loaded; missing files (dry runs) are listed
        queries, qrels = read_texts(suite.queries), read_qrels(suite.qrels)
        judged = [qid for qid in qrels if qid in queries][: suite.max_queries]
        with open_bytes(suite.run) as f:
            ranked = {line.split(None, 1)[0].decode() for line in f if line.strip()}
        if not ranked.intersection(judged):
            raise ConfigError(config.path, f"eval.suites.{name}.run",
                              f"no query of {suite.run} is among the {len(judged)} judged queries of {suite.qrels}"
                              f"{f' (max_queries = {suite.max_queries})' if suite.max_queries else ''}: nothing to evaluate")


def _train_key(config: BenchConfig, cell: Cell, key: str) -> str:
    """The key path that gives a cell its training argument ``key`` (the last layer that sets it)."""
    phase = next(i for i, p in enumerate(config.phases) if p.name == cell.phase)
    objective = next(i for i, o in enumerate(config.objectives) if o.name == cell.objective)
    backbone = next(i for i, b in enumerate(config.backbones) if b.name == cell.backbone)
    for path, layer in ((f"phases[{phase}].sweep", dict(cell.sweep)), (f"phases[{phase}].train", config.phases[phase].train),
                        (f"objectives[{objective}].train", config.objectives[objective].train),
                        (f"backbones[{backbone}].train", config.backbones[backbone].train)):
        if key in layer:
            return f"{path}.{key}"
    return f"train.{key}" if key in config.train else f"train.{key} (unset: the {cell.objective} objective's default)"


def describe_plan(config: BenchConfig, cells: list[Cell], selected: dict | None = None) -> str:
    """A human-readable plan: data, teacher, cells with their steps and estimated training pairs."""
    lines = [f"bench {config.name!r} ({config.path}) -> {config.output_dir}"]
    teacher_pairs = eval_pairs = 0
    for source in config.train_sources:
        queries, judged = _judged(source)
        depth = max(source.depth, config.negatives.depth)
        teacher_pairs = None if queries is None or teacher_pairs is None else teacher_pairs + queries * depth + judged
        labels = "; labels: one relevant document per query (sparse)" if source.labels == "sparse" else ""
        lines.append(f"  train source {source.name}: {_describe_collection(source)}{labels}; {_count(queries)} judged queries")
    t = config.teacher
    teacher = {"none": "none", "scores_file": f"scores file {t.scores_file}", "models": "score with " + ", ".join(f"{m.model} ({m.kind})" for m in t.models)}.get(t.source)
    if t.source == "train":
        teacher = f"train {t.train_backbone} with {t.train_objective} ({t.train.get('max_steps', config.train.get('max_steps'))} steps), then score"
        if t.models:
            teacher += " + " + ", ".join(m.model for m in t.models) + f" ({t.ensemble} ensemble)"
    lines.append(f"  teacher: {teacher}" + (f"; LLM rankings {t.rankings}" if t.rankings else ""))
    lines.append(f"  negatives: {config.negatives.sampling} from the first-stage top-{config.negatives.depth}")
    for name, suite in config.eval.suites.items():
        queries, _ = _judged(suite)
        eval_pairs = None if queries is None or eval_pairs is None else eval_pairs + queries * suite.depth
        lines.append(f"  eval suite {name}: {_describe_collection(suite)}; {_count(queries)} judged queries")
    lines.append(f"  metrics: {', '.join(config.eval.metrics)}; report: {', '.join(config.report.metrics)} vs {config.report.baseline}")
    total_pairs = 0
    lines.append(f"  {len(cells)} cell(s):")
    selecting = {}
    for phase in config.phases:
        selecting[phase.name] = [(p.name, key) for p in config.phases[: config.phases.index(phase)] if p.select_on for key in p.sweep]
    for cell in cells:
        s = cell_settings(config, cell, selected)
        rows = max(1, s.train["passages_per_batch"] // s.passages_per_row)
        pairs = s.train["max_steps"] * rows * s.passages_per_row
        total_pairs += pairs
        chosen = "".join(f", {key} selected by phase {name!r}" for name, key in selecting[cell.phase])
        lines.append(
            f"    {cell.key}: {_plural(s.train['max_steps'], 'step')} x {_plural(rows, 'row')} x "
            f"{_plural(s.passages_per_row, 'passage')} = {_plural(pairs, 'pair')}, lr {s.train['learning_rate']:g}{chosen}"
            + (f", negatives denoised (margin {s.denoise:g})" if s.denoise is not None else "")
        )
    lines.append("  untrained students (the report's step-0 rows), evaluated once on the suites:")
    output = config.output_dir
    for phase, backbones in step0_plan(config, cells, None if selected is None else {c.phase: selected for c in cells}).items():
        for backbone, listed in backbones.items():
            for s0 in listed:
                done = output is not None and Workspace(output).step0(s0.key).done.is_file()
                lines.append(f"    {phase}/{backbone}: {'no random weight (cosine head)' if s0.seed is None else f'seed {s0.seed}'}"
                             f" -> step0/{s0.key}/ ({'done' if done else 'to evaluate'})")
    lines.append(f"  estimated training pairs: {total_pairs:,}")
    if config.teacher.source in ("models", "train"):
        lines.append(f"  estimated teacher pairs (judged queries x depth + their judged documents, at most): {_count(teacher_pairs)}")
    lines.append(f"  estimated re-ranked pairs per cell (at most): {_count(eval_pairs)}")
    return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    """``1 row``, ``2 rows``, ``1,000 rows``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _judged(c: CollectionConfig) -> tuple[int | None, int | None]:
    """Judged queries of a collection (capped by ``max_queries``) and their judged documents, from its qrels; None when not local."""
    if c.beir is not None:
        path = c.beir_folder / "qrels" / f"{c.split}.tsv" if c.beir_folder is not None else None
    else:
        path = c.qrels
    if path is None or not Path(path).is_file():
        return None, None
    judged = list(read_qrels(path).values())[: c.max_queries]
    return len(judged), sum(len(docs) for docs in judged)


def _describe_collection(c: CollectionConfig) -> str:
    if c.ir_datasets:
        where = f"ir_datasets {c.ir_datasets}"
    elif isinstance(c.beir, str):
        where = f"BEIR dataset {c.beir} ({c.split}), " + (f"cached in {c.beir_folder}" if c.beir_folder else f"to download into {beir_cache_folder(c.beir)}")
    elif c.beir:
        where = f"BEIR {c.beir} ({c.split})"
    else:
        where = f"queries {c.queries.name}, corpus {c.corpus.name}, qrels {c.qrels.name}"
    run = f"run {c.run.name}" if c.run else f"first stage {c.first_stage}"
    return f"{where}; {run} top-{c.depth}; relevant grade >= {c.relevance_level}"
