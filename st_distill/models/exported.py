"""Exported re-rankers: a folder written by ``st-distill export``, loaded as a CrossEncoder that scores on CPU.

An exported folder holds the source model's tokenizer and ``config.json``, the exported graph, and
``export.json`` (:class:`ExportManifest`: the format, the graph's inputs, the tokenisation settings
and the activation of the source). :func:`load_exported` builds a library ``CrossEncoder`` whose only
module, :class:`ExportedTransformer`, tokenises exactly as the source's ``Transformer`` did (same
tokenizer, truncation and maximum length) and runs the graph in its ``forward``, so ``predict``,
:func:`st_distill.models.scoring.score_pairs`, the re-ranking evaluation, teachers and the MTEB
wrapper take it like any CrossEncoder. :func:`st_distill.models.load_cross_encoder` returns it for an
exported folder.

Formats (:data:`FORMATS`):

- ``openvino-int8``: an OpenVINO IR (``openvino_model.xml``/``.bin``), int8 by NNCF post-training
  quantisation; run by the OpenVINO runtime (``pip install "st-distill[export]"``).
- ``openvino``: the same IR unquantised; OpenVINO runs it in bfloat16 on CPUs with AMX (its default
  inference precision there), in float32 elsewhere.
- ``onnx-int8``: an ONNX graph (``model.onnx``) with int8 weights, run by ONNX Runtime.
- ``torch-int8``: the source folder in ``source/``, the linear layers of its transformer quantised to
  int8 by ``torch.ao.quantization.quantize_dynamic`` when loaded; needs nothing beyond torch.

Nothing in an exported folder runs as code: the graph files are data to their runtimes, and the
``source/`` folder loads through :func:`st_distill.models.load_cross_encoder`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sentence_transformers.base.modules import Transformer
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.util import import_from_string

from st_distill.models import EXPORT_MANIFEST, load_cross_encoder

__all__ = [
    "FORMATS",
    "MANIFEST",
    "ExportManifest",
    "ExportedGraph",
    "ExportedTransformer",
    "is_exported",
    "load_exported",
    "exported_format",
    "read_manifest",
]

logger = logging.getLogger(__name__)

#: The file that marks a folder as an exported re-ranker.
MANIFEST = EXPORT_MANIFEST

Format = Literal["openvino-int8", "openvino", "onnx-int8", "torch-int8"]
#: Export formats, and the files of their graph in the exported folder.
FORMATS: dict[str, tuple[str, ...]] = {
    "openvino-int8": ("openvino_model.xml", "openvino_model.bin"),
    "openvino": ("openvino_model.xml", "openvino_model.bin"),
    "onnx-int8": ("model.onnx",),
    "torch-int8": ("source",),
}
#: Python package each format's runtime needs (``None``: torch alone).
RUNTIMES: dict[str, str | None] = {"openvino-int8": "openvino", "openvino": "openvino", "onnx-int8": "onnxruntime", "torch-int8": None}


class ExportManifest(BaseModel):
    """``export.json``: what :func:`load_exported` needs to rebuild the scorer, and where it came from.

    Attributes:
        format: One of :data:`FORMATS`.
        inputs: The graph's input names, in order (``input_ids``, ``attention_mask``, ...).
        num_labels: Scores per pair.
        max_seq_length: The source's maximum tokens per pair (truncation length).
        do_lower_case: The source ``Transformer``'s lower-casing.
        processing_kwargs: The source ``Transformer``'s processing settings.
        activation_fn: Dotted path of the source's activation (only ``torch.*`` ones are restored).
        source: The source model as given to the exporter.
        source_fingerprint: Content hashes of the source (weights, tokenizer, config).
        library: Versions of the packages that wrote the folder.
    """

    model_config = ConfigDict(extra="forbid")

    format: Format
    inputs: list[str] = Field(min_length=1)
    num_labels: int = Field(ge=1)
    max_seq_length: int | None = Field(default=None, ge=1)
    do_lower_case: bool = False
    processing_kwargs: dict[str, Any] = Field(default_factory=dict)
    activation_fn: str | None = None
    source: str = ""
    source_fingerprint: dict[str, str] = Field(default_factory=dict)
    library: dict[str, str] = Field(default_factory=dict)


def is_exported(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an exported re-ranker (it holds :data:`MANIFEST`)."""
    return (Path(folder) / MANIFEST).is_file()


def read_manifest(folder: str | os.PathLike) -> ExportManifest:
    """Reads and validates ``folder/export.json``.

    Raises:
        ValueError: On invalid JSON or settings, naming the file and the key.
    """
    path = Path(folder) / MANIFEST
    try:
        return ExportManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {problems}") from None


def _graph_digest(folder: Path, files: tuple[str, ...]) -> str:
    """SHA-256 over the graph's files (a folder's files in sorted order)."""
    digest = hashlib.sha256()
    for name in files:
        path = folder / name
        for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            digest.update(file.relative_to(folder).as_posix().encode())
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _require(package: str, fmt: str) -> Any:
    """Imports a runtime package, or says how to install it."""
    try:
        return __import__(package)
    except ImportError:
        raise ImportError(f"the {fmt} format needs {package}: pip install 'st-distill[export]'") from None


class ExportedGraph(torch.nn.Module):
    """Runs an exported graph on CPU: token tensors in, float32 scores ``[batch, num_labels]`` out.

    Stands where a transformers model stands in a ``Transformer`` module: it has a ``config`` and a
    ``forward`` returning ``{"logits": scores}``. Its one buffer, ``graph_sha256``, is the digest of
    the graph's files, so content fingerprints (:func:`st_distill.teachers.model_fingerprint`) tell
    exports apart; the runtime (a torch-int8 model included) is not a submodule, so the state dict
    holds that buffer alone.

    Args:
        folder: The exported folder.
        manifest: Its :class:`ExportManifest`.
        config: The source's transformers config (``num_labels`` set).
        threads: CPU threads of the runtime; default ``torch.get_num_threads()``.

    Raises:
        ImportError: When the format's runtime is not installed.
    """

    def __init__(self, folder: Path, manifest: ExportManifest, config: Any, threads: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.name_or_path = str(folder)  # as a transformers model has: MTEB and the reports name the model by it
        self.format = manifest.format
        self.inputs = list(manifest.inputs)
        self.threads = threads or torch.get_num_threads()
        digest = bytes.fromhex(_graph_digest(folder, FORMATS[self.format]))
        self.register_buffer("graph_sha256", torch.tensor(list(digest), dtype=torch.uint8))
        self._run = self._runner(folder)

    def _runner(self, folder: Path) -> Any:
        if self.format.startswith("openvino"):
            ov = _require("openvino", self.format)
            core = ov.Core()
            compiled = core.compile_model(
                str(folder / FORMATS[self.format][0]), "CPU",
                {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY"},
            )
            request = compiled.create_infer_request()
            return lambda feeds: request.infer(feeds)[compiled.output(0)]
        if self.format == "onnx-int8":
            ort = _require("onnxruntime", self.format)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
            return lambda feeds: session.run(None, feeds)[0]
        source = load_cross_encoder(folder / "source", device="cpu")
        source.eval()
        # the transformer's linear layers only: the score head (a Dense on a cosine) stays float32
        torch.ao.quantization.quantize_dynamic(source[0], {torch.nn.Linear}, dtype=torch.qint8, inplace=True)

        def run(feeds: dict[str, np.ndarray]) -> torch.Tensor:
            features = {key: torch.from_numpy(value) for key, value in feeds.items()}
            return source({**features, "modality": "text"})["scores"]

        return run

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, **kwargs}
        missing = [name for name in self.inputs if given.get(name) is None]
        if missing:
            raise ValueError(f"the exported graph needs inputs {missing}; the tokenizer gave {sorted(k for k, v in given.items() if v is not None)}")
        feeds = {name: given[name].detach().cpu().numpy().astype(np.int64, copy=False) for name in self.inputs}
        with torch.autocast("cpu", enabled=False), torch.inference_mode():
            scores = torch.as_tensor(self._run(feeds))
        return {"logits": scores.float().reshape(input_ids.shape[0], -1)}


class ExportedTransformer(Transformer):
    """The library's ``Transformer`` module with an :class:`ExportedGraph` in place of the transformers model.

    Preprocessing (tokenizer, truncation, ``max_seq_length``, lower-casing, processing settings) is
    the library's own, loaded from the exported folder's tokenizer files; ``forward`` writes the
    graph's scores under ``scores``. Built by :func:`load_exported`; not saved by ``save``.
    """

    def __init__(self, folder: str | os.PathLike, manifest: ExportManifest, threads: int | None = None) -> None:
        self._manifest, self._threads = manifest, threads
        super().__init__(
            str(folder),
            transformer_task="sequence-classification",
            config_kwargs={"num_labels": manifest.num_labels},
            processing_kwargs=manifest.processing_kwargs or None,
            modality_config={"text": {"method": "forward", "method_output_name": "logits"}},
            module_output_name="scores",
            max_seq_length=manifest.max_seq_length,
            do_lower_case=manifest.do_lower_case,
        )

    def _load_model(self, model_name_or_path: str, transformer_task: Any, config: Any, backend: str, is_peft_model: bool, **model_kwargs: Any) -> ExportedGraph:
        return ExportedGraph(Path(model_name_or_path), self._manifest, config, self._threads)

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("an exported re-ranker is saved by st-distill export, not by save()")


def load_exported(
    folder: str | os.PathLike,
    *,
    max_length: int | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> CrossEncoder:
    """Loads an exported folder as a CrossEncoder that runs its graph on CPU.

    Args:
        folder: A folder written by :func:`st_distill.export.export_model`.
        max_length: Maximum tokens per pair; default the source's (as exported).
        device: ``None`` or ``"cpu"``: exported graphs run on CPU.
        threads: CPU threads of the runtime; default ``torch.get_num_threads()``.

    Returns:
        A ``CrossEncoder`` (one :class:`ExportedTransformer` module) with the source's activation.

    Raises:
        ValueError: On an invalid ``export.json``, a missing graph file, or a device other than CPU.
        ImportError: When the format's runtime is not installed.
    """
    folder = Path(folder)
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"{folder}: an exported re-ranker runs on CPU, not on {device!r}")
    manifest = read_manifest(folder)
    missing = [name for name in FORMATS[manifest.format] if not (folder / name).exists()]
    if missing:
        raise ValueError(f"{folder / MANIFEST}: format {manifest.format!r} needs {missing} in the folder")
    parity = folder / "parity.json"
    if parity.is_file() and json.loads(parity.read_text(encoding="utf-8")).get("passed") is False:
        logger.warning("%s: this export failed its parity check (see %s)", folder, parity)
    activation = manifest.activation_fn
    module = ExportedTransformer(folder, manifest, threads)
    model = CrossEncoder(
        modules=[module],
        device="cpu",
        activation_fn=import_from_string(activation)() if activation and activation.startswith("torch.") else None,
    )
    if max_length is not None:
        model.max_seq_length = max_length
    model.eval()
    return model


def exported_format(model: Any) -> str | None:
    """The export format of a loaded model, or ``None`` for a model that is not exported."""
    first = model[0] if isinstance(model, torch.nn.Sequential) and len(model) else None
    return first._manifest.format if isinstance(first, ExportedTransformer) else None

