"""Rows of a build from in-memory sources: per query, ids and scores (Python tuples), then the
format's Arrow columns (texts, row numbers into text stores, or ids)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from st_distill.data.formats import Qrels, Run, ranked
from st_distill.data.negatives import Negatives, query_rng, relevant
from st_distill.data.store import lookup_texts

if TYPE_CHECKING:
    from st_distill.objectives import DatasetFormat


def _sample(pool: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` items of ``pool`` drawn uniformly without replacement, kept in pool order."""
    if len(pool) <= n:
        return list(pool)
    return [pool[i] for i in np.sort(rng.choice(len(pool), size=n, replace=False))]


def id_rows(
    fmt: DatasetFormat,
    n: int,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    qrels: Qrels | None,
    negatives: Negatives | None,
    candidates: Run | None,
    targets: dict[tuple[str, str], float] | None,
    threshold: int,
    max_positives: int | None,
    max_queries: int | None,
    seed: int,
    skipped: Counter,
) -> list[tuple]:
    """Rows of ids: ``(qid, docid, label)``, ``(qid, pos, negs, scores)`` or ``(qid, docs, scores)``."""
    if fmt.from_candidates:
        if candidates is None:
            raise ValueError(f"a {fmt.kind} dataset of ranked candidates needs candidates: a run or an LLM ranking per query")
        qids = list(candidates)
    else:
        if qrels is None:
            raise ValueError(f"a {fmt.kind} dataset needs qrels (the positives)")
        if negatives is None and candidates is None:
            raise ValueError(f"a {fmt.kind} dataset needs negatives (or candidates to take them from)")
        qids = list(qrels)
    query_text = dict(zip(qids, lookup_texts(queries, qids)))
    doc_ids = set()
    for qid in qids:
        doc_ids.update((qrels or {}).get(qid, ()))
        doc_ids.update((negatives or {}).get(qid, ()) if negatives is not None else (candidates or {}).get(qid, ()))
    doc_ids = sorted(doc_ids)
    has_text = {docid for docid, text in zip(doc_ids, lookup_texts(corpus, doc_ids)) if text is not None}

    def score(qid: str, docid: str) -> float | None:
        return None if targets is None else targets.get((qid, docid))

    rows: list[tuple] = []
    used_queries = 0
    for qid in qids:
        if max_queries is not None and used_queries >= max_queries:
            break
        if query_text[qid] is None:
            skipped["query without text"] += 1
            continue
        before = len(rows)
        if fmt.from_candidates:
            _candidate_rows(fmt, qid, candidates[qid], n, has_text, score, rows, skipped)
        else:
            grades = qrels.get(qid, {})
            positives = sorted(relevant(qrels, qid, threshold), key=lambda d: (-grades[d], d))
            missing = [d for d in positives if d not in has_text]
            if missing:
                skipped["positive without text"] += len(missing)
            positives = [d for d in positives if d in has_text][:max_positives]
            if not positives:
                skipped["query without a positive"] += 1
                continue
            exclude = relevant(qrels, qid, threshold)
            if negatives is not None:
                pool = list(negatives.get(qid, []))
            else:
                pool = [d for d, _ in ranked(candidates.get(qid, {}))]
            without_text = sum(d not in has_text for d in pool)
            if without_text:
                skipped["negative without text"] += without_text
            pool = [d for d in pool if d in has_text and d not in exclude]
            rng = query_rng(seed, qid)
            for positive in positives:
                picked = _sample(pool, n, rng)
                _example_rows(fmt, qid, positive, picked, n, score, rows, skipped)
        if len(rows) > before:
            used_queries += 1
    return rows


def _candidate_rows(fmt, qid, docs: Mapping[str, float], n: int, has_text, score, rows: list, skipped: Counter) -> None:
    """The query's top ``n + 1`` candidates with a text and a score: one list row, or one row per document (pointwise)."""
    listed = [d for d, _ in ranked(docs)][: n + 1]
    kept, scores = [], []
    for docid in listed:
        if docid not in has_text:
            skipped["document without text"] += 1
            continue
        value = score(qid, docid)
        if value is None:
            skipped["missing teacher score"] += 1
            continue
        kept.append(docid)
        scores.append(float(value))
    if fmt.kind == "pointwise":
        rows.extend((qid, docid, value) for docid, value in zip(kept, scores))
        return
    if len(kept) < 2:
        skipped["list with fewer than 2 documents"] += 1
        return
    rows.append((qid, kept, scores))


def _example_rows(fmt, qid: str, positive: str, picked: list[str], n: int, score, rows: list, skipped: Counter) -> None:
    if fmt.kind == "pointwise":
        if not picked:
            skipped["row without a negative"] += 1
            return
        rows.append((qid, positive, 1.0))
        rows.extend((qid, negative, 0.0) for negative in picked)
        return
    if fmt.kind == "ntuple" and len(picked) < n:
        skipped[f"fewer than {n} negatives"] += 1
        return
    if fmt.kind == "listwise" and not picked:
        skipped["list with fewer than 2 documents"] += 1
        return
    docs = [positive, *picked]
    scores = None
    if fmt.label_column == "scores":
        scores = [score(qid, d) for d in docs]
        if any(value is None for value in scores):
            skipped["missing teacher score"] += 1
            return
        scores = [float(value) for value in scores]
    rows.append((qid, docs, scores))


def rows_table(
    fmt: DatasetFormat, rows: list[tuple], columns: list[str], queries, corpus, lazy: bool, ids: bool
) -> tuple[pa.Table, tuple[list[str], list[str]]]:
    """Turns id rows into the format's columns: texts, row numbers into the stores when lazy, or the ids."""

    def resolve(texts, keys: list[str]) -> pa.Array:
        if ids:
            return pa.array(keys, pa.string())
        if lazy:
            return pa.array(texts.rows(keys).astype(np.int32))
        return pa.array(lookup_texts(texts, keys), pa.string())

    qids = [row[0] for row in rows]
    data: dict[str, Any] = {"query": resolve(queries, qids)}
    if fmt.kind == "pointwise":
        data["document"] = resolve(corpus, [row[1] for row in rows])
        data[fmt.label_column] = pa.array([row[2] for row in rows], pa.float32())
        return pa.table(data), (["query", "document"], [])
    if fmt.kind == "ntuple":
        text_columns = [c for c in columns if c != "scores"]
        for i, name in enumerate(text_columns[1:]):
            data[name] = resolve(corpus, [row[1][i] for row in rows])
        if fmt.label_column == "scores":
            data["scores"] = pa.array([row[2] for row in rows], pa.list_(pa.float32()))
        return pa.table(data), (text_columns, [])
    lengths = [len(row[1]) for row in rows]
    flat = resolve(corpus, [docid for row in rows for docid in row[1]])
    offsets = pa.array(np.cumsum([0, *lengths]).astype(np.int32))
    data["docs"] = pa.ListArray.from_arrays(offsets, flat)
    data["scores"] = pa.array([row[2] for row in rows], pa.list_(pa.float32()))
    return pa.table(data), (["query"], ["docs"])
