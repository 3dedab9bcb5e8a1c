"""The n-gram index of a subset file: which blocks of rows hold which (lowercased, UTF-8) byte trigram.

Beside every immutable subset file `subset-<stamp>.duckdb` lies a folder `subset-<stamp>.duckdb.ngram/`
built in the same `SwappedFiles.build` before the CURRENT pointer is swapped, so the file and its index
are always installed (and deleted) together. For each table with text columns it holds:

- `<table>.rows.arrow`: the table's rows in table order, an Arrow IPC file of LZ4-compressed record
  batches of BATCH_ROWS rows. DuckDB has no fast point lookup by row position; this file gives
  candidate rows by position (memory-mapped, so every web worker shares one page cache);
- `<table>.terms.npy` (uint32, sorted), `<table>.offsets.npy` (uint64), `<table>.sizes.npy` (uint32):
  one entry per (column, trigram) term: term = column_number << 24 | b0 << 16 | b1 << 8 | b2, where
  the bytes come from the column's value lowercased by pyarrow's `utf8_lower` (utf8proc, as DuckDB);
  `sizes` is the number of blocks holding the term;
- `<table>.postings.bin`: per term, a serialized pyroaring BitMap of block numbers
  (block = row position // BLOCK_ROWS);
- `<table>.json`: block size, batch size, columns, rows, build seconds, bytes.

Lookup: a needle's trigrams (lowercased the same way) → their bitmaps, intersected → candidate blocks
(a superset of the matching rows for contains, icontains, startswith and any regex that requires a
literal). Candidates are verified by the caller (apps.search.selectors) with DuckDB's own WHERE, so
the index only has to never miss a row. Values shorter than 3 bytes give no trigram: no pruning.
"""
from __future__ import annotations

import array
import json
import mmap
import re
import re._parser as sre_parse
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from pyroaring import BitMap

from .sql import quote_identifier

SUFFIX = ".ngram"
BLOCK_ROWS = 32  # rows per posting: verified together
BATCH_ROWS = 256  # rows per compressed record batch of the row file (a multiple of BLOCK_ROWS)
ROWS_CODEC = "zstd"  # the row file's compression (lz4: ~1.6x larger, ~4x faster to read a batch)
CHUNK_ROWS = 131_072  # rows read and indexed per step while building
GRAM = 3  # bytes per gram
BLOCK_BITS = 24  # keys are term << 24 | block: at most 2^24 blocks per table
TEXT_TYPES = ("VARCHAR",)
INDEX_VERSION = 1


def index_dir_for(path: Path) -> Path:
    """The index folder that belongs to a subset (or learned) DuckDB file."""
    return path.with_name(path.name + SUFFIX)


def index_remove(path: Path) -> None:
    shutil.rmtree(index_dir_for(path), ignore_errors=True)


# --- building -----------------------------------------------------------------------------------

def _lowered_bytes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64[n+1], data uint8) of the column lowercased, NULL as empty."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    lowered = pc.fill_null(pc.utf8_lower(column.cast(pa.large_string())), "")
    if isinstance(lowered, pa.ChunkedArray):
        lowered = lowered.combine_chunks()
    _, offset_buf, data_buf = lowered.buffers()
    offsets = np.frombuffer(offset_buf, dtype=np.int64)[lowered.offset: lowered.offset + len(lowered) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
    return offsets - offsets[0], data[offsets[0]: offsets[-1]]


def chunk_terms(column: pa.Array | pa.ChunkedArray, *, column_number: int, first_row: int,
                block_rows: int = BLOCK_ROWS, gram: int = GRAM) -> np.ndarray:
    """Sorted unique uint64 keys `term << BLOCK_BITS | block` for one column of consecutive rows starting
    at first_row, where term = column_number << 32 | the gram's bytes (big-endian)."""
    offsets, data = _lowered_bytes(column)
    lengths = np.diff(offsets)
    rows = len(lengths)
    if len(data) < gram:
        return np.zeros(0, dtype=np.uint64)
    d = data.astype(np.uint64)
    count = len(d) - gram + 1
    codes = np.zeros(count, dtype=np.uint64)
    for i in range(gram):
        codes |= d[i: i + count] << np.uint64(8 * (gram - 1 - i))
    valid = np.ones(count, dtype=bool)
    ends = offsets[1:]
    for back in range(1, gram):  # a gram starting in a row's last gram-1 bytes would cross into the next row
        cut = ends[ends >= back] - back
        valid[cut[cut < count]] = False
    row_of = np.repeat(np.arange(rows, dtype=np.int64), lengths)[:count]
    blocks = ((row_of[valid] + first_row) // block_rows).astype(np.uint64)
    keys = ((codes[valid] | np.uint64(column_number << 32)) << np.uint64(BLOCK_BITS)) | blocks
    keys.sort()  # np.sort, then drop repeats: much faster than np.unique here
    if len(keys) < 2:
        return keys
    keep = np.empty(len(keys), dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def table_text_columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [name for name, dtype in conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [table]).fetchall()
        if dtype in TEXT_TYPES]


def index_build(*, conn: duckdb.DuckDBPyConnection, path: Path, tables: list[str] | None = None,
                stdout=None) -> dict:
    """Build the index folder for the DuckDB file `path` (open as `conn`, being built): every table of
    the main schema with text columns, or just `tables`. Returns {table: meta}."""
    target = index_dir_for(path)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if tables is None:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' ORDER BY table_name").fetchall()]
    built = {}
    for table in tables:
        columns = table_text_columns(conn, table)
        if columns:
            built[table] = _table_index_build(conn=conn, folder=target, table=table, columns=columns, stdout=stdout)
    return built


def _columns_write(writers, table: pa.Table) -> None:
    table = table.combine_chunks()
    for writer, field, column in zip(writers, table.schema, table.columns):
        writer.write_table(pa.table([column], schema=pa.schema([field])), max_chunksize=BATCH_ROWS)


def _table_index_build(*, conn, folder: Path, table: str, columns: list[str], stdout=None) -> dict:
    started = time.perf_counter()
    bitmaps: dict[int, BitMap] = {}
    reader = conn.execute(f"SELECT * FROM {quote_identifier(table)}").to_arrow_reader(CHUNK_ROWS)
    options = ipc.IpcWriteOptions(compression=ROWS_CODEC)
    schema = reader.schema
    writers = [ipc.new_file(str(folder / f"{table}.col{i}.arrow"), pa.schema([f]), options=options)
               for i, f in enumerate(schema)]
    pending = None
    done = 0
    try:
        for batch in reader:
            chunk = pa.Table.from_batches([batch], schema=schema)
            # Every record batch of a column file holds exactly BATCH_ROWS rows (the last one fewer), so
            # row position p is in batch p // BATCH_ROWS.
            pending = pa.concat_tables([pending, chunk]) if pending is not None else chunk
            whole = pending.num_rows // BATCH_ROWS * BATCH_ROWS
            if whole:
                _columns_write(writers, pending.slice(0, whole))
                pending = pending.slice(whole)
            for number, name in enumerate(columns):
                keys = chunk_terms(chunk.column(name), column_number=number, first_row=done)
                if not len(keys):
                    continue
                terms = keys >> np.uint64(BLOCK_BITS)
                blocks = (keys & np.uint64((1 << BLOCK_BITS) - 1)).astype(np.uint32)
                cuts = np.flatnonzero(np.diff(terms)) + 1
                starts = np.concatenate([[0], cuts])
                ends = np.concatenate([cuts, [len(terms)]])
                for term, lo, hi in zip(terms[starts].tolist(), starts.tolist(), ends.tolist()):
                    part = array.array("I", blocks[lo:hi].tobytes())  # pyroaring's fast path: 8x numpy's
                    bitmap = bitmaps.get(term)
                    if bitmap is None:
                        bitmaps[term] = BitMap(part)
                    else:
                        bitmap.update(part)
            done += batch.num_rows
            if stdout is not None and done % (CHUNK_ROWS * 8) == 0:
                stdout.write(f"  n-gram index {table}: {done:,} rows, {time.perf_counter() - started:.1f}s\n")
        if pending is not None and pending.num_rows:
            _columns_write(writers, pending)
    finally:
        for writer in writers:
            writer.close()
    terms_sorted = np.array(sorted(bitmaps), dtype=np.uint64)
    sizes = np.zeros(len(terms_sorted), dtype=np.uint32)
    offsets = np.zeros(len(terms_sorted) + 1, dtype=np.uint64)
    with open(folder / f"{table}.postings.bin", "wb") as out:
        position = 0
        for i, term in enumerate(terms_sorted.tolist()):
            bitmap = bitmaps.pop(term)
            bitmap.run_optimize()
            blob = bitmap.serialize()
            out.write(blob)
            sizes[i] = len(bitmap)
            position += len(blob)
            offsets[i + 1] = position
    np.save(folder / f"{table}.terms.npy", terms_sorted)
    np.save(folder / f"{table}.offsets.npy", offsets)
    np.save(folder / f"{table}.sizes.npy", sizes)
    count, end = conn.execute(f"SELECT count(*), coalesce(max(rowid) + 1, 0) FROM {quote_identifier(table)}").fetchone()
    index_bytes = sum(p.stat().st_size for p in folder.glob(f"{table}.*"))
    rows_bytes = sum(p.stat().st_size for p in folder.glob(f"{table}.col*.arrow"))
    meta = {"version": INDEX_VERSION, "table": table, "columns": columns, "rows": done, "schema": [f.name for f in schema], "dense_rowid": count == end == done, "gram": GRAM, "block_rows": BLOCK_ROWS,
            "batch_rows": BATCH_ROWS, "terms": len(terms_sorted), "build_seconds": round(time.perf_counter() - started, 2),
            "postings_bytes": int(offsets[-1]), "rows_file_bytes": rows_bytes, "index_bytes": index_bytes}
    (folder / f"{table}.json").write_text(json.dumps(meta, indent=1))
    if stdout is not None:
        stdout.write(f"  n-gram index {table}: {done:,} rows, {len(terms_sorted):,} terms, "
                     f"{index_bytes / 1e6:,.1f} MB in {meta['build_seconds']:.1f}s\n")
    return meta


# --- reading ------------------------------------------------------------------------------------

def needle_grams(value: str, gram: int = GRAM) -> list[int]:
    """The distinct byte gram codes of a value lowercased as the index lowercases rows."""
    lowered = pc.utf8_lower(pa.array([value], type=pa.string()))[0].as_py().encode("utf-8")
    return sorted({int.from_bytes(lowered[i: i + gram], "big") for i in range(len(lowered) - gram + 1)})


class TableIndex:
    """One table's index, memory-mapped read-only: shared by all threads (and, via the page cache,
    all processes)."""

    def __init__(self, folder: Path, table: str):
        self.meta = json.loads((folder / f"{table}.json").read_text())
        self.columns = {name: number for number, name in enumerate(self.meta["columns"])}
        self.block_rows = int(self.meta["block_rows"])
        self.gram = int(self.meta["gram"])
        self.batch_rows = int(self.meta["batch_rows"])
        self.rows = int(self.meta["rows"])
        self.dense_rowid = bool(self.meta["dense_rowid"])  # row position == DuckDB rowid
        self.blocks = (self.rows + self.block_rows - 1) // self.block_rows
        self.terms = np.load(folder / f"{table}.terms.npy", mmap_mode="r")
        self.offsets = np.load(folder / f"{table}.offsets.npy", mmap_mode="r")
        self.sizes = np.load(folder / f"{table}.sizes.npy", mmap_mode="r")
        with open(folder / f"{table}.postings.bin", "rb") as handle:
            size = handle.seek(0, 2)
            self._postings = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._sources = []
        fields = []
        for i in range(len(self.meta["schema"])):
            source = pa.memory_map(str(folder / f"{table}.col{i}.arrow"), "r")
            self._sources.append(source)
            fields.append(ipc.open_file(source).schema.field(0))
        self.schema = pa.schema(fields)
        self.field_index = {f.name: i for i, f in enumerate(fields)}
        self._readers = threading.local()  # per thread: file readers over the shared mappings

    def _reader(self, i: int) -> ipc.RecordBatchFileReader:
        readers = getattr(self._readers, "readers", None)
        if readers is None:
            readers = self._readers.readers = {}
        reader = readers.get(i)
        if reader is None:
            reader = readers[i] = ipc.open_file(self._sources[i])
        return reader

    def _find(self, term: int) -> int:
        i = int(np.searchsorted(self.terms, term))
        return i if i < len(self.terms) and int(self.terms[i]) == term else -1

    def term_codes(self, column: str, value: str) -> list[int]:
        number = self.columns[column]
        return [(number << 32) | code for code in needle_grams(value, self.gram)]

    def term_size(self, term: int) -> int:
        i = self._find(term)
        return 0 if i < 0 else int(self.sizes[i])

    def bitmap(self, term: int) -> BitMap:
        i = self._find(term)
        if i < 0:
            return BitMap()
        return BitMap.deserialize(self._postings[int(self.offsets[i]): int(self.offsets[i + 1])])

    def candidates(self, terms: list[int]) -> BitMap:
        """Blocks holding every term (smallest postings first: the intersection shrinks fastest)."""
        if not terms:
            return BitMap(range(self.blocks))
        ordered = sorted(set(terms), key=self.term_size)
        result = self.bitmap(ordered[0])
        for term in ordered[1:]:
            if not result:
                break
            result &= self.bitmap(term)
        return result

    def block_positions(self, blocks) -> np.ndarray:
        """Row positions of these blocks (ascending blocks → ascending positions)."""
        blocks = np.asarray(blocks, dtype=np.int64)
        positions = (blocks[:, None] * self.block_rows + np.arange(self.block_rows)[None, :]).ravel()
        return positions[positions < self.rows]

    def column_at(self, name: str, positions: np.ndarray) -> pa.Array:
        """One column's values at ascending row positions (decoding only that column's batches)."""
        reader = self._reader(self.field_index[name])
        if not len(positions):
            return pa.array([], type=self.schema.field(name).type)
        batch_of = positions // self.batch_rows
        cuts = np.flatnonzero(np.diff(batch_of)) + 1
        parts = []
        for group in np.split(positions, cuts):
            index = int(group[0] // self.batch_rows)
            column = reader.get_batch(index).column(0)
            parts.append(column.take(pa.array(group - index * self.batch_rows)))
        return pa.concat_arrays(parts) if len(parts) > 1 else parts[0]

    def rows_at(self, positions: np.ndarray) -> pa.Table:
        """Every column at these ascending row positions."""
        return pa.table([self.column_at(f.name, positions) for f in self.schema], schema=self.schema)

    def close(self) -> None:
        if isinstance(self._postings, mmap.mmap):
            self._postings.close()
        for source in self._sources:
            source.close()


class FileIndex:
    """The index folder of one DuckDB file: its tables' indexes, opened on first use."""

    def __init__(self, path: Path):
        self.path = path
        self.folder = index_dir_for(path)
        self._tables: dict[str, TableIndex | None] = {}
        self._lock = threading.Lock()

    def table(self, name: str) -> TableIndex | None:
        with self._lock:
            if name not in self._tables:
                try:
                    self._tables[name] = TableIndex(self.folder, name) if (self.folder / f"{name}.json").exists() else None
                except (OSError, ValueError, KeyError, pa.ArrowException):
                    self._tables[name] = None
            return self._tables[name]


_open: dict[Path, FileIndex] = {}
_open_lock = threading.Lock()


def file_index(path: Path) -> FileIndex:
    """The (process-wide, cached) index of a DuckDB file; older files' indexes are dropped from the cache
    once a newer one is asked for (open mappings stay valid for threads still using them)."""
    with _open_lock:
        found = _open.get(path)
        if found is None:
            for stale in [p for p in _open if p.parent == path.parent and p != path]:
                _open.pop(stale)
            found = _open[path] = FileIndex(path)
        return found


# --- regex literals ------------------------------------------------------------------------------

def regex_required_literal(pattern: str) -> str | None:
    """The longest run of literal characters every match must contain (top level of the pattern,
    no alternation, no flags), or None. Used only to narrow candidates: DuckDB verifies the regex."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
    if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    best, run = "", []
    for op, arg in list(parsed):
        if op is sre_parse.LITERAL:
            run.append(chr(arg))
            continue
        if op is sre_parse.BRANCH:
            return None
        text = "".join(run)
        if len(text) > len(best):
            best = text
        run = []
    text = "".join(run)
    if len(text) > len(best):
        best = text
    return best if len(best.encode("utf-8")) >= 3 else None
