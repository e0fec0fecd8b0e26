"""A memory-mapped text store: ``id -> text`` for collections too large for a Python dict.

A :class:`TextStore` is an uncompressed Arrow IPC file opened with a memory map, so the
8.8M MS MARCO passages cost page cache rather than Python objects. It has one of two layouts:

- **an index into a plain ``id<TAB>text`` file** (what :meth:`TextStore.from_file` makes of a
  clean ``.tsv``): the ids and each text's byte offset and length in the source file, which
  stays where it is and is memory-mapped too. Nothing is copied: indexing MS MARCO's 3.1 GB
  collection writes about 200 MB. The source's size and modification time are recorded; a
  store whose source has changed refuses to open.
- **a copy** ``(id, text)`` (gzipped or BEIR ``.jsonl`` sources, dicts, Hugging Face datasets,
  and ``.tsv`` files that need cleaning: blank lines, surrounding whitespace, ``\r\n``).

Ids are looked up in bulk (:meth:`TextStore.rows`, one vectorised lookup for a whole column
of ids) and texts are fetched by row number (:meth:`TextStore.texts`), which is what the
dataset builder's lazily joined datasets do on every access.

Example:
    ::

        from st_distill.data.store import TextStore

        corpus = TextStore.from_file("collection.tsv", "work/corpus.arrow")
        rows = corpus.rows(["7067032", "7067034"])   # positions, -1 for unknown ids
        texts = corpus.texts(rows)
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

from st_distill.data.formats import UTF8_BOM, FormatError, Texts, read_texts
from st_distill.io import require_file

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])
INDEX_SCHEMA = pa.schema([("id", pa.string()), ("start", pa.int64()), ("length", pa.int32())])
_INDEX_BLOCK = 64 << 20  # bytes of the source scanned per task when indexing


class TextStore(Mapping):
    """Read-only ``{id: text}`` backed by a memory-mapped Arrow file.

    It is a :class:`collections.abc.Mapping`, so it can stand wherever a ``Texts`` dict is
    accepted; single lookups build an id index on first use, bulk lookups (:meth:`rows`)
    do not need it. Pickling stores only the path, so datasets transforms and data-loader
    workers reopen the map instead of copying the texts.

    Args:
        path: An Arrow IPC file written by :meth:`write`, :meth:`from_file` or :meth:`from_texts`.

    Raises:
        FormatError: When ``path`` is not a text store, or indexes a source file that has
            changed (or gone) since.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such text store")
        self._table = ipc.open_file(pa.memory_map(str(self.path), "r")).read_all()
        names = self._table.schema.names
        self.source: Path | None = None
        self._source_map: mmap.mmap | None = None
        if names == INDEX_SCHEMA.names:
            self.source = Path((self._table.schema.metadata or {}).get(b"source", b"").decode())
            self._source_map = _open_source(self.path, self.source, self._table.schema.metadata)
        elif names != SCHEMA.names:
            raise FormatError(self.path, None, f"not a text store: columns {names}, expected id, text (or id, start, length)")
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
        return self.texts([self._index[key]])[0]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and int(self.rows([key])[0]) >= 0

    def rows(self, ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Positions of ``ids`` in the store, -1 where an id is unknown. One vectorised lookup.

        When every id of the store is a canonical decimal integer (MS MARCO's passage and query
        ids), lookups go through a dense position array instead of a string hash table: an order
        of magnitude faster for the 80M passage references of Hofstätter's file. An id that is not
        in canonical form (``"007"``, ``"+7"``) cannot be in such a store and maps to -1.

        Returns:
            An int32 array (int64 for stores of 2**31 rows or more).
        """
        if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
            ids = pa.array(list(ids), type=pa.string())
        dense = self._dense_index()
        if dense is not None:
            values = _canonical_integers(ids)
            if values is not None:
                if len(values) and values.min() >= 0 and values.max() < len(dense):
                    return dense[values]
                inside = (values >= 0) & (values < len(dense))
                return np.where(inside, dense[np.where(inside, values, 0)], -1)
        positions = pc.index_in(ids, value_set=self.ids)
        return positions.fill_null(-1).to_numpy().astype(dense.dtype if dense is not None else _row_dtype(len(self)), copy=False)

    def _dense_index(self) -> np.ndarray | None:
        """``dense[int(id)] = row`` when the ids are canonical integers of moderate size, else None."""
        if self._dense is None:
            self._dense = False
            values = _canonical_integers(self.ids) if len(self) else None
            if values is not None and values.min() >= 0 and values.max() < max(16 * len(values), 1 << 20):
                dense = np.full(int(values.max()) + 1, -1, dtype=_row_dtype(len(values)))
                dense[values] = np.arange(len(values), dtype=dense.dtype)
                self._dense = dense
        return self._dense if self._dense is not False else None

    def texts(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The texts at the given row positions, in order."""
        rows = pa.array(np.asarray(rows, dtype=np.int64))
        if self._source_map is None:
            return self._table.column("text").take(rows).to_pylist()
        starts = self._table.column("start").take(rows).to_pylist()
        lengths = self._table.column("length").take(rows).to_pylist()
        source = self._source_map
        return [source[start : start + length].decode("utf-8") for start, length in zip(starts, lengths)]

    @staticmethod
    def write(batches: Iterable[pa.RecordBatch | pa.Table], path: str | os.PathLike, schema: pa.Schema = SCHEMA) -> None:
        """Writes record batches to ``path`` atomically, rejecting empty and repeated ids.

        Args:
            batches: ``(id, text)`` batches (or tables), or, with ``schema`` an index schema,
                ``(id, start, length)`` batches.
            path: The store file.
            schema: :data:`SCHEMA`, or :data:`INDEX_SCHEMA` with the source's metadata (see :meth:`from_file`).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, schema) as writer:
                for batch in batches:
                    writer.write(batch.cast(schema) if isinstance(batch, pa.Table) else batch)
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

        A clean plain TSV (every line ``id<TAB>text``, UTF-8, no blank line, no surrounding
        whitespace: MS MARCO's files) is indexed in place: the file is read in blocks and scanned
        with numpy on all cores, and only ids and offsets are written; the source must then
        stay where it is, unchanged. Other TSV files stream through pyarrow's CSV reader into a
        copy, so an 8.8M-passage collection never becomes Python objects. A file with any
        malformed line is handed to the validating line reader
        :func:`~st_distill.data.formats.read_texts`, which names the file and line (or skips
        bad lines with a counted warning when ``skip_invalid``).

        Args:
            source: The text file.
            path: Where to write the store (an Arrow IPC file).
            skip_invalid: Skip malformed lines with a counted warning instead of raising.
            skipped: Optional counter receiving the skipped lines by reason.

        Raises:
            FormatError: On a malformed line (unless skipping), an empty or repeated id.
        """
        source = require_file(source)
        if source.suffix in (".tsv", ".txt"):
            try:
                index = _index_tsv(source)
                if index is not None:
                    cls.write([index], path, index.schema)
                    return cls(path)
                cls.write(_stream_tsv(source), path)
                return cls(path)
            except (pa.ArrowInvalid, FormatError):
                pass  # the line reader below finds the exact line, or skips it
        return cls.from_texts(read_texts(source, skip_invalid, skipped), path)


def _source_metadata(source: Path) -> dict[bytes, bytes]:
    """What an index records of its source: the absolute path, size and modification time."""
    stat = source.stat()
    return {b"source": str(source.resolve()).encode(), b"size": str(stat.st_size).encode(), b"mtime_ns": str(stat.st_mtime_ns).encode()}


def _open_source(store: Path, source: Path, metadata: dict[bytes, bytes] | None) -> mmap.mmap:
    """Memory-maps an index's source file, refusing one that is gone or has changed since indexing."""
    if not source.is_file():
        raise FormatError(store, None, f"the text store indexes {source}, which no longer exists; rebuild the store")
    if _source_metadata(source) != {key: (metadata or {}).get(key) for key in (b"source", b"size", b"mtime_ns")}:
        raise FormatError(store, None, f"{source} has changed since this store indexed it; rebuild the store")
    with open(source, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _index_tsv(source: Path) -> pa.Table | None:
    """Indexes a clean ``id<TAB>text`` file in place: ``(id, start, length)`` of every line's text.

    Returns None when the file is not clean (empty, a byte order mark, a blank line, a line
    without exactly one tab, control characters such as ``\r``, surrounding spaces, invalid UTF-8): the caller then
    copies it with the reader that cleans it or names the bad line. The file is cut into blocks
    at newlines and the blocks are read (``pread`` into one reused buffer per thread: no page
    faults, unlike a memory map) and scanned in parallel; numpy releases the GIL.
    """
    size = source.stat().st_size
    if size == 0:
        return None
    buffers = threading.local()
    with open(source, "rb") as f:
        if f.read(len(UTF8_BOM)) == UTF8_BOM:
            return None  # the copying reader drops the byte order mark
        fd = f.fileno()
        bounds = [0]
        while bounds[-1] < size:
            bounds.append(_next_line_start(fd, min(bounds[-1] + _INDEX_BLOCK, size), size))

        def scan(lo: int, hi: int) -> tuple[pa.StringArray, np.ndarray, np.ndarray] | None:
            if getattr(buffers, "block", None) is None or len(buffers.block) < hi - lo:
                buffers.block = np.empty(max(hi - lo, _INDEX_BLOCK), dtype=np.uint8)
            block = buffers.block[: hi - lo]
            if os.preadv(fd, [block], lo) != hi - lo:
                raise OSError(f"{source}: short read at byte {lo}")
            return _index_block(block, lo)

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            blocks = list(pool.map(scan, bounds[:-1], bounds[1:]))
    if any(block is None for block in blocks):
        return None
    ids, starts, lengths = zip(*blocks)
    schema = INDEX_SCHEMA.with_metadata(_source_metadata(source))
    return pa.table([pa.chunked_array(ids, pa.string()), pa.array(np.concatenate(starts)), pa.array(np.concatenate(lengths))], schema=schema)


def _next_line_start(fd: int, position: int, size: int) -> int:
    """The offset just after the first newline at or after ``position - 1`` (``size`` if none)."""
    position = max(position - 1, 0)
    while position < size:
        window = os.pread(fd, 1 << 16, position)
        found = window.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(window)
    return size


def _index_block(block: np.ndarray, lo: int) -> tuple[pa.StringArray, np.ndarray, np.ndarray] | None:
    """Ids, text offsets and text lengths of the whole lines in ``block`` (read from byte ``lo``), or None if any is not clean."""
    separators = np.flatnonzero(block <= 13)  # tab, newline, and every other control character
    kinds = block[separators]
    if block[-1] != 10:  # a last line without its newline
        separators, kinds = np.append(separators, len(block)), np.append(kinds, np.uint8(10))
    if len(separators) % 2 or not ((kinds[0::2] == 9).all() and (kinds[1::2] == 10).all()):
        return None
    tabs, ends = separators[0::2], separators[1::2]
    starts = np.concatenate([[0], ends[:-1] + 1])
    id_lengths, text_lengths = tabs - starts, ends - tabs - 1
    if (id_lengths <= 0).any() or (text_lengths <= 0).any():
        return None
    if any((block[edge] == 32).any() for edge in (starts, tabs - 1, tabs + 1, ends - 1)):
        return None  # surrounding spaces: the copying reader strips them
    try:
        pa.LargeStringArray.from_buffers(1, pa.py_buffer(np.array([0, len(block)], np.int64)), pa.py_buffer(block)).validate(full=True)
    except pa.ArrowInvalid:
        return None  # not UTF-8
    offsets = np.zeros(len(starts) + 1, dtype=np.int32)
    np.cumsum(id_lengths, out=offsets[1:])
    gather = np.repeat(starts - offsets[:-1], id_lengths) + np.arange(offsets[-1])
    ids = pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(block[gather]))
    return ids, (tabs + 1 + lo).astype(np.int64), text_lengths.astype(np.int32)


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


def _row_dtype(rows: int) -> type:
    """The integer type of row positions in a store of ``rows`` rows."""
    return np.int32 if rows < 2**31 else np.int64


def _canonical_integers(ids: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """int64 values of string ids when all parse as integers, with -1 for any not in canonical
    form (a leading zero; a sign or spaces do not parse); None when some id is not an integer at all."""
    try:
        values = pc.cast(ids, pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    first = np.concatenate([_first_bytes(chunk) for chunk in chunks]) if chunks else np.zeros(0, np.uint8)
    leading_zero = first == ord("0")
    if leading_zero.any():
        lengths = pc.binary_length(ids).to_numpy(zero_copy_only=False)
        values = np.where(leading_zero & (lengths > 1), -1, values)
    return values


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


def lookup_texts(texts: Mapping[str, str], ids: Sequence[str]) -> list[str | None]:
    """Texts of ``ids`` (``None`` where unknown): in bulk for a :class:`TextStore`, else by ``get``.

    Args:
        texts: ``{id: text}``: a dict or a :class:`TextStore`.
        ids: The ids to look up.

    Returns:
        One text or ``None`` per id, in the order of ``ids``.
    """
    if isinstance(texts, TextStore):
        rows = texts.rows(ids)
        found = texts.texts(np.where(rows >= 0, rows, 0))
        return [text if row >= 0 else None for text, row in zip(found, rows)]
    return [texts.get(key) for key in ids]


def as_texts(texts: Texts | TextStore | str | os.PathLike, store_path: str | os.PathLike | None = None) -> Texts | TextStore:
    """Accepts a ``{id: text}`` dict, a :class:`TextStore`, or a file (read into a dict, or a store when ``store_path``)."""
    if isinstance(texts, Mapping):
        return texts
    if Path(texts).suffix == ".arrow":
        return TextStore(texts)
    if store_path is not None:
        return TextStore.from_file(texts, store_path)
    return read_texts(texts)
