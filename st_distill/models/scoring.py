"""Fast scoring of (query, document) pairs with a CrossEncoder.

:func:`score_pairs` gives the same scores as :meth:`CrossEncoder.predict` (within float
rounding), faster on the inputs of re-ranking and teacher scoring, where the same pair
often appears more than once and texts vary a lot in length:

- each unique pair is scored once and its score copied to every repeat;
- all unique pairs are tokenised in one call of the model's own preprocessing (same
  tokenizer, truncation and ``max_length`` as ``predict``), without padding;
- pairs are ordered by their exact token count, so each batch pads to almost nothing;
- on CPU a batch also stops at :data:`CPU_TOKENS_PER_BATCH` padded tokens: smaller matrices stay
  in cache, and measured on MiniLM-L6 over TREC DL pairs, batches of ~2,000 tokens run 20-25%
  faster per pair than 64 pairs of ~100 tokens (GPUs prefer the largest batch, so no cap there);
- the forward runs under ``torch.inference_mode`` and under autocast to bfloat16 where the device
  computes it natively (:func:`st_distill.models.precision.native_bf16`: CPUs with AMX or AVX512-BF16,
  CUDA GPUs with bfloat16; float16 on older GPUs), with the score projection kept in float32
  (:func:`st_distill.models.precision.float32_head`); scores are float32. Elsewhere the forward is float32.

Teachers (:mod:`st_distill.teachers`) and the re-ranking evaluation both score through it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from st_distill.logs import progress_enabled
from st_distill.models.precision import autocast as autocast_context
from st_distill.models.precision import autocast_dtype, float32_head

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

__all__ = ["CPU_TOKENS_PER_BATCH", "length_batches", "score_pairs", "unique_pairs"]

logger = logging.getLogger(__name__)

Pair = tuple[str, str]

CPU_TOKENS_PER_BATCH = 2048
#: Jobs of at least this many pairs log their size and estimated duration by default.
ANNOUNCE_PAIRS = 2000
#: The estimate is logged once this much time has passed (and at least three batches ran).
ESTIMATE_AFTER_SECONDS = 10.0
#: A job estimated longer than this gets a hint on how to shorten it.
LONG_SCORING_SECONDS = 300.0


def unique_pairs(pairs: Sequence[Pair]) -> tuple[list[Pair], np.ndarray]:
    """Deduplicates pairs, keeping first-seen order.

    Args:
        pairs: ``(query, document)`` text pairs, possibly repeated.

    Returns:
        ``(unique, inverse)``: the distinct pairs, and for each input pair the index of its
        copy in ``unique`` (so ``unique[inverse[i]] == pairs[i]``).
    """
    index: dict[Pair, int] = {}
    inverse = np.empty(len(pairs), dtype=np.int64)
    for i, (query, document) in enumerate(pairs):
        inverse[i] = index.setdefault((query, document), len(index))
    return list(index), inverse


def _pretokenise(model: CrossEncoder, pairs: list[Pair]) -> tuple[dict[str, list[list[int]]], dict[str, Any]] | None:
    """Tokenises every pair in one call of the model's preprocessing, without padding.

    Returns ``(per-pair token lists, per-call settings)``: the settings (e.g. ``logits_to_keep=1``
    of a causal-LM reranker, so that only the last position's logits are computed) go with every
    batch. Returns ``None`` when the model's input module does not produce plain token-id lists
    (a non-text processor), in which case the caller preprocesses batch by batch.
    """
    try:
        features = model.preprocess(pairs, processing_kwargs={"common": {"return_tensors": None}, "text": {"padding": False}})
    except (TypeError, ValueError) as exc:
        logger.debug("pre-tokenising all pairs failed (%s); preprocessing batch by batch", exc)
        return None
    ids = features.get("input_ids") if hasattr(features, "get") else None
    if not isinstance(ids, list) or (ids and not isinstance(ids[0], list)):
        return None
    lists = {key: value for key, value in features.items() if isinstance(value, list) and len(value) == len(pairs)}
    settings = {key: value for key, value in features.items() if isinstance(value, (int, bool)) and key not in lists}
    return lists, settings


def _pad(tokenizer: Any, encoded: dict[str, list[list[int]]], rows: np.ndarray) -> dict[str, torch.Tensor]:
    """Pads the selected rows of pre-tokenised features into a batch of tensors, as the tokenizer pads."""
    batch = {key: [values[i] for i in rows] for key, values in encoded.items()}
    return dict(tokenizer.pad(batch, padding=True, return_tensors="pt"))


def length_batches(lengths: np.ndarray, order: np.ndarray, batch_size: int, max_tokens: int | None) -> list[np.ndarray]:
    """Cuts length-sorted (descending) rows into batches of at most ``batch_size`` rows and ``max_tokens`` padded tokens.

    A batch pads to its first (longest) row, so its padded size is ``rows * lengths[first]``; a
    row longer than ``max_tokens`` still gets a batch of its own.
    """
    if max_tokens is None:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    batches, start = [], 0
    while start < len(order):
        rows = max(1, min(batch_size, max_tokens // max(1, int(lengths[order[start]]))))
        batches.append(order[start : start + rows])
        start += rows
    return batches


class _Estimate:
    """Logs a scoring job's size, then its estimated duration once the first batches are timed.

    Work is counted in padded tokens (rows x longest row per batch); batches run longest first,
    so the rate is the padded tokens done per second, not pairs per second.
    """

    def __init__(self, model: CrossEncoder, n_pairs: int, n_unique: int, work: list[int]) -> None:
        self.work, self.total, self.done, self.batch = work, sum(work), 0, 0
        self.reported = False
        logger.info("scoring %d pairs (%d unique) at max length %s in %d batches", n_pairs, n_unique,
                    getattr(model, "max_length", None), len(work))
        self.start = time.perf_counter()

    def update(self) -> None:
        self.done += self.work[self.batch]
        self.batch += 1
        elapsed = time.perf_counter() - self.start
        if self.reported or self.batch >= len(self.work) or (elapsed < ESTIMATE_AFTER_SECONDS and self.batch < 3):
            return
        self.reported = True
        seconds = elapsed * self.total / self.done
        logger.info("estimated %s for all pairs (%.0f%% of the padded tokens done in %.0f s)",
                    _duration(seconds), 100 * self.done / self.total, elapsed)
        if seconds > LONG_SCORING_SECONDS:
            logger.warning("scoring will take about %s: a lower maximum length (--max-length, e.g. 256) or fewer "
                           "documents per query (--depth, e.g. 20) shortens it", _duration(seconds))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def score_pairs(
    model: CrossEncoder,
    pairs: Sequence[Pair],
    batch_size: int = 64,
    activation: bool = True,
    show_progress_bar: bool | None = None,
    autocast: bool = True,
    tokens_per_batch: int | None = None,
    announce: bool | None = None,
) -> np.ndarray:
    """Scores ``(query, document)`` pairs with a CrossEncoder, each unique pair once, in token-length-sorted batches.

    The scores equal ``model.predict(pairs)`` (same activation) up to float rounding with
    ``autocast=False`` or on a device without native bfloat16; with autocast (the default) the
    forward runs in bfloat16 where the CPU or GPU computes it natively (float16 on GPUs without
    bfloat16), the score projection in float32: on all-MiniLM-L6-v2 over the TREC DL 2019 pairs
    the logits then differ from float32 by at most a few hundredths (benchmarks/RESULTS.md).

    Args:
        model: The CrossEncoder. Its device, ``max_length`` and activation are used as they are.
        pairs: ``(query, document)`` text pairs, in any order, repeats allowed.
        batch_size: Most pairs per forward pass.
        activation: Apply the model's activation (``model.activation_fn``, e.g. a sigmoid for one
            label) as ``predict`` does; ``False`` returns the raw logits.
        show_progress_bar: Show a progress bar over the pairs. ``None`` shows it on a terminal when
            logging is at INFO or DEBUG level (:func:`st_distill.logs.progress_enabled`).
        autocast: Run the forward under autocast to bfloat16 where the device computes it natively
            (:func:`st_distill.models.precision.autocast`); ``False`` (or a device without it): float32.
        tokens_per_batch: Cap on a batch's padded tokens (rows x longest row). ``None``:
            :data:`CPU_TOKENS_PER_BATCH` on CPU, no cap on other devices.
        announce: Log the job's size (pairs, max length) before it starts and, after the first
            batches, its estimated duration, with a hint when it is long. ``None``: for
            :data:`ANNOUNCE_PAIRS` pairs or more, when logging at INFO.

    Returns:
        float32 scores in the order of ``pairs``: shape ``(len(pairs),)`` for a model with one
        label, ``(len(pairs), num_labels)`` otherwise.

    Raises:
        ValueError: If ``batch_size`` is not positive.

    Example:
        ::

            from sentence_transformers.cross_encoder import CrossEncoder
            from st_distill.models.scoring import score_pairs

            model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")
            scores = score_pairs(model, [("what is a cat", "A cat is a small feline."), ("what is a cat", "Dogs bark.")])
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if show_progress_bar is None:
        show_progress_bar = progress_enabled(logger)
    if announce is None:
        announce = len(pairs) >= ANNOUNCE_PAIRS and logger.isEnabledFor(logging.INFO)
    num_labels = model.num_labels
    if not pairs:
        return np.zeros((0,) if num_labels == 1 else (0, num_labels), dtype=np.float32)

    unique, inverse = unique_pairs(pairs)
    pretokenised = _pretokenise(model, unique)
    encoded, settings = pretokenised if pretokenised is not None else (None, {})
    if encoded is not None:
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(unique))
    else:  # no token lists to count: characters are the proxy, as in predict
        lengths = np.fromiter((len(q) + len(d) for q, d in unique), dtype=np.int64, count=len(unique))
    order = np.argsort(-lengths, kind="stable")  # longest first: the largest batch fails fast on memory

    tokenizer = getattr(model, "tokenizer", None)
    device = model.device
    if tokens_per_batch is None and device.type == "cpu":
        tokens_per_batch = CPU_TOKENS_PER_BATCH
    batches = length_batches(lengths, order, batch_size, tokens_per_batch if encoded is not None else None)
    eta = _Estimate(model, len(pairs), len(unique), [len(rows) * int(lengths[rows[0]]) for rows in batches]) if announce else None
    scores = np.empty((len(unique), num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    reduced = autocast and autocast_dtype(device) is not None
    try:
        with torch.inference_mode(), float32_head(model) if reduced else contextlib.nullcontext(), tqdm(
            total=len(unique), unit="pair", desc="Scoring pairs", disable=not show_progress_bar
        ) as progress:
            for rows in batches:
                if encoded is not None:
                    features: dict[str, Any] = {**_pad(tokenizer, encoded, rows), **settings, "modality": "text"}
                else:
                    features = model.preprocess([unique[i] for i in rows])
                features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
                with autocast_context(device, autocast):
                    logits = model(features)["scores"]
                logits = logits.float()
                if activation and model.activation_fn is not None:
                    logits = model.activation_fn(logits)
                scores[rows] = logits.reshape(len(rows), num_labels).cpu().numpy()
                progress.update(len(rows))
                if eta is not None:
                    eta.update()
    finally:
        model.train(was_training)
    scores = scores[inverse]
    return scores[:, 0] if num_labels == 1 else scores
