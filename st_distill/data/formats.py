"""Readers and writers of the field's file formats, validated line by line.

Ids are strings everywhere. A run is ``{qid: {docid: score}}`` and qrels are
``{qid: {docid: grade}}``, the dict-of-dicts shape that ir_measures and pytrec_eval
take directly. Texts are ``{id: text}``.

Every reader checks each line; a bad line raises :class:`FormatError`, whose message
names the file and the line (``path:line: what is wrong``). Readers that take
``skip_invalid=True`` instead skip bad lines and log one warning with the count and the
first offending line; pass a ``skipped`` :class:`collections.Counter` to receive the
counts by reason (the dataset builder puts them in its report).

What every line reader does the same way:

- a UTF-8 byte order mark at the start of the file is dropped; blank lines are skipped;
  a line ends at ``\n``, ``\r\n`` or a lone ``\r`` (as Python's text mode reads it); a line
  that is not UTF-8 is bad;
- numbers are read as trec_eval reads them, in ASCII: integers ``[+-]digits``, scores
  ``[+-]digits[.digits][e[+-]digits]``; Python-only spellings (``1_000``, non-ASCII digits,
  ``nan``, ``inf``) are bad, as is a score that overflows to infinity;
- fields of TREC files (runs, qrels, LLM rankings) are separated by ASCII spaces and tabs;
  a line holding another Unicode space (U+00A0, U+2028, ...) is bad, as Python's
  ``str.split`` and trec_eval would cut it differently;
- an empty id or an empty text (queries, documents) is bad, in TSV and BEIR files alike;
- qrels grades are integers within :data:`GRADE_LIMIT` of 0 (trec_eval's memory and time grow
  with the highest grade: 800 MB and 7 s for one query judged 10^8; beyond 2^63 it fails).

Ids written into a TREC run must be non-empty and hold no whitespace (:func:`write_trec_run`
refuses them rather than write a line that cannot be read back).

Supported formats:

- TREC run: ``qid Q0 docid rank score tag``, separated by spaces or tabs.
- TREC qrels: ``qid iter docid grade``; BEIR qrels: TSV with a ``query-id corpus-id score`` header.
- MS MARCO-style collections and queries: ``id<TAB>text`` TSV.
- BEIR folders: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``),
  ``qrels/<split>.tsv``. A document's text is ``title + " " + text``, stripped, as in BEIR's re-ranker.

Files ending in ``.gz`` are decompressed on the fly.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from st_distill._deprecated import alias_names
from st_distill.io import atomic_write, open_bytes, require_file

logger = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]
Texts = dict[str, str]

GRADE_LIMIT = 10_000
"""Largest absolute qrels grade accepted (real collections use -2 to 4)."""

UTF8_BOM = b"\xef\xbb\xbf"
_UNICODE_SPACE = re.compile(r"[^\S \t\n\r\x0b\x0c]")  # whitespace to str.split(), not to trec_eval
_WHITESPACE = re.compile(r"\s")


class FormatError(ValueError):
    """A malformed input file. The message starts with ``path:line:`` (or ``path:`` for whole-file problems)."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class BadLine(ValueError):
    """Raised by a one-line parser; the reader turns it into a :class:`FormatError` with the file and line.

    Args:
        message: What is wrong with the line.
        reason: The counter key when the line is skipped.
    """

    def __init__(self, message: str, reason: str = "malformed line") -> None:
        super().__init__(message)
        self.reason = reason


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


def _plain_ascii(text: str) -> bool:
    """ASCII, without ``_`` or surrounding whitespace: where Python's ``int``/``float`` read what trec_eval reads."""
    return text.isascii() and "_" not in text and text == text.strip()


def parse_int(text: str) -> int | None:
    """Parses an ASCII integer (``[+-]digits``); None for anything else, ``1_000`` and non-ASCII digits included."""
    if not _plain_ascii(text):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_score(text: str) -> float | None:
    """Parses a finite ASCII decimal number (``[+-]digits[.digits][e[+-]digits]``); None otherwise.

    Python's ``float`` also reads ``1_000``, ``nan``, ``inf`` and non-ASCII digits, which
    trec_eval reads differently (``1_000`` as 1) or not at all; those are None here, as is a
    number that overflows to infinity. (On plain ASCII without ``_``, ``float`` accepts exactly
    these decimals, plus ``nan`` and ``inf``, which are not finite.)
    """
    if not _plain_ascii(text):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def split_fields(line: str) -> list[str]:
    """Splits a line of a TREC file on ASCII spaces and tabs.

    Raises:
        BadLine: When the line holds another Unicode space, which ``str.split`` and trec_eval treat differently.
    """
    if line.isascii() and (line.isprintable() or line.replace("\t", " ").isprintable()):
        return line.split()  # no character but spaces and tabs that str.split would cut at: the fast, usual case
    other = _UNICODE_SPACE.search(line)  # U+001C to U+001F too: ASCII, and yet spaces to str.split
    if other:
        raise BadLine(
            f"holds U+{ord(other.group()):04X}, a Unicode space: fields are separated by ASCII spaces or tabs, "
            "and ids cannot hold spaces"
        )
    return line.split()


def numbered_lines(
    path: str | os.PathLike, on_invalid: Callable[[int, str, str], None] | None = None
) -> Iterator[tuple[int, str]]:
    """Yields ``(line_number, line)`` for every non-blank line, 1-based, without the line ending.

    Lines end at ``\n``, ``\r\n`` or a lone ``\r``, as Python's text mode and pyarrow's CSV
    reader cut them; line numbers count ``\n`` (the pieces of a line cut by a lone ``\r``
    share its number). A UTF-8 byte order mark at the start of the file is dropped.

    Args:
        path: The file (``.gz`` is decompressed).
        on_invalid: Called as ``on_invalid(line_number, message, reason)`` for a line that is not
            UTF-8 (e.g. :meth:`LineChecker.bad`, to skip it); by default such a line raises.

    Raises:
        FormatError: On a line that is not valid UTF-8 (without ``on_invalid``), or a ``.gz`` file
            whose content is not gzip data or is cut short.
        IsADirectoryError, FileNotFoundError: When ``path`` is a folder or does not exist.
    """
    number = 0
    with open_bytes(path) as f:
        try:
            for number, raw in enumerate(f, start=1):
                if number == 1 and raw.startswith(UTF8_BOM):
                    raw = raw[len(UTF8_BOM) :]
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as error:
                    message = f"not valid UTF-8 ({error.reason} at byte {error.start} of the line)"
                    if on_invalid is None:
                        raise FormatError(path, number, message) from None
                    on_invalid(number, message, "invalid UTF-8")
                    continue
                for piece in line.split("\r") if "\r" in line else (line,):
                    if piece.strip():
                        yield number, piece
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            if number == 0:
                raise FormatError(path, None, f"not a gzip file, although its name ends in .gz ({error})") from None
            raise FormatError(path, number + 1, f"the gzip data is corrupt or cut short ({error})") from None


def _records(
    path: str | os.PathLike,
    parse: Callable[[str], tuple],
    check: LineChecker,
) -> Iterator[tuple[int, tuple]]:
    """``(line_number, parse(line))`` for each line that parses; bad lines go to ``check``."""
    for number, line in numbered_lines(path, check.bad):
        try:
            record = parse(line)
        except BadLine as bad:
            check.bad(number, str(bad), bad.reason)
            continue
        yield number, record


def _run_line(line: str) -> tuple[str, str, int, float]:
    """``(qid, docid, rank, score)`` of one ``qid Q0 docid rank score tag`` line."""
    if line.isascii() and "_" not in line and (line.isprintable() or line.replace("\t", " ").isprintable()):
        # the usual line, checked once as a whole (what split_fields, parse_int and parse_score check per
        # field); runs have millions of lines and this halves the time a line takes
        fields = line.split()
        if len(fields) == 6:
            try:
                rank, score = int(fields[3]), float(fields[4])
            except ValueError:
                pass
            else:
                if math.isfinite(score):
                    return fields[0], fields[2], rank, score
    fields = split_fields(line)
    if len(fields) != 6:
        raise BadLine(f"expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}: {line!r}")
    qid, _, docid, rank_text, score_text, _ = fields
    rank = parse_int(rank_text)
    if rank is None:
        raise BadLine(f"rank {rank_text!r} is not an integer")
    score = parse_score(score_text)
    if score is None:
        raise BadLine(f"score {score_text!r} is not a finite number", "non-finite score")
    return qid, docid, rank, score


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
    for number, line in numbered_lines(path, check.bad):  # not through _records: runs are long, a generator less
        try:
            qid, docid, rank, score = _run_line(line)
        except BadLine as bad:
            check.bad(number, str(bad), bad.reason)
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
    """Keeps each query's first ``k`` documents in trec_eval order (all of them when ``k`` is None).

    Raises:
        ValueError: When ``k`` is not None and below 1.
    """
    if k is not None and k < 1:
        raise ValueError(f"k (depth) must be at least 1, got {k}")
    return {qid: dict(ranked(docs)[:k]) for qid, docs in run.items()}


def run_id_problem(key: str) -> str | None:
    """Why ``key`` cannot be a query or document id of a TREC run (empty, or holds whitespace); None if it can."""
    if key.split() == [key]:  # the usual case, in one pass
        return None
    if not key:
        return "is empty"
    space = _WHITESPACE.search(key)
    if space:
        return f"holds whitespace (U+{ord(space.group()):04X}), which separates a TREC run's fields"
    return None


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: str | os.PathLike, tag: str = "st-distill") -> None:
    """Writes a run in TREC format, ranks from 1 in trec_eval order, atomically.

    Scores are written in Python's shortest round-trip form, so reading the file back gives the
    same floats and re-evaluating it reproduces the in-memory metrics exactly (fixed decimals would
    tie scores closer than their precision, and trec_eval would then break the ties by docid).

    Args:
        run: ``{qid: {docid: score}}``.
        path: The destination file.
        tag: The run tag (last column).

    Raises:
        ValueError: On an id or tag that is empty or holds whitespace (the line could not be read
            back), or a score that is not finite; nothing is written then.
    """
    with atomic_write(path) as f:  # an error below leaves no file (and any previous one untouched)
        if problem := run_id_problem(tag):
            raise ValueError(f"{path}: run tag {tag!r} {problem}")
        for qid, docs in run.items():
            if problem := run_id_problem(qid):
                raise ValueError(f"{path}: query id {qid!r} {problem}")
            for rank, (docid, score) in enumerate(ranked(docs), start=1):
                if problem := run_id_problem(docid):
                    raise ValueError(f"{path}: document id {docid!r} (query {qid!r}) {problem}")
                if not math.isfinite(score):
                    raise ValueError(f"{path}: score {score!r} of document {docid!r} (query {qid!r}) is not finite")
                f.write(f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n")


def _grade(text: str) -> int:
    grade = parse_int(text)
    if grade is None:
        raise BadLine(f"grade {text!r} is not an integer")
    if abs(grade) > GRADE_LIMIT:
        raise BadLine(f"grade {grade} is out of range: grades are integers from {-GRADE_LIMIT} to {GRADE_LIMIT}")
    return grade


def read_qrels(path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None) -> Qrels:
    """Reads relevance judgements in TREC (``qid iter docid grade``) or BEIR TSV (with header) format.

    The format is recognised from the first line: a ``query-id`` header means BEIR.
    Grades are integers (negative grades, as in some TREC tracks, are kept) within
    :data:`GRADE_LIMIT` of 0.

    Args:
        path: The qrels file.
        skip_invalid: Skip bad lines with a counted warning instead of raising.
        skipped: Optional counter receiving the skipped lines by reason.

    Returns:
        ``{qid: {docid: grade}}``.

    Raises:
        FormatError: On a malformed line, a grade out of range, a document judged twice with
            different grades, or an empty file.
    """
    qrels: Qrels = {}
    check = LineChecker(path, skip_invalid, skipped)
    beir = None

    def parse(line: str) -> tuple[str, str, int] | None:
        nonlocal beir
        fields = split_fields(line)
        if beir is None:
            beir = fields[0].lower() == "query-id"
            if beir:
                return None
        if beir:
            fields = [field.strip() for field in line.split("\t")]
        if len(fields) != (3 if beir else 4):
            expected = "'query-id<TAB>corpus-id<TAB>score'" if beir else "'qid iter docid grade'"
            raise BadLine(f"expected {expected}, got {len(fields)} fields: {line!r}")
        qid, docid, grade_text = (fields[0], fields[1], fields[2]) if beir else (fields[0], fields[2], fields[3])
        if not qid or not docid:
            raise BadLine(f"empty {'query' if not qid else 'document'} id: {line!r}")
        return qid, docid, _grade(grade_text)

    for number, record in _records(path, parse, check):
        if record is None:
            continue
        qid, docid, grade = record
        docs = qrels.setdefault(qid, {})
        if docs.get(docid, grade) != grade:
            check.bad(number, f"document {docid!r} judged twice for query {qid!r} with different grades", "conflict")
            continue
        docs[docid] = grade
    check.finish()
    if not qrels:
        raise FormatError(path, None, "no judgements in the file")
    return qrels


def _tsv_record(line: str) -> tuple[str, str]:
    """``(id, text)`` of one ``id<TAB>text`` line, both stripped."""
    key, sep, text = line.partition("\t")
    key, text = key.strip(), text.strip()
    if not sep:
        raise BadLine(f"expected 'id<TAB>text', got {line[:80]!r}")
    if not key:
        raise BadLine(f"empty id: {line[:80]!r}", "empty id")
    if not text:
        raise BadLine(f"empty text for id {key!r}", "empty text")
    return key, text


def _jsonl_record(line: str) -> tuple[str, str]:
    """``(_id, text)`` of one BEIR record; the text is ``title + " " + text``, stripped."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(f"invalid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of over 4300 digits, or deep nesting
        raise BadLine(f"invalid JSON ({exc})") from None
    if not isinstance(record, dict) or "_id" not in record or not isinstance(record.get("text"), str):
        raise BadLine("expected an object with '_id' and a string 'text'")
    key, title = record["_id"], record.get("title")
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)  # as the id reads in the qrels
    if not isinstance(key, str):
        raise BadLine(f"'_id' must be a string (or an integer), got {type(key).__name__} {json.dumps(key)}", "bad id")
    if title is not None and not isinstance(title, str):
        raise BadLine(f"'title' must be a string, got {type(title).__name__}")
    if not key:
        raise BadLine("empty '_id'", "empty id")
    text = f"{title or ''} {record['text']}".strip()
    if "\\u" in line:  # only a \u escape can give a lone surrogate, which is not Unicode text
        try:
            key.encode("utf-8"), text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadLine("a lone surrogate (\\ud800 to \\udfff without its pair) in '_id', 'title' or 'text'") from None
    if not text:
        raise BadLine(f"empty text for id {key!r} (title and text)", "empty text")
    return key, text


def _read_texts(path: str | os.PathLike, parse: Callable[[str], tuple[str, str]], skip_invalid: bool,
                skipped: Counter | None, expected: str) -> Texts:
    texts: Texts = {}
    check = LineChecker(path, skip_invalid, skipped)
    for number, (key, text) in _records(path, parse, check):
        if key in texts:
            check.bad(number, f"id {key!r} appears twice", reason="duplicate id")
            continue
        texts[key] = text
    check.finish()
    if not texts:
        raise FormatError(path, None, f"no {expected} in the file")
    return texts


def read_tsv(path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None) -> Texts:
    """Reads an MS MARCO-style ``id<TAB>text`` file (collection or queries) into ``{id: text}``.

    Id and text are stripped of surrounding whitespace.

    Raises:
        FormatError: On a line without a tab, an empty id or text, a repeated id, or an empty file.
    """
    return _read_texts(path, _tsv_record, skip_invalid, skipped, "'id<TAB>text' line")


def read_jsonl(path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None) -> Texts:
    """Reads a BEIR ``corpus.jsonl`` or ``queries.jsonl`` into ``{_id: text}``.

    A record's text is ``title + " " + text`` stripped (queries have no title), as BEIR's
    re-ranker builds its pairs. ``_id`` is a string; an integer ``_id`` is read as its decimal
    string (``4983`` -> ``"4983"``, as it reads in the qrels); any other type is an error.

    Raises:
        FormatError: On invalid JSON, a record without ``_id`` or a string ``text``, an ``_id``
            that is not a string or an integer, a ``title`` that is not a string, an empty id or
            text, a repeated id, or an empty file.
    """
    return _read_texts(path, _jsonl_record, skip_invalid, skipped, "record")


def _text_parser(path: str | os.PathLike) -> Callable[[str], tuple[str, str]]:
    """The one-line parser of a text file, by its extension; raises when ``path`` is not a file."""
    suffixes = require_file(path).suffixes
    kind = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes or [""])[-1]
    if kind == ".jsonl":
        return _jsonl_record
    if kind in (".tsv", ".txt"):
        return _tsv_record
    raise FormatError(path, None, "unknown text format: expected a .tsv (id<TAB>text) or .jsonl (BEIR) file")


def read_texts(path: str | os.PathLike, skip_invalid: bool = False, skipped: Counter | None = None) -> Texts:
    """Reads queries or a collection from a ``.tsv`` or ``.jsonl`` file (optionally ``.gz``), by its extension."""
    if _text_parser(path) is _jsonl_record:
        return read_jsonl(path, skip_invalid, skipped)
    return read_tsv(path, skip_invalid, skipped)


def line_of_id(path: str | os.PathLike, key: str) -> int | None:
    """The first line of a ``.tsv`` or ``.jsonl`` text file whose record has id ``key`` (None if none has)."""
    parse = _text_parser(path)
    for number, line in numbered_lines(path, on_invalid=lambda *_: None):
        try:
            if parse(line)[0] == key:
                return number
        except BadLine:
            continue
    return None


def check_run_ids(texts: Mapping[str, str], path: str | os.PathLike | None, what: str) -> None:
    """Checks that every id of ``texts`` can be written into a TREC run, before any work is done with them.

    Args:
        texts: ``{id: text}`` read from ``path``.
        path: The file the texts came from (to name the line), or None.
        what: ``"query"`` or ``"document"``, for the message.

    Raises:
        FormatError: Naming the file and line of the first id that is empty or holds whitespace.
        ValueError: The same, when ``path`` is None.
    """
    for key in texts:
        problem = run_id_problem(key)
        if problem:
            message = f"{what} id {key!r} {problem}: a TREC run cannot hold it"
            if path is None:
                raise ValueError(message)
            raise FormatError(path, line_of_id(path, key), message)


@dataclass(kw_only=True)
class Collection:
    """A collection in memory: ``queries`` and ``corpus`` as ``{id: text}`` (a dict or a
    :class:`~st_distill.data.store.TextStore`), ``qrels`` of one split, and its first-stage ``run``
    (``None`` when it has none). ``name`` and ``relevance_level`` (lowest relevant grade) label it."""

    queries: Texts
    corpus: Texts
    qrels: Qrels | None = None
    run: Run | None = None
    name: str = ""
    relevance_level: int = 1


#: ``BeirData``: the record load_beir returned before Collection (0.1)
__getattr__ = alias_names(__name__, "st_distill.data.formats", BeirData=Collection)


def load_beir(folder: str | os.PathLike, split: str = "test") -> Collection:
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
    return Collection(
        corpus=read_jsonl(folder / "corpus.jsonl"),
        queries=read_jsonl(folder / "queries.jsonl"),
        qrels=read_qrels(qrels_path),
    )
