"""Teacher scoring of (query, document) pairs, with a content-keyed, verified on-disk cache and ensembles.

Teachers:

- :class:`CrossEncoderTeacher`: a sentence-transformers ``CrossEncoder``; scores are **raw
  logits** (no activation), scored by :func:`st_distill.models.scoring.score_pairs`. A causal-LM
  reranker loaded as a ``CrossEncoder`` (a ``LogitScore`` module after the language model)
  works the same way: its raw score is the log-odds ``logit("yes") - logit("no")``.
- :class:`BiEncoderTeacher`: a ``SentenceTransformer``; the score is the cosine or dot
  similarity of the query and document embeddings.

The cache (:class:`TeacherCache`) is keyed by what determines a score, never by a name or a path:

- a **teacher** is its fingerprint (:meth:`Teacher.fingerprint`): a hash of its weights'
  bytes, its tokenizer, its module and model configuration, plus max length and
  activation/similarity. New weights saved where a cached model was get new scores; the same
  model reached by another path is served from the cache. The fingerprint of a loaded model is
  computed once (a few hundred MB/s of weights) and reused while its tensors are unchanged;
- a **pair** is ``(qid, docid)`` plus a 64-bit hash (xxh3) of the query's and of the
  document's text: a pair whose text changed is scored again.

It is a folder::

    manifest.json                   teachers by fingerprint (name, model id, revision, max length,
                                    activation/similarity, component hashes), shards with row counts
                                    and SHA-256, the last run's ensemble recipe and normalisation
    <name>-<fingerprint[:16]>/shard-00000.parquet   (qid, docid, query_hash, doc_hash, score) rows

Every shard is checked against its SHA-256 when read; a shard that changed after it was written,
or is missing, stops the run with an error naming it (``repair=True`` moves it aside and scores
its pairs again). A shard is written atomically as soon as its chunk is scored, then the manifest,
so a run killed at any point loses at most the chunk in flight; the next run with the same cache
scores only the pairs that are missing. Several teachers combine into one score per pair by
``"mean"`` (of raw scores) or ``"zscore"`` (mean of per-teacher standardised scores); the recipe,
with each teacher's mean and standard deviation, is written to the manifest. Scores stay raw: a
normalisation (:mod:`st_distill.data.normalize`) is recorded and applied by the builder.

Example:
    ::

        from st_distill.teachers import CrossEncoderTeacher, score_with_teachers

        teacher = CrossEncoderTeacher("cross-encoder/ms-marco-MiniLM-L12-v2")
        result = score_with_teachers([teacher], pairs, queries, corpus, cache_dir="cache/teachers")
        result.to_run()          # {qid: {docid: raw logit}}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from st_distill.data.formats import Run
from st_distill.data.normalize import Normalization, check_normalization
from st_distill.io import atomic_write, write_json
from st_distill.logs import progress_enabled

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CACHE_FORMAT = "st-distill-teacher-cache"
CACHE_VERSION = 2
PAIR_SCHEMA = pa.schema([("qid", pa.string()), ("docid", pa.string())])
KEYS = ["qid", "docid", "query_hash", "doc_hash"]
KEY_SCHEMA = pa.schema([*PAIR_SCHEMA, ("query_hash", pa.uint64()), ("doc_hash", pa.uint64())])
SCORE_SCHEMA = pa.schema([*KEY_SCHEMA, ("score", pa.float32())])
ENSEMBLES = ("mean", "zscore")
_HASH_BLOCK = 1 << 16  # texts fetched and hashed at a time


# ----------------------------------------------------------------------------- fingerprints


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


def _commit_hash(model: Any) -> str | None:
    config = getattr(getattr(model, "model", None), "config", None) or getattr(model, "config", None)
    return getattr(config, "_commit_hash", None)


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
    """

    def __init__(
        self,
        model: CrossEncoder | str,
        name: str | None = None,
        revision: str | None = None,
        max_length: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        if isinstance(model, str):
            from st_distill.models import load_cross_encoder

            model_id = model
            model = load_cross_encoder(model, num_labels=1, revision=revision, device=device)
        else:
            model_id = _model_id(model)
        if max_length is not None:
            from st_distill.models import cap_max_length

            model.max_seq_length = cap_max_length(model, max_length)
        self.model = model
        self.model_id = model_id
        self.revision = revision or _commit_hash(model)
        self.batch_size = batch_size
        self.name = name or _default_name(model_id)

    def info(self) -> dict[str, Any]:
        return {
            "kind": "cross-encoder",
            "model": self.model_id,
            "revision": self.revision,
            "max_length": self.model.max_seq_length,
            "activation": False,
            "similarity": None,
        }

    def identity(self) -> dict[str, Any]:
        return {"kind": "cross-encoder", "max_length": self.model.max_seq_length, "activation": False, **model_fingerprint(self.model)}

    def score(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        from st_distill.models.scoring import score_pairs

        pairs = list(zip(queries, documents))
        scores = score_pairs(self.model, pairs, batch_size=self.batch_size, activation=False, show_progress_bar=False)
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
        if isinstance(model, str):
            from sentence_transformers import SentenceTransformer

            model_id = model
            model = SentenceTransformer(model, revision=revision, device=device)
        else:
            model_id = _model_id(model)
        if max_length is not None:
            model.max_seq_length = max_length
        self.model = model
        self.model_id = model_id
        self.similarity = similarity
        self.revision = revision or _commit_hash(model[0].auto_model if hasattr(model[0], "auto_model") else model)
        self.batch_size = batch_size
        self.name = name or _default_name(model_id)

    def info(self) -> dict[str, Any]:
        return {
            "kind": "bi-encoder",
            "model": self.model_id,
            "revision": self.revision,
            "max_length": self.model.max_seq_length,
            "activation": False,
            "similarity": self.similarity,
        }

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


# ----------------------------------------------------------------------------- the cache


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShardRecord(_Strict):
    """One Parquet shard of a teacher's scores: its path (relative to the cache), rows and SHA-256."""

    file: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*/shard-\d{5,}\.parquet$")
    rows: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TeacherRecord(_Strict):
    """A cached teacher: labels for people (``name``, ``model``, ``revision``), what determines its
    scores (``fingerprint`` and its ``components``, settings), and its shards."""

    name: str
    kind: str
    model: str
    revision: str | None = None
    max_length: int | None = None
    activation: bool = False
    similarity: str | None = None
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    components: dict[str, Any] = {}
    folder: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    pairs: int = Field(default=0, ge=0)
    shards: list[ShardRecord] = []


class Manifest(_Strict):
    """``manifest.json`` of a teacher cache (format version 2)."""

    format: Literal["st-distill-teacher-cache"]
    version: Literal[2]
    teachers: dict[str, TeacherRecord] = {}
    ensemble: dict[str, Any] | None = None
    normalize: Normalization = "raw"
    checksum: str = ""

    def shard_checksum(self) -> str:
        """SHA-256 over every teacher's shard records (what :attr:`checksum` holds)."""
        digest = hashlib.sha256()
        for key, entry in sorted(self.teachers.items()):
            for shard in entry.shards:
                digest.update(f"{key}/{shard.file}:{shard.rows}:{shard.sha256}\n".encode())
        return digest.hexdigest()


class TeacherCache:
    """A folder of cached teacher scores: Parquet shards per teacher fingerprint and a JSON manifest.

    Args:
        folder: The cache folder (created on first write).

    Raises:
        ValueError: Naming ``manifest.json`` when it is not valid JSON, not a teacher cache
            manifest, of another format version, or does not match its own checksum.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST
        if self.path.is_file():
            self.manifest = self._load()
        elif self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"{self.folder}: not a folder (a teacher cache is a folder)")
        else:
            self.manifest = Manifest(format=CACHE_FORMAT, version=CACHE_VERSION)
        self._recover()

    def _load(self) -> Manifest:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self.path}: not valid JSON ({exc}); the teacher cache manifest is damaged") from None
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{self.path}: not a teacher cache manifest (format {found!r})")
        if data.get("version") != CACHE_VERSION:
            raise ValueError(
                f"{self.path}: a teacher cache of format version {data.get('version')!r}, which keyed teachers by "
                f"model path and pairs by ids only; its scores cannot be checked against models and texts. "
                f"Score into a new cache folder (this one can be deleted)"
            )
        try:
            manifest = Manifest.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            raise ValueError(f"{self.path}: invalid teacher cache manifest: {problems}") from None
        if manifest.checksum != manifest.shard_checksum():
            raise ValueError(f"{self.path}: its checksum does not match its shard list (the manifest was edited)")
        return manifest

    def _recover(self) -> None:
        """Adopts shards that were written but not yet recorded (a kill between the shard and the manifest)."""
        for entry in self.manifest.teachers.values():
            recorded = {shard.file for shard in entry.shards}
            for path in sorted((self.folder / entry.folder).glob("shard-*.parquet")):
                relative = path.relative_to(self.folder).as_posix()
                if relative in recorded:
                    continue
                data = path.read_bytes()
                table = self._parse(path, data)
                entry.shards.append(ShardRecord(file=relative, rows=table.num_rows, sha256=hashlib.sha256(data).hexdigest()))
                logger.info("teacher cache: adopted %s (%d pairs) written by an interrupted run", relative, table.num_rows)

    def teachers(self) -> list[str]:
        """Fingerprints of the teachers with scores in the cache."""
        return list(self.manifest.teachers)

    def entry(self, fingerprint: str) -> TeacherRecord:
        """The record of the teacher with this fingerprint.

        Raises:
            ValueError: When the cache holds no such teacher.
        """
        entry = self.manifest.teachers.get(fingerprint)
        if entry is None:
            known = ", ".join(f"{e.name} ({key[:12]})" for key, e in self.manifest.teachers.items()) or "none"
            raise ValueError(f"{self.folder}: no teacher with fingerprint {fingerprint[:12]} in the cache (cached: {known})")
        return entry

    def register(self, teacher: Teacher) -> str:
        """Records ``teacher`` under its fingerprint (once); returns the fingerprint.

        A teacher whose weights, tokenizer or settings differ from every cached one gets an entry
        (and a folder) of its own, whatever its name or path.
        """
        fingerprint = teacher.fingerprint()
        if fingerprint not in self.manifest.teachers:
            identity = teacher.identity()
            components = {key: identity[key] for key in ("weights", "tokenizer", "config") if key in identity}
            self.manifest.teachers[fingerprint] = TeacherRecord(
                **teacher.info(), name=teacher.name, fingerprint=fingerprint, components=components,
                folder=f"{_safe_name(teacher.name)}-{fingerprint[:16]}",
            )
        return fingerprint

    @staticmethod
    def _parse(path: Path, data: bytes) -> pa.Table:
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"{path}: not a readable Parquet shard ({exc})") from None
        if not table.schema.equals(SCORE_SCHEMA, check_metadata=False):
            raise ValueError(f"{path}: not a teacher score shard (columns {table.schema.names}, expected {SCORE_SCHEMA.names})")
        return table

    def scores(self, fingerprint: str, repair: bool = False) -> pa.Table:
        """All cached ``(qid, docid, query_hash, doc_hash, score)`` rows of one teacher, each shard verified.

        Args:
            fingerprint: The teacher's fingerprint.
            repair: Move a shard that does not match its SHA-256 aside (``*.corrupt``), forget a
                missing one, and go on without their rows (which are then scored again).

        Raises:
            ValueError: Naming the shard and the manifest when a shard is missing or changed
                after it was written (unless ``repair``).
        """
        entry = self.entry(fingerprint)
        tables, kept = [], []
        for shard in entry.shards:
            path = self.folder / shard.file
            problem = None
            if not path.is_file():
                problem = f"missing (listed in {self.path} with {shard.rows} scores of teacher {entry.name!r})"
            else:
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != shard.sha256:
                    problem = (
                        f"checksum mismatch with {self.path}: the shard changed after it was written, "
                        f"its {shard.rows} scores of teacher {entry.name!r} cannot be trusted"
                    )
            if problem is None:
                tables.append(self._parse(path, data))
                kept.append(shard)
            elif repair:
                if path.is_file():
                    os.replace(path, path.with_name(path.name + ".corrupt"))
                logger.warning("teacher cache: %s: %s; its pairs will be scored again", path, problem)
            else:
                raise ValueError(f"{path}: {problem}; repair=True (st-distill teacher --repair) moves it aside and scores its pairs again")
        if len(kept) != len(entry.shards):
            entry.shards = kept
            self.save()
        return pa.concat_tables(tables) if tables else SCORE_SCHEMA.empty_table()

    def add_shard(self, fingerprint: str, table: pa.Table) -> None:
        """Writes one shard of scores atomically, then the manifest."""
        entry = self.manifest.teachers[fingerprint]
        folder = self.folder / entry.folder
        numbers = [int(re.match(r"shard-(\d+)", p.name).group(1)) for p in folder.glob("shard-[0-9]*")] if folder.is_dir() else []
        path = folder / f"shard-{max(numbers, default=-1) + 1:05d}.parquet"
        with atomic_write(path, "wb") as f:
            pq.write_table(table.cast(SCORE_SCHEMA), f)
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        entry.shards.append(ShardRecord(file=path.relative_to(self.folder).as_posix(), rows=table.num_rows, sha256=sha256))
        self.save()

    def save(self, ensemble: dict[str, Any] | None = None, normalize: Normalization | None = None) -> None:
        """Rewrites the manifest (atomically) with up-to-date counts and checksum."""
        if ensemble is not None:
            self.manifest.ensemble = ensemble
        if normalize is not None:
            self.manifest.normalize = normalize
        for entry in self.manifest.teachers.values():
            entry.pairs = sum(shard.rows for shard in entry.shards)
        self.manifest.checksum = self.manifest.shard_checksum()
        write_json(self.path, self.manifest.model_dump(mode="json"))

    def verify(self, repair: bool = False) -> None:
        """Checks every shard of every teacher against its recorded SHA-256 (see :meth:`scores`)."""
        for fingerprint in self.teachers():
            self.scores(fingerprint, repair=repair)


# ----------------------------------------------------------------------------- scoring


@dataclass
class TeacherScores:
    """Scores of a set of pairs: per teacher, and combined.

    Attributes:
        pairs: ``(qid, docid)`` table, one row per unique pair, in first-seen input order.
        per_teacher: ``{teacher name: float32 scores aligned with pairs}``.
        scores: The combined (ensemble) raw score of each pair (the single teacher's when only one).
        scored: ``{teacher name: number of pairs scored in this run}``.
        cached: ``{teacher name: number of pairs found in the cache}``.
        ensemble: The recipe: method, teachers, their fingerprints and, for ``zscore``, each
            teacher's mean and std.
        normalize: How the builder turns these raw scores into targets (see
            :mod:`st_distill.data.normalize`).
    """

    pairs: pa.Table
    per_teacher: dict[str, np.ndarray]
    scores: np.ndarray
    scored: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    ensemble: dict[str, Any] = field(default_factory=dict)
    normalize: Normalization = "raw"

    def to_run(self, teacher: str | None = None) -> Run:
        """``{qid: {docid: raw score}}`` of the ensemble, or of one teacher."""
        values = self.scores if teacher is None else self.per_teacher[teacher]
        run: Run = {}
        for qid, docid, score in zip(self.pairs.column("qid").to_pylist(), self.pairs.column("docid").to_pylist(), values.tolist()):
            run.setdefault(qid, {})[docid] = score
        return run


def unique_pairs(pairs: Iterable[tuple[str, str]] | Run | pa.Table) -> pa.Table:
    """Normalises pairs (an iterable of ``(qid, docid)``, a run, or a table) to a ``(qid, docid)`` table without repeats."""
    if isinstance(pairs, pa.Table):
        table = pairs.select(["qid", "docid"]).cast(PAIR_SCHEMA)
    else:
        if isinstance(pairs, Mapping):
            pairs = ((qid, docid) for qid, docs in pairs.items() for docid in docs)
        qids, docids = [], []
        for qid, docid in pairs:
            qids.append(str(qid))
            docids.append(str(docid))
        table = pa.table({"qid": qids, "docid": docids}, schema=PAIR_SCHEMA)
    table = table.append_column("_order", pa.array(np.arange(table.num_rows)))
    table = table.group_by(["qid", "docid"], use_threads=False).aggregate([("_order", "min")])
    return table.sort_by("_order_min").select(["qid", "docid"])


def _lookup(texts: Mapping[str, str], ids: list[str]) -> list[str | None]:
    """Texts of ``ids`` (None where unknown), in bulk for a :class:`~st_distill.data.store.TextStore`."""
    from st_distill.data.store import TextStore

    if isinstance(texts, TextStore):
        rows = texts.rows(ids)
        found = texts.texts(np.where(rows >= 0, rows, 0))
        return [text if row >= 0 else None for text, row in zip(found, rows)]
    return [texts.get(key) for key in ids]


def _texts(texts: Mapping[str, str], ids: list[str], what: str) -> list[str]:
    found = _lookup(texts, ids)
    missing = [key for key, text in zip(ids, found) if text is None][:5]
    if missing:
        raise ValueError(f"no text for {what} id(s) {', '.join(map(repr, missing))}")
    return found


def _text_hashes(ids: pa.ChunkedArray | pa.Array, texts: Mapping[str, str], what: str, strict: bool) -> np.ndarray:
    """xxh3-64 of each id's text, hashing each distinct id once; with ``strict=False``, ``-1``
    (all bits set) marks an id without text.

    Raises:
        ValueError: With ``strict``, naming ids without text.
    """
    encoded = (ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids).dictionary_encode()
    distinct = encoded.dictionary.to_pylist()
    hashes = np.empty(len(distinct), dtype=np.uint64)
    for start in range(0, len(distinct), _HASH_BLOCK):
        block = distinct[start : start + _HASH_BLOCK]
        found = _texts(texts, block, what) if strict else _lookup(texts, block)
        hashes[start : start + len(block)] = [
            xxhash.xxh3_64_intdigest(text.encode("utf-8")) if text is not None else np.iinfo(np.uint64).max for text in found
        ]
    return hashes[encoded.indices.to_numpy()]


def _keyed(pairs: pa.Table, queries: Mapping[str, str], corpus: Mapping[str, str], strict: bool = True) -> pa.Table:
    """``pairs`` with the hashes of their query and document texts (:data:`KEY_SCHEMA`); with
    ``strict=False`` pairs without a text are dropped instead of raising."""
    query_hash = _text_hashes(pairs.column("qid"), queries, "query", strict)
    doc_hash = _text_hashes(pairs.column("docid"), corpus, "document", strict)
    keyed = pa.table([pairs.column("qid"), pairs.column("docid"), query_hash, doc_hash], schema=KEY_SCHEMA)
    if not strict:
        unknown = np.iinfo(np.uint64).max
        keyed = keyed.filter(pa.array((query_hash != unknown) & (doc_hash != unknown)))
    return keyed


def _align(pairs: pa.Table, scored: pa.Table) -> np.ndarray:
    """Scores of ``pairs`` (:data:`KEY_SCHEMA`) looked up in ``scored`` (NaN where absent), in the order of ``pairs``."""
    indexed = pairs.select(KEYS).append_column("_order", pa.array(np.arange(pairs.num_rows)))
    joined = indexed.join(scored, keys=KEYS, join_type="left outer", use_threads=False)
    order = joined.column("_order").to_numpy()
    values = np.full(pairs.num_rows, np.nan, dtype=np.float32)
    values[order] = joined.column("score").to_numpy(zero_copy_only=False).astype(np.float32)
    return values


def combine(per_teacher: Mapping[str, np.ndarray], method: Literal["mean", "zscore"] = "mean") -> tuple[np.ndarray, dict[str, Any]]:
    """Combines aligned per-teacher scores into one score per pair.

    ``"mean"`` averages the raw scores. ``"zscore"`` first standardises each teacher's scores
    over the given pairs, ``(s - mean) / std`` (population std; a constant teacher gets std 1),
    then averages, so teachers on different scales weigh the same.

    Returns:
        ``(scores, recipe)``, where the recipe records the method, teachers and their statistics.

    Raises:
        ValueError: On an unknown method or no teacher.
    """
    if method not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {method!r}: expected one of {', '.join(ENSEMBLES)}")
    if not per_teacher:
        raise ValueError("no teacher scores to combine")
    recipe: dict[str, Any] = {"method": method, "teachers": list(per_teacher), "stats": {}}
    columns = []
    for name, values in per_teacher.items():
        values = np.asarray(values, dtype=np.float64)
        mean, std = float(values.mean()), float(values.std())
        recipe["stats"][name] = {"mean": mean, "std": std}
        if method == "zscore":
            values = (values - mean) / (std if std > 0 else 1.0)
        columns.append(values)
    return np.mean(columns, axis=0).astype(np.float32), recipe


def score_with_teachers(
    teachers: Sequence[Teacher],
    pairs: Iterable[tuple[str, str]] | Run | pa.Table,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    cache_dir: str | os.PathLike,
    ensemble: Literal["mean", "zscore"] = "mean",
    shard_size: int = 4096,
    show_progress_bar: bool | None = None,
    normalize: Normalization = "raw",
    repair: bool = False,
) -> TeacherScores:
    """Scores pairs with every teacher, reusing and extending the cache in ``cache_dir``.

    A pair is served from the cache when the same teacher (same fingerprint) scored the same
    query and document texts; otherwise it is scored, in chunks of ``shard_size``, each finished
    chunk written as a shard before the next starts, so an interrupted run resumes where it stopped.

    Args:
        teachers: One or several teachers (distinct names).
        pairs: ``(qid, docid)`` pairs, a run ``{qid: {docid: ...}}`` or a table with ``qid``, ``docid``.
        queries: ``{qid: text}`` (a dict or a :class:`~st_distill.data.store.TextStore`).
        corpus: ``{docid: text}``.
        cache_dir: The cache folder.
        ensemble: How to combine several teachers: ``"mean"`` or ``"zscore"``.
        shard_size: Pairs per shard (and per call of the teacher).
        show_progress_bar: Show a tqdm bar (default: when logging at INFO or lower).
        normalize: How the builder is to turn these raw scores into targets; recorded in the
            manifest and the result, scores stay raw (see :mod:`st_distill.data.normalize`).
        repair: Move shards that fail their checksum aside (forget missing ones) and score their
            pairs again, instead of raising.

    Returns:
        A :class:`TeacherScores`.

    Raises:
        ValueError: On no or repeated teacher names, an id without text, a shard that is missing or
            changed after it was written (unless ``repair``), a damaged manifest, an unknown
            ensemble or normalisation.
    """
    from tqdm.auto import tqdm

    names = [teacher.name for teacher in teachers]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"need one or more teachers with distinct names, got {names}")
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}: expected one of {', '.join(ENSEMBLES)}")
    check_normalization(normalize)
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    if show_progress_bar is None:
        show_progress_bar = progress_enabled(logger)
    cache = TeacherCache(cache_dir)
    table = _keyed(unique_pairs(pairs), queries, corpus)
    result = TeacherScores(pairs=table.select(["qid", "docid"]), per_teacher={}, scores=np.empty(0, np.float32), normalize=normalize)
    fingerprints = {}
    for teacher in teachers:
        fingerprint = fingerprints[teacher.name] = cache.register(teacher)
        values = _align(table, cache.scores(fingerprint, repair=repair))
        missing = np.flatnonzero(np.isnan(values))
        result.cached[teacher.name] = table.num_rows - len(missing)
        result.scored[teacher.name] = 0
        if len(missing):
            todo = table.take(pa.array(missing))
            with tqdm(
                total=table.num_rows, initial=result.cached[teacher.name], desc=f"teacher {teacher.name}",
                unit="pair", disable=not show_progress_bar,
            ) as progress:
                for start in range(0, len(missing), shard_size):
                    chunk = todo.slice(start, shard_size)
                    qids, docids = chunk.column("qid").to_pylist(), chunk.column("docid").to_pylist()
                    scores = teacher.score(_texts(queries, qids, "query"), _texts(corpus, docids, "document"))
                    scores = np.asarray(scores, dtype=np.float32)
                    if scores.shape != (len(qids),) or not np.isfinite(scores).all():
                        raise ValueError(
                            f"teacher {teacher.name!r} returned scores of shape {scores.shape} for "
                            f"{len(qids)} pairs, or non-finite scores"
                        )
                    cache.add_shard(fingerprint, chunk.append_column("score", pa.array(scores)))
                    values[missing[start : start + shard_size]] = scores
                    result.scored[teacher.name] += len(scores)
                    progress.update(len(scores))
        result.per_teacher[teacher.name] = values
    result.scores, result.ensemble = combine(result.per_teacher, ensemble)
    result.ensemble.update(fingerprints=fingerprints, pairs=table.num_rows)
    cache.save(ensemble=result.ensemble, normalize=normalize)
    return result


def load_cached_scores(
    cache_dir: str | os.PathLike,
    ensemble: Literal["mean", "zscore"] | None = None,
    queries: Mapping[str, str] | None = None,
    corpus: Mapping[str, str] | None = None,
) -> TeacherScores:
    """Reads the cached scores of the last scoring run's teachers back, every shard verified.

    The teachers are those of the last :func:`score_with_teachers` run on the cache (its ensemble
    recipe), or every cached teacher when no run finished. Given the texts, only the scores of
    pairs whose query and document texts are the given ones are read (pairs without text are
    left out); without them, a pair scored for more than one text is an error.

    Args:
        cache_dir: A cache folder written by :func:`score_with_teachers`.
        ensemble: How to combine several teachers; defaults to the method recorded in the
            manifest (``"mean"`` when none is).
        queries: ``{qid: text}`` the scores must belong to (a dict or a TextStore).
        corpus: ``{docid: text}`` the scores must belong to.

    Returns:
        A :class:`TeacherScores` over the pairs every teacher scored, with the normalisation
        recorded in the manifest.

    Raises:
        ValueError: When the folder holds no cached scores, a shard is missing or altered, the
            manifest is damaged, or (without texts) a pair was scored for several texts.
    """
    cache = TeacherCache(cache_dir)
    if not cache.teachers():
        raise ValueError(f"{cache_dir}: no cached teacher scores")
    recipe = cache.manifest.ensemble or {}
    chosen = recipe.get("fingerprints") or {cache.manifest.teachers[key].name: key for key in cache.teachers()}
    if len(chosen) != len(cache.teachers()) and not recipe.get("fingerprints"):
        raise ValueError(f"{cache.path}: several cached teachers share a name and no finished run says which to read")
    method = ensemble or recipe.get("method", "mean")
    if (queries is None) != (corpus is None):
        raise ValueError("give both queries and corpus, or neither")
    tables = {name: cache.scores(fingerprint) for name, fingerprint in chosen.items()}
    if queries is not None:
        known = unique_pairs(pa.concat_tables([t.select(["qid", "docid"]) for t in tables.values()]))
        keys = _keyed(known, queries, corpus, strict=False)
    else:
        for name, table in tables.items():
            if unique_pairs(table).num_rows != table.group_by(KEYS, use_threads=False).aggregate([]).num_rows:
                raise ValueError(
                    f"{cache.path}: teacher {name!r} has scores for more than one text of some pairs (a query or "
                    "document changed); give the texts (queries=, corpus=) to read the scores of the current ones"
                )
        keys = tables[next(iter(tables))].select(KEYS)
    given = keys.num_rows
    for table in tables.values():
        keys = keys.join(table.select(KEYS), keys=KEYS, join_type="inner", use_threads=False)
    keys = keys.group_by(KEYS, use_threads=False).aggregate([]).sort_by([("qid", "ascending"), ("docid", "ascending")])
    if queries is not None and keys.num_rows < given:
        logger.warning(
            "%s: %d cached pairs have no score of every teacher for the texts given (a text changed, or not every "
            "teacher scored them); they are left out", cache_dir, given - keys.num_rows,
        )
    per_teacher = {name: _align(keys, table) for name, table in tables.items()}
    scores, recipe = combine(per_teacher, method)
    recipe.update(fingerprints=dict(chosen), pairs=keys.num_rows)
    cached = {name: keys.num_rows for name in tables}
    return TeacherScores(
        pairs=keys.select(["qid", "docid"]), per_teacher=per_teacher, scores=scores, cached=cached,
        ensemble=recipe, normalize=cache.manifest.normalize,
    )
