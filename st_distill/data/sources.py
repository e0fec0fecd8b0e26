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

Every id column of these subsets is a string (``"1185869"``), as in ``ir_datasets``. What each
loader downloads, and how big it is, is recorded in :data:`HUB_DOWNLOADS` and
:data:`IR_DATASETS_DOWNLOADS` (``st-distill bench --dry-run`` lists it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from st_distill._deprecated import alias_names
from st_distill.data.formats import Collection, Qrels, Run, Texts
from st_distill.data.negatives import Negatives
from st_distill.data.store import SCHEMA, TextStore

if TYPE_CHECKING:
    from datasets import Dataset

MSMARCO_HF = "sentence-transformers/msmarco"
_TEXT_COLUMNS = {"corpus": ("passage_id", "passage"), "queries": ("query_id", "query")}


@dataclass(frozen=True)
class Download:
    """A file a loader downloads, its size in bytes as published, and where that figure comes from."""

    name: str
    size: int
    source: str


_MSMARCO_CARD = "download_size in the dataset card of huggingface.co/datasets/sentence-transformers/msmarco (README.md dataset_info)"
_IRDS = "size_hint in ir_datasets/etc/downloads.json (github.com/allenai/ir_datasets)"

#: The hub subsets the loaders read: ``(repo, subset)`` -> what ``datasets.load_dataset`` downloads.
#: Every id column is a string, ``score`` a float64 (the card's ``dataset_info``).
HUB_DOWNLOADS: dict[tuple[str, str], Download] = {
    (MSMARCO_HF, "bert-ensemble-margin-mse"): Download("bert-ensemble-margin-mse parquet (39,780,704 rows)", 1_124_942_270, _MSMARCO_CARD),
    (MSMARCO_HF, "corpus"): Download("corpus parquet (8,841,823 passages)", 1_688_968_114, _MSMARCO_CARD),
    (MSMARCO_HF, "queries"): Download("queries parquet (808,731 queries)", 29_902_737, _MSMARCO_CARD),
}

_COLLECTION = Download("msmarco-passage collectionandqueries.tar.gz (8,841,823 passages)", 1_057_717_952, _IRDS)

#: The ``ir_datasets`` ids the paper config reads: ``id`` -> (files ``load_ir_dataset`` downloads
#: in any case, files its ``scoreddocs`` add when the first-stage run comes from ``ir_datasets``).
IR_DATASETS_DOWNLOADS: dict[str, tuple[tuple[Download, ...], tuple[Download, ...]]] = {
    "msmarco-passage/train/judged": (
        (_COLLECTION, Download("msmarco-passage queries.tar.gz", 18_882_551, _IRDS), Download("msmarco-passage qrels.train.tsv", 10_589_532, _IRDS)),
        (Download("msmarco-passage top1000.train.tar.gz (scoreddocs)", 11_519_984_492, _IRDS),),
    ),
    "msmarco-passage/trec-dl-2019/judged": (
        (_COLLECTION, Download("msmarco-test2019-queries.tsv.gz", 4_276, _IRDS), Download("2019qrels-pass.txt", 187_092, _IRDS)),
        (Download("msmarco-passagetest2019-top1000.tsv.gz (scoreddocs)", 26_634_062, _IRDS),),
    ),
    "msmarco-passage/trec-dl-2020/judged": (
        (_COLLECTION, Download("msmarco-test2020-queries.tsv.gz", 4_131, _IRDS), Download("2020qrels-pass.txt", 218_617, _IRDS)),
        (Download("msmarco-passagetest2020-top1000.tsv.gz (scoreddocs)", 26_230_218, _IRDS),),
    ),
}


def load_msmarco_subset(subset: str, split: str = "train", revision: str | None = None, repo: str = MSMARCO_HF) -> Dataset:
    """Loads one subset of ``sentence-transformers/msmarco`` (or a dataset ``repo`` with its layout) with ``datasets.load_dataset``."""
    from datasets import load_dataset

    return load_dataset(repo, subset, split=split, revision=revision)


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
            "neg_score": pa.chunked_array([pa.array(np.zeros(len(c), np.float32)) for c in score.chunks], pa.float32()),
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


#: ``IRDataset``: the record load_ir_dataset returned before Collection (0.1)
__getattr__ = alias_names(__name__, "st_distill.data.formats", IRDataset=Collection)


def load_ir_dataset(dataset_id: str, store_path: str | os.PathLike, with_run: bool = True) -> Collection:
    """Loads an ``ir_datasets`` id (e.g. ``"msmarco-passage/trec-dl-2019/judged"``).

    The documents stream into a :class:`TextStore` at ``store_path`` (a document's text is
    its ``title`` and ``text`` joined, as for BEIR); queries, qrels and, with ``with_run``,
    ``scoreddocs`` (as a run) are read into dicts. Texts are stripped; an empty query or document
    text is an error, as in TSV and BEIR files. Reading ``scoreddocs`` downloads them: for
    ``msmarco-passage/train/judged`` that is the 11.5 GB ``top1000.train.tar.gz``, so a caller
    with its own first-stage run passes ``with_run=False``.

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
    if with_run and dataset.has_scoreddocs():
        run = {}
        for record in dataset.scoreddocs_iter():
            run.setdefault(str(record.query_id), {})[str(record.doc_id)] = float(record.score)
    return Collection(queries=queries, corpus=TextStore(store_path), qrels=qrels, run=run, name=dataset_id)


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

