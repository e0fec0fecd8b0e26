"""Model plumbing shared by every st-distill loss: (query, docs) lists -> padded score matrix + mask.

The library's listwise losses each repeat the same block (flatten the lists, score the pairs in
mini-batches, scatter the logits into a padded matrix); here it is written once, together with
the validation of inputs and teacher labels, so that each loss class is only its math.

Gradient caching is written here once too: :class:`ListScoringMixin` gives every loss a
``cached`` option that runs the library's GradCache engine
(:class:`~sentence_transformers.base.losses.gradcache.CachedLossMixin`) with the pair logits in
the role of the embeddings, so that only one mini-batch of activations is alive at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from sentence_transformers.base.losses.gradcache import CachedLossMixin, RandContext
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.util import batch_to_device
from torch import Tensor, nn

__all__ = [
    "check_model",
    "as_lists",
    "score_lists",
    "pad_logits",
    "pad_labels",
    "check_finite_labels",
    "check_finite_loss",
    "ListScoringMixin",
]

#: The loss math on the padded float32 ``[B, L]`` logits and their mask: a scalar, or named parts.
Compute = Callable[[Tensor, Tensor], "Tensor | dict[str, Tensor]"]


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
    return pad_logits(chunks[0] if len(chunks) == 1 else torch.cat(chunks), lengths)


def pad_logits(logits: Tensor, lengths: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Cast the flat pair logits to float32 and pad them into ``(scores, mask)``, see :func:`score_lists`.

    The cast comes first, so the loss math runs in float32 even when the model ran in bf16/fp16.
    """
    logits = logits.float()
    width = max(lengths)
    if min(lengths) == width:
        scores = logits.view(len(lengths), width)
        mask = torch.ones_like(scores, dtype=torch.bool)
    else:
        scores = nn.utils.rnn.pad_sequence(list(logits.split(list(lengths))), batch_first=True, padding_value=0.0)
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


def check_finite_loss(value: Tensor | dict[str, Tensor], loss: nn.Module) -> None:
    """Raise ``FloatingPointError`` when a loss value (or one of its named parts) is NaN or infinite.

    The trainer would log such a step as the mean of the steps before it (``0.0`` on the first) and
    train on with NaN gradients; the message names the loss and its arguments instead.
    """
    parts = value if isinstance(value, dict) else {"loss": value}
    bad = {name: float(part.detach()) for name, part in parts.items() if not bool(torch.isfinite(part.detach()).all())}
    if bad:
        config = getattr(loss, "get_config_dict", dict)()
        raise FloatingPointError(
            f"{type(loss).__name__}: the loss is not finite ({', '.join(f'{k} = {v}' for k, v in bad.items())}) "
            f"with arguments {config}; check them (e.g. a temperature near 0), the learning rate and the scores"
        )


class ListScoringMixin:
    """Scoring for the st-distill losses: ``(query, [docs])`` lists -> padded logits -> the loss math.

    A loss calls :meth:`init_scoring` in its ``__init__`` and :meth:`score_and_compute` in its
    ``forward``. With ``cached=False`` the pairs are scored in chunks of ``mini_batch_size`` whose
    activations all stay alive until the backward pass (:func:`score_lists`). With ``cached=True``
    the library's GradCache engine runs instead (see :class:`_ListGradCache`): peak memory is that
    of one mini-batch whatever the number of documents, for about one extra forward pass, and the
    loss and gradients are those of ``cached=False`` at the same ``mini_batch_size``, dropout
    included (tested). A batch of at most ``mini_batch_size`` pairs is scored without the cache,
    which would only add the extra pass.
    """

    model: CrossEncoder
    mini_batch_size: int | None
    cached: bool

    def init_scoring(self, model: CrossEncoder, mini_batch_size: int | None, cached: bool) -> None:
        """Check the model and the caching options and store them.

        Raises:
            ValueError: If ``model`` is not a one-label CrossEncoder, or ``cached`` is set without a
                positive ``mini_batch_size``.
        """
        check_model(self, model)
        if cached and (mini_batch_size is None or mini_batch_size <= 0):
            raise ValueError(
                f"{type(self).__name__}: cached=True needs a positive mini_batch_size (pairs per forward pass), "
                f"got {mini_batch_size!r}."
            )
        self.model = model
        self.mini_batch_size = mini_batch_size
        self.cached = cached

    @property
    def uses_gradient_cache(self) -> bool:
        """See :func:`sentence_transformers.base.losses.gradcache.uses_gradient_cache`."""
        return self.cached

    def score_and_compute(
        self,
        queries: Sequence[str],
        docs_lists: Sequence[Sequence[str]],
        compute: Compute,
        prompt: str | None = None,
        task: str | None = None,
    ) -> Tensor | dict[str, Tensor]:
        """Score every (query, doc) pair and return ``compute(scores, mask)`` on the padded float32 logits.

        With ``cached=True`` a returned dict of parts sums to the loss, and only that sum carries the
        gradient (all of it, held by the first part): back-propagate the sum of the parts, as
        :class:`~sentence_transformers.cross_encoder.CrossEncoderTrainer` does.

        Raises:
            FloatingPointError: When the loss is NaN or infinite (:func:`check_finite_loss`).
        """
        if not self.cached or sum(len(docs) for docs in docs_lists) <= self.mini_batch_size:
            # One mini-batch holds the whole batch: caching would change nothing but cost a forward pass.
            scores, mask = score_lists(self.model, queries, docs_lists, self.mini_batch_size, prompt=prompt, task=task)
            value = compute(scores, mask)
        else:
            value = _ListGradCache(self.model, self.mini_batch_size, compute).run(queries, docs_lists, prompt=prompt, task=task)
        check_finite_loss(value, self)
        return value


class _ListGradCache(CachedLossMixin):
    """The library's GradCache engine applied to one batch of pair logits.

    :meth:`CachedLossMixin.forward_cached` does the three steps (logits without a graph, loss and its
    gradient wrt. the logits, then a hook that replays each mini-batch with the same RNG state and
    back-propagates the cached gradient). This class only supplies what differs from an embedding
    model: the forward returns ``"scores"`` instead of ``"sentence_embedding"``, the loss pads the
    logits into lists, and the replay also re-enters the autocast state of the first pass, so a
    ``loss.backward()`` called outside ``torch.autocast`` replays the same bf16/fp16 forward.

    One instance serves one forward call, so the state of a batch can never reach another batch's
    backward pass.
    """

    def __init__(self, model: CrossEncoder, mini_batch_size: int, compute: Compute) -> None:
        self.model = model
        self.mini_batch_size = mini_batch_size
        self.compute = compute
        self.lengths: list[int] = []
        self.parts: dict[str, Tensor] | None = None
        device_type = model.device.type
        self.autocast_state = (device_type, torch.get_autocast_dtype(device_type), torch.is_autocast_enabled(device_type))

    def run(
        self, queries: Sequence[str], docs_lists: Sequence[Sequence[str]], prompt: str | None, task: str | None
    ) -> Tensor | dict[str, Tensor]:
        """Run the engine on the batch's pairs; return the loss, or its named parts, see :meth:`ListScoringMixin.score_and_compute`.

        The engine cuts its one input column into mini-batches along the ``pair_index`` tensor; each
        mini-batch tokenises its own pairs when it is scored (as ``cached=False`` does), so neither
        the tokens nor the tokenizer's buffers grow with the list.
        """
        self.lengths = [len(docs) for docs in docs_lists]
        pairs = [(query, doc) for query, docs in zip(queries, docs_lists, strict=True) for doc in docs]
        total = self.forward_cached([{"pair_index": torch.arange(len(pairs)), "pairs": pairs, "prompt": prompt, "task": task}])
        if self.parts is None:
            return total
        first, *others = self.parts
        return {first: total + (self.parts[first] - total).detach(), **{name: self.parts[name] for name in others}}

    def embed_minibatch(
        self,
        sentence_feature: dict[str, Any],
        begin: int,
        end: int,
        with_grad: bool,
        copy_random_state: bool,
        random_state: RandContext | None = None,
    ) -> tuple[Tensor, RandContext | None]:
        """The logits of pairs ``begin:end`` (the engine's ``embed_minibatch``, for a CrossEncoder)."""
        pairs = sentence_feature["pairs"][begin:end]
        features = self.model.preprocess(pairs, prompt=sentence_feature["prompt"], task=sentence_feature["task"])
        features = batch_to_device(features, self.model.device)
        device_type, dtype, enabled = self.autocast_state
        with nullcontext() if random_state is None else random_state:
            with nullcontext() if with_grad else torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
                random_state = RandContext(*features.values()) if copy_random_state else None
                logits = self.model(features)["scores"].view(-1)
        return logits, random_state

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False) -> Tensor:
        """The loss of the whole batch from its mini-batches' logits (one input column: all pairs)."""
        scores, mask = pad_logits(torch.cat(reps[0]), self.lengths)
        value = self.compute(scores, mask)
        if isinstance(value, dict):
            self.parts = {name: part.detach() for name, part in value.items()}
            value = torch.stack(list(value.values())).sum()
        if not with_backward:
            return value
        value.backward()
        return value.detach()
