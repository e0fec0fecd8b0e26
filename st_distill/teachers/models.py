"""Teachers: the :class:`Teacher` protocol, its CrossEncoder and bi-encoder adapters, and the
content fingerprints that key their scores in a cache.

A teacher's fingerprint (:meth:`Teacher.fingerprint`) hashes its weights' bytes, its tokenizer,
its module and model configuration, plus max length and activation/similarity: never a name or a
path. The fingerprint of a loaded model is computed once and reused while its tensors are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xxhash

from st_distill.models import cap_max_length, load_cross_encoder
from st_distill.models.precision import autocast_dtype
from st_distill.models.scoring import score_pairs

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.cross_encoder import CrossEncoder


def _digest(obj: Any) -> str:
    """SHA-256 of ``obj`` as canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """xxh3-128 over every tensor's name, dtype, shape and bytes, in name order."""
    import torch

    hasher = xxhash.xxh3_128()
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        if tensor.is_meta:
            continue
        data = tensor.to("cpu").contiguous().reshape(-1)
        if data.numel():
            hasher.update(data.view(torch.uint8).numpy().data)
    return hasher.hexdigest()


def _tokenizer_digest(tokenizer: Any) -> str:
    """The tokenizer's vocabulary, normaliser, templates, special tokens and sides (not its load path)."""
    if tokenizer is None:
        return "none"
    parts: dict[str, Any] = {
        "class": type(tokenizer).__name__,
        "padding_side": getattr(tokenizer, "padding_side", None),
        "truncation_side": getattr(tokenizer, "truncation_side", None),
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)  # set by each call of the tokenizer, not part of its identity
        state.pop("padding", None)
        parts["backend"] = state
    else:
        parts["vocab"] = sorted(tokenizer.get_vocab().items())
        parts["special"] = getattr(tokenizer, "special_tokens_map", None)
    return _digest(parts)


def _config_digest(model: torch.nn.Module) -> str:
    """The model's module configuration (e.g. a ``LogitScore``'s token ids), prompts and Hugging Face configs."""
    import torch
    from transformers import PreTrainedModel

    modules = [
        [f"{type(m).__module__}.{type(m).__qualname__}", m.get_config_dict() if hasattr(m, "get_config_dict") else None]
        for m in (model if isinstance(model, torch.nn.Sequential) else [model])
    ]
    configs = [
        {k: v for k, v in sub.config.to_dict().items() if not k.startswith("_") and k != "transformers_version"}
        for sub in model.modules()
        if isinstance(sub, PreTrainedModel)
    ]
    prompts = [getattr(model, "prompts", None), getattr(model, "default_prompt_name", None)]
    return _digest({"modules": modules, "configs": configs, "prompts": prompts})


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_fingerprint(model: torch.nn.Module) -> dict[str, str]:
    """Content hashes of a loaded model: ``{"weights", "tokenizer", "config"}``.

    Computed once per model and reused while its parameters and buffers keep their storage and
    version counters (an optimizer step or ``load_state_dict`` changes them; an in-place write
    through ``tensor.data`` does not, so re-wrap a model changed that way in a new teacher).

    Args:
        model: A ``CrossEncoder``, ``SentenceTransformer`` or any ``torch.nn.Module`` (with a
            ``tokenizer`` attribute where it has one).
    """
    tensors = model.state_dict(keep_vars=True)
    tokenizer = getattr(model, "tokenizer", None)
    state = (id(tokenizer), tuple((name, t.data_ptr(), t._version) for name, t in tensors.items()))
    cached = _FINGERPRINTS.get(model)
    if cached is not None and cached[0] == state:
        return cached[1]
    components = {"weights": _weights_digest(tensors), "tokenizer": _tokenizer_digest(tokenizer), "config": _config_digest(model)}
    _FINGERPRINTS[model] = (state, components)
    return components


# ----------------------------------------------------------------------------- teachers


class Teacher:
    """A scorer of (query text, document text) pairs.

    Subclasses set :attr:`name` (a label: the cache folder's prefix and the key of per-teacher
    results) and implement :meth:`info`, :meth:`identity` and :meth:`score`.
    """

    name: str

    def info(self) -> dict[str, Any]:
        """Labels recorded in the manifest for people: kind, model id, revision, max length, activation/similarity."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """Everything that determines this teacher's scores (content hashes and settings, no names or paths)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """SHA-256 of :meth:`identity`: the key of this teacher's scores in a cache."""
        return _digest(self.identity())

    def score(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Scores ``(queries[i], documents[i])`` for every i; returns float32 scores in input order."""
        raise NotImplementedError


def _model_id(model: Any) -> str:
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "model", None), "name_or_path", None)
    return str(path or type(model).__name__)


def _adopt(model: Any, load: Callable[[str], Any], max_length: int | None) -> tuple[Any, str]:
    """A teacher's model and its id: ``load(model)`` when ``model`` is a name or path, else ``model``
    itself; its ``max_seq_length`` set to ``max_length`` (capped at its positions) where given."""
    if isinstance(model, str):
        model, model_id = load(model), model
    else:
        model_id = _model_id(model)
    if max_length is not None:
        model.max_seq_length = cap_max_length(model, max_length)
    return model, model_id


def _commit_hash(model: Any) -> str | None:
    config = getattr(getattr(model, "model", None), "config", None) or getattr(model, "config", None)
    return getattr(config, "_commit_hash", None)


def _model_info(teacher: CrossEncoderTeacher | BiEncoderTeacher, kind: str, similarity: str | None) -> dict[str, Any]:
    """:meth:`Teacher.info` of a teacher wrapping a sentence-transformers model."""
    return {
        "kind": kind,
        "model": teacher.model_id,
        "revision": teacher.revision,
        "max_length": teacher.model.max_seq_length,
        "activation": False,
        "similarity": similarity,
    }


def _default_name(model_id: str) -> str:
    return model_id.rstrip("/").split("/")[-1] or model_id


def _safe_name(name: str) -> str:
    """``name`` as one safe path component (letters, digits, ``_.-``; no ``..``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip(".") or "teacher"


class CrossEncoderTeacher(Teacher):
    """A CrossEncoder teacher; scores are its raw logits (``activation=False``).

    A causal-LM reranker loaded as a ``CrossEncoder`` (sentence-transformers builds it with a
    ``LogitScore`` module) scores by the log-odds of its "yes"/"no" tokens, cached like any logit.

    Args:
        model: A loaded ``CrossEncoder`` or a name/path to load (``num_labels=1``).
        name: Label in the cache (folder prefix, results key); defaults to the last part of the model id.
        revision: Model revision to load and record; defaults to the loaded commit hash, if any.
        max_length: Maximum sequence length (applied to the model).
        batch_size: Pairs per forward pass.
        device: Device to load on (loaded models are kept where they are).
        autocast: Score under autocast to bfloat16 (float16) where the device computes it natively
            (see :func:`st_distill.models.scoring.score_pairs`); ``False``: float32, as ``predict``.
            The reduced precision is part of the teacher's identity, so a cache never mixes
            scores of two precisions under one fingerprint.
    """

    def __init__(
        self,
        model: CrossEncoder | str,
        name: str | None = None,
        revision: str | None = None,
        max_length: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
        autocast: bool = True,
    ) -> None:
        model, self.model_id = _adopt(model, lambda spec: load_cross_encoder(spec, num_labels=1, revision=revision, device=device), max_length)
        self.model = model
        self.revision = revision or _commit_hash(model)
        self.batch_size = batch_size
        self.autocast = autocast
        self.name = name or _default_name(self.model_id)

    def info(self) -> dict[str, Any]:
        return _model_info(self, "cross-encoder", similarity=None)

    def precision(self) -> str | None:
        """The reduced dtype the forward runs in (``"torch.bfloat16"``), ``None`` for float32."""
        dtype = autocast_dtype(self.model.device) if self.autocast else None
        return None if dtype is None else str(dtype)

    def identity(self) -> dict[str, Any]:
        precision = self.precision()  # absent in float32: the fingerprints of float32 caches are unchanged
        return {
            "kind": "cross-encoder", "max_length": self.model.max_seq_length, "activation": False,
            **({"precision": precision} if precision else {}), **model_fingerprint(self.model),
        }

    def score(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        pairs = list(zip(queries, documents))
        scores = score_pairs(
            self.model, pairs, batch_size=self.batch_size, activation=False, show_progress_bar=False, autocast=self.autocast
        )
        return np.asarray(scores, dtype=np.float32)


class BiEncoderTeacher(Teacher):
    """A SentenceTransformer (bi-encoder) teacher; the score is the similarity of the two embeddings.

    Args:
        model: A loaded ``SentenceTransformer`` or a name/path to load.
        similarity: ``"cosine"`` or ``"dot"``.
        name: Label in the cache; defaults to the last part of the model id.
        revision: Model revision to load and record.
        max_length: Maximum sequence length (``max_seq_length``).
        batch_size: Texts per encoding batch.
        device: Device to load on.
    """

    def __init__(
        self,
        model: SentenceTransformer | str,
        similarity: Literal["cosine", "dot"] = "cosine",
        name: str | None = None,
        revision: str | None = None,
        max_length: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")

        def load(spec: str) -> SentenceTransformer:
            from sentence_transformers import SentenceTransformer  # when a name is given: the teachers import without torch

            return SentenceTransformer(spec, revision=revision, device=device)

        model, self.model_id = _adopt(model, load, max_length)
        self.model = model
        self.similarity = similarity
        self.revision = revision or _commit_hash(model[0].auto_model if hasattr(model[0], "auto_model") else model)
        self.batch_size = batch_size
        self.name = name or _default_name(self.model_id)

    def info(self) -> dict[str, Any]:
        return _model_info(self, "bi-encoder", similarity=self.similarity)

    def identity(self) -> dict[str, Any]:
        return {"kind": "bi-encoder", "max_length": self.model.max_seq_length, "similarity": self.similarity, **model_fingerprint(self.model)}

    def _encode(self, texts: Sequence[str], query: bool) -> np.ndarray:
        unique = list(dict.fromkeys(texts))
        encode = self.model.encode_query if query else self.model.encode_document
        embeddings = encode(
            unique,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.similarity == "cosine",
            show_progress_bar=False,
        )
        position = {text: i for i, text in enumerate(unique)}
        return embeddings[[position[text] for text in texts]]

    def score(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        q = self._encode(queries, query=True)
        d = self._encode(documents, query=False)
        return np.einsum("ij,ij->i", q.astype(np.float32), d.astype(np.float32)).astype(np.float32)
