"""Hub sources: the Hugging Face ``sentence-transformers/msmarco`` subsets and ``ir_datasets`` ids.

These read through the libraries' own loaders (``datasets.load_dataset``, ``ir_datasets.load``)
and convert into this package's types: a :class:`~st_distill.data.store.TextStore` for
texts, a teacher-triples table (the schema of
:func:`~st_distill.data.teacher_files.read_teacher_triples`) for distillation scores, and
``Qrels`` / ``Run`` dicts. The loaders are thin; the conversions take any ``datasets.Dataset``
with the subset's columns, so a local copy (``load_dataset("parquet", data_files=...)``)
works the same.

``sentence-transformers/msmarco`` subsets used here:

- ``corpus`` (``passage_id``, ``passage``) and ``queries`` (``query_id``, ``query``);
- ``bert-ensemble-margin-mse`` (``query_id``, ``positive_id``, ``negative_id``, ``score``):
  Hofstätter et al.'s ensemble *margin* ``t_pos - t_neg``; only the margin is published, so
  the triples carry ``pos_score = margin`` and ``neg_score = 0``, which MarginMSE (a loss on
  margins) trains on identically;
- ``triplets`` (``query_id``, ``positive_id``, ``negative_id``): negatives per query.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from st_distill.data.formats import Qrels, Run, Texts
from st_distill.data.negatives import Negatives
from st_distill.data.store import SCHEMA, TextStore

if TYPE_CHECKING:
    from datasets import Dataset

MSMARCO_HF = "sentence-transformers/msmarco"
_TEXT_COLUMNS = {"corpus": ("passage_id", "passage"), "queries": ("query_id", "query")}


def load_msmarco_subset(subset: str, split: str = "train", revision: str | None = None) -> Dataset:
    """Loads one subset of ``sentence-transformers/msmarco`` with ``datasets.load_dataset``."""
    from datasets import load_dataset

    return load_dataset(MSMARCO_HF, subset, split=split, revision=revision)


def _as_string(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def msmarco_text_store(dataset: Dataset, path: str | os.PathLike, subset: str = "corpus") -> TextStore:
    """Writes a ``corpus`` or ``queries`` subset (ids and texts) to a :class:`TextStore` at ``path``.

    As in TSV and BEIR files, an empty id or text (or only whitespace) is an error.

    Raises:
        ValueError: On an unknown subset, a dataset without the subset's columns, or a row with
            a missing or empty id or text (its row number and id named).
    """
    if subset not in _TEXT_COLUMNS:
        raise ValueError(f"unknown text subset {subset!r}: expected one of {', '.join(_TEXT_COLUMNS)}")
    id_column, text_column = _TEXT_COLUMNS[subset]
    table = _columns(dataset, [id_column, text_column])
    table = pa.table({"id": _as_string(table.column(id_column)), "text": table.column(text_column)}, schema=SCHEMA)
    _check_texts(table, f"{MSMARCO_HF} {subset}", id_column, text_column)
    TextStore.write(table.to_batches(max_chunksize=1 << 20), path)
    return TextStore(path)


def _check_texts(table: pa.Table, source: str, id_name: str = "id", text_name: str = "text") -> None:
    """Raises ``ValueError`` naming the first row whose id or text is missing or empty (after stripping)."""
    for column, name in ((table.column("id"), id_name), (table.column("text"), text_name)):
        empty = pc.or_kleene(column.is_null(), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0))
        if pc.any(empty).as_py():
            row = pc.index(empty, True).as_py()
            key = table.column("id")[row].as_py()
            raise ValueError(f"{source}: row {row} (id {key!r}) has an empty {name}")


def msmarco_margin_triples(dataset: Dataset) -> pa.Table:
    """Converts ``bert-ensemble-margin-mse`` rows into a teacher-triples table (``pos_score`` = margin, ``neg_score`` = 0)."""
    table = _columns(dataset, ["query_id", "positive_id", "negative_id", "score"])
    score = table.column("score").cast(pa.float32())
    return pa.table(
        {
            "qid": _as_string(table.column("query_id")),
            "pos_pid": _as_string(table.column("positive_id")),
            "neg_pid": _as_string(table.column("negative_id")),
            "pos_score": score,
            "neg_score": pa.chunked_array([pa.array([0.0] * len(c), pa.float32()) for c in score.chunks], pa.float32()),
        }
    )


def msmarco_negatives(dataset: Dataset) -> Negatives:
    """Negatives per query from the ``triplets`` subset, first-seen order, without repeats."""
    table = _columns(dataset, ["query_id", "negative_id"])
    negatives: Negatives = {}
    for qid, docid in zip(_as_string(table.column("query_id")).to_pylist(), _as_string(table.column("negative_id")).to_pylist()):
        docs = negatives.setdefault(qid, [])
        if docid not in docs:
            docs.append(docid)
    return negatives


def _columns(dataset: Dataset, names: list[str]) -> pa.Table:
    missing = [name for name in names if name not in dataset.column_names]
    if missing:
        raise ValueError(f"the dataset lacks column(s) {missing}; it has {dataset.column_names}")
    if dataset._indices is not None:  # a selected or shuffled view: materialise the rows it shows
        dataset = dataset.flatten_indices()
    return dataset.data.table.select(names)


@dataclass
class IRDataset:
    """An ``ir_datasets`` dataset converted: texts, judgements, and the provided first-stage run if any."""

    queries: Texts
    corpus: TextStore
    qrels: Qrels
    run: Run | None


def load_ir_dataset(dataset_id: str, store_path: str | os.PathLike) -> IRDataset:
    """Loads an ``ir_datasets`` id (e.g. ``"msmarco-passage/trec-dl-2019/judged"``).

    The documents stream into a :class:`TextStore` at ``store_path`` (a document's text is
    its ``title`` and ``text`` joined, as for BEIR); queries, qrels and ``scoreddocs`` (as a
    run) are read into dicts. Texts are stripped; an empty query or document text is an error,
    as in TSV and BEIR files.

    Raises:
        ImportError: When ``ir_datasets`` is not installed (``pip install "st-distill[irds]"``).
        ValueError: On an empty query or document text (the id named).
    """
    import ir_datasets

    dataset = ir_datasets.load(dataset_id)
    queries = {str(q.query_id): q.text.strip() for q in dataset.queries_iter()}
    _check_texts(pa.table({"id": list(queries), "text": list(queries.values())}), f"{dataset_id} queries", "query_id")
    TextStore.write((_checked(batch, f"{dataset_id} docs") for batch in _record_batches(dataset.docs_iter())), store_path)
    qrels: Qrels = {}
    for record in dataset.qrels_iter():
        qrels.setdefault(str(record.query_id), {})[str(record.doc_id)] = int(record.relevance)
    run: Run | None = None
    if dataset.has_scoreddocs():
        run = {}
        for record in dataset.scoreddocs_iter():
            run.setdefault(str(record.query_id), {})[str(record.doc_id)] = float(record.score)
    return IRDataset(queries=queries, corpus=TextStore(store_path), qrels=qrels, run=run)


def _checked(batch: pa.RecordBatch, source: str) -> pa.RecordBatch:
    _check_texts(pa.Table.from_batches([batch]), source, "doc_id")
    return batch


def _record_batches(records: Iterable[Any], size: int = 100_000) -> Iterable[pa.RecordBatch]:
    """``(id, text)`` record batches from ir_datasets document records (``doc_id``, ``text``, optional ``title``)."""
    ids: list[str] = []
    texts: list[str] = []
    for record in records:
        ids.append(str(record.doc_id))
        texts.append(f"{getattr(record, 'title', '') or ''} {record.text}".strip())
        if len(ids) == size:
            yield pa.RecordBatch.from_arrays([pa.array(ids, pa.string()), pa.array(texts, pa.string())], schema=SCHEMA)
            ids, texts = [], []
    if ids:
        yield pa.RecordBatch.from_arrays([pa.array(ids, pa.string()), pa.array(texts, pa.string())], schema=SCHEMA)

