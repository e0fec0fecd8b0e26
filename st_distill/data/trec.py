"""TREC runs (``qid Q0 docid rank score tag``) and qrels (TREC ``qid iter docid grade``, or BEIR TSV):
readers, trec_eval's ordering, and the run writer (see :mod:`st_distill.data.formats` for the rules).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping

from st_distill.data.lines import BadLine, LineChecker, numbered_lines, parse_int, parse_score, records, split_fields
from st_distill.io import atomic_write

__all__ = ["GRADE_LIMIT", "Qrels", "Run", "iter_trec_run", "ranked", "read_qrels", "read_trec_run", "run_id_problem", "top_k", "write_trec_run"]

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

GRADE_LIMIT = 10_000
"""Largest absolute qrels grade accepted (real collections use -2 to 4)."""

_WHITESPACE = re.compile(r"\s")


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
    for number, line in numbered_lines(path, check.bad):  # not through records(): runs are long, a generator less
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
    return check.finish(run, empty="the run is empty: no 'qid Q0 docid rank score tag' line")


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

    for number, record in records(path, parse, check):
        if record is None:
            continue
        qid, docid, grade = record
        docs = qrels.setdefault(qid, {})
        if docs.get(docid, grade) != grade:
            check.bad(number, f"document {docid!r} judged twice for query {qid!r} with different grades", "conflict")
            continue
        docs[docid] = grade
    return check.finish(qrels, empty="no judgements in the file")
