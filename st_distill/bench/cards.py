"""The model card of a bench cell's student: :func:`st_distill.export.card.student_card` filled from the
results folder (the cell's settings and metrics, its dataset's build report, the teacher cache's
manifest, the suites' reference rows), written as the student folder's ``README.md``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentence_transformers.base.model_card import generate_model_card

from st_distill.bench.phases.evaluate import REFERENCES
from st_distill.bench.plan import Cell, CellSettings
from st_distill.bench.workspace import CellFolder, Workspace
from st_distill.dataset import REPORT_FILE, load_built_dataset
from st_distill.export.card import CARD_TAG, StudentFacts, student_card
from st_distill.io import atomic_write, read_json
from st_distill.models import resolve_model
from st_distill.objectives import get_objective

__all__ = ["cell_facts", "has_card", "write_card"]

#: The reference files of ``eval/<suite>/`` a card shows, by the card's row name.
_CARD_REFERENCES = {"first stage": REFERENCES["first stage"], "teacher": REFERENCES["teacher"]}


def _teachers(ws: Workspace, objective: str, sources: list[str], specs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The teachers behind ``objective``'s dataset: each name, model and fingerprints (st-distill's key
    and the hashes of the weights, tokenizer and config), from the dataset's build report and the
    teacher caches' manifests; a teacher loaded from one of the config's ``specs`` is named by it
    (``package:NAME``, a hub id) rather than by the folder it resolved to on this machine."""
    by_folder = {str(resolve_model(spec)): spec for spec in specs}
    built = read_json(ws.data(objective) / REPORT_FILE)
    prints = (built.get("teacher") or {}).get("fingerprints") or {}
    records: dict[str, dict] = {}
    for source in sources:
        manifest = ws.teacher_cache(source) / "manifest.json"
        if manifest.is_file():
            records.update(read_json(manifest).get("teachers", {}))
    teachers = []
    for name, key in prints.items():
        record = records.get(key, {})
        components = {k: str(v) for k, v in (record.get("components") or {}).items()}
        model = by_folder.get(str(record.get("model")), record.get("model", name))
        teachers.append({"name": model if model in specs else name, "model": model, "fingerprint": {"st-distill": key, **components}})
    return teachers


def _measures(values: dict[str, Any], measures: tuple[str, ...]) -> dict[str, float]:
    return {m: float(values[m]) for m in measures if m in values}


def cell_facts(model, ws: Workspace, cell: Cell, settings: CellSettings, metrics: dict[str, Any], sources: list[str],
               measures: tuple[str, ...], step0: CellFolder | None, teacher_specs: Sequence[str] = ()) -> StudentFacts:
    """The facts of a finished cell's card.

    Args:
        model: The cell's saved student (its loss is built on it for the loss's full arguments).
        ws: The results folder.
        cell: The cell.
        settings: Its settings.
        metrics: Its ``metrics.json`` content (``train`` and ``suites``).
        sources: The training sources' names, in the config's order.
        measures: The measures shown (``eval.metrics``).
        step0: The folder of the untrained student of the cell's backbone and seed (``step0/<key>/``),
            when there is one.
        teacher_specs: The config's teacher model specs, which name the teachers.

    Returns:
        The facts: teachers with fingerprints (none for an objective that learns from labels only),
        loss and arguments, the training sources with their rows, the steps, and per suite the rows
        ``first stage``, ``teacher``, ``step 0`` and ``student`` that exist.
    """
    objective = get_objective(cell.objective)
    loss = objective.loss(model, **settings.loss)
    loss_args = loss.get_config_dict() if hasattr(loss, "get_config_dict") else {**objective.loss_kwargs, **settings.loss}
    built = read_json(ws.data(cell.objective) / "sources.json")
    columns = load_built_dataset(ws.data(cell.objective)).column_names
    step0_suites = read_json(step0.metrics)["suites"] if step0 is not None and step0.done.is_file() else {}
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for suite, result in metrics["suites"].items():
        rows[suite] = {}
        for row, file in _CARD_REFERENCES.items():
            path = ws.suite(suite) / file
            if path.is_file():
                rows[suite][row] = _measures(read_json(path), measures)
        if suite in step0_suites:
            rows[suite]["step 0"] = _measures(step0_suites[suite]["aggregate"], measures)
        rows[suite]["student"] = _measures(result["aggregate"], measures)
    return StudentFacts(
        backbone=settings.backbone.model,
        objective=cell.objective,
        loss=objective.loss_class.replace(":", "."),
        loss_args=loss_args,
        steps=int(metrics["train"]["steps"]),
        teachers=_teachers(ws, cell.objective, sources, teacher_specs) if objective.dataset_format.teacher is not None else [],
        train_sources=[{"name": name, "size": int(built[name]["rows"]), "columns": columns}
                       for name in sources if name in built],
        metrics=rows,
    )


def write_card(model, folder: Path, facts: StudentFacts) -> None:
    """Writes ``folder/README.md`` (atomically): the library's CrossEncoder card of ``model`` filled from ``facts``."""
    model.model_card_data = student_card(facts)
    model.model_card_data.register_model(model)
    model.model_card_data.save_dir = str(folder)
    text = generate_model_card(model)
    with atomic_write(Path(folder) / "README.md") as f:
        f.write(text)


def has_card(folder: Path) -> bool:
    """Whether ``folder/README.md`` is a filled card (its YAML header carries :data:`~st_distill.export.card.CARD_TAG`);
    a student's ``README.md`` without it is the library's plain card (a cell finished by an older st-distill)."""
    path = Path(folder) / "README.md"
    if not path.is_file():
        return False
    header = path.read_text(encoding="utf-8").split("\n---", 1)[0]
    return f"\n- {CARD_TAG}\n" in header
