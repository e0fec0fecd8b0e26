"""Id-based datasets, interoperable with sentence-transformers' :func:`~sentence_transformers.util.resolve_ids`.

sentence-transformers 6 trains on datasets that hold ids (``query_id``, ``document_ids``) and
join the texts on access from separate text datasets, through ``util.resolve_ids``: an input
column ``x_id`` becomes ``x``, a list column ``x_ids`` becomes ``xs`` (``output_format="lists"``).
This module makes such datasets and st-distill's built datasets usable by each other:

- **st-distill -> resolve_ids.** ``build_dataset(..., ids=True)`` stores ids in the format's
  columns renamed by :func:`id_column` (``query_id``, ``document_id``, ``positive_id``,
  ``negative_1_id``, ``doc_ids``; labels unchanged), so that ``resolve_ids`` with
  ``output_format="lists"`` gives back exactly the objective's columns. :func:`texts_dataset` turns
  ``{id: text}`` into the lookup dataset (``id``, ``text``), :func:`id_lookups` pairs each id
  column with its lookup, and :func:`with_texts` does both and attaches the join.
- **resolve_ids -> st-distill.** An id dataset prepared for ``resolve_ids`` (``query_id``,
  ``document_ids`` or ``document_id`` or ``positive_id``/``negative_id``, and ``scores``/``score``)
  becomes a run ``{qid: {docid: score}}`` by :func:`run_from_ids`, and its lookup datasets
  become ``{id: text}`` by :func:`texts_from_lookup`; :func:`~st_distill.dataset.build_dataset`
  accepts both directly (as ``candidates`` / ``teacher_scores`` and ``queries`` / ``corpus``).
  Given straight to ``resolve_ids`` with ``output_format="lists"``, the same dataset also trains
  with st-distill's losses, which read columns by position.

Streaming: :func:`run_from_ids` reads a ``datasets.IterableDataset`` batch by batch, and
:func:`with_texts` maps one (with the output ``Features`` the trainers require). Note that
``CrossEncoderTrainer`` itself refuses an ``IterableDataset`` in sentence-transformers 6.2
(``accelerate`` cannot concatenate its string batches): train on a ``Dataset``.

Example:
    ::

        from sentence_transformers.util import resolve_ids
        from st_distill.dataset import build_dataset
        from st_distill.data.ids import id_lookups, texts_dataset

        ids, report = build_dataset("mse", queries, corpus, candidates=run, teacher_scores=teacher, ids=True)
        ids.column_names                      # ['query_id', 'document_id', 'score']
        lookups = id_lookups(ids.column_names, texts_dataset(queries), texts_dataset(corpus))
        ids.set_transform(resolve_ids(lookups, output_format="lists"))
        ids[0]                                # {'query': '...', 'document': '...', 'score': 7.25}
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from st_distill.data.formats import Run
from st_distill.data.store import TextStore

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

__all__ = ["LABEL_COLUMNS", "id_column", "id_columns", "texts_dataset", "id_lookups", "with_texts", "texts_from_lookup", "run_from_ids"]

#: Label columns passed through unresolved, as the library's collators and ``resolve_ids`` read them.
LABEL_COLUMNS = ("label", "labels", "score", "scores")

Lookup = Any  # a datasets.Dataset, (Dataset, id_col) or (Dataset, id_col, value_col), as resolve_ids takes


def id_column(column: str, is_list: bool = False) -> str:
    """The id column that ``resolve_ids`` (``output_format="lists"``) turns back into ``column``.

    ``query`` -> ``query_id``, ``negative_1`` -> ``negative_1_id``; a list column ``docs`` ->
    ``doc_ids`` (``resolve_ids`` pluralises ``x_ids`` to ``xs``, ``y_ids`` to ``ies``).
    """
    if not is_list:
        return f"{column}_id"
    if column.endswith("ies"):
        return f"{column[:-3]}y_ids"
    if not column.endswith("s"):
        raise ValueError(f"a list column must have a plural name for resolve_ids to restore it, got {column!r}")
    return f"{column[:-1]}_ids"


def id_columns(columns: Sequence[str], list_columns: Sequence[str] = ()) -> list[str]:
    """The id dataset's column names for a format's ``columns``: text columns renamed by :func:`id_column`,
    label columns (:data:`LABEL_COLUMNS`) unchanged."""
    return [c if c in LABEL_COLUMNS else id_column(c, c in list_columns) for c in columns]


def texts_dataset(texts: Mapping[str, str] | TextStore, ids: Iterable[str] | None = None) -> Dataset:
    """A lookup dataset for ``resolve_ids``: columns ``id`` and ``text``.

    Args:
        texts: ``{id: text}`` (a dict or a :class:`~st_distill.data.store.TextStore`).
        ids: Only these ids (e.g. those a built dataset refers to); all of ``texts`` when None.

    Raises:
        KeyError: When one of ``ids`` has no text.
    """
    from datasets import Dataset

    keys = list(texts) if ids is None else list(dict.fromkeys(ids))
    if isinstance(texts, TextStore):
        rows = texts.rows(keys)
        if (rows < 0).any():
            raise KeyError(f"id {keys[int(np.argmax(rows < 0))]!r} has no text in {texts.path}")
        values = texts.texts(rows)
    else:
        missing = next((key for key in keys if key not in texts), None)
        if missing is not None:
            raise KeyError(f"id {missing!r} has no text")
        values = [texts[key] for key in keys]
    return Dataset.from_dict({"id": keys, "text": values})


def id_lookups(columns: Sequence[str], queries: Lookup, corpus: Lookup) -> dict[str, Lookup]:
    """The ``lookups`` argument of ``resolve_ids`` for an id dataset's ``columns``.

    Every column ending in ``_id`` or ``_ids`` is resolved: those naming a query (``query_id``,
    ``query_ids``) against ``queries``, the others against ``corpus``; label columns are kept by
    ``resolve_ids``. The order of ``columns`` is kept, so the query column stays first.

    Raises:
        ValueError: When no column is an id column.
    """
    lookups = {c: queries if c.startswith("query_") else corpus for c in columns if c.endswith(("_id", "_ids"))}
    if not lookups:
        raise ValueError(f"no id column (ending in '_id' or '_ids') among {list(columns)}")
    return lookups


def with_texts(
    dataset: Dataset | IterableDataset,
    queries: Mapping[str, str] | TextStore | Lookup,
    corpus: Mapping[str, str] | TextStore | Lookup,
    max_list_length: int | None = None,
) -> Dataset | IterableDataset:
    """Joins the texts onto an id dataset on access, through ``resolve_ids(output_format="lists")``.

    A ``Dataset`` gets the join as its transform (a new dataset object; the table is shared, nothing
    is copied); an ``IterableDataset`` is mapped, with the output ``Features`` given as the
    trainers require. A built dataset's id columns come back as its objective's columns.

    Args:
        dataset: An id dataset: built with ``ids=True``, or prepared for ``resolve_ids``.
        queries: ``{qid: text}`` or a ``resolve_ids`` lookup dataset (spec).
        corpus: ``{docid: text}`` or a ``resolve_ids`` lookup dataset (spec).
        max_list_length: Passed to ``resolve_ids``: keep the first N ids of list columns.

    Returns:
        The dataset with text columns (``query``, ``document``/``positive``/``docs``..., labels).
    """
    from datasets import Dataset, Features, List, Value
    from sentence_transformers.util import resolve_ids

    if not isinstance(dataset, Dataset) and dataset.features is None:
        raise ValueError("the IterableDataset has no Features; cast it first (dataset.cast(Features({...})))")
    lookups = id_lookups(dataset.column_names, _as_lookup(queries), _as_lookup(corpus))
    transform = resolve_ids(lookups, keep_columns=LABEL_COLUMNS, max_list_length=max_list_length, output_format="lists")
    if isinstance(dataset, Dataset):
        return dataset.with_format(None).with_transform(transform)
    sample = transform(next(dataset.iter(batch_size=1)))
    features = {}
    for name, values in sample.items():
        if name in dataset.features:
            features[name] = dataset.features[name]
        else:
            features[name] = List(Value("string")) if isinstance(values[0], list) else Value("string")
    return dataset.map(transform, batched=True, remove_columns=dataset.column_names, features=Features(features))


def _as_lookup(texts: Mapping[str, str] | TextStore | Lookup) -> Lookup:
    """A ``resolve_ids`` lookup: dataset specs as given, ``{id: text}`` through :func:`texts_dataset`."""
    return texts_dataset(texts) if isinstance(texts, (Mapping, TextStore)) else texts


def texts_from_lookup(lookup: Lookup) -> dict[str, str]:
    """``{id: text}`` from a ``resolve_ids`` lookup: a dataset, ``(dataset, id_col)`` or ``(dataset, id_col, value_col)``.

    The id and value columns are inferred as ``resolve_ids`` infers them (the one column named
    ``id`` or ending in ``_id``; the one other column). Ids become strings; a repeated id keeps
    its last text, as in ``resolve_ids``.

    Raises:
        ValueError: When a column cannot be inferred, or is not in the dataset.
    """
    # the library's own inference, so that a lookup resolve_ids accepts is read the same way here
    from sentence_transformers.util.dataset import _infer_id_col, _infer_value_col

    dataset, *spec = lookup if isinstance(lookup, tuple) else (lookup,)
    dataset = dataset.with_format(None)
    id_col = spec[0] if spec else _infer_id_col(dataset, "lookup")
    value_col = spec[1] if len(spec) > 1 else _infer_value_col(dataset, id_col, "lookup")
    for column in (id_col, value_col):
        if column not in dataset.column_names:
            raise ValueError(f"lookup dataset has no column {column!r} (columns: {sorted(dataset.column_names)})")
    table = dataset.select_columns([id_col, value_col])
    return dict(zip(map(str, table[id_col]), table[value_col]))


def _parsed(value: Any, column: str, row: int) -> Any:
    """A list stored as a string (``"[1, 2]"``, as some published KD datasets do) as a list; other values as they are."""
    if not (isinstance(value, str) and value.lstrip().startswith("[")):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise ValueError(f"id dataset row {row}: column {column!r} holds {value[:60]!r}, not a list") from None


def run_from_ids(
    dataset: Dataset | IterableDataset,
    query_column: str = "query_id",
    document_columns: Sequence[str] | None = None,
    score_column: str | None = None,
    batch_size: int = 10_000,
) -> Run:
    """Reads an id dataset as a run ``{qid: {docid: score}}`` (a ``datasets.IterableDataset`` streams).

    Each row gives its query's documents: the ids of its document columns in column order (a
    column holds one id per row, ``document_id``, or a list, ``document_ids``), with the scores of
    its score column (one per document: a list for several documents, a number for one). Without
    a score column, the documents of each query get descending pseudo-scores ``n, ..., 1`` in
    their order (as an LLM ranking does), so that a rank-ordered id list keeps its order. A
    document repeated for a query keeps its last score (its first place, without scores). Lists
    stored as strings (``"['d1', 'd2']"``, as in some published KD datasets) are parsed, as
    ``resolve_ids`` parses them.

    Args:
        dataset: The id dataset.
        query_column: The query id column.
        document_columns: The document id columns; default: every other column ending in ``_id`` or ``_ids``.
        score_column: The score column; default: the first of ``scores``, ``score``, ``labels``, ``label`` present.
        batch_size: Rows read at a time.

    Raises:
        ValueError: On a missing column, no document column, a row whose scores do not match its
            documents in number, or a score that is not a finite number; the message names the row.
    """
    columns = list(dataset.column_names or next(iter(dataset), {}))  # a stream without Features: its first row's
    if query_column not in columns:
        raise ValueError(f"id dataset has no query column {query_column!r} (columns: {columns})")
    if document_columns is None:
        document_columns = [c for c in columns if c != query_column and c.endswith(("_id", "_ids"))]
    if not document_columns or any(c not in columns for c in document_columns):
        raise ValueError(f"id dataset: document columns {list(document_columns)} not found among {columns}")
    if score_column is None:
        score_column = next((c for c in ("scores", "score", "labels", "label") if c in columns), None)
    elif score_column not in columns:
        raise ValueError(f"id dataset has no score column {score_column!r} (columns: {columns})")
    run: Run = {}
    order: dict[str, list[str]] = {}
    row = 0
    for batch in dataset.with_format(None).iter(batch_size=batch_size):
        for i, qid in enumerate(batch[query_column]):
            docs: list[str] = []
            for column in document_columns:
                value = _parsed(batch[column][i], column, row)
                docs.extend(map(str, value) if isinstance(value, (list, tuple)) else [str(value)])
            if score_column is None:
                order.setdefault(str(qid), []).extend(docs)
            else:
                scores = _parsed(batch[score_column][i], score_column, row)
                scores = list(scores) if isinstance(scores, (list, tuple, np.ndarray)) else [scores]
                if len(scores) != len(docs):
                    raise ValueError(f"id dataset row {row}: {len(docs)} document ids but {len(scores)} scores in {score_column!r}")
                values = np.asarray(scores, dtype=np.float64)
                if not np.isfinite(values).all():
                    raise ValueError(f"id dataset row {row}: score column {score_column!r} holds a NaN or infinite value")
                run.setdefault(str(qid), {}).update(zip(docs, values.tolist()))
            row += 1
    for qid, docs in order.items():
        docs = list(dict.fromkeys(docs))
        run[qid] = {docid: float(len(docs) - rank) for rank, docid in enumerate(docs)}
    if not run:
        raise ValueError("id dataset has no rows")
    return run
