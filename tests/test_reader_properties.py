"""Property tests of every line reader (runs, qrels, TSV, BEIR jsonl, teacher triples, LLM rankings).

For any bytes, a reader either returns what an independent reference parser reads from the
valid lines, or raises a ``FormatError`` naming the file and the first bad line (the file alone
when no line is valid); with ``skip_invalid`` it returns the reference's result over the valid
lines and counts every bad one. Any other exception, or any other result, fails.

The reference parsers below are written apart from the readers: lines are cut with
``bytes.split`` and ``re``, numbers are scanned character by character, and the rules are the
ones the readers document (``st_distill.data.formats``' module docstring).
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from st_distill.data.formats import GRADE_LIMIT, FormatError, read_jsonl, read_qrels, read_trec_run, read_tsv
from st_distill.data.teacher_files import read_llm_ranking, read_teacher_triples

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOM = b"\xef\xbb\xbf"
ASCII_SPACE = " \t\n\r\x0b\x0c"
DIGITS = "0123456789"


class Bad(Exception):
    """A line the reference rejects."""


# --- the reference -------------------------------------------------------------------------------


def reference_lines(data: bytes) -> list[tuple[int, str | None]]:
    """``(line number, line)`` of each non-blank line; ``None`` for a line that is not UTF-8.

    Lines end at b"\\n"; a "\\r" also cuts a line, and the pieces keep the "\\n"-line's number.
    """
    if data.startswith(BOM):
        data = data[len(BOM) :]
    out: list[tuple[int, str | None]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            out.append((number, None))
            continue
        out.extend((number, piece) for piece in text.split("\r") if piece and not piece.isspace())
    return out


def scan_digits(text: str, i: int) -> int:
    while i < len(text) and text[i] in DIGITS:
        i += 1
    return i


def reference_int(text: str) -> int:
    i = 1 if text[:1] in ("+", "-") else 0
    end = scan_digits(text, i)
    if end == i or end != len(text):
        raise Bad
    return int(text)


def reference_decimal(text: str) -> float:
    i = 1 if text[:1] in ("+", "-") else 0
    j = scan_digits(text, i)
    digits = j - i
    if j < len(text) and text[j] == ".":
        k = scan_digits(text, j + 1)
        digits += k - j - 1
        j = k
    if digits == 0:
        raise Bad
    if j < len(text) and text[j] in "eE":
        j += 1
        if j < len(text) and text[j] in "+-":
            j += 1
        k = scan_digits(text, j)
        if k == j:
            raise Bad
        j = k
    if j != len(text):
        raise Bad
    value = float(text)
    if math.isinf(value):
        raise Bad
    return value


def ascii_fields(line: str) -> list[str]:
    if any(char.isspace() and char not in ASCII_SPACE for char in line):
        raise Bad
    return [field for field in re.split(r"[ \t\n\r\x0b\x0c]+", line) if field]


def reference_run_line(line: str) -> tuple[str, str, int, float]:
    fields = ascii_fields(line)
    if len(fields) != 6:
        raise Bad
    return fields[0], fields[2], reference_int(fields[3]), reference_decimal(fields[4])


def reference_read(data: bytes, parse, combine):
    """``(result, bad line numbers)``: ``parse(line)`` per line, then ``combine(state, record)`` (raises Bad)."""
    state: dict = {}
    bad: list[int] = []
    for number, line in reference_lines(data):
        try:
            if line is None:
                raise Bad
            combine(state, parse(line))
        except Bad:
            bad.append(number)
    return state, bad


def run_reference(data: bytes):
    def combine(run, record):
        qid, docid, _, score = record
        if docid in run.setdefault(qid, {}):
            raise Bad
        run[qid][docid] = score

    return reference_read(data, reference_run_line, combine)


def llm_reference(data: bytes):
    ranks: dict[str, dict[str, int]] = {}

    def combine(_, record):
        qid, docid, rank, _ = record
        docs = ranks.setdefault(qid, {})
        if docid in docs or rank in docs.values():
            raise Bad
        docs[docid] = rank

    _, bad = reference_read(data, reference_run_line, combine)
    run = {}
    for qid, docs in ranks.items():
        if docs:
            order = sorted(docs, key=docs.get)
            run[qid] = {docid: float(len(order) - i) for i, docid in enumerate(order)}
    return run, bad


def qrels_reference(data: bytes):
    mode: list[str] = []  # "beir" or "trec", set by the first line that splits

    def parse(line: str):
        fields = ascii_fields(line)  # a Unicode space is bad in both layouts
        if not mode:
            mode.append("beir" if fields[0].lower() == "query-id" else "trec")
            if mode[0] == "beir":
                return None
        if mode[0] == "beir":
            fields = [field.strip(ASCII_SPACE) for field in line.split("\t")]
            if len(fields) != 3:
                raise Bad
            qid, docid, grade = fields
        else:
            if len(fields) != 4:
                raise Bad
            qid, _, docid, grade = fields
        if not qid or not docid:
            raise Bad
        value = reference_int(grade)
        if not -GRADE_LIMIT <= value <= GRADE_LIMIT:
            raise Bad
        return qid, docid, value

    def combine(qrels, record):
        if record is None:
            return
        qid, docid, grade = record
        docs = qrels.setdefault(qid, {})
        if docs.get(docid, grade) != grade:
            raise Bad
        docs[docid] = grade

    return reference_read(data, parse, combine)


def strip_unicode(text: str) -> str:
    return re.sub(r"^\s+|\s+$", "", text)


def texts_combine(texts, record):
    key, text = record
    if key in texts:
        raise Bad
    texts[key] = text


def tsv_reference(data: bytes):
    def parse(line: str):
        if "\t" not in line:
            raise Bad
        cut = line.index("\t")
        key, text = strip_unicode(line[:cut]), strip_unicode(line[cut + 1 :])
        if not key or not text:
            raise Bad
        return key, text

    return reference_read(data, parse, texts_combine)


def jsonl_reference(data: bytes):
    def parse(line: str):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise Bad from None
        if type(record) is not dict or "_id" not in record or type(record.get("text")) is not str:
            raise Bad
        key, title = record["_id"], record.get("title")
        if type(key) is int:
            key = str(key)
        if type(key) is not str or not key or (title is not None and type(title) is not str):
            raise Bad
        text = strip_unicode((title or "") + " " + record["text"])
        if not text or re.search("[\ud800-\udfff]", key + text):
            raise Bad
        return key, text

    return reference_read(data, parse, texts_combine)


def triples_reference(data: bytes):
    lines = reference_lines(data)
    delimiter = next(("\t" if "\t" in line else " " for _, line in lines if line is not None), "\t")
    rows: list = []

    def parse(line: str):
        fields = line.split(delimiter)
        if len(fields) != 5:
            raise Bad
        with np.errstate(over="ignore"):
            scores = [np.float32(reference_decimal(field.strip(" \t"))) for field in fields[:2]]
        if not all(np.isfinite(scores)) or not all(fields[2:]):
            raise Bad
        return (*fields[2:], *(float(score) for score in scores))

    def combine(_, record):
        rows.append(record)

    _, bad = reference_read(data, parse, combine)
    return rows, bad


def triples_reader(path, **kwargs):
    table = read_teacher_triples(path, **kwargs)
    columns = [table.column(name).to_pylist() for name in ("qid", "pos_pid", "neg_pid", "pos_score", "neg_score")]
    return list(zip(*columns))


# --- the property ----------------------------------------------------------------------------------


def check(path, data: bytes, reader, reference) -> None:
    """The reader agrees with the reference, strict and skipping."""
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    expected, bad = reference(data)
    try:
        result = reader(path)
    except FormatError as error:
        assert error.path == str(path)
        if bad:
            assert error.line == min(bad), (error, bad)
            assert str(error).startswith(f"{path}:{min(bad)}: ")
        else:
            assert error.line is None and not expected, error
            assert str(error).startswith(f"{path}: ")
    else:
        assert not bad, f"accepted a file whose line {min(bad)} is bad"
        assert result == expected
    skipped = Counter()
    try:
        result = reader(path, skip_invalid=True, skipped=skipped)
    except FormatError as error:
        assert error.line is None and not expected, error
    else:
        assert result == expected
    assert sum(skipped.values()) == len(bad)


# --- the inputs: lines of plausible tokens, text and raw bytes, cut in every way --------------------

NUMBERS = ["0", "1", "2", "-1", "+3", "1.5", ".5", "5.", "1e3", "-2E-2", "1_0", "nan", "inf", "1e400", "1e300",
           "\u0661", "0x10", "10000", "10001", "-10001", "007", "1.e3", ".e3", "1e", "3.5e38", "3.4e38"]
IDS = ["q1", "q2", "d1", "d2", "d3", "Q0", "query-id", "corpus-id", "score", "tag", "é", "d\u00a01", "x\x1cy", "\ufeffq1"]
SEPARATORS = [" ", "\t", "  ", "\t\t", " \t", "\u00a0", "\x0b", "\u2028", "\x85"]
ENDINGS = [b"\n", b"\r\n", b"\r", b"\n\n", b"\n \n"]

token = st.sampled_from(NUMBERS + IDS + ["", " "])


@st.composite
def token_line(draw, fields: tuple[int, int] = (2, 7)) -> str:
    tokens = draw(st.lists(token, min_size=fields[0], max_size=fields[1]))
    separator = draw(st.sampled_from(SEPARATORS[:2])) if draw(st.booleans()) else None
    if separator is not None:
        return separator.join(tokens)
    return "".join(t + draw(st.sampled_from(SEPARATORS)) for t in tokens).rstrip(" ")


@st.composite
def files(draw, valid, line) -> bytes:
    """Bytes of a file: mostly ``valid`` lines, some ``line``s, free text and raw bytes, joined by assorted endings."""
    encode = lambda text: text.encode("utf-8", "surrogatepass")  # noqa: E731
    pieces = draw(
        st.lists(
            st.one_of(valid.map(encode), valid.map(encode), valid.map(encode), line.map(encode),
                      st.text(max_size=12).map(encode), st.binary(max_size=8)),
            max_size=8,
        )
    )
    out = BOM if draw(st.booleans()) else b""
    for piece in pieces:
        out += piece + draw(st.sampled_from(ENDINGS))
    return out[:-1] if out and draw(st.booleans()) else out


ids = st.text(alphabet="qd12é\ufeff", min_size=1, max_size=3)
integers = st.sampled_from(["0", "1", "2", "-1", "+3", "007", "10000", "-10000"])
decimals = st.sampled_from(["0", "1", "-1", "1.5", ".5", "5.", "+1e3", "-2E-2", "1e300", "3.4e38", "007"])
spaces = st.sampled_from([" ", "\t", "  ", " \t", "\t\t"])

valid_run_line = st.builds(lambda q, d, r, s, sep: sep.join([q, "Q0", d, r, s, "t"]), ids, ids, integers, decimals, spaces)
run_line = st.one_of(
    token_line((5, 7)),
    st.builds(lambda q, d, r, s, sep: sep.join([q, "Q0", d, r, s, "t"]), st.sampled_from(IDS), st.sampled_from(IDS),
              st.sampled_from(NUMBERS), st.sampled_from(NUMBERS), st.sampled_from(SEPARATORS[:5])),
)
valid_qrels_line = st.one_of(
    st.builds(lambda q, d, g, sep: sep.join([q, "0", d, g]), ids, ids, integers, spaces),
    st.builds(lambda q, d, g: "\t".join([q, d, g]), ids, ids, integers),
    st.just("query-id\tcorpus-id\tscore"),
)
qrels_line = st.one_of(
    token_line((3, 5)),
    st.builds(lambda q, d, g, sep: sep.join([q, "0", d, g]), st.sampled_from(IDS), st.sampled_from(IDS),
              st.sampled_from(NUMBERS), st.sampled_from(SEPARATORS[:5])),
    st.builds(lambda q, d, g: "\t".join([q, d, g]), st.sampled_from(IDS), st.sampled_from(IDS), st.sampled_from(NUMBERS)),
)
valid_tsv_line = st.builds(lambda k, t: f"{k}\t{t}", ids, st.text(alphabet="ab é\t\x0b", min_size=1, max_size=6))
tsv_line = st.one_of(
    st.builds(lambda k, sep, t: f"{k}{sep}{t}", st.sampled_from(IDS + ["", " "]), st.sampled_from(["\t", " ", "\t\t"]),
              st.sampled_from(IDS + ["", " ", "two words", "\u2028x\u2028"])),
    token_line((1, 3)),
)
json_value = st.one_of(
    st.sampled_from(IDS + ["", " "]), st.integers(-(10**20), 10**20), st.floats(allow_nan=True), st.none(),
    st.booleans(), st.lists(st.integers(0, 9), max_size=2),
)
valid_jsonl_line = st.builds(
    lambda record, ascii_only: json.dumps(record, ensure_ascii=ascii_only),
    st.fixed_dictionaries({"_id": st.one_of(ids, st.integers(-99, 99)), "text": st.text(min_size=1, max_size=5)},
                          optional={"title": st.one_of(st.none(), st.text(max_size=3))}),
    st.booleans(),
)
jsonl_line = st.one_of(
    st.builds(
        lambda record, ascii_only: json.dumps(record, ensure_ascii=ascii_only),
        st.fixed_dictionaries({"_id": json_value, "text": json_value}, optional={"title": json_value}),
        st.booleans(),
    ),
    st.sampled_from(['{"_id": "d\\ud800", "text": "x"}', '{"_id": "d1", "text": "\\udc00"}', "[[[", "{}", "null",
                     '{"_id": "d1", "text": "x"} trailing', '{"_id": 1e2, "text": "x"}', '{"_id": -0, "text": "x"}']),
    token_line((1, 3)),
)
valid_triples_line = st.builds(
    lambda a, b, q, p, n, sep: sep.join([a, b, q, p, n]), decimals, decimals, ids, ids, ids, st.sampled_from(["\t", "\t", " "])
)
triples_line = st.one_of(
    token_line((4, 6)),
    st.builds(lambda a, b, q, p, n, sep: sep.join([a, b, q, p, n]), *[st.sampled_from(NUMBERS)] * 2,
              *[st.sampled_from(IDS + [""])] * 3, st.sampled_from(["\t", " ", "\t ", " \t"])),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


@pytest.mark.parametrize(
    "name, valid, line, reader, reference",
    [
        ("run.trec", valid_run_line, run_line, read_trec_run, run_reference),
        ("llm.trec", valid_run_line, run_line, read_llm_ranking, llm_reference),
        ("qrels.txt", valid_qrels_line, qrels_line, read_qrels, qrels_reference),
        ("texts.tsv", valid_tsv_line, tsv_line, read_tsv, tsv_reference),
        ("corpus.jsonl", valid_jsonl_line, jsonl_line, read_jsonl, jsonl_reference),
        # a plain file goes through pyarrow's reader (and the line pass when a line is bad), a .gz through the line pass
        ("triples.tsv", valid_triples_line, triples_line, triples_reader, triples_reference),
        ("triples.tsv.gz", valid_triples_line, triples_line, triples_reader, triples_reference),
    ],
)
@SETTINGS
@given(data=st.data())
def test_reader_agrees_with_reference(folder, name, valid, line, reader, reference, data):
    check(folder / name, data.draw(files(valid, line), label="file"), reader, reference)
