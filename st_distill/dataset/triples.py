"""The scale path: teacher triples (Hofstätter's file or its table) to the format's columns, all in Arrow."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from st_distill.data.store import TextStore
from st_distill.data.teacher_files import id_positions, read_teacher_triples
from st_distill.dataset.report import BuildReport


def _known_ids(texts: Mapping[str, str]) -> pa.Array | TextStore:
    """What the triples reader looks ids up in: the store itself (its fast path), or the dict's keys."""
    return texts if isinstance(texts, TextStore) else pa.array(list(texts), pa.string())


def from_triples(fmt, triples, queries, corpus, skip_invalid: bool, skipped: Counter, report: BuildReport):
    """The scale path: one teacher triple per row (two rows for pointwise), all in Arrow."""
    if isinstance(triples, pa.Table):
        table = triples
        report.sources = {"triples": "table"}
        if "query_row" not in table.column_names:
            table = _index_table(table, queries, corpus, skipped)
    else:
        report.sources = {"triples": str(triples)}
        table = read_teacher_triples(
            triples, _known_ids(queries), _known_ids(corpus), skip_invalid=skip_invalid, skipped=skipped, keep_ids=report.ids
        )
    q, p, g = (table.column(c).combine_chunks() for c in ("query_row", "positive_row", "negative_row"))
    seen = np.zeros(len(queries), dtype=bool)
    seen[q.to_numpy()] = True
    report.queries = int(seen.sum())

    def column(rows: pa.Array, texts, id_name: str) -> pa.Array:
        if report.ids:
            if id_name not in table.column_names:
                raise ValueError(f"ids=True needs the triples' id column {id_name!r}; the table given has {table.column_names}")
            return table.column(id_name).combine_chunks()
        return rows if report.lazy else _texts_at(texts, rows)

    queries_col, pos_col, neg_col = column(q, queries, "qid"), column(p, corpus, "pos_pid"), column(g, corpus, "neg_pid")
    count = table.num_rows
    teacher = np.empty(2 * count, dtype=np.float32)  # [t_pos, t_neg] per triple, interleaved
    teacher[0::2] = table.column("pos_score").to_numpy()
    teacher[1::2] = table.column("neg_score").to_numpy()
    if fmt.kind == "pointwise":
        # each triple gives (query, positive, 1.0 or t_pos) then (query, negative, 0.0 or t_neg)
        order = np.empty(2 * count, dtype=np.int64)
        order[0::2] = np.arange(count)
        order[1::2] = np.arange(count) + count
        labels = teacher if fmt.teacher == "scores" else np.tile(np.array([1.0, 0.0], dtype=np.float32), count)
        out = pa.table(
            {
                "query": queries_col.take(pa.array(np.arange(2 * count) // 2)),
                "document": pa.concat_arrays([pos_col, neg_col]).take(pa.array(order)),
                fmt.label_column: pa.array(labels),
            }
        )
        return out, (["query", "document"], [])
    data = {"query": queries_col, "positive": pos_col, "negative_1": neg_col}
    if fmt.label_column == "scores":
        offsets = pa.array(np.arange(0, teacher.size + 1, 2, dtype=np.int32))
        data["scores"] = pa.ListArray.from_arrays(offsets, pa.array(teacher))
    return pa.table(data), (["query", "positive", "negative_1"], [])


def _index_table(table: pa.Table, queries, corpus, skipped: Counter) -> pa.Table:
    """Adds ``*_row`` columns to a triples table given without them; drops (and counts) rows with unknown ids."""
    keep = None
    for source, target, known, what in (
        ("qid", "query_row", _known_ids(queries), "query"),
        ("pos_pid", "positive_row", _known_ids(corpus), "passage"),
        ("neg_pid", "negative_row", _known_ids(corpus), "passage"),
    ):
        positions = id_positions(table.column(source), known)
        table = table.append_column(target, positions)
        valid = pc.is_valid(positions)
        keep = valid if keep is None else pc.and_(keep, valid)
    dropped = table.num_rows - pc.sum(keep.cast(pa.int64())).as_py()
    if dropped:
        skipped["triple with an unknown id"] += dropped
        table = table.filter(keep)
    return table


def _texts_at(texts: Mapping[str, str], rows: pa.Array) -> pa.Array:
    if isinstance(texts, TextStore):
        return pa.array(texts.texts(rows.to_numpy()), pa.string())
    values = list(texts.values())
    return pa.array([values[i] for i in rows.to_numpy()], pa.string())
