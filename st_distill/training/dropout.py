"""Dropout for training on CPUs: the distribution of torch's, with masks drawn from 64-bit random words.

On CPU, ``torch.nn.functional.dropout`` draws its mask element by element with ``bernoulli_``, and
the softmax-attention path that dropout forces (the fused SDPA kernels take no dropout on CPU)
does the same for every attention probability: in a cross-encoder's training step on CPU,
drawing masks is one of the largest costs. :func:`dropout` draws the same inverted-dropout mask
from the same generator (``torch``'s, so ``torch.manual_seed`` and the GradCache replay still
reproduce it): each element keeps an independent 16-bit lane of a 64-bit random word and is kept
when the lane is below ``round((1 - p) * 2**16)``, so the keep probability is ``1 - p`` to within
``2**-17`` and kept values are scaled by its exact inverse (the expectation is the input).

:func:`cpu_dropout` puts it in a model for the time of a training run: its ``nn.Dropout`` layers
and, for a Hugging Face model using SDPA attention, the dropout of the attention probabilities
(through an attention function registered with ``transformers``' ``AttentionInterface``; without
dropout, e.g. in ``eval()`` mode, that function is SDPA itself). Everything is restored on exit.

Example:
    ::

        from st_distill.training import cpu_dropout

        with cpu_dropout(model):
            trainer.train()  # your own CrossEncoderTrainer on CPU
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

__all__ = ["ATTENTION", "Dropout", "cpu_dropout", "dropout", "dropout_attention"]

#: The name :func:`dropout_attention` is registered under (attention and mask interfaces).
ATTENTION = "st_distill_dropout"

_LANES = 1 << 16


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout: each element zeroed with probability ``p``, the others scaled by ``1 / (1 - p)``.

    ``torch.nn.functional.dropout``'s distribution (keep probability ``1 - p`` to within ``2**-17``,
    expectation the input), drawn from torch's generator for ``x``'s device.

    Args:
        x: Any tensor.
        p: The probability of zeroing an element, in ``[0, 1]``.
        training: ``False`` returns ``x`` unchanged, as ``F.dropout`` does.

    Raises:
        ValueError: When ``p`` is outside ``[0, 1]``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    keep = round((1.0 - p) * _LANES)
    if keep == 0:
        return x * 0.0
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    lanes = words.view(torch.int16)[:n].view(x.shape)  # uniform on [-2**15, 2**15)
    return torch.where(lanes < keep - _LANES // 2, x * (_LANES / keep), 0.0)


class Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its mask with :func:`dropout`."""

    def forward(self, input: Tensor) -> Tensor:
        return dropout(input, self.p, self.training)


def dropout_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    """Attention with :func:`dropout` on its probabilities; SDPA itself when there is no dropout.

    A ``transformers`` attention function (``AttentionInterface``) taking SDPA's masks. With
    ``dropout > 0`` (training) it computes ``softmax(q k^T * scaling + mask)``, drops, then
    multiplies by ``v``, as the library's eager attention does; causal attention and everything
    else go to ``sdpa_attention_forward``.
    """
    if not dropout or is_causal or getattr(module, "is_causal", False):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs)
    if key.shape[1] != query.shape[1]:  # grouped-query attention
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # SDPA's convention: True attends
            weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
        else:
            weights = weights + attention_mask
    weights = torch.softmax(weights, dim=-1, dtype=torch.float32)
    weights = _drop(weights, dropout).to(value.dtype)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


_drop = dropout  # the argument named ``dropout`` hides the function inside dropout_attention

AttentionInterface.register(ATTENTION, dropout_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


@contextlib.contextmanager
def cpu_dropout(model: nn.Module) -> Iterator[None]:
    """While active, ``model``'s dropout draws its masks with :func:`dropout`.

    Its ``nn.Dropout`` layers become :class:`Dropout` (same ``p``); a Hugging Face model inside it
    that uses ``"sdpa"`` attention switches to :func:`dropout_attention`. Both are restored on exit.
    A model whose attention cannot be switched keeps its own attention dropout.

    Args:
        model: Any module, e.g. a ``CrossEncoder``.
    """
    layers = [m for m in model.modules() if type(m) is nn.Dropout]
    switched = []
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.config._attn_implementation == "sdpa":
            with contextlib.suppress(ValueError, NotImplementedError):
                module.set_attn_implementation(ATTENTION)
            if module.config._attn_implementation == ATTENTION:
                switched.append(module)
    for layer in layers:
        layer.__class__ = Dropout
    try:
        yield
    finally:
        for layer in layers:
            layer.__class__ = nn.Dropout
        for module in switched:
            module.set_attn_implementation("sdpa")

