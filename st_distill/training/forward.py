"""How a training step runs the student's forward: length-chunked batches, reduced precision.

- :func:`fast_forward`: while active, ``model(features)`` scores a padded batch in chunks of
  similar-length rows (far fewer padded tokens on CPU) and, if asked, under bfloat16 autocast with
  the score layer in float32. It wraps the model's ``forward`` (the only way to split a batch that
  the library's losses pass whole) and restores it on exit.
- :func:`trainer_precision`: what :func:`st_distill.training.train_model` uses with the trainer's own
  ``bf16`` argument: the score layer in float32 while the trainer autocasts, and the model's
  ``forward`` as it was after training (accelerate wraps it in autocast for the trainer and leaves
  the wrapper in place).

Example:
    ::

        from st_distill.training import fast_forward

        with fast_forward(model, bf16=False, tokens_per_chunk=1024):
            trainer.train()  # your own CrossEncoderTrainer
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from st_distill.models.precision import autocast, autocast_dtype, float32_head
from st_distill.models.scoring import length_batches

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

__all__ = ["CPU_TRAIN_TOKENS_PER_CHUNK", "fast_forward", "trainer_precision"]

#: On CPU in float32, a training step scores its pairs in length-sorted chunks of at most this many
#: padded tokens (rows x longest row). benchmarks/perf/train_throughput.py measured it on MiniLM-L6,
#: 16 TREC DL pairs a step: 1.14x the pairs per CPU-second in float32, nothing more under bfloat16
#: autocast (bf16 alone 1.74x, bf16 with chunks 1.61-1.63x), so bfloat16 steps are not chunked.
CPU_TRAIN_TOKENS_PER_CHUNK = 1024


@contextlib.contextmanager
def fast_forward(model: CrossEncoder, bf16: bool = True, tokens_per_chunk: int | None = None) -> Iterator[None]:
    """While active, ``model(features)`` runs as a training step should on this hardware.

    - ``bf16``: under autocast to bfloat16 where the device computes it natively
      (:func:`st_distill.models.precision.native_bf16`), the score projection in float32
      (:func:`st_distill.models.precision.float32_head`); float32 elsewhere. Scores come out float32.
    - ``tokens_per_chunk``: a padded batch is scored in chunks of similar-length rows, each cut to its
      longest row and holding at most this many padded tokens, and the scores are put back in the
      batch's order. Rows are right-padded and the attention mask hides padding, so the scores are
      those of the whole batch; a step pads far less (29% of the tokens of a random batch of 16 TREC
      DL pairs are padding). Only ``"scores"`` is returned then, which is what every loss reads.

    The model's own ``forward`` is restored on exit.
    """
    device = model.device
    reduced = bf16 and autocast_dtype(device) == torch.bfloat16
    forward = model.forward

    def chunked(features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask = features.get("attention_mask")
        with autocast(device, enabled=reduced):
            if tokens_per_chunk is None or not isinstance(mask, torch.Tensor) or mask.dim() != 2 or not _right_padded(mask):
                output = forward(features, **kwargs)
                output["scores"] = output["scores"].float()
                return output
            rows, width = mask.shape
            lengths = mask.sum(1)
            order = np.argsort(-lengths.cpu().numpy(), kind="stable")
            scores = []
            for chunk in length_batches(lengths.cpu().numpy(), order, rows, tokens_per_chunk):
                index = torch.as_tensor(chunk, device=mask.device)
                longest = int(lengths[index].max())
                part = {key: _rows(value, index, rows, width, longest) for key, value in features.items()}
                scores.append(forward(part, **kwargs)["scores"].float())
        inverse = torch.empty(rows, dtype=torch.long, device=mask.device)
        inverse[torch.as_tensor(order, device=mask.device)] = torch.arange(rows, device=mask.device)
        return {"scores": torch.cat(scores)[inverse]}

    own = vars(model).get("forward")  # an instance-level forward already there (a wrapper), if any
    model.forward = chunked
    try:
        with float32_head(model) if reduced else contextlib.nullcontext():
            yield
    finally:
        if own is None:
            del model.forward
        else:
            model.forward = own


def _right_padded(mask: Any) -> bool:
    """Whether every row of a 0/1 attention mask is ones then zeros."""
    return bool((mask[:, :-1] >= mask[:, 1:]).all())


def _rows(value: Any, index: Any, rows: int, width: int, longest: int) -> Any:
    """The chunk's part of one feature: rows ``index``, cut to ``longest`` tokens when it is per token."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != rows:
        return value
    value = value[index]
    return value[:, :longest] if value.dim() >= 2 and value.shape[1] == width else value


@contextlib.contextmanager
def trainer_precision(model: CrossEncoder, bf16: bool) -> Iterator[None]:
    """The precision context of a trainer run with ``CrossEncoderTrainingArguments(bf16=bf16)``.

    With ``bf16`` the score projection runs in float32 under the trainer's autocast
    (:func:`st_distill.models.precision.float32_head`), so the numbers are those of
    :func:`fast_forward` with ``bf16=True`` (tested equal). On exit the model's ``forward`` is
    restored: accelerate wraps it in autocast when the trainer prepares the model and leaves the
    wrapper there, so a model scored after training would otherwise still run in bfloat16.

    Args:
        model: The model the trainer trains.
        bf16: Whether the trainer runs with ``bf16=True``.
    """
    before = {name: vars(model)[name] for name in ("forward", "_original_forward") if name in vars(model)}
    try:
        with float32_head(model) if bf16 else contextlib.nullcontext():
            yield
    finally:
        for name in ("forward", "_original_forward"):
            if name in before:
                setattr(model, name, before[name])
            elif name in vars(model):
                delattr(model, name)
