"""Scoring pairs with teachers through the cache, and combining several teachers into one score."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import xxhash

from st_distill.data.formats import Run
from st_distill.data.normalize import Normalization, check_normalization, scores_table, table_run
from st_distill.data.store import lookup_texts
from st_distill.logs import progress_enabled
from st_distill.teachers.cache import KEY_SCHEMA, KEYS, PAIR_SCHEMA, TeacherCache, cache_lock
from st_distill.teachers.models import Teacher

logger = logging.getLogger(__name__)

ENSEMBLES = ("mean", "zscore")
_HASH_BLOCK = 1 << 16  # texts fetched and hashed at a time


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

    def table(self, teacher: str | None = None) -> pa.Table:
        """The ``(qid, docid, score)`` table of the ensemble's raw scores, or of one teacher's, with
        the normalisation and the teachers recorded (see :func:`st_distill.data.normalize.scores_table`):
        what :func:`~st_distill.dataset.build_dataset` takes as ``teacher_scores``."""
        values = self.scores if teacher is None else self.per_teacher[teacher]
        recipe = self.ensemble
        provenance = {"ensemble": recipe.get("method"), "teachers": recipe.get("teachers"), "fingerprints": recipe.get("fingerprints")}
        return scores_table(self.pairs.column("qid"), self.pairs.column("docid"), pa.array(values, pa.float32()),
                            normalize=self.normalize, teacher=provenance)

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """The Arrow stream of :meth:`table`: ``pa.table(scores)`` reads the ensemble's scores."""
        return self.table().__arrow_c_stream__(requested_schema)

    def to_run(self, teacher: str | None = None) -> Run:
        """``{qid: {docid: raw score}}`` of the ensemble, or of one teacher."""
        return table_run(self.table(teacher))


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


def _texts(texts: Mapping[str, str], ids: list[str], what: str) -> list[str]:
    found = lookup_texts(texts, ids)
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
        found = _texts(texts, block, what) if strict else lookup_texts(texts, block)
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
    table = _keyed(unique_pairs(pairs), queries, corpus)
    with cache_lock(cache_dir):
        cache = TeacherCache(cache_dir)  # read under the lock: another run may just have written to it
        result = TeacherScores(pairs=table.select(["qid", "docid"]), per_teacher={}, scores=np.empty(0, np.float32), normalize=normalize)
        fingerprints = {}
        for teacher in teachers:
            fingerprint = fingerprints[teacher.name] = cache.register(teacher)
            values = _align(table, cache.scores(fingerprint, repair=repair))
            missing = np.flatnonzero(np.isnan(values))
            result.cached[teacher.name] = table.num_rows - len(missing)
            result.scored[teacher.name] = _score_missing(
                teacher, fingerprint, cache, table, values, missing, queries, corpus, shard_size, show_progress_bar
            ) if len(missing) else 0
            result.per_teacher[teacher.name] = values
        result.scores, result.ensemble = combine(result.per_teacher, ensemble)
        result.ensemble.update(fingerprints=fingerprints, pairs=table.num_rows)
        cache.save(ensemble=result.ensemble, normalize=normalize)
    return result


def _score_missing(
    teacher: Teacher, fingerprint: str, cache: TeacherCache, table: pa.Table, values: np.ndarray, missing: np.ndarray,
    queries: Mapping[str, str], corpus: Mapping[str, str], shard_size: int, show_progress_bar: bool,
) -> int:
    """Scores the pairs of ``table`` at the positions ``missing`` in chunks of ``shard_size``, each
    chunk written to the cache as a shard before the next starts; fills ``values`` in place.

    Returns:
        The number of pairs scored.

    Raises:
        ValueError: When the teacher returns scores of the wrong shape or non-finite ones.
    """
    from tqdm.auto import tqdm

    todo = table.take(pa.array(missing))
    with tqdm(
        total=table.num_rows, initial=table.num_rows - len(missing), desc=f"teacher {teacher.name}",
        unit="pair", disable=not show_progress_bar,
    ) as progress:
        for start in range(0, len(missing), shard_size):
            chunk = todo.slice(start, shard_size)
            qids, docids = chunk.column("qid").to_pylist(), chunk.column("docid").to_pylist()
            scores = np.asarray(teacher.score(_texts(queries, qids, "query"), _texts(corpus, docids, "document")), dtype=np.float32)
            if scores.shape != (len(qids),) or not np.isfinite(scores).all():
                raise ValueError(
                    f"teacher {teacher.name!r} returned scores of shape {scores.shape} for {len(qids)} pairs, or non-finite scores"
                )
            cache.add_shard(fingerprint, chunk.append_column("score", pa.array(scores)))
            values[missing[start : start + shard_size]] = scores
            progress.update(len(scores))
    return len(missing)


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
