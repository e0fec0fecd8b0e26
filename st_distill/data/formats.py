"""Readers and writers of the field's file formats, validated line by line.

Ids are strings everywhere. A run is ``{qid: {docid: score}}`` and qrels are
``{qid: {docid: grade}}``, the dict-of-dicts shape that ir_measures and pytrec_eval
take directly. Texts are ``{id: text}``.

Every reader checks each line; a bad line raises :class:`FormatError`, whose message
names the file and the line (``path:line: what is wrong``). Readers that take
``skip_invalid=True`` instead skip bad lines and log one warning with the count and the
first offending line; pass a ``skipped`` :class:`collections.Counter` to receive the
counts by reason (the dataset builder puts them in its report).

Supported formats:

- TREC run: ``qid Q0 docid rank score tag``, separated by spaces or tabs.
- TREC qrels: ``qid iter docid grade``; BEIR qrels: TSV with a ``query-id corpus-id score`` header.
- MS MARCO-style collections and queries: ``id<TAB>text`` TSV.
- BEIR folders: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``),
  ``qrels/<split>.tsv``. A document's text is ``title + " " + text``, stripped, as in BEIR's re-ranker.

Files ending in ``.gz`` are decompressed on the fly.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from st_distill.io import atomic_write, open_bytes

logger = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]
Texts = dict[str, str]


class FormatError(ValueError):
    """A malformed input file. The message starts with ``path:line:`` (or ``path:`` for whole-file problems)."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class LineChecker:
    """Raises on a bad line, or counts and skips it, and reports skips once at the end.

    Args:
        path: The file being read, for messages.
        skip_invalid: Skip bad lines instead of raising.
        skipped: Optional counter that receives ``{reason: count}`` for skipped lines.
    """

    def __init__(self, path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None) -> None:
        self.path = str(path)
        self.skip_invalid = skip_invalid
        self.skipped = skipped if skipped is not None else Counter()
        self.count = 0
        self.first: FormatError | None = None

    def bad(self, line: int, message: str, reason: str = "malformed line") -> None:
        """Handles a bad line: raises :class:`FormatError` unless skipping, in which case it counts it."""
        error = FormatError(self.path, line, message)
        if not self.skip_invalid:
            raise error
        self.count += 1
        self.skipped[reason] += 1
        if self.first is None:
            self.first = error

    def finish(self) -> None:
        """Logs one warning with the number of skipped lines and the first of them."""
        if self.count:
            logger.warning("skipped %d invalid line(s) of %s (first: %s)", self.count, self.path, self.first)


def parse_score(text: str) -> float | None:
    """Parses a finite float; returns None for text that is not a number, NaN or infinite."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def numbered_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yields ``(line_number, line)`` for every non-blank line, 1-based, without the line ending.

    Raises:
        FormatError: On a line that is not valid UTF-8, naming the line.
    """
    with open_bytes(path) as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise FormatError(path, number, f"not valid UTF-8 ({error.reason} at byte {error.start} of the line)") from None
            if line.strip():
                yield number, line


def iter_trec_run(
    path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None
) -> Iterator[tuple[int, str, str, int, float]]:
    """Streams a TREC run file as ``(line_number, qid, docid, rank, score)`` tuples, validating each line.

    Args:
        path: The run file (``qid Q0 docid rank score tag``; spaces or tabs).
        skip_invalid: Skip malformed lines (wrong field count, non-integer rank, non-finite score)
            with a counted warning instead of raising :class:`FormatError`.
        skipped: Optional counter receiving the skipped lines by reason.
    """
    check = LineChecker(path, skip_invalid, skipped)
    for number, line in numbered_lines(path):
        fields = line.split()
        if len(fields) != 6:
            check.bad(number, f"expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}: {line!r}")
            continue
        qid, _, docid, rank_text, score_text, _ = fields
        try:
            rank = int(rank_text)
        except ValueError:
            check.bad(number, f"rank {rank_text!r} is not an integer")
            continue
        score = parse_score(score_text)
        if score is None:
            check.bad(number, f"score {score_text!r} is not a finite number", reason="non-finite score")
            continue
        yield number, qid, docid, rank, score
    check.finish()


def read_trec_run(path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None) -> Run:
    """Reads a TREC run into ``{qid: {docid: score}}``.

    A document listed twice for the same query is an error (trec_eval would silently keep
    one of them). An empty run is an error too: there is nothing to re-rank or evaluate.

    Args:
        path: The run file.
        skip_invalid: Skip bad lines (and repeated documents) with a counted warning.
        skipped: Optional counter receiving the skipped lines by reason.

    Returns:
        The run, queries in file order.

    Raises:
        FormatError: On a malformed line (unless skipping) or an empty file.
    """
    run: Run = {}
    check = LineChecker(path, skip_invalid, skipped)
    for number, qid, docid, _, score in iter_trec_run(path, skip_invalid, check.skipped):
        docs = run.setdefault(qid, {})
        if docid in docs:
            check.bad(number, f"document {docid!r} appears twice for query {qid!r}", reason="duplicate document")
            continue
        docs[docid] = score
    check.finish()
    if not run:
        raise FormatError(path, None, "the run is empty: no 'qid Q0 docid rank score tag' line")
    return run


def ranked(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    """Orders one query's ``{docid: score}`` as trec_eval does: score descending, then docid descending."""
    return sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)


def top_k(run: Mapping[str, Mapping[str, float]], k: int | None) -> Run:
    """Keeps each query's first ``k`` documents in trec_eval order (all of them when ``k`` is None)."""
    return {qid: dict(ranked(docs)[:k]) for qid, docs in run.items()}


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: str | os.PathLike, tag: str = "st-distill") -> None:
    """Writes a run in TREC format, ranks from 1 in trec_eval order, atomically.

    Scores are written in Python's shortest round-trip form, so reading the file back gives the
    same floats and re-evaluating it reproduces the in-memory metrics exactly (fixed decimals would
    tie scores closer than their precision, and trec_eval would then break the ties by docid).

    Args:
        run: ``{qid: {docid: score}}``.
        path: The destination file.
        tag: The run tag (last column).
    """
    with atomic_write(path) as f:
        for qid, docs in run.items():
            for rank, (docid, score) in enumerate(ranked(docs), start=1):
                f.write(f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n")


def read_qrels(path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None) -> Qrels:
    """Reads relevance judgements in TREC (``qid iter docid grade``) or BEIR TSV (with header) format.

    The format is recognised from the first line: a ``query-id`` header means BEIR.
    Grades are integers (negative grades, as in some TREC tracks, are kept).

    Args:
        path: The qrels file.
        skip_invalid: Skip bad lines with a counted warning instead of raising.
        skipped: Optional counter receiving the skipped lines by reason.

    Returns:
        ``{qid: {docid: grade}}``.

    Raises:
        FormatError: On a malformed line, a document judged twice with different grades, or an empty file.
    """
    qrels: Qrels = {}
    check = LineChecker(path, skip_invalid, skipped)
    beir = None
    for number, line in numbered_lines(path):
        fields = line.split("\t") if beir else line.split()
        if beir is None:
            beir = fields[0].lower() == "query-id"
            if beir:
                continue
        if len(fields) != (3 if beir else 4):
            expected = "'query-id<TAB>corpus-id<TAB>score'" if beir else "'qid iter docid grade'"
            check.bad(number, f"expected {expected}, got {len(fields)} fields: {line!r}")
            continue
        qid, docid, grade_text = (fields[0], fields[1], fields[2]) if beir else (fields[0], fields[2], fields[3])
        try:
            grade = int(grade_text)
        except ValueError:
            check.bad(number, f"grade {grade_text!r} is not an integer")
            continue
        docs = qrels.setdefault(qid.strip(), {})
        docid = docid.strip()
        if docs.get(docid, grade) != grade:
            check.bad(number, f"document {docid!r} judged twice for query {qid!r} with different grades", "conflict")
            continue
        docs[docid] = grade
    check.finish()
    if not qrels:
        raise FormatError(path, None, "no judgements in the file")
    return qrels


def read_tsv(path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None) -> Texts:
    """Reads an MS MARCO-style ``id<TAB>text`` file (collection or queries) into ``{id: text}``.

    Raises:
        FormatError: On a line without a tab, an empty id or text, a repeated id, or an empty file.
    """
    texts: Texts = {}
    check = LineChecker(path, skip_invalid, skipped)
    for number, line in numbered_lines(path):
        key, sep, text = line.partition("\t")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            check.bad(number, f"expected 'id<TAB>text', got {line[:80]!r}")
            continue
        if key in texts:
            check.bad(number, f"id {key!r} appears twice", reason="duplicate id")
            continue
        texts[key] = text
    check.finish()
    if not texts:
        raise FormatError(path, None, "no 'id<TAB>text' line in the file")
    return texts


def read_jsonl(path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None) -> Texts:
    """Reads a BEIR ``corpus.jsonl`` or ``queries.jsonl`` into ``{_id: text}``.

    A record's text is ``title + " " + text`` stripped (queries have no title), as BEIR's
    re-ranker builds its pairs.

    Raises:
        FormatError: On invalid JSON, a record without ``_id`` or ``text``, a repeated id, or an empty file.
    """
    texts: Texts = {}
    check = LineChecker(path, skip_invalid, skipped)
    for number, line in numbered_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            check.bad(number, f"invalid JSON ({exc.msg})")
            continue
        if not isinstance(record, dict) or "_id" not in record or not isinstance(record.get("text"), str):
            check.bad(number, "expected an object with '_id' and a string 'text'")
            continue
        key = str(record["_id"])
        if key in texts:
            check.bad(number, f"id {key!r} appears twice", reason="duplicate id")
            continue
        texts[key] = f"{record.get('title') or ''} {record['text']}".strip()
    check.finish()
    if not texts:
        raise FormatError(path, None, "no record in the file")
    return texts


def read_texts(path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None) -> Texts:
    """Reads queries or a collection from a ``.tsv`` or ``.jsonl`` file (optionally ``.gz``), by its extension."""
    suffixes = Path(path).suffixes
    kind = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes or [""])[-1]
    if kind == ".jsonl":
        return read_jsonl(path, skip_invalid, skipped)
    if kind in (".tsv", ".txt"):
        return read_tsv(path, skip_invalid, skipped)
    raise FormatError(path, None, "unknown text format: expected a .tsv (id<TAB>text) or .jsonl (BEIR) file")


@dataclass
class BeirData:
    """A BEIR folder in memory: ``corpus`` and ``queries`` as ``{id: text}``, ``qrels`` for one split."""

    corpus: Texts
    queries: Texts
    qrels: Qrels


def load_beir(folder: str | os.PathLike, split: str = "test") -> BeirData:
    """Loads a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

    Args:
        folder: The dataset folder.
        split: The qrels split to load.

    Raises:
        FileNotFoundError: When a required file is missing.
        FormatError: On a malformed line in any of the files.
    """
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise FileNotFoundError(f"{qrels_path}: no such file (splits here: {', '.join(available) or 'none'})")
    return BeirData(
        corpus=read_jsonl(folder / "corpus.jsonl"),
        queries=read_jsonl(folder / "queries.jsonl"),
        qrels=read_qrels(qrels_path),
    )
