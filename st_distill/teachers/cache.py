"""The teacher cache: a folder of Parquet score shards per teacher fingerprint and a verified manifest.

It is a folder::

    manifest.json                   teachers by fingerprint (name, model id, revision, max length,
                                    activation/similarity, component hashes), shards with row counts
                                    and SHA-256, the last run's ensemble recipe and normalisation
    .lock                           held by the run writing to the cache (see :meth:`TeacherCache.writing`)
    <name>-<fingerprint[:16]>/shard-00000.parquet   (qid, docid, query_hash, doc_hash, score) rows

Every shard is checked against its SHA-256 when read; a shard that changed after it was written,
or is missing, stops the run with an error naming it (``repair=True`` moves it aside). A shard is
written atomically, then the manifest, so a run killed at any point loses at most the chunk in
flight. Reading a cache never writes to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from st_distill.data.normalize import Normalization
from st_distill.io import atomic_write, write_json
from st_distill.teachers.models import Teacher, _safe_name

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CACHE_FORMAT = "st-distill-teacher-cache"
CACHE_VERSION = 2
PAIR_SCHEMA = pa.schema([("qid", pa.string()), ("docid", pa.string())])
KEYS = ["qid", "docid", "query_hash", "doc_hash"]
KEY_SCHEMA = pa.schema([*PAIR_SCHEMA, ("query_hash", pa.uint64()), ("doc_hash", pa.uint64())])
SCORE_SCHEMA = pa.schema([*KEY_SCHEMA, ("score", pa.float32())])
LOCK = ".lock"


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
        """Rewrites the manifest (atomically) with up-to-date counts and checksum; a manifest
        that already says the same is left as it is (so a complete cache in a read-only folder
        can be scored from)."""
        if ensemble is not None:
            self.manifest.ensemble = ensemble
        if normalize is not None:
            self.manifest.normalize = normalize
        for entry in self.manifest.teachers.values():
            entry.pairs = sum(shard.rows for shard in entry.shards)
        self.manifest.checksum = self.manifest.shard_checksum()
        data = self.manifest.model_dump(mode="json")
        if self.path.is_file() and json.loads(self.path.read_text(encoding="utf-8")) == data:
            return
        write_json(self.path, data)

    def verify(self, repair: bool = False) -> None:
        """Checks every shard of every teacher against its recorded SHA-256 (see :meth:`scores`)."""
        for fingerprint in self.teachers():
            self.scores(fingerprint, repair=repair)


@contextlib.contextmanager
def cache_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Holds the lock of the cache in ``folder`` (``.lock``), waiting while another run holds it.

    Every writer of a cache holds it from reading the manifest to writing it last, so two runs
    on one cache never number their shards alike nor lose each other's manifest entries: the
    second waits, then finds the first one's scores in the cache. A folder nobody may write to
    is not locked (no run can change it).

    Args:
        folder: The cache folder (created if missing).

    Raises:
        ValueError: When ``folder`` is a file.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (a teacher cache is a folder)")
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        yield
        return
    lock = FileLock(folder / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("teacher cache %s: another run is writing to it; waiting for it to finish", folder)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
