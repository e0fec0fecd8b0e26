"""A memory-mapped text store: ``id -> text`` for collections too large for a Python dict.

A :class:`TextStore` keeps ``(id, text)`` rows in an uncompressed Arrow IPC file opened
with a memory map, so the 8.8M MS MARCO passages cost page cache rather than Python
objects. Ids are looked up in bulk (:meth:`TextStore.rows`, one Arrow hash join for a
whole column of ids) and texts are fetched by row number (:meth:`TextStore.texts`),
which is what the dataset builder's lazily joined datasets do on every access.

Example:
    ::

        from st_distill.data.store import TextStore

        corpus = TextStore.from_file("collection.tsv", "work/corpus.arrow")
        rows = corpus.rows(["7067032", "7067034"])   # positions, -1 for unknown ids
        texts = corpus.texts(rows)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

from st_distill.data.formats import FormatError, Texts, read_texts

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])


class TextStore(Mapping):
    """Read-only ``{id: text}`` backed by a memory-mapped Arrow file.

    It is a :class:`collections.abc.Mapping`, so it can stand wherever a ``Texts`` dict is
    accepted; single lookups build an id index on first use, bulk lookups (:meth:`rows`)
    do not need it. Pickling stores only the path, so datasets transforms and data-loader
    workers reopen the map instead of copying the texts.

    Args:
        path: An Arrow IPC file written by :meth:`write` (or :meth:`from_file` / :meth:`from_texts`).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such text store")
        self._table = ipc.open_file(pa.memory_map(str(self.path), "r")).read_all()
        if self._table.schema.names != SCHEMA.names:
            raise FormatError(self.path, None, f"not a text store: columns {self._table.schema.names}, expected id, text")
        self._ids: pa.Array | None = None
        self._index: dict[str, int] | None = None
        self._dense: np.ndarray | None | bool = None  # False: ids are not small canonical integers

    def __reduce__(self):
        return (TextStore, (str(self.path),))

    @property
    def ids(self) -> pa.Array:
        """All ids, in store order, as one Arrow string array."""
        if self._ids is None:
            self._ids = self._table.column("id").combine_chunks()
        return self._ids

    def __len__(self) -> int:
        return self._table.num_rows

    def __iter__(self):
        return iter(self.ids.to_pylist())

    def __getitem__(self, key: str) -> str:
        if self._index is None:
            self._index = {key: row for row, key in enumerate(self.ids.to_pylist())}
        return self._table.column("text")[self._index[key]].as_py()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and int(self.rows([key])[0]) >= 0

    def rows(self, ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Positions of ``ids`` in the store (int64), -1 where an id is unknown. One vectorised lookup.

        When every id of the store is a canonical decimal integer (MS MARCO's passage and query
        ids), lookups go through a dense position array instead of a string hash table: an order
        of magnitude faster for the 80M passage references of Hofstätter's file. An id that is not
        in canonical form (``"007"``, ``"+7"``) cannot be in such a store and maps to -1.
        """
        if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
            ids = pa.array(list(ids), type=pa.string())
        dense = self._dense_index()
        if dense is not None:
            values = _canonical_integers(ids)
            if values is not None:
                inside = (values >= 0) & (values < len(dense))
                return np.where(inside, dense[np.where(inside, values, 0)], -1).astype(np.int64)
        positions = pc.index_in(ids, value_set=self.ids)
        return positions.fill_null(-1).to_numpy().astype(np.int64, copy=False)

    def _dense_index(self) -> np.ndarray | None:
        """``dense[int(id)] = row`` when the ids are canonical integers of moderate size, else None."""
        if self._dense is None:
            self._dense = False
            values = _canonical_integers(self.ids) if len(self) else None
            if values is not None and values.min() >= 0 and values.max() < max(16 * len(values), 1 << 20):
                dense = np.full(int(values.max()) + 1, -1, dtype=np.int32 if len(values) < 2**31 else np.int64)
                dense[values] = np.arange(len(values), dtype=dense.dtype)
                self._dense = dense
        return self._dense if self._dense is not False else None

    def texts(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The texts at the given row positions, in order."""
        return self._table.column("text").take(pa.array(np.asarray(rows, dtype=np.int64))).to_pylist()

    @staticmethod
    def write(batches: Iterable[pa.RecordBatch | pa.Table], path: str | os.PathLike) -> None:
        """Writes ``(id, text)`` record batches to ``path`` atomically, rejecting empty and repeated ids."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, SCHEMA) as writer:
                for batch in batches:
                    writer.write(batch.cast(SCHEMA) if isinstance(batch, pa.Table) else batch)
            store = TextStore(tmp)
            ids = store.ids
            if pc.any(pc.equal(pc.binary_length(ids), 0)).as_py():
                raise FormatError(path, None, "a text store cannot hold an empty id")
            dense = store._dense_index()
            if (dense is not None and int((dense >= 0).sum()) != len(ids)) or (
                dense is None and pc.count_distinct(ids).as_py() != len(ids)
            ):
                counts = pc.value_counts(ids)
                repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
                raise FormatError(path, None, f"id {repeated[0].as_py()!r} appears more than once")
            del store
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @classmethod
    def from_texts(cls, texts: Mapping[str, str], path: str | os.PathLike) -> TextStore:
        """Writes a ``{id: text}`` mapping to a store at ``path`` and opens it."""
        table = pa.table({"id": pa.array(list(texts.keys()), pa.string()), "text": pa.array(list(texts.values()), pa.string())})
        cls.write([table], path)
        return cls(path)

    @classmethod
    def from_file(
        cls,
        source: str | os.PathLike,
        path: str | os.PathLike,
        skip_invalid: bool = False,
        skipped: Counter | None = None,
    ) -> TextStore:
        """Builds a store from an ``id<TAB>text`` TSV or a BEIR ``.jsonl`` file (``.gz`` too).

        Plain TSV files stream through pyarrow's CSV reader (no quoting, tab separated), so an
        8.8M-passage collection never becomes Python objects. A file with any malformed line
        is handed to the validating line reader :func:`~st_distill.data.formats.read_texts`,
        which names the file and line (or skips bad lines with a counted warning when
        ``skip_invalid``).

        Args:
            source: The text file.
            path: Where to write the store (an Arrow IPC file).
            skip_invalid: Skip malformed lines with a counted warning instead of raising.
            skipped: Optional counter receiving the skipped lines by reason.

        Raises:
            FormatError: On a malformed line (unless skipping), an empty or repeated id.
        """
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"{source}: no such file")
        if source.suffix in (".tsv", ".txt"):
            try:
                cls.write(_stream_tsv(source), path)
                return cls(path)
            except (pa.ArrowInvalid, FormatError):
                pass  # the line reader below finds the exact line, or skips it
        return cls.from_texts(read_texts(source, skip_invalid, skipped), path)


def _stream_tsv(source: Path) -> Iterable[pa.RecordBatch]:
    """Streams an ``id<TAB>text`` file as record batches; raises on any line that is not exactly two fields."""
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=["id", "text"], block_size=4 << 20),  # small blocks: cache-friendly
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False, newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(column_types={"id": pa.string(), "text": pa.string()}),
    )
    for batch in reader:
        ids, texts = (_stripped(batch.column(i)) for i in (0, 1))
        if pc.any(pc.equal(pc.binary_length(texts), 0)).as_py():
            raise FormatError(source, None, "empty text")
        yield pa.RecordBatch.from_arrays([ids, texts], schema=SCHEMA)


def _canonical_integers(ids: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """int64 values of string ids when all parse as integers, with -1 for any not in canonical
    form (a sign or a leading zero); None when some id is not an integer at all."""
    try:
        values = pc.cast(ids, pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    first = np.concatenate([_first_bytes(chunk) for chunk in chunks]) if chunks else np.zeros(0, np.uint8)
    lengths = pc.binary_length(ids).to_numpy(zero_copy_only=False)
    canonical = (first >= ord("1")) & (first <= ord("9")) | ((first == ord("0")) & (lengths == 1))
    return np.where(canonical, values, -1)


def _first_bytes(array: pa.StringArray) -> np.ndarray:
    """The first byte of every (non-empty) string of ``array``, read from its buffers."""
    if len(array) == 0:
        return np.zeros(0, np.uint8)
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[array.offset : array.offset + len(array)]
    return np.frombuffer(data_buffer, dtype=np.uint8)[offsets]


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True


def _stripped(array: pa.StringArray) -> pa.StringArray:
    """``array`` with surrounding whitespace removed; copies only when some value has any (MS MARCO has none)."""
    _, offsets_buffer, data_buffer = array.buffers()
    if data_buffer is None or len(array) == 0:
        return array
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    nonempty = offsets[1:] > offsets[:-1]
    first, last = data[offsets[:-1][nonempty]], data[offsets[1:][nonempty] - 1]
    if _WHITESPACE[first].any() or _WHITESPACE[last].any():
        return pc.utf8_trim_whitespace(array)
    return array


def as_texts(texts: Texts | TextStore | str | os.PathLike, store_path: str | os.PathLike | None = None) -> Texts | TextStore:
    """Accepts a ``{id: text}`` dict, a :class:`TextStore`, or a file (read into a dict, or a store when ``store_path``)."""
    if isinstance(texts, Mapping):
        return texts
    if Path(texts).suffix == ".arrow":
        return TextStore(texts)
    if store_path is not None:
        return TextStore.from_file(texts, store_path)
    return read_texts(texts)
