"""The value types of bench configs and their validators (paths, models, measures, layers, loss
arguments): the building blocks of :mod:`st_distill.bench.config.sections`.

Validators read the config's folder and whether missing inputs are errors from the validation
context (see :func:`st_distill.bench.config.load_config`); they raise ``config`` errors whose ``at``
extends the key path.
"""

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, get_type_hints

from annotated_types import Ge, Gt, Lt, MinLen
from pydantic import AfterValidator, AllowInfNan, BeforeValidator, ConfigDict, Strict, ValidationInfo
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from st_distill.data.download import BEIR_DATASETS
from st_distill.data.normalize import NORMALIZATIONS, Normalization  # noqa: F401 (re-exported: the bench config's names since 0.1)
from st_distill.models import PACKAGE_PREFIX, RESOURCE_PREFIX, resolve_model, resolve_resource
from st_distill.objectives import OBJECTIVES

#: The config ``st-distill bench`` runs without an argument: the packaged quickstart.
DEFAULT_CONFIG = "resource://quickstart/config.toml"
HF_PREFIX = "hf://"
_RESERVED_PHASES = ("teacher", "data", "eval", "report")
_TRAIN_DEFAULTS: dict[str, Any] = {"bf16": False, "save_steps": 500, "logging_steps": 10}
#: Tokens of a (query, document) pair where a backbone (or the teacher) sets none.
DEFAULT_MAX_LENGTH = 256


# Validators read the config's folder and whether missing inputs are errors from the
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
#: A seed numpy, torch and ``random`` all accept: 0 <= seed < 2**32.
Seed = Annotated[int, Strict(), Ge(0), Lt(2**32)]
Seeds = Annotated[tuple[Seed, ...], MinLen(1), AfterValidator(_distinct)]
Measure = Annotated[str, Strict(), AfterValidator(_measure)]
Measures = Annotated[tuple[Measure, ...], MinLen(1), AfterValidator(_distinct)]
InputFile = Annotated[Path, BeforeValidator(_input_path), AfterValidator(_existing_file)]


class TrainArgs(TypedDict, total=False):
    """Training arguments, set in ``[train]`` and overridden per backbone, objective or phase.

    A key not set anywhere takes the objective's registry default (:mod:`st_distill.objectives`).
    The tokens of a pair are the model's, not a training argument: ``backbones[].max_length``
    (``[train] max_length`` is its deprecated spelling, see :class:`~st_distill.bench.config.BenchConfig`).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    max_steps: PositiveInt
    passages_per_batch: PositiveInt
    learning_rate: PositiveFloat
    warmup_steps: NonNegativeInt
    weight_decay: NonNegativeFloat
    max_grad_norm: PositiveFloat
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
_Sweep = TypedDict(  # type: ignore[misc]
    "Sweep",
    {key: Annotated[tuple[hint, ...], MinLen(1)] for key, hint in get_type_hints(TrainArgs, include_extras=True).items()},
    total=False,
)
_Sweep.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]


def _not_the_models_length(where: str) -> Any:
    """A validator refusing ``max_length`` among training arguments, where it never was the model's
    deprecated spelling (objectives, phases, sweeps, the teacher's training): it says where it goes."""

    def check(value: Any) -> Any:
        if isinstance(value, dict) and "max_length" in value:
            raise _fail(f"max_length is a property of the model, not a training argument: {where}", "max_length")
        return value

    return BeforeValidator(check)


_PER_BACKBONE = ("set it per backbone (backbones[].max_length); a student read at another length is another "
                 "[[backbones]] entry with the same model")
#: ``[objectives.train]``, ``[phases.train]``: training arguments, without the model's ``max_length``.
CellTrainArgs = Annotated[TrainArgs, _not_the_models_length(_PER_BACKBONE)]
#: ``[phases.sweep]``: candidate values of training arguments.
Sweep = Annotated[_Sweep, _not_the_models_length(_PER_BACKBONE)]
#: ``[teacher.train]``: the teacher phase's training arguments; its tokens per pair are ``teacher.max_length``.
TeacherTrainArgs = Annotated[TrainArgs, _not_the_models_length("the teacher's is teacher.max_length")]


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


def _slug(model: str) -> str:
    """A folder-safe default name for a backbone: the last component of its path, hub id or package."""
    return re.sub(r"[^\w.-]+", "-", re.split(r"[/:]", model.rstrip("/"))[-1]).strip("-.") or "model"
