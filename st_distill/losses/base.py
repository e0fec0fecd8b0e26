"""Model plumbing shared by every st-distill loss: (query, docs) lists -> padded score matrix + mask.

The library's listwise losses each repeat the same block (flatten the lists, score the pairs in
mini-batches, scatter the logits into a padded matrix); here it is written once, together with
the validation of inputs and teacher labels, so that each loss class is only its math.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.util import batch_to_device
from torch import Tensor, nn

__all__ = ["check_model", "as_lists", "score_lists", "pad_labels", "check_finite_labels"]


def check_model(loss: nn.Module, model: CrossEncoder) -> None:
    """Raise ``ValueError`` unless ``model`` is a CrossEncoder with exactly one output label."""
    name = type(loss).__name__
    if not isinstance(model, CrossEncoder):
        raise ValueError(f"{name} expects a CrossEncoder, but got a model of type {type(model).__name__}.")
    if model.num_labels != 1:
        raise ValueError(
            f"{name} expects a model with 1 output label (one relevance logit per pair), "
            f"but got a model with {model.num_labels} output labels."
        )


def as_lists(inputs: Sequence[Sequence], loss_name: str) -> tuple[list[str], list[list[str]]]:
    """Normalise the collator's columns to ``(queries, docs_lists)``.

    Accepts the listwise layout ``[queries, [[doc, ...], ...]]`` and the n-tuple layout
    ``[queries, positives, negatives_1, ..., negatives_n]``; the latter becomes one list per query,
    ``[positive, negative_1, ..., negative_n]``, positive first.

    Raises:
        ValueError: On fewer than two columns, columns of different lengths or an empty doc list.
    """
    if len(inputs) < 2:
        raise ValueError(f"{loss_name} expects a query column and document column(s), but got {len(inputs)} column(s).")
    queries = list(inputs[0])
    if len(inputs) == 2 and len(inputs[1]) and not isinstance(inputs[1][0], str):
        docs_lists = [list(docs) for docs in inputs[1]]
    else:
        if any(len(column) != len(queries) for column in inputs[1:]):
            raise ValueError(
                f"{loss_name}: every document column must have one entry per query "
                f"({len(queries)}), got lengths {[len(column) for column in inputs[1:]]}."
            )
        docs_lists = [list(row) for row in zip(*inputs[1:])]
    if len(docs_lists) != len(queries):
        raise ValueError(f"{loss_name}: got {len(queries)} queries but {len(docs_lists)} document lists.")
    empty = [i for i, docs in enumerate(docs_lists) if not docs]
    if empty:
        raise ValueError(f"{loss_name}: the document list of batch row(s) {empty} is empty; every query needs >= 1 document.")
    return queries, docs_lists


def score_lists(
    model: CrossEncoder,
    queries: Sequence[str],
    docs_lists: Sequence[Sequence[str]],
    mini_batch_size: int | None = None,
    prompt: str | None = None,
    task: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Score every (query, doc) pair of the lists and pad the logits into a matrix.

    Args:
        model: The CrossEncoder being trained (one output label).
        queries: ``B`` queries.
        docs_lists: ``B`` non-empty lists of documents.
        mini_batch_size: Pairs per forward pass; ``None`` or ``<= 0`` scores all pairs at once.
        prompt: Passed to ``model.preprocess``.
        task: Passed to ``model.preprocess``.

    Returns:
        ``(scores, mask)``: float32 ``[B, L]`` logits (row ``b`` holds those of ``docs_lists[b]`` in
        order, then 0.0 padding) and the bool ``[B, L]`` mask of real documents, ``L = max`` length.
    """
    lengths = [len(docs) for docs in docs_lists]
    pairs = [(query, doc) for query, docs in zip(queries, docs_lists, strict=True) for doc in docs]
    step = len(pairs) if mini_batch_size is None or mini_batch_size <= 0 else mini_batch_size
    chunks = []
    for start in range(0, len(pairs), step):
        tokens = model.preprocess(pairs[start : start + step], prompt=prompt, task=task)
        tokens = batch_to_device(tokens, model.device)
        chunks.append(model(tokens)["scores"].view(-1))
    logits = (chunks[0] if len(chunks) == 1 else torch.cat(chunks)).float()
    width = max(lengths)
    if min(lengths) == width:
        scores = logits.view(len(lengths), width)
        mask = torch.ones_like(scores, dtype=torch.bool)
    else:
        scores = nn.utils.rnn.pad_sequence(list(logits.split(lengths)), batch_first=True, padding_value=0.0)
        mask = torch.arange(width, device=scores.device).unsqueeze(0) < torch.tensor(lengths, device=scores.device).unsqueeze(1)
    return scores, mask


def pad_labels(labels: Tensor | Sequence[Tensor] | None, lengths: list[int], loss_name: str, device: torch.device) -> Tensor:
    """Validate per-query teacher scores and pad them to a float32 ``[B, max(lengths)]`` matrix.

    Raises:
        ValueError: When labels are missing or not one list per query, when a list's length differs
            from its number of documents, or when a score is NaN or infinite.
    """
    if labels is None:
        raise ValueError(f"{loss_name} needs a teacher-score column ('scores', one float per document), but the batch has none.")
    if isinstance(labels, Tensor):
        if labels.dim() != 2:
            raise ValueError(
                f"{loss_name} expects one list of teacher scores per query (list[Tensor] or a [B, L] Tensor), "
                f"but got a Tensor of shape {tuple(labels.shape)}."
            )
        labels = list(labels)
    label_lengths = [int(row.numel()) for row in labels]
    if label_lengths != lengths:
        raise ValueError(
            f"{loss_name}: the number of documents per query {lengths} does not match the number of "
            f"teacher scores per query {label_lengths}."
        )
    rows = [row.reshape(-1).to(device=device, dtype=torch.float32) for row in labels]
    matrix = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=0.0)
    check_finite_labels(matrix, loss_name)
    return matrix


def check_finite_labels(labels: Tensor, loss_name: str) -> None:
    """Raise ``ValueError`` naming the batch rows whose teacher scores hold a NaN or an infinity.

    Args:
        labels: ``[B]`` (one score per row) or ``[B, ...]`` (several per row) teacher scores.
        loss_name: The loss named in the message.
    """
    if not torch.isfinite(labels).all():
        bad = sorted({int(i) for i in (~torch.isfinite(labels.reshape(len(labels), -1))).nonzero()[:, 0]})
        raise ValueError(f"{loss_name}: teacher scores of batch row(s) {bad} contain NaN or infinite values.")

