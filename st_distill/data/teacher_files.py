"""Readers of the teacher files the study trains on.

- Hofstätter et al.'s ensemble scores (``bert_cat_ensemble_msmarcopassage_train_scores_ids.tsv``):
  one training triple a line, ``pos_score neg_score qid pos_pid neg_pid`` (tabs or spaces),
  about 40M lines. :func:`read_teacher_triples` streams it through pyarrow's CSV reader into
  an Arrow table; nothing becomes a Python object per row.
- LLM rankings as TREC runs (Rank-DistiLLM's RankZephyr files): the ranking order is what
  the LLM produced, the score column is not meaningful. :func:`read_llm_ranking` turns the
  order into descending pseudo-scores ``n, n-1, ..., 1`` (no ties possible).

Both validate every line; errors name the file and the line.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Container, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from st_distill.data.formats import FormatError, LineChecker, Run, iter_trec_run, numbered_lines, parse_score
from st_distill.data.store import TextStore
from st_distill.io import require_file

logger = logging.getLogger(__name__)

TRIPLE_COLUMNS = ["pos_score", "neg_score", "qid", "pos_pid", "neg_pid"]
_RAW_SCHEMA = pa.schema(
    [
        ("pos_score", pa.float64()),
        ("neg_score", pa.float64()),
        ("qid", pa.string()),
        ("pos_pid", pa.string()),
        ("neg_pid", pa.string()),
    ]
)
_FLOAT32_OVERFLOW = 2.0**128 - 2.0**103  # the smallest magnitude that rounds to infinity in float32
_ROWS_COLUMNS = {"qid": "query_row", "pos_pid": "positive_row", "neg_pid": "negative_row"}


def read_teacher_triples(
    path: str | os.PathLike,
    query_ids: pa.Array | TextStore | None = None,
    doc_ids: pa.Array | TextStore | None = None,
    skip_invalid: bool = False,
    skipped: Counter | None = None,
    max_rows: int | None = None,
    keep_ids: bool = True,
) -> pa.Table:
    """Reads a Hofstätter-style teacher file (``pos_score neg_score qid pos_pid neg_pid``) into an Arrow table.

    The file streams through pyarrow's multi-threaded CSV reader. When it is clean (the
    usual case) that is the only pass. When any line is wrong (field count, a score that is
    not a finite number, an empty or unknown id) a second, line-by-line pass finds the exact
    line: it raises :class:`~st_distill.data.formats.FormatError` naming the file and the
    line, or, with ``skip_invalid``, skips the bad lines with one counted warning.

    Both passes read the same thing: fields are cut at the delimiter of the first line (a tab
    if it holds one, else a single space), ids are kept as written, a score may have spaces
    around it, a lone ``\r`` ends a line, and a leading byte order mark is dropped.

    Args:
        path: The teacher file; fields separated by tabs (the published file) or single spaces.
        query_ids: Optional known query ids, an Arrow array or a
            :class:`~st_distill.data.store.TextStore` (whose integer-id fast path then applies);
            when given, unknown query ids are errors and the table gains a ``query_row`` column
            (position among ``query_ids``).
        doc_ids: Optional known passage ids, likewise; unknown passages are errors and the table
            gains ``positive_row`` and ``negative_row`` columns.
        skip_invalid: Skip bad lines with a counted warning instead of raising.
        skipped: Optional counter receiving the skipped lines by reason.
        max_rows: Keep only the first ``max_rows`` valid rows.
        keep_ids: Keep the string id columns; with ``keep_ids=False`` and both ``query_ids`` and
            ``doc_ids`` given, only the ``*_row`` and score columns are returned (at MS MARCO
            scale the id strings are about 1.5 GB that a lazily joined dataset never reads).

    Returns:
        A table with string columns ``qid``, ``pos_pid``, ``neg_pid``, float32 ``pos_score``
        and ``neg_score`` (raw teacher logits), plus the ``*_row`` int32 columns described above.

    Raises:
        FormatError: On a bad line (unless skipping) or a file without any row.
        FileNotFoundError, IsADirectoryError: When the file does not exist, or is a folder.
    """
    path = require_file(path)
    delimiter = _delimiter(path)
    table = None
    if path.suffix != ".gz":
        try:
            # ids looked up among known ids need no emptiness check: an empty id is never known
            unchecked = [name for name, known in (("qid", query_ids), ("pos_pid", doc_ids), ("neg_pid", doc_ids)) if known is None]
            table = _read_fast(path, delimiter, max_rows, unchecked)
            table = _check_and_index(table, query_ids, doc_ids)
        except (pa.ArrowInvalid, _Invalid):
            table = None
    if table is None:
        table = _read_by_line(path, delimiter, query_ids, doc_ids, skip_invalid, skipped, max_rows)
    if table.num_rows == 0:
        raise FormatError(path, None, "no 'pos_score neg_score qid pos_pid neg_pid' line in the file")
    if not keep_ids and query_ids is not None and doc_ids is not None:
        table = table.drop_columns(["qid", "pos_pid", "neg_pid"])
    return table


class _Invalid(Exception):
    """Raised by the fast path when a batch holds a bad row; the line-by-line pass then reports it."""


def _delimiter(path: Path) -> str:
    """A tab if the first line (of valid UTF-8) holds one, else a space."""
    for _, line in numbered_lines(path, on_invalid=lambda *_: None):
        return "\t" if "\t" in line else " "
    return "\t"


def _read_fast(
    path: Path, delimiter: str, max_rows: int | None, unchecked_ids: Sequence[str] = ("qid", "pos_pid", "neg_pid")
) -> pa.Table:
    """The clean-file pass: pyarrow's multi-threaded CSV reader; raises :class:`_Invalid` (or ArrowInvalid) on any bad row.

    The whole file is read at once (blocks parsed on all cores); with ``max_rows`` it streams
    and stops early. A non-finite score (or one beyond float32's range, infinite once cast) is
    found through the column's sum (NaN and infinities propagate into it; an overflowing sum of
    finite scores only sends the file to the exact line-by-line pass).
    """
    options = dict(
        read_options=pacsv.ReadOptions(column_names=TRIPLE_COLUMNS, block_size=16 << 20),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False, escape_char=False),
        convert_options=pacsv.ConvertOptions(column_types=_RAW_SCHEMA, null_values=[], strings_can_be_null=False),
    )
    if max_rows is None:
        table = pacsv.read_csv(path, **options)
    else:
        reader, batches, rows = pacsv.open_csv(path, **options), [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows >= max_rows:
                break
        table = pa.Table.from_batches(batches, schema=reader.schema).slice(0, max_rows)
    for name in unchecked_ids:
        if pc.any(pc.equal(pc.binary_length(table.column(name)), 0)).as_py():
            raise _Invalid
    table = _finish(table)
    for name in ("pos_score", "neg_score"):  # float32 now: a score beyond its range became infinite
        column = table.column(name)
        if column.null_count or not math.isfinite(pc.sum(column).as_py() or 0.0):
            raise _Invalid
    return table


def _finish(table: pa.Table) -> pa.Table:
    """Column order and types of the returned table."""
    return pa.table(
        {
            "qid": table.column("qid"),
            "pos_pid": table.column("pos_pid"),
            "neg_pid": table.column("neg_pid"),
            "pos_score": table.column("pos_score").cast(pa.float32()),
            "neg_score": table.column("neg_score").cast(pa.float32()),
        }
    )


def id_positions(column: pa.Array | pa.ChunkedArray, known: pa.Array | TextStore) -> pa.Array | pa.ChunkedArray:
    """int32 positions of ``column``'s ids among ``known`` ids (an id array or a store), null where unknown.

    A chunked column is looked up in a store chunk by chunk, on all cores (Arrow and numpy
    release the GIL), which also bounds the temporary arrays of the store's integer fast path
    to one chunk.
    """
    if isinstance(known, TextStore):

        def lookup(chunk: pa.Array) -> pa.Array:
            rows = known.rows(chunk).astype(np.int32, copy=False)
            unknown = rows < 0
            return pa.array(rows, mask=unknown) if unknown.any() else pa.array(rows)

        if not isinstance(column, pa.ChunkedArray):
            return lookup(column)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            return pa.chunked_array(list(pool.map(lookup, column.chunks)), pa.int32())
    return pc.index_in(column, value_set=known).cast(pa.int32())


def _check_and_index(table: pa.Table, query_ids: pa.Array | TextStore | None, doc_ids: pa.Array | TextStore | None) -> pa.Table:
    """Adds the ``*_row`` columns; raises :class:`_Invalid` when an id is unknown."""
    if query_ids is not None:
        positions = id_positions(table.column("qid"), query_ids)
        if positions.null_count:
            raise _Invalid
        table = table.append_column("query_row", positions)
    if doc_ids is not None:
        # one lookup for both passage columns: the hash table of the collection's ids is built once
        both = pa.chunked_array(table.column("pos_pid").chunks + table.column("neg_pid").chunks, pa.string())
        positions = id_positions(both, doc_ids)
        if positions.null_count:
            raise _Invalid
        half = table.num_rows
        table = table.append_column("positive_row", positions.slice(0, half))
        table = table.append_column("negative_row", positions.slice(half))
    return table


def _read_by_line(
    path: Path,
    delimiter: str,
    query_ids: pa.Array | TextStore | None,
    doc_ids: pa.Array | TextStore | None,
    skip_invalid: bool,
    skipped: Counter | None,
    max_rows: int | None,
    chunk: int = 1 << 20,
) -> pa.Table:
    """The validating pass: parses line by line in chunks, checks ids per chunk with Arrow, keeps line numbers."""
    check = LineChecker(path, skip_invalid, skipped)
    tables, kept = [], 0
    for lines, columns, errors in _parsed_chunks(path, delimiter, chunk):
        table = _finish(pa.table(columns, schema=_RAW_SCHEMA))
        keep = np.ones(table.num_rows, dtype=bool)
        for name, known, what in (("qid", query_ids, "query"), ("pos_pid", doc_ids, "passage"), ("neg_pid", doc_ids, "passage")):
            if known is None:
                continue
            positions = id_positions(table.column(name), known)
            table = table.append_column(_ROWS_COLUMNS[name], positions)
            unknown = positions.is_null().to_numpy(zero_copy_only=False)
            for index in np.flatnonzero(unknown & keep):
                keep[index] = False
                message = f"unknown {what} id {table.column(name)[index].as_py()!r}"
                errors.append((int(lines[index]), message, f"unknown {what} id"))
        for number, message, reason in sorted(errors):  # raise at (or count from) the first bad line
            check.bad(number, message, reason)
        if not keep.all():
            table = table.filter(pa.array(keep))
        tables.append(table)
        kept += table.num_rows
        if max_rows is not None and kept >= max_rows:
            break
    check.finish()
    table = pa.concat_tables(tables)
    return table.slice(0, max_rows) if max_rows is not None else table


def _parsed_chunks(
    path: Path, delimiter: str, chunk: int
) -> Iterator[tuple[np.ndarray, dict[str, list], list[tuple[int, str, str]]]]:
    """Yields ``(line_numbers, columns, errors)`` per chunk of valid lines; errors are ``(line, message, reason)``.

    Fields are cut at ``delimiter`` only, as pyarrow's CSV reader cuts them in the fast path.
    """
    lines: list[int] = []
    columns: dict[str, list] = {name: [] for name in TRIPLE_COLUMNS}
    errors: list[tuple[int, str, str]] = []

    def invalid(number: int, message: str, reason: str) -> None:
        errors.append((number, message, reason))

    for number, line in numbered_lines(path, on_invalid=invalid):
        fields = line.split(delimiter)
        if len(fields) != 5:
            shown = line.strip()[:80]
            message = f"expected 5 fields 'pos_score neg_score qid pos_pid neg_pid', got {len(fields)}: {shown!r}"
            errors.append((number, message, "malformed line"))
            continue
        pos, neg = parse_score(fields[0].strip(" \t")), parse_score(fields[1].strip(" \t"))
        if pos is None or neg is None:
            bad = fields[0] if pos is None else fields[1]
            errors.append((number, f"score {bad!r} is not a finite number", "non-finite score"))
            continue
        if max(abs(pos), abs(neg)) >= _FLOAT32_OVERFLOW:
            bad = fields[0] if abs(pos) >= _FLOAT32_OVERFLOW else fields[1]
            errors.append((number, f"score {bad!r} is beyond float32's range", "non-finite score"))
            continue
        empty = [name for name, value in zip(TRIPLE_COLUMNS[2:], fields[2:]) if not value]
        if empty:
            errors.append((number, f"empty {empty[0]}", "empty id"))
            continue
        lines.append(number)
        columns["pos_score"].append(pos)
        columns["neg_score"].append(neg)
        columns["qid"].append(fields[2])
        columns["pos_pid"].append(fields[3])
        columns["neg_pid"].append(fields[4])
        if len(lines) >= chunk:
            yield np.asarray(lines), columns, errors
            lines, columns = [], {name: [] for name in TRIPLE_COLUMNS}
            errors.clear()  # the caller is done with this chunk's errors; `invalid` keeps appending here
    yield np.asarray(lines, dtype=np.int64), columns, errors


def read_llm_ranking(
    path: str | os.PathLike,
    query_ids: Container[str] | None = None,
    doc_ids: Container[str] | None = None,
    skip_invalid: bool = False,
    skipped: Counter | None = None,
) -> Run:
    """Reads an LLM ranking given as a TREC run and turns its order into descending pseudo-scores.

    For each query the documents are ordered by the rank column (the LLM's output order; the
    score column is not used, and a warning counts the queries whose scores order the documents
    otherwise, since eval and teacher read a run by its scores) and given the scores ``n, n-1, ..., 1`` for ``n`` documents, so
    higher is better and no two documents tie. These are what the listwise objectives
    (``distillranknet``, ``adrmse``, ``kldistill``) take as teacher scores.

    Args:
        path: The run file (``qid Q0 docid rank score tag``).
        query_ids: Optional known query ids; an unknown query is an error (or skipped).
        doc_ids: Optional known document ids; an unknown document is an error (or skipped).
        skip_invalid: Skip bad lines with a counted warning instead of raising.
        skipped: Optional counter receiving the skipped lines by reason.

    Returns:
        ``{qid: {docid: pseudo_score}}``, queries in file order.

    Raises:
        FormatError: On a malformed line, a rank or document repeated within a query, an
            unknown id (when known ids are given), or an empty file.
    """
    check = LineChecker(path, skip_invalid, skipped)
    ranks: dict[str, dict[str, int]] = {}
    scores: dict[str, dict[str, float]] = {}
    seen_ranks: dict[str, set[int]] = {}
    for number, qid, docid, rank, score in iter_trec_run(path, skip_invalid, check.skipped):
        if query_ids is not None and qid not in query_ids:
            check.bad(number, f"unknown query id {qid!r}", reason="unknown query id")
            continue
        if doc_ids is not None and docid not in doc_ids:
            check.bad(number, f"unknown document id {docid!r}", reason="unknown document id")
            continue
        docs = ranks.setdefault(qid, {})
        used = seen_ranks.setdefault(qid, set())
        if docid in docs:
            check.bad(number, f"document {docid!r} appears twice for query {qid!r}", reason="duplicate document")
            continue
        if rank in used:
            check.bad(number, f"rank {rank} appears twice for query {qid!r}: a ranking cannot tie", reason="duplicate rank")
            continue
        docs[docid] = rank
        scores.setdefault(qid, {})[docid] = score
        used.add(rank)
    check.finish(ranks, empty="the ranking is empty: no 'qid Q0 docid rank score tag' line")
    run: Run = {}
    disagree = []
    for qid, docs in ranks.items():
        order = sorted(docs, key=docs.__getitem__)
        run[qid] = {docid: float(len(order) - position) for position, docid in enumerate(order)}
        by_rank = np.array([scores[qid][docid] for docid in order])
        if (np.diff(by_rank) > 0).any():  # a later-ranked document has a higher score
            disagree.append(qid)
    if disagree:
        logger.warning(
            "%s: in %d of %d queries the score column orders documents differently from the rank column "
            "(first: query %r); this ranking is read by its rank column, while eval and teacher read runs by score",
            path, len(disagree), len(ranks), disagree[0],
        )
    return run
