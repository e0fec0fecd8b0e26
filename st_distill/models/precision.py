"""Reduced precision where the hardware computes it natively: bfloat16 autocast for training and scoring.

On CPUs with AMX or AVX512-BF16 (Intel Sapphire Rapids and later, Cooper Lake, AMD Zen 4 and later)
and on CUDA GPUs with bfloat16, a transformer forward under ``torch.autocast(dtype=torch.bfloat16)``
runs its matrix products in bfloat16 with float32 accumulation; elsewhere bfloat16 is emulated and
slower than float32, so nothing changes there. Scores and losses stay float32: the callers cast the
model's outputs back (``.float()``) before any loss or activation.

Example:
    ::

        from st_distill.models.precision import autocast, native_bf16

        if native_bf16(model.device):
            print("forward passes run in bfloat16")
        with autocast(model.device):
            logits = model(features)["scores"].float()
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

__all__ = ["native_bf16", "autocast_dtype", "autocast", "score_head", "float32_head"]


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 matrix products natively (so autocast to bfloat16 pays).

    CPU: AMX tiles or AVX512-BF16, as torch detects them (``torch.cpu._is_amx_tile_supported``,
    ``torch.cpu._is_avx512_bf16_supported``; ``False`` on a torch without these probes). CUDA:
    ``torch.cuda.is_bf16_supported()``. Other devices: ``False``. Each device is probed once per
    process; the answer is cached.
    """
    return _probe_bf16(torch.device(device))


@functools.cache
def _probe_bf16(device: torch.device) -> bool:
    """The probe behind :func:`native_bf16`, cached per device."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
        return any(bool(probe()) for probe in probes if callable(probe))
    return False


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The dtype :func:`autocast` runs ``device``'s forward passes in: bfloat16 where native, float16 on
    CUDA GPUs without bfloat16, ``None`` (float32) elsewhere."""
    device = torch.device(device)
    if native_bf16(device):
        return torch.bfloat16
    if device.type == "cuda":
        return torch.float16
    return None


def autocast(device: torch.device | str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to :func:`autocast_dtype` of ``device``; a no-op when disabled or float32."""
    dtype = autocast_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def score_head(model: CrossEncoder) -> str | None:
    """The module path of ``model``'s score projection: its last ``nn.Linear`` with ``num_labels`` outputs.

    That is ``0.model.classifier`` for a sequence-classification backbone (BERT, ModernBERT, ...) and
    ``2.linear`` for a pooling + ``Dense`` head; ``None`` when there is no such layer.
    """
    heads = [name for name, module in model.named_modules() if type(module) is torch.nn.Linear and module.out_features == model.num_labels]
    return heads[-1] if heads else None


@contextlib.contextmanager
def float32_head(model: CrossEncoder) -> Iterator[None]:
    """Runs ``model``'s score projection (:func:`score_head`) in float32 under autocast, then restores it.

    A bfloat16 logit keeps 8 significant bits: logits near 4 are rounded to multiples of 1/32, which
    ties candidates a re-ranking should order. With the head in float32 only the features it reads
    are bfloat16-rounded. Uses the library's ``CrossEncoder.set_keep_in_fp32_modules``; the model's
    own selection is restored on exit, so nothing of this is saved with the model.
    """
    head = score_head(model)
    previous = list(getattr(model, "keep_in_fp32_modules", None) or [])
    if head is None or head in previous or not hasattr(model, "set_keep_in_fp32_modules"):
        yield
        return
    model.set_keep_in_fp32_modules([*previous, head])
    try:
        yield
    finally:
        model.set_keep_in_fp32_modules(previous)
