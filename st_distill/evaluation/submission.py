"""The material to submit a trained CrossEncoder to MTEB: its ``ModelMeta``, and that as a Python module.

:func:`model_meta` builds the ``ModelMeta`` of a trained model (from the model and the bench cell's
metadata) and :func:`model_meta_source` writes it as a Python module for
``mteb/models/model_implementations/``; :func:`write_model_meta_source` writes that module to a file.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

# first: where mteb is missing (Python 3.10), st_distill.evaluation.mteb says what MTEB evaluation needs
from st_distill.evaluation.mteb import is_registered_task  # isort: skip

import mteb
from mteb.models.model_meta import ModelMeta
from mteb.models.sentence_transformer_wrapper import CrossEncoderWrapper

from st_distill.io import atomic_write

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

__all__ = ["KNOWN_TRAINING_DATASETS", "model_meta", "model_meta_source", "write_model_meta_source"]

# Names our users give their training data -> the MTEB task built on the same data, for
# ``ModelMeta.training_datasets`` (which MTEB uses to flag results that are not zero-shot).
KNOWN_TRAINING_DATASETS: dict[str, str] = {
    "msmarco": "MSMARCO",
    "ms-marco": "MSMARCO",
    "ms_marco": "MSMARCO",
    "msmarco-passage": "MSMARCO",
    "scifact": "SciFact",
    "nfcorpus": "NFCorpus",
    "trec-dl-2019": "TRECDL2019",
    "trec-dl-2020": "TRECDL2020",
}




def _read_cell_metadata(cell_metadata: Mapping[str, Any] | str | os.PathLike | None) -> dict[str, Any]:
    """The cell metadata as a flat dict; a bench cell's ``settings.backbone.model`` becomes ``backbone``."""
    if cell_metadata is None:
        return {}
    if isinstance(cell_metadata, Mapping):
        data = dict(cell_metadata)
    else:
        path = Path(cell_metadata)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of bench cell metadata")
    # a bench cell's cell.json/metrics.json: {"cell": {...}, "settings": {"backbone": {"model": ...}, ...}}
    backbone = (data.get("settings") or {}).get("backbone")
    if isinstance(backbone, dict) and isinstance(backbone.get("model"), str):
        data.setdefault("backbone", backbone["model"])
    return data


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _training_datasets(cell: Mapping[str, Any]) -> set[str] | None:
    """MTEB task names for the data the model and its teachers learnt from (None when unknown)."""
    names: set[str] = set(_as_list(cell.get("training_datasets")))
    unknown = sorted(n for n in names if not is_registered_task(n))
    if unknown:
        logger.warning("training datasets that are not MTEB task names (MTEB expects task names): %s", unknown)
    for dataset in _as_list(cell.get("train_dataset")) + _as_list(cell.get("dataset")):
        mapped = KNOWN_TRAINING_DATASETS.get(Path(dataset).name.lower())
        if mapped:
            names.add(mapped)
    teachers = _as_list(cell.get("teachers")) + _as_list(cell.get("teacher"))
    for teacher in teachers:
        try:
            names |= mteb.get_model_meta(teacher).training_datasets or set()
        except (KeyError, ValueError):
            logger.info("teacher %s is not in MTEB's registry: its training data are not listed", teacher)
    return names or None


def model_meta(
    model: CrossEncoder,
    *,
    name: str,
    revision: str | None = None,
    cell_metadata: Mapping[str, Any] | str | os.PathLike | None = None,
    **overrides: Any,
) -> ModelMeta:
    """Builds the ``ModelMeta`` of a trained CrossEncoder, for MTEB's model registry.

    Fields come from the model (parameter counts, memory, max tokens, base model) and from the
    bench cell's metadata where given. Cell keys read: ``training_datasets`` (MTEB task
    names), ``train_dataset``/``dataset`` (names such as ``msmarco``, mapped through
    :data:`KNOWN_TRAINING_DATASETS`), ``teacher``/``teachers`` (their MTEB training data are
    added, as MTEB counts a teacher's data as the student's), ``backbone``, ``license``,
    ``languages``, ``release_date``, ``public_training_code``, ``public_training_data``,
    ``citation``, ``contacts``. A bench cell's ``cell.json`` (``{"cell": ..., "settings":
    {"backbone": {"model": ...}, ...}}``) gives the backbone; add the teacher and data keys to it.

    Args:
        model: The trained CrossEncoder.
        name: The hub id it is published under, ``organization/model``.
        revision: The hub commit of the published weights.
        cell_metadata: The bench cell's metadata: a mapping or a JSON file.
        overrides: Any ``ModelMeta`` field, set last.

    Returns:
        A validated ``ModelMeta`` with ``loader=CrossEncoderWrapper`` and ``model_type=["cross-encoder"]``.

    Raises:
        pydantic.ValidationError: When a field is invalid (e.g. an unknown licence or language code).
    """
    cell = _read_cell_metadata(cell_metadata)
    n_parameters = sum(p.numel() for p in model.model.parameters())
    embeddings = model.model.get_input_embeddings()
    backbone = cell.get("backbone") or model.model_card_data.base_model
    folder = Path(model.model.name_or_path)
    fields: dict[str, Any] = {
        "loader": CrossEncoderWrapper,
        "name": name,
        "revision": revision,
        "release_date": cell.get("release_date") or datetime.datetime.now(tz=datetime.timezone.utc).date().isoformat(),
        "languages": _as_list(cell.get("languages")) or ["eng-Latn"],
        "n_parameters": n_parameters,
        "n_embedding_parameters": int(embeddings.weight.numel()) if embeddings is not None else None,
        "memory_usage_mb": round(n_parameters * 4 / 1024**2),
        "max_tokens": model.max_length,
        "embed_dim": None,
        "license": cell.get("license") or model.model_card_data.license,
        "open_weights": True,
        "public_training_code": cell.get("public_training_code"),
        "public_training_data": cell.get("public_training_data"),
        "framework": ["Sentence Transformers", "PyTorch"] + (["safetensors"] if any(folder.glob("*.safetensors")) else []),
        "reference": f"https://huggingface.co/{name}",
        "similarity_fn_name": None,
        "use_instructions": False,
        "training_datasets": _training_datasets(cell),
        "adapted_from": backbone,
        "model_type": ["cross-encoder"],
        "modalities": ["text"],
        "citation": cell.get("citation"),
        "contacts": _as_list(cell.get("contacts")) or None,
    }
    fields.update(overrides)
    if fields["license"] is None:
        logger.warning("model_meta(%s): no licence known; set license= before submitting", name)
    return ModelMeta(**fields)


def model_meta_source(meta: ModelMeta, variable: str | None = None) -> str:
    """Writes a ``ModelMeta`` as a Python module for ``mteb/models/model_implementations/``.

    The constructor call is MTEB's own serialisation (``ModelMeta.to_python``); the module adds
    the imports it needs, so that it imports on its own and evaluates to an equal ``ModelMeta``.

    Args:
        meta: The metadata, e.g. from :func:`model_meta`.
        variable: The module-level name; defaults to the model name as an identifier.
    """
    if variable is None:
        variable = "".join(c if c.isalnum() else "_" for c in str(meta.name).split("/")[-1]).strip("_").lower()
        if not variable or variable[0].isdigit():
            variable = f"model_{variable}"
    if not variable.isidentifier():
        raise ValueError(f"{variable!r} is not a Python identifier")
    loader = meta.loader
    loader_name = getattr(loader, "func", loader).__name__ if loader is not None else None
    imports = ["from mteb.models.model_meta import ModelMeta"]
    if loader_name == "CrossEncoderWrapper":
        imports.append("from mteb.models.sentence_transformer_wrapper import CrossEncoderWrapper")
    elif loader is not None:
        raise ValueError(f"loader {loader_name} is not CrossEncoderWrapper: write the import by hand")
    if meta.similarity_fn_name is not None:
        imports.append("from mteb.models.model_meta import ScoringFunction")
    header = f'"""MTEB model metadata for {meta.name}, written by st-distill."""\n\nfrom __future__ import annotations\n\n'
    return header + "\n".join(sorted(imports)) + f"\n\n{variable} = {meta.to_python()}\n"


def write_model_meta_source(meta: ModelMeta, path: str | os.PathLike, variable: str | None = None) -> Path:
    """Writes :func:`model_meta_source` to ``path`` atomically and returns the path."""
    path = Path(path)
    with atomic_write(path) as f:
        f.write(model_meta_source(meta, variable))
    return path
