"""Teacher scoring of (query, document) pairs, with a resumable on-disk cache and ensembles.

Teachers:

- :class:`CrossEncoderTeacher`: a sentence-transformers ``CrossEncoder``; scores are **raw
  logits** (no activation), scored by :func:`st_distill.scoring.score_pairs`.
- :class:`BiEncoderTeacher`: a ``SentenceTransformer``; the score is the cosine or dot
  similarity of the query and document embeddings.

The cache (:class:`TeacherCache`) is a folder::

    manifest.json               teachers (id, revision, max length, activation/similarity),
                                shards with row counts and SHA-256, pair counts, the ensemble recipe
    <teacher>/shard-00000.parquet   (qid, docid, score) rows, one file per finished chunk

A shard is written atomically as soon as its chunk is scored, then the manifest is
rewritten atomically, so a run killed at any point loses at most the chunk in flight; the
next run with the same cache scores only the pairs that are missing. Several teachers
combine into one score per pair by ``"mean"`` (of raw scores) or ``"zscore"`` (mean of
per-teacher standardised scores); the recipe, with each teacher's mean and standard
deviation, is written to the manifest.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from st_distill.data.formats import Run
from st_distill.io import atomic_write, file_sha256, write_json
from st_distill.logs import progress_enabled

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CACHE_FORMAT = "st-distill-teacher-cache"
PAIR_SCHEMA = pa.schema([("qid", pa.string()), ("docid", pa.string())])
SCORE_SCHEMA = pa.schema([("qid", pa.string()), ("docid", pa.string()), ("score", pa.float32())])
ENSEMBLES = ("mean", "zscore")


class Teacher:
    """A scorer of (query text, document text) pairs, identified in the cache by :attr:`name` and :meth:`info`."""

    name: str

    def info(self) -> dict[str, Any]:
        """What identifies this teacher's scores: a cache refuses to mix scores of differing teachers."""
        raise NotImplementedError

    def score(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Scores ``(queries[i], documents[i])`` for every i; returns float32 scores in input order."""
        raise NotImplementedError


def _model_id(model: Any, given: str | None) -> str:
    if given is not None:
        return given
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "model", None), "name_or_path", None)
    return str(path or type(model).__name__)


def _commit_hash(model: Any) -> str | None:
    config = getattr(getattr(model, "model", None), "config", None) or getattr(model, "config", None)
    return getattr(config, "_commit_hash", None)


def _default_name(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id.rstrip("/").split("/")[-1] or model_id)


class CrossEncoderTeacher(Teacher):
    """A CrossEncoder teacher; scores are its raw logits (``activation=False``).

    Args:
        model: A loaded ``CrossEncoder`` or a name/path to load (``num_labels=1``).
        name: Name in the cache (folder name); defaults to the last part of the model id.
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
            from sentence_transformers.cross_encoder import CrossEncoder

            model_id = model
            model = CrossEncoder(model, num_labels=1, max_length=max_length, revision=revision, device=device)
        else:
            model_id = _model_id(model, None)
        if max_length is not None:
            model.max_length = max_length
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
            "max_length": self.model.max_length,
            "activation": False,
            "similarity": None,
        }

    def score(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        from st_distill.scoring import score_pairs

        pairs = list(zip(queries, documents))
        scores = score_pairs(self.model, pairs, batch_size=self.batch_size, activation=False, show_progress_bar=False)
        return np.asarray(scores, dtype=np.float32)


class BiEncoderTeacher(Teacher):
    """A SentenceTransformer (bi-encoder) teacher; the score is the similarity of the two embeddings.

    Args:
        model: A loaded ``SentenceTransformer`` or a name/path to load.
        similarity: ``"cosine"`` or ``"dot"``.
        name: Name in the cache; defaults to the last part of the model id.
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
            model_id = _model_id(model, None)
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


class TeacherCache:
    """A folder of cached teacher scores: Parquet shards per teacher and a JSON manifest.

    Args:
        folder: The cache folder (created on first write).

    Raises:
        ValueError: When the folder holds a manifest of another format.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if path.is_file():
            self.manifest = json.loads(path.read_text(encoding="utf-8"))
            if self.manifest.get("format") != CACHE_FORMAT:
                raise ValueError(f"{path}: not a teacher cache manifest (format {self.manifest.get('format')!r})")
        else:
            self.manifest = {"format": CACHE_FORMAT, "version": 1, "teachers": {}, "ensemble": None}
        self._recover()

    def _recover(self) -> None:
        """Adopts shards that were written but not yet recorded (a kill between the shard and the manifest)."""
        for name, entry in self.manifest["teachers"].items():
            recorded = {shard["file"] for shard in entry["shards"]}
            for path in sorted((self.folder / entry["folder"]).glob("shard-*.parquet")):
                relative = path.relative_to(self.folder).as_posix()
                if relative not in recorded:
                    rows = pq.read_metadata(path).num_rows
                    entry["shards"].append({"file": relative, "rows": rows, "sha256": file_sha256(path)})
                    logger.info("teacher cache: adopted %s (%d pairs) written by an interrupted run", relative, rows)

    def teachers(self) -> list[str]:
        """Names of the teachers with scores in the cache."""
        return list(self.manifest["teachers"])

    def register(self, teacher: Teacher) -> None:
        """Records ``teacher`` in the manifest, or checks that the cached one is the same teacher.

        Raises:
            ValueError: When the cache holds scores of a different teacher under the same name.
        """
        info = teacher.info()
        entry = self.manifest["teachers"].get(teacher.name)
        if entry is None:
            self.manifest["teachers"][teacher.name] = {**info, "folder": teacher.name, "pairs": 0, "shards": []}
            return
        differing = {key: (entry.get(key), value) for key, value in info.items() if entry.get(key) != value}
        if differing:
            details = ", ".join(f"{key}: cached {old!r}, now {new!r}" for key, (old, new) in differing.items())
            raise ValueError(
                f"{self.folder}: the cached teacher {teacher.name!r} differs ({details}); "
                "use another cache folder or another teacher name"
            )

    def scores(self, name: str) -> pa.Table:
        """All cached ``(qid, docid, score)`` rows of one teacher."""
        entry = self.manifest["teachers"].get(name)
        if entry is None:
            raise ValueError(f"{self.folder}: no teacher {name!r} in the cache (cached: {', '.join(self.teachers()) or 'none'})")
        tables = [pq.read_table(self.folder / shard["file"], schema=SCORE_SCHEMA) for shard in entry["shards"]]
        return pa.concat_tables(tables) if tables else SCORE_SCHEMA.empty_table()

    def add_shard(self, name: str, table: pa.Table) -> None:
        """Writes one shard of scores atomically, then the manifest."""
        entry = self.manifest["teachers"][name]
        folder = self.folder / entry["folder"]
        index = len(entry["shards"])
        path = folder / f"shard-{index:05d}.parquet"
        with atomic_write(path, "wb") as f:
            pq.write_table(table.cast(SCORE_SCHEMA), f)
        entry["shards"].append({"file": path.relative_to(self.folder).as_posix(), "rows": table.num_rows, "sha256": file_sha256(path)})
        self.save()

    def save(self, ensemble: dict[str, Any] | None = None) -> None:
        """Rewrites the manifest (atomically) with up-to-date counts and checksum."""
        if ensemble is not None:
            self.manifest["ensemble"] = ensemble
        digest = hashlib.sha256()
        for name, entry in sorted(self.manifest["teachers"].items()):
            entry["pairs"] = sum(shard["rows"] for shard in entry["shards"])
            for shard in entry["shards"]:
                digest.update(f"{name}/{shard['file']}:{shard['sha256']}\n".encode())
        self.manifest["checksum"] = digest.hexdigest()
        write_json(self.folder / MANIFEST, self.manifest)

    def verify(self) -> None:
        """Checks every shard against its recorded SHA-256.

        Raises:
            ValueError: Naming the first shard whose content changed.
        """
        for entry in self.manifest["teachers"].values():
            for shard in entry["shards"]:
                if file_sha256(self.folder / shard["file"]) != shard["sha256"]:
                    raise ValueError(f"{self.folder / shard['file']}: checksum mismatch with {MANIFEST}")


@dataclass
class TeacherScores:
    """Scores of a set of pairs: per teacher, and combined.

    Attributes:
        pairs: ``(qid, docid)`` table, one row per unique pair, in first-seen input order.
        per_teacher: ``{teacher name: float32 scores aligned with pairs}``.
        scores: The combined (ensemble) score of each pair (the single teacher's when only one).
        scored: ``{teacher name: number of pairs scored in this run}``.
        cached: ``{teacher name: number of pairs found in the cache}``.
        ensemble: The recipe: method, teachers and, for ``zscore``, each teacher's mean and std.
    """

    pairs: pa.Table
    per_teacher: dict[str, np.ndarray]
    scores: np.ndarray
    scored: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    ensemble: dict[str, Any] = field(default_factory=dict)

    def to_run(self, teacher: str | None = None) -> Run:
        """``{qid: {docid: score}}`` of the ensemble, or of one teacher."""
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


def _align(pairs: pa.Table, scored: pa.Table) -> np.ndarray:
    """Scores of ``pairs`` looked up in ``scored`` (NaN where absent), in the order of ``pairs``."""
    indexed = pairs.append_column("_order", pa.array(np.arange(pairs.num_rows)))
    joined = indexed.join(scored, keys=["qid", "docid"], join_type="left outer", use_threads=False)
    order = joined.column("_order").to_numpy()
    values = np.full(pairs.num_rows, np.nan, dtype=np.float32)
    values[order] = joined.column("score").to_numpy(zero_copy_only=False).astype(np.float32)
    return values


def _texts(texts: Mapping[str, str], ids: list[str], what: str) -> list[str]:
    from st_distill.data.store import TextStore

    if isinstance(texts, TextStore):
        rows = texts.rows(ids)
        missing = [ids[i] for i in np.flatnonzero(rows < 0)[:5]]
        if missing:
            raise ValueError(f"no text for {what} id(s) {', '.join(map(repr, missing))}")
        return texts.texts(rows)
    missing = [key for key in ids if key not in texts][:5]
    if missing:
        raise ValueError(f"no text for {what} id(s) {', '.join(map(repr, missing))}")
    return [texts[key] for key in ids]


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
) -> TeacherScores:
    """Scores pairs with every teacher, reusing and extending the cache in ``cache_dir``.

    Pairs already in the cache for a teacher are not scored again. The missing ones are
    scored in chunks of ``shard_size``; each finished chunk is written as a shard before the
    next starts, so an interrupted run resumes where it stopped.

    Args:
        teachers: One or several teachers (distinct names).
        pairs: ``(qid, docid)`` pairs, a run ``{qid: {docid: ...}}`` or a table with ``qid``, ``docid``.
        queries: ``{qid: text}`` (a dict or a :class:`~st_distill.data.store.TextStore`).
        corpus: ``{docid: text}``.
        cache_dir: The cache folder.
        ensemble: How to combine several teachers: ``"mean"`` or ``"zscore"``.
        shard_size: Pairs per shard (and per call of the teacher).
        show_progress_bar: Show a tqdm bar (default: when logging at INFO or lower).

    Returns:
        A :class:`TeacherScores`.

    Raises:
        ValueError: On no or repeated teacher names, an id without text, a cache holding another
            teacher under the same name, or an unknown ensemble.
    """
    from tqdm.auto import tqdm

    names = [teacher.name for teacher in teachers]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"need one or more teachers with distinct names, got {names}")
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}: expected one of {', '.join(ENSEMBLES)}")
    if show_progress_bar is None:
        show_progress_bar = progress_enabled(logger)
    table = unique_pairs(pairs)
    cache = TeacherCache(cache_dir)
    result = TeacherScores(pairs=table, per_teacher={}, scores=np.empty(0, np.float32))
    for teacher in teachers:
        cache.register(teacher)
        values = _align(table, cache.scores(teacher.name))
        missing = np.flatnonzero(np.isnan(values))
        result.cached[teacher.name] = table.num_rows - len(missing)
        result.scored[teacher.name] = 0
        if len(missing):
            qids = table.column("qid").take(pa.array(missing)).to_pylist()
            docids = table.column("docid").take(pa.array(missing)).to_pylist()
            _texts(queries, list(dict.fromkeys(qids)), "query")
            _texts(corpus, list(dict.fromkeys(docids)), "document")
            with tqdm(
                total=table.num_rows, initial=result.cached[teacher.name], desc=f"teacher {teacher.name}",
                unit="pair", disable=not show_progress_bar,
            ) as progress:
                for start in range(0, len(missing), shard_size):
                    chunk = slice(start, start + shard_size)
                    scores = teacher.score(_texts(queries, qids[chunk], "query"), _texts(corpus, docids[chunk], "document"))
                    scores = np.asarray(scores, dtype=np.float32)
                    if scores.shape != (len(qids[chunk]),) or not np.isfinite(scores).all():
                        raise ValueError(
                            f"teacher {teacher.name!r} returned scores of shape {scores.shape} for "
                            f"{len(qids[chunk])} pairs, or non-finite scores"
                        )
                    shard = pa.table({"qid": qids[chunk], "docid": docids[chunk], "score": scores}, schema=SCORE_SCHEMA)
                    cache.add_shard(teacher.name, shard)
                    values[missing[chunk]] = scores
                    result.scored[teacher.name] += len(scores)
                    progress.update(len(scores))
        result.per_teacher[teacher.name] = values
    result.scores, result.ensemble = combine(result.per_teacher, ensemble)
    result.ensemble["pairs"] = table.num_rows
    cache.save(ensemble=result.ensemble)
    return result


def load_cached_scores(cache_dir: str | os.PathLike, ensemble: Literal["mean", "zscore"] | None = None) -> TeacherScores:
    """Reads every cached score back, combined over the pairs that all cached teachers scored.

    Args:
        cache_dir: A cache folder written by :func:`score_with_teachers`.
        ensemble: How to combine several teachers; defaults to the method recorded in the
            manifest (``"mean"`` when none is).

    Raises:
        ValueError: When the folder holds no cached scores.
    """
    cache = TeacherCache(cache_dir)
    names = cache.teachers()
    if not names:
        raise ValueError(f"{cache_dir}: no cached teacher scores")
    method = ensemble or (cache.manifest.get("ensemble") or {}).get("method", "mean")
    tables = {name: cache.scores(name) for name in names}
    pairs = unique_pairs(tables[names[0]])
    for name in names[1:]:
        pairs = pairs.join(tables[name].select(["qid", "docid"]), keys=["qid", "docid"], join_type="inner", use_threads=False)
    pairs = pairs.sort_by([("qid", "ascending"), ("docid", "ascending")])
    per_teacher = {name: _align(pairs, table) for name, table in tables.items()}
    scores, recipe = combine(per_teacher, method)
    cached = {name: pairs.num_rows for name in names}
    return TeacherScores(pairs=pairs, per_teacher=per_teacher, scores=scores, cached=cached, ensemble=recipe)
