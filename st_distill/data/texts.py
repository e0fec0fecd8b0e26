"""Queries and documents as ``{id: text}``: MS MARCO-style ``id<TAB>text`` TSV and BEIR JSONL files
(see :mod:`st_distill.data.formats` for the rules), and the check that their ids fit a TREC run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Mapping

from st_distill.data.lines import BadLine, FormatError, LineChecker, numbered_lines, records
from st_distill.data.trec import run_id_problem
from st_distill.io import require_file

__all__ = ["Texts", "check_run_ids", "line_of_id", "read_jsonl", "read_texts", "read_tsv"]

Texts = dict[str, str]


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
    for number, (key, text) in records(path, parse, check):
        if key in texts:
            check.bad(number, f"id {key!r} appears twice", reason="duplicate id")
            continue
        texts[key] = text
    return check.finish(texts, empty=f"no {expected} in the file")


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
