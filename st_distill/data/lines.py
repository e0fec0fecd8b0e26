"""Reading the field's text files line by line: what every reader of :mod:`st_distill.data.formats` checks the same way.

:func:`numbered_lines` yields a file's non-blank lines with their numbers (byte order mark, line
endings, UTF-8, ``.gz``); a one-line parser raises :class:`BadLine`, which a :class:`LineChecker`
turns into a :class:`FormatError` naming the file and line, or counts and skips (``skip_invalid``).
:func:`parse_int`, :func:`parse_score` and :func:`split_fields` read numbers and fields as trec_eval
reads them. The rules are listed in :mod:`st_distill.data.formats`.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from st_distill.io import open_bytes

logger = logging.getLogger(__name__)
_T = TypeVar("_T", bound=Any)

__all__ = ["UTF8_BOM", "BadLine", "FormatError", "LineChecker", "numbered_lines", "parse_int", "parse_score", "records", "split_fields"]

UTF8_BOM = b"\xef\xbb\xbf"
_UNICODE_SPACE = re.compile(r"[^\S \t\n\r\x0b\x0c]")  # whitespace to str.split(), not to trec_eval


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

    def finish(self, result: _T = None, empty: str | None = None) -> _T:
        """Logs one warning with the number of skipped lines and the first of them.

        Args:
            result: What the file was read into, returned as is.
            empty: Where given, an empty ``result`` raises :class:`FormatError` with this message
                (a reader refuses a file with nothing to read).
        """
        if self.count:
            logger.warning("skipped %d invalid line(s) of %s (first: %s)", self.count, self.path, self.first)
        if empty is not None and not result:
            raise FormatError(self.path, None, empty)
        return result


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


def records(
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
