"""Conversion of a CrossEncoder to each export format's graph (:data:`st_distill.models.exported.FORMATS`).

Every converter takes the source model, the exported folder and the calibration batches (token
features of real pairs, as the model's own preprocessing makes them) and writes the format's files:

- :func:`to_openvino`: ``openvino.convert_model`` of the whole scoring path (transformer and head,
  one graph from token ids to scores); with ``quantize=True``, NNCF post-training int8
  quantisation (``nncf.quantize``, transformer preset) calibrated on the batches.
- :func:`to_onnx_int8`: ``torch.onnx.export`` of the same path, then ONNX Runtime's dynamic int8
  quantisation of its weights (``onnxruntime.quantization.quantize_dynamic``).
- :func:`to_torch_int8`: saves the source model in ``source/``; loading quantises its linear layers
  (``torch.ao.quantization.quantize_dynamic``), so nothing else is needed.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from st_distill.models.exported import FORMATS

logger = logging.getLogger(__name__)

__all__ = ["GRAPH_INPUTS", "ScoreGraph", "calibration_batches", "convert", "to_onnx_int8", "to_openvino", "to_torch_int8"]

#: Token features a graph may take, in this order.
GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

Batch = dict[str, np.ndarray]


def _cosine_similarity(x1: torch.Tensor, x2: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """``torch.nn.functional.cosine_similarity`` in ops every converter knows (ATen's formula:
    each vector divided by its norm clamped at ``eps``, then the dot product)."""
    x1 = x1 / torch.linalg.vector_norm(x1, dim=dim, keepdim=True).clamp_min(eps)
    x2 = x2 / torch.linalg.vector_norm(x2, dim=dim, keepdim=True).clamp_min(eps)
    return (x1 * x2).sum(dim)


@contextlib.contextmanager
def _traceable() -> Iterator[None]:
    """Swaps in :func:`_cosine_similarity` while a graph is traced (OpenVINO has no ``aten::cosine_similarity``)."""
    original = torch.nn.functional.cosine_similarity
    torch.nn.functional.cosine_similarity = _cosine_similarity
    try:
        yield
    finally:
        torch.nn.functional.cosine_similarity = original


class ScoreGraph(torch.nn.Module):
    """A CrossEncoder's scoring path as a function of token tensors, for tracing: ``(ids, mask[, types]) -> scores``.

    Args:
        model: The CrossEncoder (its modules run in order, as in ``predict``).
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        features: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "modality": "text"}
        if token_type_ids is not None:
            features["token_type_ids"] = token_type_ids
        return self.model(features)["scores"].float()


def calibration_batches(model: Any, pairs: Sequence[tuple[str, str]], batch_size: int = 8) -> tuple[list[str], list[Batch]]:
    """Tokenises pairs with the model's own preprocessing into int64 batches.

    Args:
        model: The source CrossEncoder.
        pairs: ``(query, document)`` pairs.
        batch_size: Pairs per batch.

    Returns:
        ``(inputs, batches)``: the graph's input names and one ``{name: array}`` per batch.

    Raises:
        ValueError: When there are no pairs, or the tokenizer gives no ``input_ids``.
    """
    if not pairs:
        raise ValueError("no calibration pairs: give a run with candidates that have texts")
    batches: list[Batch] = []
    for start in range(0, len(pairs), batch_size):
        features = model.preprocess(list(pairs[start : start + batch_size]))
        batches.append({name: features[name].numpy().astype(np.int64) for name in GRAPH_INPUTS if name in features})
    inputs = list(batches[0])
    if "input_ids" not in inputs:
        raise ValueError(f"the model's preprocessing gives {inputs}, no input_ids: only text CrossEncoders export")
    return inputs, batches


def _example(batch: Batch) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(value) for value in batch.values())


def to_openvino(model: Any, folder: Path, inputs: list[str], batches: list[Batch], quantize: bool) -> None:
    """Writes ``openvino_model.xml``/``.bin``: the scoring path, int8 by NNCF when ``quantize``."""
    import nncf  # optional dependencies of the export extra: imported only when this format is asked for
    import openvino as ov

    graph = ScoreGraph(model).eval()
    with _traceable(), torch.no_grad():
        converted = ov.convert_model(
            graph, example_input=_example(batches[0]),
            input=[(name, ov.PartialShape([-1, -1]), ov.Type.i64) for name in inputs],
        )
    converted.outputs[0].get_tensor().set_names({"scores"})
    if quantize:
        converted = nncf.quantize(
            converted, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches)
        )
    ov.save_model(converted, str(folder / FORMATS["openvino"][0]), compress_to_fp16=False)


def to_onnx_int8(model: Any, folder: Path, inputs: list[str], batches: list[Batch]) -> None:
    """Writes ``model.onnx``: the scoring path exported to ONNX, its weights int8 by ONNX Runtime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # optional (export extra)

    graph = ScoreGraph(model).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    with tempfile.TemporaryDirectory() as tmp, _traceable(), torch.no_grad():
        fp32 = Path(tmp) / "model.fp32.onnx"
        torch.onnx.export(
            graph, _example(batches[0]), str(fp32), input_names=inputs, output_names=["scores"],
            dynamic_axes={**axes, "scores": {0: "batch"}}, opset_version=17, dynamo=False,
        )
        quantize_dynamic(str(fp32), str(folder / "model.onnx"), weight_type=QuantType.QInt8)


def to_torch_int8(model: Any, folder: Path) -> None:
    """Saves the source model in ``source/``; :func:`~st_distill.models.exported.load_exported` quantises it."""
    model.save(str(folder / "source"))


def convert(fmt: str, model: Any, folder: Path, inputs: list[str], batches: list[Batch]) -> None:
    """Writes the graph of format ``fmt`` into ``folder`` (see the module docstring)."""
    logger.info("converting to %s", fmt)
    if fmt in ("openvino", "openvino-int8"):
        to_openvino(model, folder, inputs, batches, quantize=fmt == "openvino-int8")
    elif fmt == "onnx-int8":
        to_onnx_int8(model, folder, inputs, batches)
    elif fmt == "torch-int8":
        to_torch_int8(model, folder)
    else:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
