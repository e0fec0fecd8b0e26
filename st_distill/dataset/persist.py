"""Persistence of built datasets: the Arrow file ``datasets`` memory-maps, the report, and the lazy
text join (:class:`LazyTexts`) re-attached on load."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from st_distill.data.store import TextStore
from st_distill.dataset.report import BuildReport
from st_distill.io import write_json

if TYPE_CHECKING:
    from datasets import Dataset

LAZY_FILE = "lazy_texts.json"
REPORT_FILE = "report.json"
DATASET_FILE = "dataset.arrow"


class LazyTexts:
    """A ``datasets`` transform that replaces row numbers by texts from :class:`TextStore` files.

    Args:
        queries: The store the ``query`` column points into.
        corpus: The store every other text column points into.
        text_columns: Columns holding one row number per example.
        list_columns: Columns holding a list of row numbers per example (``docs``).
    """

    def __init__(self, queries: TextStore, corpus: TextStore, text_columns: Sequence[str], list_columns: Sequence[str] = ()) -> None:
        self.queries = queries
        self.corpus = corpus
        self.text_columns = list(text_columns)
        self.list_columns = list(list_columns)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out = dict(batch)
        for name in self.text_columns:
            store = self.queries if name == "query" else self.corpus
            out[name] = store.texts(batch[name])
        for name in self.list_columns:
            lengths = [len(rows) for rows in batch[name]]
            flat = self.corpus.texts([row for rows in batch[name] for row in rows])
            bounds = np.cumsum([0, *lengths])
            out[name] = [flat[bounds[i] : bounds[i + 1]] for i in range(len(lengths))]
        return out

    def config(self) -> dict[str, Any]:
        return {
            "queries": str(self.queries.path),
            "corpus": str(self.corpus.path),
            "text_columns": self.text_columns,
            "list_columns": self.list_columns,
        }


def dataset_of(table: pa.Table, columns: tuple[list[str], list[str]], queries, corpus, lazy: bool) -> Dataset:
    from datasets import Dataset
    from datasets.fingerprint import generate_random_fingerprint

    # an explicit fingerprint: otherwise datasets hashes the whole in-memory table (seconds at 40M rows)
    dataset = Dataset(table, fingerprint=generate_random_fingerprint())
    if lazy:
        dataset.set_transform(LazyTexts(queries, corpus, *columns))
    return dataset


def save_dataset(dataset: Dataset, report: BuildReport, path: str | os.PathLike) -> None:
    """Saves a built dataset into the folder ``path``.

    Writes ``dataset.arrow`` (the Arrow table in the stream format that ``datasets`` memory-maps:
    ``datasets.Dataset.from_file("PATH/dataset.arrow")`` opens it with no copy, whatever its
    size), ``report.json``, and for a lazy dataset ``lazy_texts.json`` naming its text stores.
    :func:`load_built_dataset` loads it back with the lazy join re-attached. Writing the table
    directly takes seconds for 40M rows, where ``save_to_disk`` re-encodes it in 1,000-row batches.
    """
    import pyarrow.ipc as ipc

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    transform = dataset.format.get("format_kwargs", {}).get("transform") if dataset.format else None
    plain = dataset.with_format(None).flatten_indices() if dataset._indices is not None else dataset.with_format(None)
    table = plain.data.table
    tmp = path / f".{DATASET_FILE}.{os.getpid()}.tmp"
    try:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=1 << 20)
        os.replace(tmp, path / DATASET_FILE)
    finally:
        if tmp.exists():
            tmp.unlink()
    if isinstance(transform, LazyTexts):
        config = transform.config()
        for key in ("queries", "corpus"):  # stores saved inside the dataset folder are referred to relatively
            store = Path(config[key]).resolve()
            if store.is_relative_to(path.resolve()):
                config[key] = store.relative_to(path.resolve()).as_posix()
        write_json(path / LAZY_FILE, config)
    elif (path / LAZY_FILE).exists():
        (path / LAZY_FILE).unlink()
    report.save(path / REPORT_FILE)


def load_built_dataset(path: str | os.PathLike) -> Dataset:
    """Loads (memory-maps) a dataset saved by :func:`save_dataset`, re-attaching the lazy text join if any.

    Raises:
        FileNotFoundError: When ``path`` holds no saved dataset.
    """
    from datasets import Dataset

    path = Path(path)
    if not (path / DATASET_FILE).is_file():
        raise FileNotFoundError(f"{path / DATASET_FILE}: no saved dataset")
    dataset = Dataset.from_file(str(path / DATASET_FILE))
    if (path / LAZY_FILE).is_file():
        config = json.loads((path / LAZY_FILE).read_text(encoding="utf-8"))
        stores = [Path(config[key]) if Path(config[key]).is_absolute() else path / config[key] for key in ("queries", "corpus")]
        dataset.set_transform(LazyTexts(TextStore(stores[0]), TextStore(stores[1]), config["text_columns"], config["list_columns"]))
    return dataset


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON report saved next to a built dataset."""
    return json.loads((Path(path) / REPORT_FILE).read_text(encoding="utf-8"))
