"""The substring index of a subset file: a dictionary of the words of each text column, each word with
the rows holding it, plus the rows themselves in column files for fast reads by position.

Beside every immutable subset file `subset-<stamp>.duckdb` lies a folder `subset-<stamp>.duckdb.words/`
built in the same `SwappedFiles.build` before the CURRENT pointer is swapped, so a file and its index
are always installed (and deleted) together. For each table with text (VARCHAR) columns it holds:

- `<table>.rows.bin` (+ `rows.npy` frame offsets, `schema.arrow`, `rows.dict`): the
  table in table order, batches of exactly BATCH_ROWS rows, each an Arrow IPC record batch compressed as
  one zstd frame with a dictionary trained on the table's first batches (small frames of text compress
  ~1.25x smaller with it, and 32-row frames as small as 128-row ones). DuckDB has no fast point lookup by row position; this file gives candidate
  rows by position, memory-mapped, so every web worker shares one page cache;
- per indexed column n: `<table>.t<n>.tokens.arrow` (the column's distinct words, sorted),
  `<table>.t<n>.offsets.npy` (uint64), `<table>.t<n>.sizes.npy` (uint32, rows per word) and
  `<table>.t<n>.kinds.npy` (uint8): word i's rows are postings[offsets[i]:offsets[i+1]] of
  `<table>.postings.bin`, stored as kind says: a serialized pyroaring BitMap (ROARING), or, where that is
  smaller, the row numbers as little-endian uint32 (ARRAY: a rare word's rows lie in as many roaring
  containers as rows, ~10 bytes a row; an array takes 4), or nothing (NONE: a very frequent word);
- per text column with at most CODED_MAX_VALUES (15) distinct values (label, lang):
  `<table>.t<n>.codes.npy`, a 4-bit code per row (its value's rank among the sorted values in the meta's
  `coded`; NO_CODE for NULL), two rows a byte: 5 MB a column at 10M rows. Such a column's words are too
  frequent to narrow, but its code drops the candidates of an `eq` / `in` filter before their rows are read;
- `<table>.postings.sums`: a CRC-32 per SUM_BLOCK (4 KB) of the postings;
- `<table>.json`: sizes, columns, coded columns and their values, build seconds, bytes; every file's kind,
  size and CRC-32, the tokenizer fingerprint, a CRC-32 of itself.

Every file but the meta begins with a header (MAGIC, format version, file kind, payload length): see "the
file format" below and apps/search/README.md, "Index format", for what is checked when. Damage found at open
or read raises IndexDamaged; the caller (selectors.indexed_search) then scans that table.

Words: the value lowercased by pyarrow's `utf8_lower` (utf8proc, as DuckDB's lower/ILIKE), split at
every character that is not a letter or digit (SEPARATOR). Words of ASCII digits only are not
indexed (ids in URLs would make the dictionary as long as the table). The value's first word (when
the value starts with a letter or digit) is indexed a second time as FIRST + word: those entries sort
before every word, and let `startswith` look up the rows whose value begins with the needle's first
part instead of every row holding such a word anywhere. Words joined by apostrophes (india's, don't,
rock'n'roll: the value split at every separator but the apostrophe, apostrophes trimmed from the ends,
kept where one is left inside) are indexed too, as JOINED + word, sorting after the FIRST entries: a
needle such as "ia's", whose parts `ia` and `s` are in too many words to narrow, is looked up among them.

Lookup of a needle (lowercased and split the same way into parts): one part → rows holding a word
that contains it; several parts → the first part ends a word, the middle ones are whole words and
the last starts a word; at the start of the value (startswith) the first part begins (or, followed
by more parts, is) the value's first word; a whole value (eq, in) → every part is a whole word. The
needle's pieces split the joined way that hold an apostrophe between letters are placed the same way
among the joined words, as further parts.
Each part's rows are the union of its words' postings; parts of digits only (not indexed), parts
matching too many words and parts matching a very frequent word (in more than FREQUENT_SHARE of the
rows: stored without postings, since such a word barely narrows) do not narrow. Every other word
keeps its postings, so a conjunction of common words (each in 3% of the rows, together in 0.004%)
is an intersection, not a scan. A lookup first resolves words and sums their sizes (`Lookup.estimate`,
an upper bound of its rows) without reading postings, so the planner skips reading those of a lookup
too large to narrow, and intersects the smallest first. The result is a superset of the matching rows:
the caller (apps.search.selectors) verifies candidates with DuckDB's own WHERE.
"""
from __future__ import annotations

import array
import bisect
import hashlib
import io
import json
import logging
import mmap
import os
import queue
import re
import re._parser as sre_parse
import shutil
import struct
import sys
import threading
import time
import unicodedata
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zstandard
from pyarrow import ipc
from pyroaring import BitMap, FrozenBitMap

from .sql import quote_identifier

logger = logging.getLogger(__name__)

SUFFIX = ".words"
BATCH_ROWS = 32  # rows per compressed record batch of the row file (with the dictionary, 32-row frames are
# as small as 128-row ones were, and a candidate row costs ~7x less to read: ~25 µs)
ROWS_LEVEL = 9  # zstd level of the row file's frames (6: ~2.5% larger, ~2x faster to write; the writer thread hides it)
ROWS_DICT_BYTES = 1_024_000  # the row file's zstd dictionary, trained on the first batches
ROWS_DICT_SAMPLES = 3200  # batches it is trained on (~100k rows)
CHUNK_ROWS = 131_072  # rows read and indexed per step while building
SEPARATOR = r"[^\p{L}\p{N}]+"  # RE2 (pyarrow): what separates words
DIGITS = re.compile(r"[0-9]+")
MAX_PART_WORDS = 4096  # a part matching more words than this does not narrow (a frequent fragment)
FREQUENT_SHARE = 0.25  # words in more than this share of the rows (and FREQUENT_MIN_ROWS) keep no postings: a
# needle matching them is frequent, and the LIMIT scan finds its rows at once; ANDed with a rarer word, one candidate
# in four or more holds them. Words in 5-25% keep theirs (5% was the bound until stop 30): `what` AND `buying` read
# 1,984 of buying's 10,220 rows to find 100 holding both (74 ms at 10M rows); intersected, it reads only those.
FREQUENT_MIN_ROWS = 2000
FIRST = "\x01"  # marks a value's first word (sorts before any word: words hold letters and digits only)
JOINED = "\x02"  # marks a joined word: words joined by apostrophes (india's, don't), sorted after FIRST ones
APOSTROPHE = "'"
JOINED_SEPARATOR = r"[^\p{L}\p{N}']+"  # what separates joined words (RE2): SEPARATOR less the apostrophe
MIN_NEEDLE_CHARS = 2  # shorter needles do not narrow: the scan answers them (a 2-character needle such as "1e" narrows
# to a few words; one matching more than MAX_PART_WORDS words gives up as any part does: "th" costs ~3 ms)
TEXT_TYPES = ("VARCHAR",)
INDEX_VERSION = 10  # 6 was a reverted experiment (byte-gap postings); 8 added the 4-bit codes of low-cardinality
# columns, 9 the joined words (words joined by apostrophes), 10 the magic, checksums and tokenizer fingerprint
OLDEST_READABLE_VERSION = 10  # older folders (no magic, no checksums) are stale: searches scan until a reindex
NONE, ROARING, ARRAY = 0, 1, 2  # how a word's postings are stored (`<table>.t<n>.kinds.npy`)
CODED_MAX_VALUES = 15  # a text column with this many distinct values or fewer also gets a 4-bit code per row
NO_CODE = 15  # the code of NULL


PREFETCH_GAP = 64 * 1024  # prefetched byte ranges closer than this are asked for as one
PREFETCH_MAX_POSTINGS = 512  # a lookup's postings in more separate ranges than this are not prefetched
_WILLNEED = getattr(mmap, "MADV_WILLNEED", 0)


PARALLEL_FRAMES = 32  # a read of this many frames or more is split with a helper thread when a core is idle:
# 200 frames took 7-9 ms instead of 11-12 (cold, the two threads also wait for the disk at once)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
FRAME_HELPERS = 2  # helper threads per process; a read that finds them all busy reads alone (no queueing)
_helpers = threading.BoundedSemaphore(FRAME_HELPERS)
_frames: ThreadPoolExecutor | None = None
_frames_lock = threading.Lock()


def _frame_pool() -> ThreadPoolExecutor:
    global _frames
    with _frames_lock:
        if _frames is None:
            _frames = ThreadPoolExecutor(max_workers=FRAME_HELPERS, thread_name_prefix="index-frames")
        return _frames


def core_idle(loadavg: str | None = None) -> bool:
    """Is a core idle right now? Linux's /proc/loadavg counts the threads running or ready to run this instant
    (this one included) in its fourth field (`2/531`): fewer than the cores means one is free. A helper thread
    only pays off on a free core: with every core busy serving other requests (8 clients on 2 cores) it just
    queued behind them, and its hand-offs cost ~10% of the throughput. True where the count is not known."""
    try:
        if loadavg is None:
            with open("/proc/loadavg", "rb") as file:
                loadavg = file.read(128).decode()
        runnable = int(loadavg.split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return True
    return runnable < CORES


def _forget_frame_pool() -> None:
    """In a forked child (a Celery or gunicorn worker) the parent's helper threads do not exist."""
    global _frames, _frames_lock, _helpers
    _frames, _frames_lock, _helpers = None, threading.Lock(), threading.BoundedSemaphore(FRAME_HELPERS)


os.register_at_fork(after_in_child=_forget_frame_pool)


def _map_random(path: Path) -> mmap.mmap | bytes:
    """A read-only mapping of a large index file read at random places (the row file, the postings):
    shared by every process through the page cache. MADV_RANDOM: a page fault reads that page, not the
    read-ahead window around it (up to the disk's read_ahead_kb: 8 MB on this machine's disk, where a
    cold 3 KB frame took ~9 ms to read instead of ~0.2). The whole file is read into the page cache in
    the background (file_prefetch), so the first searches after a start or a swap do not wait on the disk."""
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        if not size:
            return b""
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mmap, "MADV_RANDOM"):
        mapping.madvise(mmap.MADV_RANDOM)
    file_prefetch(path)
    return mapping


PREFETCH_CHUNK = 512 * 1024  # bytes asked for per call: the kernel reads at most its read-ahead size per call
PREFETCH_SHARE = 0.5  # a file is prefetched only while the files so far fit in this share of available memory
_prefetched: dict[Path, int] = {}
_prefetched_lock = threading.Lock()


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def file_prefetch(path: Path, *, wait: bool = False) -> threading.Thread | None:
    """Read the file `path` into the page cache, in a background thread, once per process (a second process
    finds it cached and is done at once). One MADV_WILLNEED (or POSIX_FADV_WILLNEED) over a whole file reads
    only the kernel's read-ahead size of it (8 MB here, measured with fincore): the file is asked for in
    PREFETCH_CHUNK pieces. Skipped (None) when it would not fit in PREFETCH_SHARE of the available memory with
    the files prefetched before it: then pages come in as searches read them."""
    if not hasattr(os, "posix_fadvise"):
        return None
    with _prefetched_lock:
        if path in _prefetched:
            return None
        for gone in [p for p in _prefetched if not p.exists()]:  # files swapped out since: their pages may go
            _prefetched.pop(gone)
        size = path.stat().st_size
        if sum(_prefetched.values()) + size > PREFETCH_SHARE * _available_memory():
            logger.info("%s (%.0f MB) not prefetched: it would not fit in memory", path.name, size / 1e6)
            return None
        _prefetched[path] = size

    def read() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            for offset in range(0, size, PREFETCH_CHUNK):
                os.posix_fadvise(fd, offset, PREFETCH_CHUNK, os.POSIX_FADV_WILLNEED)
        except OSError:  # the file was replaced and removed meanwhile: nothing to warm
            pass
        finally:
            os.close(fd)

    thread = threading.Thread(target=read, name=f"prefetch {path.name}", daemon=True)
    thread.start()
    if wait:
        thread.join()
    return thread


def _forget_prefetched() -> None:
    global _prefetched_lock
    _prefetched.clear()
    _prefetched_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_prefetched)


def prefetch(mapping, starts: np.ndarray, ends: np.ndarray, most: int | None = None) -> None:
    """Ask the kernel for these byte ranges of a mapping at once (MADV_WILLNEED: asynchronous, so
    the disk serves them in parallel) before they are read one by one: cold, each read would wait
    for its own disk read (~0.15 ms each here; ~3.5x less together)."""
    if not isinstance(mapping, mmap.mmap) or len(starts) < 2 or not _WILLNEED:
        return
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order] // mmap.PAGESIZE * mmap.PAGESIZE, ends[order]
    # Ranges closer than PREFETCH_GAP are asked as one (a few more pages cost less than a call).
    cuts = np.flatnonzero(starts[1:] - np.maximum.accumulate(ends)[:-1] > PREFETCH_GAP) + 1
    if most is not None and len(cuts) >= most:
        return  # scattered: a call per range (~1.6 µs when cached) would cost more than reading them does
    run_ends = np.maximum.accumulate(ends)
    for first, last in zip(np.concatenate([[0], cuts]).tolist(), np.append(cuts - 1, len(starts) - 1).tolist()):
        start, end = int(starts[first]), int(run_ends[last])
        if end > start:
            mapping.madvise(_WILLNEED, start, end - start)


# --- the file format: magic, version, kind, checksums -------------------------------------------
#
# Every file of an index folder but the meta JSON starts with a 16-byte header: MAGIC, the format version
# (uint16), the file's kind (uint16, FILE_KINDS) and the payload's length in bytes (uint64), all little-endian;
# the payload follows. The table's meta JSON (`<table>.json`) carries the same magic, version and kind as
# fields, and records every file's kind, size and CRC-32 of its payload, plus a CRC-32 of itself. What is
# checked when (README "Index format"): at open, each file's size, header and, for all files but the two
# large ones, its checksum; the large ones (rows.bin, postings.bin) are checked whole when built and by
# `index_verify` (the verify_index command and its beat task), and at read as they are read: the row file's
# zstd frames carry content checksums (zstd checks them as it decompresses), the postings a CRC-32 per
# SUM_BLOCK bytes (`<table>.postings.sums`), checked the first time a lookup reads that block in a process.

MAGIC = b"SSWI"
_HEADER = struct.Struct("<4sHHQ")  # magic, format version, file kind, payload bytes
HEADER_BYTES = _HEADER.size
SUM_BLOCK = 4096  # postings bytes per CRC-32: one page, so checking a block reads no page the lookup would not
FILE_KINDS = {"rows": 1, "rows_offsets": 2, "rows_dict": 3, "schema": 4, "postings": 5, "postings_sums": 6,
              "tokens": 7, "offsets": 8, "sizes": 9, "kinds": 10, "codes": 11, "meta": 12}
LARGE_KINDS = ("rows", "postings")  # checked at build, by index_verify and as read; the others at open
DAMAGED_SUFFIX = ".damaged"  # `<table>.damaged` beside the meta: index_verify found damage (reason inside)


class IndexUnusable(Exception):
    """A table's index cannot serve: its searches scan until `manage.py reindex_subset` rebuilds it."""

    state = "unusable"

    def __init__(self, table: str, reason: str):
        self.table, self.reason = table, reason
        super().__init__(f"{table}: {reason}")


class IndexStale(IndexUnusable):
    """Built by another format version or another tokenizer (library versions, splitting of the test vector)."""

    state = "stale"


class IndexDamaged(IndexUnusable):
    """Its bytes are not what was written: a checksum, a size, a header or a bound does not hold."""

    state = "damaged"


# Errors that bytes which are not what was written can raise while read (beyond IndexDamaged itself).
BYTES_ERRORS = (ValueError, IndexError, OverflowError, KeyError, TypeError, struct.error, zstandard.ZstdError,
                pa.ArrowException)


class _IndexFile:
    """One file of an index folder being written: the header, then the payload, its CRC-32 computed on the
    way; close() writes the payload's length into the header, flushes and fsyncs it."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        self.handle = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.handle.write(_HEADER.pack(MAGIC, INDEX_VERSION, FILE_KINDS[kind], 0))
        self.length = 0
        self.crc = 0

    def write(self, data) -> None:
        self.handle.write(data)
        self.length += len(data)
        self.crc = zlib.crc32(data, self.crc)

    def close(self) -> dict:
        self.handle.seek(0)
        self.handle.write(_HEADER.pack(MAGIC, INDEX_VERSION, FILE_KINDS[self.kind], self.length))
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        return {"kind": self.kind, "bytes": HEADER_BYTES + self.length, "crc32": self.crc}

    def abandon(self) -> None:
        self.handle.close()


def _file_write(path: Path, kind: str, payload) -> dict:
    out = _IndexFile(path, kind)
    try:
        out.write(payload)
    except BaseException:
        out.abandon()
        raise
    return out.close()


def _array_payload(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


def _arrow_payload(table: pa.Table | None, schema: pa.Schema) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, schema) as writer:
        if table is not None:
            writer.write_table(table)
    return sink.getvalue()


def _header_check(table: str, name: str, header: bytes, kind: str, size: int) -> None:
    if len(header) < HEADER_BYTES:
        raise IndexDamaged(table, f"{name}: {size} bytes, shorter than its header")
    magic, version, code, length = _HEADER.unpack(header[:HEADER_BYTES])
    if magic != MAGIC:
        raise IndexDamaged(table, f"{name}: no magic {MAGIC!r} (found {magic!r})")
    if version != INDEX_VERSION or code != FILE_KINDS[kind]:
        raise IndexDamaged(table, f"{name}: header says version {version} kind {code}, "
                                  f"meta says {INDEX_VERSION} kind {FILE_KINDS[kind]}")
    if HEADER_BYTES + length != size:
        raise IndexDamaged(table, f"{name}: header says {length} payload bytes, the file holds {size - HEADER_BYTES}")


def _meta_crc(meta: dict) -> int:
    return zlib.crc32(json.dumps({k: v for k, v in meta.items() if k != "meta_crc32"}, sort_keys=True).encode())


# The tokenizer's test vector: values whose splitting depends on utf8proc's lowercasing and RE2's letter and
# digit classes (pyarrow), split at build and at open. A library whose splitting differs makes the index stale.
TOKENIZER_VECTOR = ("Straße İSTANBUL ǅungla ΣΊΣΥΦΟΣ", "naïve café, 123abc x_y%z", "日本語テキスト 🙂smile ㊿ ⅻ",
                    "India's rock'n'roll 'tis a''b", "K Ω Å ﬁ ﬀ ǈ ᾼ", "tab\there—dash·dot ¼½ ٣٤ abc١٢")


def tokenizer_fingerprint() -> dict:
    """What the index's word splitting depends on: library versions and the words of TOKENIZER_VECTOR split
    as rows are at build (chunk_words) and as needles are at query time (needle_parts, joined_segments)."""
    dictionary = _Dictionary(ids={}, bitmaps=[])
    chunk_words(pa.array(list(TOKENIZER_VECTOR)), first_row=0, dictionary=dictionary)
    rows = sorted((word, dictionary.bitmaps[number].to_array().tolist()) for word, number in dictionary.ids.items())
    needles = [(needle_parts(value), joined_segments(value)) for value in TOKENIZER_VECTOR]
    split = hashlib.blake2b(json.dumps([rows, needles], ensure_ascii=True).encode(), digest_size=16).hexdigest()
    return {"pyarrow": pa.__version__, "arrow_cpp": pa.cpp_version, "duckdb": duckdb.__version__,
            "unicode": unicodedata.unidata_version, "separator": SEPARATOR, "joined_separator": JOINED_SEPARATOR,
            "vector": split}


_fingerprint: dict | None = None


def _current_fingerprint() -> dict:
    global _fingerprint
    if _fingerprint is None:
        _fingerprint = tokenizer_fingerprint()
    return _fingerprint


def meta_read(folder: Path, table: str) -> dict:
    """The table's meta, checked: magic, a readable format version, its own CRC-32, the tokenizer fingerprint,
    no damage found by index_verify. Raises IndexStale or IndexDamaged (OSError when it is missing)."""
    data = (folder / f"{table}.json").read_bytes()
    try:
        meta = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise IndexDamaged(table, f"{table}.json is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise IndexDamaged(table, f"{table}.json is not an object")
    version = meta.get("version")
    if meta.get("magic") != MAGIC.decode() and isinstance(version, int) and version < OLDEST_READABLE_VERSION:
        raise IndexStale(table, f"index format version {version}; this code reads {OLDEST_READABLE_VERSION} to "
                                f"{INDEX_VERSION}")
    if meta.get("magic") != MAGIC.decode() or meta.get("kind") != "meta":
        raise IndexDamaged(table, f"{table}.json has no magic")
    if meta.get("meta_crc32") != _meta_crc(meta):
        raise IndexDamaged(table, f"{table}.json: checksum mismatch")
    if not isinstance(version, int) or not OLDEST_READABLE_VERSION <= version <= INDEX_VERSION:
        raise IndexStale(table, f"index format version {version}; this code reads {OLDEST_READABLE_VERSION} to "
                                f"{INDEX_VERSION}")
    current = _current_fingerprint()
    if meta.get("fingerprint") != current:
        changed = sorted(key for key in current if (meta.get("fingerprint") or {}).get(key) != current[key])
        raise IndexStale(table, f"built by another tokenizer ({', '.join(changed)} changed)")
    marker = folder / f"{table}{DAMAGED_SUFFIX}"
    if marker.exists():
        raise IndexDamaged(table, marker.read_text().strip() or "marked damaged")
    return meta


class _Files:
    """The files of one table's index as its meta records them: each read checked at open."""

    def __init__(self, folder: Path, table: str, meta: dict):
        self.folder, self.table = folder, table
        self.entries = meta.get("files")
        if not isinstance(self.entries, dict):
            raise IndexDamaged(table, f"{table}.json lists no files")

    def entry(self, name: str, kind: str) -> dict:
        entry = self.entries.get(name)
        if not isinstance(entry, dict) or entry.get("kind") != kind:
            raise IndexDamaged(self.table, f"{name} is not in the meta as a {kind} file")
        return entry

    def has(self, name: str) -> bool:
        return name in self.entries

    def payload(self, name: str, kind: str) -> memoryview:
        """A small file's payload, its size, header and CRC-32 checked."""
        entry = self.entry(name, kind)
        data = (self.folder / name).read_bytes()
        if len(data) != entry["bytes"]:
            raise IndexDamaged(self.table, f"{name}: {len(data)} bytes, the meta says {entry['bytes']}")
        _header_check(self.table, name, data, kind, len(data))
        payload = memoryview(data)[HEADER_BYTES:]
        if zlib.crc32(payload) != entry["crc32"]:
            raise IndexDamaged(self.table, f"{name}: checksum mismatch")
        return payload

    def array(self, name: str, kind: str, dtype, length: int | None = None) -> np.ndarray:
        try:
            values = np.load(io.BytesIO(self.payload(name, kind)), allow_pickle=False)
        except BYTES_ERRORS as exc:
            raise IndexDamaged(self.table, f"{name}: {type(exc).__name__}: {exc}") from None
        if values.dtype != np.dtype(dtype) or values.ndim != 1 or (length is not None and len(values) != length):
            raise IndexDamaged(self.table, f"{name}: {values.dtype} x {values.shape}, expected {np.dtype(dtype)} x "
                                           f"{length if length is not None else 'n'}")
        return values

    def arrow(self, name: str, kind: str) -> ipc.RecordBatchFileReader:
        try:
            return ipc.open_file(pa.py_buffer(self.payload(name, kind)))
        except BYTES_ERRORS as exc:
            raise IndexDamaged(self.table, f"{name}: {type(exc).__name__}: {exc}") from None

    def mapped(self, name: str, kind: str) -> tuple[mmap.mmap | bytes, int]:
        """A large file mapped (see _map_random) and its payload's length: its size and header checked."""
        entry = self.entry(name, kind)
        path = self.folder / name
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise IndexDamaged(self.table, f"{name}: {size} bytes, the meta says {entry['bytes']}")
        mapping = _map_random(path)
        _header_check(self.table, name, mapping[:HEADER_BYTES], kind, size)
        return mapping, size - HEADER_BYTES

    def verify(self, name: str) -> None:
        """The whole file against the meta: size, header and CRC-32 (read in 8 MB steps)."""
        entry = self.entries[name]
        path = self.folder / name
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise IndexDamaged(self.table, f"{name}: {size} bytes, the meta says {entry['bytes']}")
        crc = 0
        with open(path, "rb") as handle:
            _header_check(self.table, name, handle.read(HEADER_BYTES), entry["kind"], size)
            while chunk := handle.read(8 << 20):
                crc = zlib.crc32(chunk, crc)
        if crc != entry["crc32"]:
            raise IndexDamaged(self.table, f"{name}: checksum mismatch")


def _block_sums(mapping, length: int) -> np.ndarray:
    """CRC-32 of each SUM_BLOCK bytes of a mapped file's payload."""
    view = memoryview(mapping)
    try:
        return np.array([zlib.crc32(view[HEADER_BYTES + start: HEADER_BYTES + min(start + SUM_BLOCK, length)])
                         for start in range(0, length, SUM_BLOCK)], dtype=np.uint32)
    finally:
        view.release()


def _read_back_check(path: Path, entry: dict) -> None:
    """A large file just written, read back whole: its CRC-32 must be the one computed as it was written."""
    crc = 0
    with open(path, "rb") as handle:
        handle.seek(HEADER_BYTES)
        while chunk := handle.read(8 << 20):
            crc = zlib.crc32(chunk, crc)
    if crc != entry["crc32"]:
        raise OSError(f"{path.name} reads back other bytes than were written")


def _fsync_dir(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def index_dir_for(path: Path) -> Path:
    """The index folder that belongs to a subset (or learned) DuckDB file."""
    return path.with_name(path.name + SUFFIX)


def index_remove(path: Path) -> None:
    shutil.rmtree(index_dir_for(path), ignore_errors=True)


def lowered(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Values lowercased as the index lowercases them; NULL as ''."""
    result = pc.fill_null(pc.utf8_lower(values.cast(pa.large_string())), "")
    return result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result


def lowered_text(value: str) -> str:
    return lowered(pa.array([value], type=pa.string()))[0].as_py()


_separator: dict[str, bool] = {}  # character -> is it a SEPARATOR character (asked of pyarrow's RE2 once)


def _separators(chars: set[str]) -> None:
    unseen = sorted(c for c in chars if c not in _separator)
    if unseen:
        flags = pc.match_substring_regex(pa.array(unseen, type=pa.large_string()), f"^{SEPARATOR[:-1]}$")
        _separator.update(zip(unseen, flags.to_pylist()))


_separators({chr(i) for i in range(128)})


def needle_parts(value: str) -> list[str]:
    """The needle lowercased and split at separators as rows are (pyarrow's split_pattern_regex with
    SEPARATOR): '' first/last when it starts/ends with separators. Characters are classified once by the
    same RE2 class, so query-time splitting costs no regex compilation."""
    return _split(lowered_text(value))


def joined_segments(value: str) -> list[str]:
    """The needle lowercased and split at JOINED_SEPARATOR (as rows are split into joined words), each
    piece with its apostrophes; '' first/last when it starts/ends with such separators."""
    return _split(lowered_text(value), keep=APOSTROPHE)


def _split(text: str, keep: str = "") -> list[str]:
    """Lowercased text split at separators other than the `keep` characters."""
    _separators(set(text))
    parts, current, in_separator = [], [], False
    for char in text:
        if _separator[char] and char not in keep:
            if not in_separator:
                parts.append("".join(current))
                current, in_separator = [], True
        else:
            current.append(char)
            in_separator = False
    parts.append("".join(current))
    return parts


# --- building -----------------------------------------------------------------------------------

@dataclass
class _Dictionary:
    ids: dict
    bitmaps: list


def chunk_words(column: pa.Array | pa.ChunkedArray, *, first_row: int, dictionary: _Dictionary) -> None:
    """Add one column's words of consecutive rows (starting at first_row) to the dictionary's postings,
    and each value's first word again as FIRST + word."""
    # Separator runs become one space, then a plain split: the same words as split_pattern_regex, ~25% faster.
    low = lowered(column)
    words = pc.split_pattern(pc.replace_substring_regex(low, SEPARATOR, " "), " ")
    flat = pc.list_flatten(words)
    parents = pc.list_parent_indices(words)
    keep = pc.and_(pc.greater(pc.binary_length(flat), 0), pc.invert(pc.ascii_is_decimal(flat)))
    firsts = pc.list_element(words, 0)  # '' when the value starts with a separator (or is empty)
    first_keep = pc.and_(pc.greater(pc.binary_length(firsts), 0), pc.invert(pc.ascii_is_decimal(firsts)))
    joined, joined_parents = _joined_words(low)
    flat = pa.concat_arrays([flat.filter(keep), _marked(FIRST, firsts).filter(first_keep), _marked(JOINED, joined)])
    parents = pa.concat_arrays([parents.filter(keep),
                                pa.array(np.arange(len(firsts), dtype=np.int64)).cast(parents.type).filter(first_keep),
                                joined_parents.cast(parents.type)])
    if not len(flat):
        return
    encoded = pc.dictionary_encode(flat)
    ids = dictionary.ids
    bitmaps = dictionary.bitmaps
    local = encoded.dictionary.to_pylist()
    global_ids = np.empty(len(local), dtype=np.uint64)
    for i, word in enumerate(local):
        found = ids.get(word)
        if found is None:
            found = ids[word] = len(bitmaps)
            bitmaps.append(BitMap())
        global_ids[i] = found
    keys = (global_ids[encoded.indices.to_numpy()] << np.uint64(32)) | (
        parents.to_numpy().astype(np.uint64) + np.uint64(first_row))
    keys.sort()
    word_of = (keys >> np.uint64(32)).astype(np.int64)
    rows = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    cuts = np.flatnonzero(np.diff(word_of)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(keys)]])
    for word, lo, hi in zip(word_of[starts].tolist(), starts.tolist(), ends.tolist()):
        bitmaps[word].update(array.array("I", rows[lo:hi].tobytes()))  # pyroaring's fast path; repeats are fine


def _marked(mark: str, words: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(mark, pa.large_string()), words, pa.scalar("", pa.large_string()))


def _joined_words(low: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The joined words of lowercased values, and the value each comes from: the value split at
    JOINED_SEPARATOR (every separator but the apostrophe), apostrophes trimmed from both ends, kept if an
    apostrophe is left inside (india's, rock'n'roll, don't). Only values holding an apostrophe are split."""
    holding = pc.indices_nonzero(pc.fill_null(pc.match_substring(low, APOSTROPHE), False))
    if not len(holding):
        return pa.array([], type=pa.large_string()), pa.array([], type=pa.int64())
    pieces = pc.split_pattern(pc.replace_substring_regex(low.take(holding), JOINED_SEPARATOR, " "), " ")
    flat = pc.utf8_trim(pc.list_flatten(pieces), APOSTROPHE)
    parents = holding.take(pc.list_parent_indices(pieces)).cast(pa.int64())
    keep = pc.match_substring(flat, APOSTROPHE)
    return flat.filter(keep), parents.filter(keep)


def table_text_columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [name for name, dtype in conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [table]).fetchall()
        if dtype in TEXT_TYPES]


def _main_tables(conn: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' ORDER BY table_name").fetchall()]


def indexed_tables(conn: duckdb.DuckDBPyConnection, tables: list[str] | None = None) -> dict[str, list[str]]:
    """The tables an index covers — those of the main schema (or just `tables`) that have text columns,
    bookkeeping tables aside (the learned store's _answers, _answer_keys are not searched) — with those columns."""
    if tables is None:
        tables = _main_tables(conn)
    covered = {table: table_text_columns(conn, table) for table in tables if not table.startswith("_")}
    return {table: columns for table, columns in covered.items() if columns}


def index_is_current(path: Path, table: str) -> bool:
    """Whether the index folder of the DuckDB file `path` holds `table` in a format version this code reads,
    built by this tokenizer, and opens with every check opening makes (TableIndex), not marked damaged (by a
    search that found damage as it read, or by index_verify)."""
    try:
        TableIndex(index_dir_for(path), table).close()
    except (OSError, IndexUnusable, *BYTES_ERRORS):
        return False
    return True


def index_build(*, conn: duckdb.DuckDBPyConnection, path: Path, tables: list[str] | None = None,
                stdout=None) -> dict:
    """Build the index folder for the DuckDB file `path` (open as `conn`, being built): every table of
    the main schema with text columns, or just `tables`. Returns {table: meta}."""
    target = index_dir_for(path)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if tables is None:
        tables = _main_tables(conn)
    built = {}
    for table in tables:  # one at a time: DuckDB wants each table's reader done before the next query
        for name, columns in indexed_tables(conn, [table]).items():
            built[name] = _table_index_build(conn=conn, folder=target, table=name, columns=columns, stdout=stdout)
    _fsync_dir(target)  # every file was fsynced as it was closed; now their names
    return built


class _RowWriter:
    """The row file: each batch of BATCH_ROWS rows serialized (Arrow IPC) and compressed as ONE zstd frame,
    so reading a row costs one decompression (Arrow's own IPC compression pays one per buffer). The
    frames share a dictionary trained on the first ROWS_DICT_SAMPLES batches. Compression runs on a
    thread of its own (zstd releases the GIL) while the caller splits words."""

    def __init__(self, folder: Path, table: str):
        self.folder, self.table = folder, table
        self.out = _IndexFile(folder / f"{table}.rows.bin", "rows")
        self.files: dict[str, dict] = {}  # name -> its meta entry, once written
        self.offsets = [0]
        self.samples: list[pa.Buffer] = []  # batches held back until the dictionary is trained
        self.compressor: zstandard.ZstdCompressor | None = None
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._drain, name=f"rows-{table}", daemon=True)
        self.thread.start()

    def write(self, table: pa.Table) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(table)

    def _drain(self) -> None:
        while (table := self.queue.get()) is not None:
            if self.error is not None:
                continue  # keep draining so write() never blocks; close() raises the error
            try:
                for batch in table.combine_chunks().to_batches(max_chunksize=BATCH_ROWS):
                    raw = batch.serialize()
                    if self.compressor is None:
                        self.samples.append(raw)
                        if len(self.samples) >= ROWS_DICT_SAMPLES:
                            self._train()
                    else:
                        self._frame(raw)
            except BaseException as error:  # noqa: BLE001 - handed to the building thread by close()
                self.error = error

    def _train(self) -> None:
        total = sum(raw.size for raw in self.samples)
        dictionary = None
        if total >= 100_000:  # zstd wants ~10-100x the dictionary's size in samples
            try:
                dictionary = zstandard.train_dictionary(
                    min(ROWS_DICT_BYTES, total // 10), [raw.to_pybytes() for raw in self.samples])
            except zstandard.ZstdError:
                dictionary = None  # too uniform to train on: frames without a dictionary
        if dictionary is not None:
            name = f"{self.table}.rows.dict"
            self.files[name] = _file_write(self.folder / name, "rows_dict", dictionary.as_bytes())
        # Each frame carries a checksum of its content, which zstd checks as it decompresses it.
        self.compressor = zstandard.ZstdCompressor(level=ROWS_LEVEL, dict_data=dictionary, write_checksum=True)
        for raw in self.samples:
            self._frame(raw)
        self.samples = []

    def _frame(self, raw: pa.Buffer) -> None:
        frame = self.compressor.compress(raw)
        self.out.write(frame)
        self.offsets.append(self.offsets[-1] + len(frame))

    def close(self) -> dict[str, dict]:
        """Finish the files; returns {name: meta entry} of the row file, its dictionary and frame offsets."""
        self.queue.put(None)
        self.thread.join()
        try:
            if self.error is None and self.compressor is None:
                self._train()
        except BaseException:
            self.out.abandon()
            raise
        if self.error is not None:
            self.out.abandon()
            raise self.error
        self.files[f"{self.table}.rows.bin"] = self.out.close()
        name = f"{self.table}.rows.npy"
        self.files[name] = _file_write(self.folder / name, "rows_offsets",
                                       _array_payload(np.array(self.offsets, dtype=np.uint64)))
        return self.files


def _postings_blob(bitmap: BitMap, frequent: float) -> tuple[int, bytes]:
    """How one word's rows are stored: (kind, bytes), whichever of roaring and a uint32 array is smaller;
    nothing for a word in more than `frequent` rows."""
    if len(bitmap) > frequent:
        return NONE, b""
    bitmap.run_optimize()
    serialized = bitmap.serialize()
    if 4 * len(bitmap) < len(serialized):
        return ARRAY, np.asarray(bitmap.to_array(), dtype="<u4").tobytes()
    return ROARING, serialized


def _coded_columns(conn, table: str, columns: list[str]) -> dict[str, list[str]]:
    """The text columns with at most CODED_MAX_VALUES distinct values (label, lang), with those values."""
    coded = {}
    for name in columns:
        col = quote_identifier(name)
        values = conn.execute(f"SELECT DISTINCT {col} FROM {quote_identifier(table)} WHERE {col} IS NOT NULL "
                              f"LIMIT {CODED_MAX_VALUES + 1}").fetchall()
        if len(values) <= CODED_MAX_VALUES:
            coded[name] = sorted(v[0] for v in values)
    return coded


def _codes_pack(codes: np.ndarray) -> np.ndarray:
    """4-bit codes, two rows a byte: row 2k in the low half of byte k, row 2k+1 in the high half."""
    if len(codes) % 2:
        codes = np.append(codes, np.uint8(NO_CODE))
    return (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)


def _table_index_build(*, conn, folder: Path, table: str, columns: list[str], stdout=None) -> dict:
    started = time.perf_counter()
    dictionaries = [_Dictionary(ids={}, bitmaps=[]) for _ in columns]
    coded = _coded_columns(conn, table, columns)
    codes: dict[str, list[np.ndarray]] = {name: [] for name in coded}
    reader = conn.sql(f"SELECT * FROM {quote_identifier(table)}").to_arrow_reader(CHUNK_ROWS)
    schema = reader.schema
    files = {f"{table}.schema.arrow": _file_write(folder / f"{table}.schema.arrow", "schema",
                                                  _arrow_payload(None, schema))}
    rows = _RowWriter(folder, table)
    pending = None
    done = 0
    closed = False
    try:
        for batch in reader:
            chunk = pa.Table.from_batches([batch], schema=schema)
            # Every batch of the row file holds exactly BATCH_ROWS rows (the last one fewer), so row
            # position p is in batch p // BATCH_ROWS.
            pending = pa.concat_tables([pending, chunk]) if pending is not None else chunk
            whole = pending.num_rows // BATCH_ROWS * BATCH_ROWS
            if whole:
                rows.write(pending.slice(0, whole))
                pending = pending.slice(whole)
            for name, dictionary in zip(columns, dictionaries):
                chunk_words(chunk.column(name), first_row=done, dictionary=dictionary)
            for name, values in coded.items():
                found = pc.index_in(chunk.column(name), value_set=pa.array(values, type=chunk.schema.field(name).type))
                found = pc.fill_null(found, NO_CODE)
                found = found.combine_chunks() if isinstance(found, pa.ChunkedArray) else found
                codes[name].append(found.to_numpy(zero_copy_only=False).astype(np.uint8))
            done += batch.num_rows
            if stdout is not None and done % (CHUNK_ROWS * 8) == 0:
                stdout.write(f"  substring index {table}: {done:,} rows, {time.perf_counter() - started:.1f}s\n")
        if pending is not None and pending.num_rows:
            rows.write(pending)
        closed = True
        files.update(rows.close())
    finally:
        if not closed:
            with suppress(BaseException):
                rows.close()
    words_total = 0
    out = _IndexFile(folder / f"{table}.postings.bin", "postings")
    try:
        position = 0
        for number, dictionary in enumerate(dictionaries):
            words = pa.array(list(dictionary.ids), type=pa.large_string())
            order = pc.sort_indices(words).to_numpy()
            ids = np.array(list(dictionary.ids.values()), dtype=np.int64)[order]
            sizes = np.zeros(len(ids), dtype=np.uint32)
            kinds = np.zeros(len(ids), dtype=np.uint8)
            offsets = np.zeros(len(ids) + 1, dtype=np.uint64)
            frequent = max(FREQUENT_MIN_ROWS, FREQUENT_SHARE * done)
            for i, word_id in enumerate(ids.tolist()):
                bitmap = dictionary.bitmaps[word_id]
                dictionary.bitmaps[word_id] = None
                kinds[i], blob = _postings_blob(bitmap, frequent)
                out.write(blob)
                sizes[i] = len(bitmap)
                offsets[i] = position
                position += len(blob)
            offsets[len(ids)] = position
            word_schema = pa.schema([("word", pa.large_string())])
            for name, kind, payload in (
                    (f"{table}.t{number}.tokens.arrow", "tokens",
                     _arrow_payload(pa.table({"word": words.take(pa.array(order))}, schema=word_schema), word_schema)),
                    (f"{table}.t{number}.offsets.npy", "offsets", _array_payload(offsets)),
                    (f"{table}.t{number}.sizes.npy", "sizes", _array_payload(sizes)),
                    (f"{table}.t{number}.kinds.npy", "kinds", _array_payload(kinds))):
                files[name] = _file_write(folder / name, kind, payload)
            words_total += len(ids)
    except BaseException:
        out.abandon()
        raise
    files[f"{table}.postings.bin"] = out.close()
    # A CRC-32 per SUM_BLOCK bytes of the postings, checked for the blocks a lookup reads; and the whole file
    # read back once, so what is on disk is what was written.
    with open(folder / f"{table}.postings.bin", "rb") as handle:
        postings = handle.read()
    if zlib.crc32(memoryview(postings)[HEADER_BYTES:]) != files[f"{table}.postings.bin"]["crc32"]:
        raise OSError(f"{table}.postings.bin reads back other bytes than were written")
    files[f"{table}.postings.sums"] = _file_write(folder / f"{table}.postings.sums", "postings_sums",
                                                  _array_payload(_block_sums(postings, len(postings) - HEADER_BYTES)))
    del postings
    for name in coded:
        number = columns.index(name)
        files[f"{table}.t{number}.codes.npy"] = _file_write(
            folder / f"{table}.t{number}.codes.npy", "codes",
            _array_payload(_codes_pack(np.concatenate(codes[name]) if codes[name] else np.zeros(0, np.uint8))))
    _read_back_check(folder / f"{table}.rows.bin", files[f"{table}.rows.bin"])
    count, end = conn.execute(f"SELECT count(*), coalesce(max(rowid) + 1, 0) FROM {quote_identifier(table)}").fetchone()
    index_bytes = sum(p.stat().st_size for p in folder.glob(f"{table}.*"))
    rows_bytes = sum((folder / f"{table}.{name}").stat().st_size for name in ("rows.bin", "rows.npy", "rows.dict")
                     if (folder / f"{table}.{name}").exists())
    meta = {"magic": MAGIC.decode(), "version": INDEX_VERSION, "kind": "meta", "table": table, "columns": columns,
            "rows": done, "fingerprint": _current_fingerprint(), "files": files, "sum_block": SUM_BLOCK,
            "schema": [f.name for f in schema], "dense_rowid": count == end == done, "batch_rows": BATCH_ROWS,
            "words": words_total, "coded": coded, "build_seconds": round(time.perf_counter() - started, 2),
            "postings_bytes": index_bytes - rows_bytes, "rows_file_bytes": rows_bytes, "index_bytes": index_bytes}
    meta["meta_crc32"] = _meta_crc(meta)
    with open(folder / f"{table}.json", "w") as handle:
        handle.write(json.dumps(meta, indent=1))
        handle.flush()
        os.fsync(handle.fileno())
    if stdout is not None:
        stdout.write(f"  substring index {table}: {done:,} rows, {words_total:,} words, "
                     f"{index_bytes / 1e6:,.1f} MB in {meta['build_seconds']:.1f}s\n")
    return meta


# --- reading ------------------------------------------------------------------------------------

def words_before(blob: bytes, starts: np.ndarray, ends: np.ndarray, key: bytes) -> int:
    """How many of the sorted words of `blob` (word i is blob[starts[i]:ends[i]]) sort before `key`: a binary
    search (the word index's dictionaries and the full data's vocabulary, apps/search/vocabulary.py)."""
    low, high = 0, len(starts)
    while low < high:
        middle = (low + high) // 2
        if blob[starts[middle]: ends[middle]] < key:
            low = middle + 1
        else:
            high = middle
    return low


class _ColumnWords:
    """A column's sorted words as one byte string, NUL-separated (`\0word\0word\0`). Prefix and exact
    lookups are binary searches (words sort by code point, which is UTF-8 byte order); contains and suffix
    lookups are bytes.find (`part`, `part\0`). The FIRST-marked words sort first, then the JOINED-marked
    ones, then the plain words: `regions` holds each kind's byte range, so each find searches one region."""

    def __init__(self, files: _Files, table: str, number: int, postings_length: int):
        words = files.arrow(f"{table}.t{number}.tokens.arrow", "tokens").read_all().column(0).to_pylist()
        if any(a >= b for a, b in zip(words, words[1:])):
            raise IndexDamaged(table, f"{table}.t{number}.tokens.arrow: words out of order")
        encoded = [w.encode("utf-8") for w in words]
        self.blob = b"\0" + b"\0".join(encoded) + b"\0"
        lengths = np.fromiter((len(w) + 1 for w in encoded), dtype=np.int64, count=len(encoded))
        self.starts = np.concatenate([[1], 1 + np.cumsum(lengths)[:-1]]) if len(encoded) else np.zeros(0, np.int64)
        self.ends = np.append(self.starts[1:] - 1, len(self.blob) - 1) if len(encoded) else np.zeros(0, np.int64)
        # Marked words sort first (FIRST < JOINED < any letter or digit): where each kind begins and ends.
        bounds = [0, bisect.bisect_left(words, JOINED), bisect.bisect_left(words, chr(ord(JOINED) + 1)), len(words)]
        self.regions = {mark: self._bytes(low, high) for mark, low, high in zip((FIRST, JOINED, ""), bounds, bounds[1:])}
        # Read into memory, not mapped: every lookup touches them at random places (~1 MB a column per
        # million words), and a cold page of a mapping costs a disk read.
        self.offsets = files.array(f"{table}.t{number}.offsets.npy", "offsets", np.uint64, len(words) + 1)
        self.sizes = files.array(f"{table}.t{number}.sizes.npy", "sizes", np.uint32, len(words))
        self.kinds = files.array(f"{table}.t{number}.kinds.npy", "kinds", np.uint8, len(words))
        self.checked = np.zeros(len(words), dtype=bool)  # words whose postings this process has read and checked
        # Every slice a lookup takes must lie in the postings, in order; every kind be one of the three.
        if (np.any(self.offsets[1:] < self.offsets[:-1]) or int(self.offsets[-1]) > postings_length
                or np.any(self.kinds > ARRAY)):
            raise IndexDamaged(table, f"{table}.t{number}: word offsets out of order or past the postings, "
                                      "or an unknown postings kind")

    def _bytes(self, low: int, high: int) -> tuple[int, int]:
        """The blob's bytes holding words low..high-1 with the NULs around them."""
        return (int(self.starts[low]) - 1, int(self.ends[high - 1]) + 1) if high > low else (0, 0)

    def _before(self, key: bytes) -> int:
        """How many words sort before `key`."""
        return words_before(self.blob, self.starts, self.ends, key)

    def matching(self, part: str, how: str, most: int, *, mark: str = "") -> np.ndarray | None:
        """Indexes of the words containing / starting / ending with / equal to `part` — among the values'
        first words (mark FIRST), joined words (JOINED) or plain words — or None past `most`."""
        needle = (mark + part).encode("utf-8")
        if how == "exact":
            at = self._before(needle)
            found = at < len(self.starts) and self.blob[self.starts[at]: self.ends[at]] == needle
            return np.array([at] if found else [], dtype=np.int64)
        if how == "prefix":  # no UTF-8 byte is 0xff: needle + 0xff sorts after every word beginning with needle
            low, high = self._before(needle), self._before(needle + b"\xff")
            return None if high - low > most else np.arange(low, high, dtype=np.int64)
        pattern = part.encode("utf-8") + (b"" if how == "contains" else b"\0")
        low, high = self.regions[mark]
        hits = []
        find = self.blob.find
        position = find(pattern, low, high)
        while position != -1:
            hits.append(position)
            if len(hits) > most * 4:  # several hits can fall in one word; far past `most` anyway
                return None
            position = find(pattern, position + 1, high)
        words = np.unique(np.searchsorted(self.starts, np.array(hits, dtype=np.int64), side="right") - 1)
        return None if len(words) > most else words


def _placed(pieces: list[str], *, at_start: bool, whole: bool) -> list[tuple[str, str]]:
    """How each piece of a needle split at separators sits in a matching value's words: a whole value's
    pieces are whole words; one piece is inside a word (at the value's start: begins it); of several, the
    first ends a word (at the start: is one), the middle ones are words and the last begins one."""
    if whole:
        return [(piece, "exact") for piece in pieces]
    if len(pieces) == 1:
        return [(pieces[0], "prefix" if at_start else "contains")]
    return ([(pieces[0], "exact" if at_start else "suffix")] + [(piece, "exact") for piece in pieces[1:-1]]
            + [(pieces[-1], "prefix")])


LOOKUP_CACHE_ENTRIES = 4096  # needles' lookups (the words each part may be) remembered per table index and process
UNION_CACHE_BYTES = 32 << 20  # unions of many words' postings remembered per table index and process (roaring bytes)
UNION_CACHE_MIN_WORDS = 8  # a union of fewer words costs little to redo


class _Remembered:
    """A small LRU of what an immutable index's lookups computed (the way Lucene's query cache keeps a
    segment's bit sets of frequent filters): bounded by entries and by `size`'s sum. Thread-safe."""

    def __init__(self, *, entries: int, most_bytes: int | None = None):
        self._items: dict = {}  # insertion order = use order (an entry used again moves to the end)
        self._entries, self._most_bytes, self._bytes = entries, most_bytes, 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.pop(key, None)
            if item is not None:
                self._items[key] = item
            return None if item is None else item[0]

    def put(self, key, value, size: int = 0) -> None:
        with self._lock:
            if key in self._items or (self._most_bytes is not None and size > self._most_bytes // 4):
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._items and (len(self._items) > self._entries
                                   or (self._most_bytes is not None and self._bytes > self._most_bytes)):
                self._bytes -= self._items.pop(next(iter(self._items)))[1]


def _roaring_bytes(bitmap: BitMap) -> int:
    stats = bitmap.get_statistics()
    return (stats["n_bytes_array_containers"] + stats["n_bytes_run_containers"]
            + stats["n_bytes_bitset_containers"] + 16 * stats["n_containers"])


CANDIDATE_WORDS = 3  # verifying a candidate row (~50 µs: its frame decompressed) costs ~3 words' postings read


def worth_verifying(candidates: int, words: int) -> bool:
    """Are these candidate rows cheaper to verify than reading this many more words' postings to narrow
    them? (`she` in titles is 811 words, ~16 ms to read, where "wsu's" left 2 candidate rows.)"""
    return candidates * CANDIDATE_WORDS < words


@dataclass(frozen=True)
class Lookup:
    """What the index knows of one needle before reading any postings: for each part that narrows, the
    words it may be (the part's rows are the union of theirs), smallest part first. `estimate` bounds the
    rows from above: the smallest part's summed word sizes."""

    column: str
    parts: list[np.ndarray]
    estimate: int

    @property
    def words(self) -> int:
        return sum(len(part) for part in self.parts)


_NO_LOOKUP = object()  # remembered: this needle does not narrow


class TableIndex:
    """One table's index, memory-mapped read-only: shared by all threads (and, via the page cache,
    all processes)."""

    def __init__(self, folder: Path, table: str):
        """Opens and checks (IndexStale / IndexDamaged when it cannot serve): the meta (meta_read), every
        file's size and header, the small files' checksums, and the bounds every read relies on."""
        self.table = table
        self.meta = meta_read(folder, table)
        self._postings = self._rows = b""
        try:
            self._open(folder, table)
        except BaseException:
            self.close()
            raise

    def _open(self, folder: Path, table: str) -> None:
        files = _Files(folder, table, self.meta)
        try:
            self.columns = {name: number for number, name in enumerate(self.meta["columns"])}
            self.batch_rows = int(self.meta["batch_rows"])
            self.rows = int(self.meta["rows"])
            self.dense_rowid = bool(self.meta["dense_rowid"])  # row position == DuckDB rowid
            coded_meta = dict(self.meta.get("coded", {}))
        except (*BYTES_ERRORS, AttributeError) as exc:
            raise IndexDamaged(table, f"{table}.json: {type(exc).__name__}: {exc}") from None
        if self.batch_rows < 1 or not 0 <= self.rows < 2**32:
            raise IndexDamaged(table, f"{table}.json: {self.rows} rows in batches of {self.batch_rows}")
        self._postings, postings_length = files.mapped(f"{table}.postings.bin", "postings")
        self._postings_length = postings_length
        self._sums = files.array(f"{table}.postings.sums", "postings_sums", np.uint32, -(-postings_length // SUM_BLOCK))
        self._sums_checked = np.zeros(len(self._sums), dtype=bool)  # blocks whose CRC-32 held in this process
        self._words = {name: _ColumnWords(files, table, number, postings_length)
                       for name, number in self.columns.items()}
        # In memory (0.5 byte a row a coded column, 8 bytes a frame): candidates are looked up at random.
        self.coded = {name: (values, files.array(f"{table}.t{self.columns[name]}.codes.npy", "codes", np.uint8,
                                                 (self.rows + 1) // 2))
                      for name, values in coded_meta.items()}
        if any(len(values) > CODED_MAX_VALUES or name not in self.columns for name, (values, _) in self.coded.items()):
            raise IndexDamaged(table, f"{table}.json: a coded column with too many values or not indexed")
        try:
            self.schema = files.arrow(f"{table}.schema.arrow", "schema").schema
        except BYTES_ERRORS as exc:
            raise IndexDamaged(table, f"{table}.schema.arrow: {type(exc).__name__}: {exc}") from None
        self._frames = -(-self.rows // self.batch_rows)
        self.row_offsets = files.array(f"{table}.rows.npy", "rows_offsets", np.uint64, self._frames + 1)
        self._rows, rows_length = files.mapped(f"{table}.rows.bin", "rows")
        if (int(self.row_offsets[0]) != 0 or int(self.row_offsets[-1]) != rows_length
                or np.any(self.row_offsets[1:] <= self.row_offsets[:-1])):
            raise IndexDamaged(table, f"{table}.rows.npy: frame offsets out of order or not the row file's length")
        dictionary = f"{table}.rows.dict"
        try:
            self._rows_dict = (zstandard.ZstdCompressionDict(files.payload(dictionary, "rows_dict").tobytes())
                               if files.has(dictionary) else None)
        except BYTES_ERRORS as exc:
            raise IndexDamaged(table, f"{dictionary}: {type(exc).__name__}: {exc}") from None
        self._codecs = threading.local()  # a decompressor per thread (they are not thread-safe)
        self._lookups = _Remembered(entries=LOOKUP_CACHE_ENTRIES)
        self._unions = _Remembered(entries=LOOKUP_CACHE_ENTRIES, most_bytes=UNION_CACHE_BYTES)
        self._code_counts: dict[str, np.ndarray] = {}  # coded column -> rows per code

    def _damaged(self, exc: BaseException, what: str) -> IndexDamaged:
        if isinstance(exc, IndexDamaged):
            return exc
        return IndexDamaged(self.table, f"{what}: {type(exc).__name__}: {exc}")

    def batch(self, index: int) -> pa.RecordBatch:
        codec = getattr(self._codecs, "codec", None)
        if codec is None:
            codec = self._codecs.codec = zstandard.ZstdDecompressor(dict_data=self._rows_dict)
        start, end = int(self.row_offsets[index]), int(self.row_offsets[index + 1])
        # zstd checks the frame's content checksum as it decompresses (ZstdError when it does not hold).
        raw = codec.decompress(self._rows[HEADER_BYTES + start: HEADER_BYTES + end])
        batch = ipc.read_record_batch(pa.py_buffer(raw), self.schema)
        if batch.num_rows != min(self.batch_rows, self.rows - index * self.batch_rows):
            raise IndexDamaged(self.table, f"{self.table}.rows.bin: frame {index} holds {batch.num_rows} rows")
        return batch

    def part_words(self, column: str, part: str, how: str, *, mark: str = "") -> np.ndarray | None:
        """The words that contain / end with / start with / equal `part` (lowercased) — among the values'
        first words, joined words or plain words, as `mark` says — or None when this part cannot narrow
        (digits only: not indexed; too many words; a very frequent word, kept without postings)."""
        if not part or DIGITS.fullmatch(part):
            return None
        words = self._words[column]
        matched = words.matching(part, how, MAX_PART_WORDS, mark=mark)
        if matched is None or (len(matched) and np.any(words.kinds[matched] == NONE)):
            return None
        return matched

    def lookup(self, column: str, needle: str, *, at_start: bool = False, whole: bool = False) -> Lookup | None:
        """The words a value containing `needle` (any case) must hold — starting with it when `at_start`,
        equal to it when `whole` — or None: no narrowing. Reads no postings. Remembered per process (the index
        never changes): a repeated needle's words are not searched for again (~1 ms a part at 800k words)."""
        key = (column, needle, at_start, whole)
        found = self._lookups.get(key)
        if found is None:
            found = self._lookup(column, needle, at_start=at_start, whole=whole) or _NO_LOOKUP
            self._lookups.put(key, found)
        return None if found is _NO_LOOKUP else found

    def _lookup(self, column: str, needle: str, *, at_start: bool, whole: bool) -> Lookup | None:
        # Short needles do not narrow (a part matching too many words gives up anyway) — except as a whole
        # value or at the value's start: first words are far fewer, so "d9" finds the few titles beginning so.
        if column not in self.columns or (len(needle) < MIN_NEEDLE_CHARS and not (whole or at_start)):
            return None
        text = lowered_text(needle)
        # The needle's pieces holding an apostrophe between letters must be in joined words: "ia's" is in
        # few of them (india's, russia's) while its parts `ia` and `s` are in too many words to narrow.
        found, segments = [], []
        if APOSTROPHE in text:
            segments = _split(text, keep=APOSTROPHE)
            found = [words for segment, how in _placed(segments, at_start=at_start, whole=whole)
                     if APOSTROPHE in (core := segment.strip(APOSTROPHE))
                     and (words := self.part_words(column, core, how, mark=JOINED)) is not None]
        if not (found and len(segments) == 1 and not (at_start or whole)):
            # Within one joined word its plain parts narrow little further (a joined word holding "ia's" holds
            # a word ending in `ia` and a word starting with `s`), and their postings can cost more to read
            # than all the rest (`ia` ends 1,600 words: ~30 ms): they are looked up only without it.
            placed = _placed(_split(text), at_start=at_start, whole=whole)
            found += [words for number, (part, how) in enumerate(placed)
                      if (words := self.part_words(column, part, how,
                                                   mark=FIRST if number == 0 and (whole or at_start) else "")) is not None]
        if not found:
            return None
        sizes = self._words[column].sizes
        estimates = [int(sizes[words].sum()) for words in found]
        order = sorted(range(len(found)), key=estimates.__getitem__)
        return Lookup(column, [found[i] for i in order], min(estimates[order[0]], self.rows))

    def _posting(self, column: str, word: int) -> BitMap:
        """One ROARING word's rows, checked the first time this process reads them (`checked`): as many as its size
        says, each below the row count. Its postings blocks' checksums were checked first (_postings_check). ARRAY
        words are read together (_union, _arrays_check)."""
        words = self._words[column]
        raw = self._postings[HEADER_BYTES + int(words.offsets[word]): HEADER_BYTES + int(words.offsets[word + 1])]
        bitmap = BitMap.deserialize(raw)
        if not words.checked[word]:
            size = int(words.sizes[word])
            if len(bitmap) != size or (size and bitmap.max() >= self.rows):
                raise IndexDamaged(self.table, f"{self.table}.postings.bin: word {word} of {column} is not {size} "
                                               f"rows below {self.rows}")
            words.checked[word] = True
        return bitmap

    def _union(self, column: str, words: np.ndarray) -> BitMap:
        """The union of these words' rows. The ARRAY words are read as one uint32 array (checked together the first
        time: _arrays_check), one BitMap built from it: a part in many rare words (`for` is in 1,104 title words)
        cost ~5 µs a word one BitMap at a time. The others are read one by one (_posting checks them)."""
        meta = self._words[column]
        remember = len(words) >= UNION_CACHE_MIN_WORDS
        if remember:  # a part in many words (`for`: 1,104 title words) costs ms to read: kept once built
            key = (column, words.tobytes())
            union = self._unions.get(key)
            if union is not None:
                return union
        together = meta.kinds[words] == ARRAY
        parts = [self._posting(column, int(word)) for word in words[~together]]
        batch = words[together]
        if len(batch):
            starts = (HEADER_BYTES + meta.offsets[batch].astype(np.int64)).tolist()
            ends = (HEADER_BYTES + meta.offsets[batch + 1].astype(np.int64)).tolist()
            raw = b"".join([self._postings[start:end] for start, end in zip(starts, ends)])
            fresh = ~meta.checked[batch]
            if fresh.any():
                self._arrays_check(column, batch, raw, fresh)
            rows = array.array("I", raw)
            if sys.byteorder == "big":
                rows.byteswap()
            parts.append(BitMap(rows))
        union = BitMap.union(BitMap(), *parts)
        if remember:  # frozen: no caller can change what the next search gets
            union = FrozenBitMap(union)
            self._unions.put(key, union, _roaring_bytes(union))
        return union

    def _arrays_check(self, column: str, words: np.ndarray, raw: bytes, fresh: np.ndarray) -> None:
        """_posting's check of ARRAY words, for many at once (`raw`: their postings joined, in `words`' order): each
        as many rows as its size says, strictly increasing, below the row count. Marks them checked. One pass of
        NumPy instead of ~5 µs a word: the first search of a part in many rare words in a fresh worker."""
        meta = self._words[column]
        lengths = (meta.offsets[words + 1] - meta.offsets[words]).astype(np.int64)
        rows = np.frombuffer(raw, dtype="<u4")
        if np.any(lengths % 4) or np.any(lengths // 4 != meta.sizes[words]) or (len(rows) and rows.max() >= self.rows):
            raise IndexDamaged(self.table, f"{self.table}.postings.bin: a word of {column} is not its size in rows "
                                           f"below {self.rows}")
        ends = np.cumsum(lengths // 4)
        steps = np.diff(rows.astype(np.int64))
        inside = np.ones(len(steps), dtype=bool)
        inside[ends[:-1][(ends[:-1] > 0) & (ends[:-1] <= len(steps))] - 1] = False  # a step from one word to the next
        if np.any(steps[inside] <= 0):
            raise IndexDamaged(self.table, f"{self.table}.postings.bin: a word of {column} is not increasing rows")
        meta.checked[words[fresh]] = True

    def _postings_check(self, column: str, words: np.ndarray) -> None:
        """The CRC-32 of every postings block these words' postings lie in, the first time a block is read in
        this process (a block checked once stays checked: the file is immutable)."""
        offsets = self._words[column].offsets
        starts, ends = offsets[words].astype(np.int64), offsets[words + 1].astype(np.int64)
        keep = ends > starts
        first, last = starts[keep] // SUM_BLOCK, (ends[keep] - 1) // SUM_BLOCK
        if not len(first):
            return
        counts = last - first + 1
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)  # 0.. in each range
        blocks = np.repeat(first, counts) + within
        blocks = np.unique(blocks)
        for block in blocks[~self._sums_checked[blocks]].tolist():
            start = HEADER_BYTES + block * SUM_BLOCK
            end = HEADER_BYTES + min((block + 1) * SUM_BLOCK, self._postings_length)
            if zlib.crc32(self._postings[start:end]) != int(self._sums[block]):
                raise IndexDamaged(self.table, f"{self.table}.postings.bin: block {block} checksum mismatch")
            self._sums_checked[block] = True

    def lookup_rows(self, lookup: Lookup, within: BitMap | None = None) -> BitMap:
        """A superset of the rows holding the lookup's needle (of `within`, when given): the intersection
        of its parts' unions, smallest part first, skipping a part whose words cost more to read than
        verifying the rows it could remove (`worth_verifying`)."""
        try:
            result = within
            offsets = self._words[lookup.column].offsets
            every = np.concatenate(lookup.parts) if lookup.parts else np.zeros(0, dtype=np.int64)
            prefetch(self._postings, HEADER_BYTES + offsets[every].astype(np.int64),
                     HEADER_BYTES + offsets[every + 1].astype(np.int64), most=PREFETCH_MAX_POSTINGS)
            for words in lookup.parts:
                if result is not None and worth_verifying(len(result), len(words)):
                    continue
                fresh = words[~self._words[lookup.column].checked[words]]  # words not yet read by this process
                if len(fresh):
                    self._postings_check(lookup.column, fresh)
                union = self._union(lookup.column, words)
                result = union if result is None else result & union
                if not result:
                    break
            return result
        except (*BYTES_ERRORS, IndexDamaged) as exc:
            raise self._damaged(exc, f"{self.table}.postings.bin") from None

    def _codes_allowed(self, column: str, wanted: list[str]) -> np.ndarray:
        allowed = np.zeros(16, dtype=bool)
        allowed[[i for i, value in enumerate(self.coded[column][0]) if value in set(wanted)]] = True
        return allowed

    def codes_keep(self, column: str, wanted: list[str], positions: np.ndarray) -> np.ndarray:
        """Which of these row positions hold one of the `wanted` values in the coded column (exact, as `=`)."""
        packed = self.coded[column][1]
        codes = (np.asarray(packed[positions >> 1]) >> ((positions & 1) << 2)) & 0xF
        return self._codes_allowed(column, wanted)[codes]

    def codes_share(self, column: str, wanted: list[str]) -> float:
        """The share of the rows holding one of the `wanted` values in the coded column."""
        counts = self._code_counts.get(column)
        if counts is None:  # counted once per process (~20 ms a column at 10M rows)
            packed = self.coded[column][1]
            counts = np.bincount(packed & 0xF, minlength=16) + np.bincount(packed >> 4, minlength=16)
            counts[NO_CODE] -= len(packed) * 2 - self.rows  # an odd row count pads the last byte with NO_CODE
            counts = self._code_counts[column] = counts
        return float(counts[self._codes_allowed(column, wanted)].sum()) / max(1, self.rows)

    def needle_rows(self, column: str, needle: str, *, at_start: bool = False, whole: bool = False) -> BitMap | None:
        """A superset of the rows whose `column` contains `needle` (any case) — starts with it when
        `at_start`, equals it when `whole` — or None: no narrowing."""
        found = self.lookup(column, needle, at_start=at_start, whole=whole)
        return None if found is None else self.lookup_rows(found)

    def rows_at(self, positions: np.ndarray) -> pa.Table:
        """The rows at these ascending positions, every column (one batch read per batch touched)."""
        if not len(positions):
            return self.schema.empty_table()
        if int(positions[-1]) >= self.rows or int(positions[0]) < 0:
            raise IndexDamaged(self.table, f"a candidate row {int(positions[-1])} past the {self.rows} rows")
        try:
            return self._rows_at(positions)
        except (*BYTES_ERRORS, IndexDamaged) as exc:
            raise self._damaged(exc, f"{self.table}.rows.bin") from None

    def _rows_at(self, positions: np.ndarray) -> pa.Table:
        batch_of = positions // self.batch_rows
        touched = np.unique(batch_of)
        prefetch(self._rows, HEADER_BYTES + self.row_offsets[touched].astype(np.int64),
                 HEADER_BYTES + self.row_offsets[touched + 1].astype(np.int64))
        cuts = np.flatnonzero(np.diff(batch_of)) + 1
        indexes = touched.tolist()
        if len(indexes) >= PARALLEL_FRAMES and core_idle() and _helpers.acquire(blocking=False):
            # The second half is decompressed on another core meanwhile (zstd releases the GIL).
            half = len(indexes) // 2
            try:
                later = _frame_pool().submit(lambda: [self.batch(index) for index in indexes[half:]])
                batches = [self.batch(index) for index in indexes[:half]] + later.result()
            finally:
                _helpers.release()
        else:  # few frames, no idle core, or every helper busy with other requests' frames: read them here
            batches = [self.batch(index) for index in indexes]
        pieces = []
        for group, index, batch in zip(np.split(positions, cuts), indexes, batches):
            local = (group - index * self.batch_rows).tolist()
            start = run = local[0]
            for offset in local[1:] + [None]:  # zero-copy slices of consecutive rows
                if offset == run + 1:
                    run = offset
                    continue
                pieces.append(batch.slice(start, run - start + 1))
                if offset is not None:
                    start = run = offset
        return pa.Table.from_batches(pieces, schema=self.schema)

    def close(self) -> None:
        for mapping in (self._postings, self._rows):
            if isinstance(mapping, mmap.mmap):
                mapping.close()


class FileIndex:
    """The index folder of one DuckDB file: its tables' indexes, opened on first use. A table whose index is
    stale or damaged (at open, or found so by a read: `damaged`) is not used again by this process: its
    searches scan, it is logged once, and `problems` says why (for /healthz?details=1)."""

    def __init__(self, path: Path):
        self.path = path
        self.folder = index_dir_for(path)
        self._tables: dict[str, TableIndex | None] = {}
        self.problems: dict[str, tuple[str, str]] = {}  # table -> (state: stale / damaged, reason)
        self._lock = threading.Lock()

    def table(self, name: str) -> TableIndex | None:
        with self._lock:
            if name not in self._tables:
                try:
                    self._tables[name] = TableIndex(self.folder, name) if (self.folder / f"{name}.json").exists() else None
                except (OSError, *BYTES_ERRORS, IndexUnusable) as exc:
                    problem = (exc if isinstance(exc, IndexUnusable)
                               else IndexDamaged(name, f"{type(exc).__name__}: {exc}"))
                    self._forget(name, problem)
            return self._tables[name]

    def damaged(self, name: str, exc: IndexDamaged) -> None:
        """A read found this table's index damaged: its searches scan from now on in this process."""
        with self._lock:
            if name not in self.problems:
                self._forget(name, exc)

    def _forget(self, name: str, problem: IndexUnusable) -> None:
        self.problems[name] = (problem.state, problem.reason)
        self._tables[name] = None  # open mappings stay valid for threads still reading them
        marker = self.folder / f"{name}{DAMAGED_SUFFIX}"
        if problem.state == "damaged" and not marker.exists():  # so other processes, and reindex --if-stale, know
            with suppress(OSError):
                index_damage_mark(self.path, name, problem.reason)
        logger.warning("Substring index of %s/%s not used, %s (%s): its searches scan until "
                       "`manage.py reindex_subset` rebuilds it.", self.path.name, name, problem.state, problem.reason)


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


def file_index_forget(path: Path) -> None:
    """Drop the cached index of a DuckDB file that is no longer served (a learned segment merged away: each
    segment has a folder of its own, so no newer file of the folder would push it out)."""
    with _open_lock:
        _open.pop(path, None)


def index_verify(path: Path) -> dict[str, tuple[str, str] | None]:
    """Check every table's index of the DuckDB file `path` whole (the background verification): everything
    opening checks, plus every byte of the large files against the meta's CRC-32. {table: None when sound,
    else (state, reason)}. Reads only; `index_damage_mark` records what it found."""
    folder = index_dir_for(path)
    found: dict[str, tuple[str, str] | None] = {}
    for meta_path in sorted(folder.glob("*.json")):
        table = meta_path.stem
        opened = None
        try:
            opened = TableIndex(folder, table)
            files = _Files(folder, table, opened.meta)
            for name, entry in files.entries.items():
                if entry.get("kind") in LARGE_KINDS:
                    files.verify(name)
            found[table] = None
        except IndexUnusable as exc:
            found[table] = (exc.state, exc.reason)
        except (OSError, *BYTES_ERRORS) as exc:
            found[table] = ("damaged", f"{type(exc).__name__}: {exc}")
        finally:
            if opened is not None:
                opened.close()
    return found


def index_damage_mark(path: Path, table: str, reason: str) -> None:
    """Record that `table`'s index of the DuckDB file `path` is damaged (`<table>.damaged`): every process
    that opens it from now on scans instead, and reindex_subset --if-stale rebuilds it."""
    marker = index_dir_for(path) / f"{table}{DAMAGED_SUFFIX}"
    temporary = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    temporary.write_text(reason + "\n")
    os.replace(temporary, marker)


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
    return best if len(best) >= MIN_NEEDLE_CHARS else None
