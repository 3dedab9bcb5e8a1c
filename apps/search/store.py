"""The local DuckDB subset on disk: one immutable file (and word index) per table, each swapped atomically.

Layout under settings.SEARCH_SUBSET_DIR:

    tables/<table>/CURRENT                         names the file serving <table>
    tables/<table>/<table>-<stamp>.duckdb          immutable; <stamp> holds the time and the writer's pid
    tables/<table>/<table>-<stamp>.duckdb.words/   its word index (apps/search/word_index.py)
    tables/<table>/.writer.lock                    one writer of <table> at a time (an flock)

Importing, refreshing or reindexing one table writes a new file in that table's folder only and moves
that table's CURRENT (os.replace, atomic on POSIX): the other tables' files are never read or touched.
Readers open each table's file read-only, one connection per thread per file, and re-check the table's
CURRENT on each request, so every web process picks up a new file without a restart; an old file can be
unlinked while open readers finish with it.

The older layout, one file holding every table (`CURRENT` naming `subset-<stamp>.duckdb` directly under
SEARCH_SUBSET_DIR), is still served for the tables that have no folder of their own; the next build
gives each of them its own file and then retires it (apps/search/services.py, subset_legacy_convert).

A file and its index always swap together: the index is built inside `build()` before the file can be
installed, and deleted with it. Before a pointer moves, the new file, every file of its index folder, the
folder and their directory are fsynced; the pointer is written to a temp file, fsynced, renamed over
CURRENT, and the directory fsynced again (`install()`), so a power cut never leaves CURRENT naming a file
whose bytes are not on disk. A build marks its file `<file>.building` until it is installed: a build
killed at any point (kill -9) leaves its marked file, `.wal`, `.words/` folder or temp pointer behind, and
the next build of that table (which holds the table's writer lock, so no live build is writing there)
removes them (`leftovers_remove()`).
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import duckdb
from django.conf import settings

from .errors import SubsetMissing
from .vocabulary import SUFFIX as VOCABULARY_SUFFIX
from .vocabulary import vocabulary_dir_for, vocabulary_remove
from .word_index import SUFFIX, index_build, index_dir_for, index_remove
from .sql import quote_identifier, quote_string

POINTER = "CURRENT"
BUILDING = ".building"  # suffix of the marker of a file not yet installed
TABLES_DIR = "tables"
_local = threading.local()
_held_lock = threading.Lock()
_held: set[str] = set()  # folders whose writer lock this process holds


def fsync_path(path: Path) -> None:
    """fsync one file or directory (its entry list, for a directory)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file under `path` (a file or a folder), then every folder, deepest first, then `path`'s
    parent: what a pointer names is on disk before the pointer moves."""
    if not path.exists():
        return
    if path.is_dir():
        for root, dirs, files in os.walk(path, topdown=False):
            for name in files:
                fsync_path(Path(root) / name)
            fsync_path(Path(root))
    else:
        fsync_path(path)
    fsync_path(path.parent)


def _remove(path: Path) -> None:
    """Delete a subset file with what belongs to it: DuckDB's `.wal`, the `.words/` index, the build marker."""
    path.unlink(missing_ok=True)
    path.with_name(f"{path.name}.wal").unlink(missing_ok=True)
    index_remove(path)
    vocabulary_remove(path)
    path.with_name(f"{path.name}{BUILDING}").unlink(missing_ok=True)


class SwappedFiles:
    """Immutable DuckDB files `<prefix>-<stamp>.duckdb` in a folder (the one a setting names, or `subdir`
    below it), and a CURRENT pointer naming the one being served. Used for each table of the subset, the
    subset's old one-file layout, and the learned rows (apps.warehouse.learned)."""

    def __init__(self, *, dir_setting: str, prefix: str, subdir: str = ""):
        self.dir_setting = dir_setting
        self.prefix = prefix
        self.subdir = subdir

    def directory(self) -> Path:
        base = Path(getattr(settings, self.dir_setting))
        return base / self.subdir if self.subdir else base

    def current_path(self) -> Path | None:
        try:
            name = (self.directory() / POINTER).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        path = self.directory() / name
        return path if name and path.exists() else None

    def new_path(self) -> Path:
        self.directory().mkdir(parents=True, exist_ok=True)
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}"
        return self.directory() / f"{self.prefix}-{stamp}.duckdb"

    @contextmanager
    def writer_lock(self, *, timeout: float = 600.0) -> Iterator[None]:
        """One writer at a time (an flock on `.writer.lock` in the folder, so across processes too), held
        around "read the current file, build the next one from it, install it": two writers never build
        from the same current file, so neither loses what the other wrote; and a build that finds a
        marked file in the folder knows no live build is writing it."""
        self.directory().mkdir(parents=True, exist_ok=True)
        with open(self.directory() / ".writer.lock", "a+") as handle:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.directory()} stayed locked by another writer for {timeout}s") from None
                    time.sleep(0.05)
            key = str(self.directory())
            with _held_lock:
                _held.add(key)
            try:
                yield
            finally:
                with _held_lock:
                    _held.discard(key)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def locked(self) -> bool:
        """Whether this process holds the folder's writer lock."""
        with _held_lock:
            return str(self.directory()) in _held

    def leftovers_remove(self) -> list[str]:
        """Delete what builds killed before installing left in the folder: files still marked `.building`
        (with their `.wal` and `.words/`), a `.wal` or `.words/` whose file is gone, temp pointers. Only
        under the writer lock (no live build writes here then); the file CURRENT names is never deleted.
        Returns the names deleted."""
        if not self.locked():
            raise RuntimeError(f"leftovers_remove needs the writer lock of {self.directory()}")
        folder = self.directory()
        if not folder.is_dir():
            return []
        current = self.current_path()
        removed = []
        for entry in sorted(folder.iterdir()):
            name = entry.name
            if name.endswith(BUILDING):
                built = entry.with_name(name[: -len(BUILDING)])
                if built != current:
                    _remove(built)
                    removed.append(built.name)
                entry.unlink(missing_ok=True)  # the marker of the current file: killed right after its install
            elif name.startswith(f".{POINTER}.") and name.endswith(".tmp"):
                entry.unlink(missing_ok=True)
                removed.append(name)
        for entry in sorted(folder.iterdir()):
            for suffix in (".wal", SUFFIX, VOCABULARY_SUFFIX):
                if entry.name.endswith(suffix) and entry.name.startswith(f"{self.prefix}-"):
                    owner = entry.with_name(entry.name[: -len(suffix)])
                    if not owner.exists():
                        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                        removed.append(entry.name)
        if removed:
            fsync_path(folder)
        return removed

    def install(self, *, path: Path, keep: int = 2) -> Path:
        """Make `path` (a complete, closed file in the folder) the served one, durably: the file, its index
        folder and the folder are fsynced before the pointer moves, the pointer's temp file before it is
        renamed, and the folder after. Older files beyond `keep` are deleted; a file newer than `path`
        (another writer's, not yet installed) never is."""
        folder = self.directory()
        fsync_path(path)
        fsync_tree(index_dir_for(path))  # its files, the folder, and the folder holding it
        fsync_tree(vocabulary_dir_for(path))  # the full data's vocabulary, when the build made one
        fsync_path(folder)
        tmp_pointer = folder / f".{POINTER}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp_pointer, "w") as handle:
            handle.write(path.name)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_pointer, folder / POINTER)
        fsync_path(folder)
        path.with_name(f"{path.name}{BUILDING}").unlink(missing_ok=True)
        installed_at = path.stat().st_mtime_ns
        old = sorted(p for p in folder.glob(f"{self.prefix}-*.duckdb")
                     if p != path and _mtime_ns(p) <= installed_at
                     and not p.with_name(f"{p.name}{BUILDING}").exists())
        for stale in old[: max(0, len(old) - (keep - 1))]:
            _remove(stale)  # open readers keep their handle (and mappings); new ones see CURRENT
        return path

    def retire(self) -> None:
        """Serve nothing from this folder any more: CURRENT goes first (durably), then the files."""
        folder = self.directory()
        (folder / POINTER).unlink(missing_ok=True)
        if folder.is_dir():
            fsync_path(folder)
            for stale in folder.glob(f"{self.prefix}-*.duckdb"):
                _remove(stale)

    @contextmanager
    def build(self, *, threads: int | None = None, stdout=None) -> Iterator[tuple[Path, duckdb.DuckDBPyConnection]]:
        """A new file open for writing; then its word index is built from it (apps/search/word_index.py), and
        it is checkpointed and closed; on any failure both are deleted (with DuckDB's `.wal` beside the file, which a
        write that failed half way, e.g. on a full disk, leaves). The caller installs it (or not). Under the
        writer lock, what killed builds left in the folder is deleted first; the new file is marked
        `.building` until its install, so a kill -9 from here on leaves only what the next build deletes."""
        if self.locked():
            self.leftovers_remove()
        path = self.new_path()
        path.with_name(f"{path.name}{BUILDING}").touch()
        conn = duckdb.connect(str(path), config={"threads": threads} if threads else {})
        try:
            yield path, conn
            conn.execute("CHECKPOINT")
            index_build(conn=conn, path=path, stdout=stdout)
        except BaseException:
            with suppress(Exception):  # closing may fail too (a disk full): the files go all the same
                conn.close()
            _remove(path)
            raise
        conn.close()


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:  # deleted meanwhile
        return 0


# --- the subset: one SwappedFiles per table, and the old one-file layout ---------------------------

SUBSET = SwappedFiles(dir_setting="SEARCH_SUBSET_DIR", prefix="subset")
"""The subset's root folder: its writer lock is the subset-wide one (taken to convert or retire the old
one-file layout, whose CURRENT and `subset-*.duckdb` files live here, and to drop tables)."""


def subset_dir() -> Path:
    return SUBSET.directory()


def table_files(*, table: str) -> SwappedFiles:
    """The files of one subset table: `tables/<table>/` under SEARCH_SUBSET_DIR."""
    return SwappedFiles(dir_setting="SEARCH_SUBSET_DIR", prefix=table, subdir=f"{TABLES_DIR}/{table}")


_legacy_lock = threading.Lock()
_legacy_tables_cache: dict[Path, tuple[str, ...]] = {}


def legacy_subset_path() -> Path | None:
    """The file of the old one-file layout, while it still serves tables (None once retired)."""
    return SUBSET.current_path()


def legacy_subset_tables(path: Path) -> tuple[str, ...]:
    """The tables of an old one-file subset (read once per file: the file never changes)."""
    with _legacy_lock:
        if path in _legacy_tables_cache:
            return _legacy_tables_cache[path]
    cursor = file_reader(path).cursor()  # the readers' configuration: DuckDB refuses a second one in a process
    try:
        tables = tuple(r[0] for r in cursor.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database() "
            "ORDER BY table_name").fetchall())
    finally:
        cursor.close()
    with _legacy_lock:
        _legacy_tables_cache[path] = tables
    return tables


def _own_tables() -> list[str]:
    try:
        return sorted(entry.name for entry in (subset_dir() / TABLES_DIR).iterdir() if entry.is_dir())
    except FileNotFoundError:
        return []


def subset_paths() -> dict[str, Path]:
    """table -> the file serving it, for every table of the subset (each table's own file; the old
    one-file layout's file for the tables that have none yet)."""
    paths = {}
    for table in _own_tables():
        path = table_files(table=table).current_path()
        if path is not None:
            paths[table] = path
    legacy = legacy_subset_path()
    if legacy is not None:
        for table in legacy_subset_tables(legacy):
            paths.setdefault(table, legacy)
    return dict(sorted(paths.items()))


def table_current_path(*, table: str) -> Path | None:
    """The file serving `table`: its own, or the old one-file layout's while it has none; None if no
    file holds it."""
    path = table_files(table=table).current_path()
    if path is not None:
        return path
    legacy = legacy_subset_path()
    if legacy is not None and table in legacy_subset_tables(legacy):
        return legacy
    return None


@dataclass(frozen=True)
class TableSnapshot:
    """One table of the subset as it is served now: its file (whose index folder is `<path>.words/`) and
    this thread's read-only connection to it. Resolve it once per request and pass it down: a swap
    meanwhile does not change what this request reads."""

    table: str
    path: Path
    conn: duckdb.DuckDBPyConnection


def file_reader(path: Path) -> duckdb.DuckDBPyConnection:
    """This thread's read-only connection to `path`. A connection to an older file of the same folder
    (swapped out) leaves the cache; it closes when the last snapshot holding it is gone."""
    readers: dict[Path, duckdb.DuckDBPyConnection] = _local.__dict__.setdefault("readers", {})
    conn = readers.get(path)
    if conn is None:
        for stale in [p for p in readers if p.parent == path.parent]:
            del readers[stale]
        conn = readers[path] = duckdb.connect(str(path), read_only=True,
                                              config={"threads": settings.SEARCH_DUCKDB_THREADS})
    return conn


def table_snapshot(*, table: str) -> TableSnapshot:
    """The file serving `table` now and this thread's read-only connection to it. Raises SubsetMissing
    when no file holds the table."""
    path = table_current_path(table=table)
    if path is None:
        raise SubsetMissing(
            f"No local subset of table {table!r} in {subset_dir()}. Build one with `python manage.py "
            "make_demo_data` or `python manage.py import_subset`.")
    return TableSnapshot(table=table, path=path, conn=file_reader(path))


@dataclass(frozen=True)
class SubsetSnapshot:
    """Every table of the subset as served now, and `conn`: one read-only connection that sees them all
    by name (each file ATTACHed, a view per table), for callers that query "the subset" as a whole."""

    tables: dict[str, TableSnapshot]
    conn: duckdb.DuckDBPyConnection

    def table(self, name: str) -> TableSnapshot:
        try:
            return self.tables[name]
        except KeyError:
            raise SubsetMissing(f"The local subset has no table {name!r}.") from None


def subset_snapshot() -> SubsetSnapshot:
    """The whole subset as served now (see SubsetSnapshot). Raises SubsetMissing when it has no table."""
    paths = subset_paths()
    if not paths:
        raise SubsetMissing(
            f"No local subset in {subset_dir()}. Build one with `python manage.py make_demo_data` "
            "or `python manage.py import_subset`."
        )
    key = tuple(paths.items())
    cached = getattr(_local, "combined", None)
    if cached is None or cached[0] != key:
        conn = duckdb.connect(":memory:", config={"threads": settings.SEARCH_DUCKDB_THREADS})
        aliases: dict[Path, str] = {}
        for table, path in paths.items():
            if path not in aliases:
                aliases[path] = f"subset_file_{len(aliases)}"
                conn.execute(f"ATTACH {quote_string(str(path))} AS {aliases[path]} (READ_ONLY)")
            conn.execute(f"CREATE VIEW {quote_identifier(table)} AS "
                         f"SELECT * FROM {aliases[path]}.main.{quote_identifier(table)}")
        cached = _local.combined = (key, conn)
    tables = {table: TableSnapshot(table=table, path=path, conn=file_reader(path)) for table, path in paths.items()}
    return SubsetSnapshot(tables=tables, conn=cached[1])


def subset_connection() -> duckdb.DuckDBPyConnection:
    """A read-only connection that sees every table of the subset by name (this thread's, renewed after a
    swap). A search of one table reads through table_snapshot instead."""
    return subset_snapshot().conn


def table_copy(*, conn: duckdb.DuckDBPyConnection, source: Path, table: str) -> None:
    """Copy `table` of the DuckDB file `source` into `conn` (a file being built), with its comment (the
    table's self-description)."""
    conn.execute(f"ATTACH {quote_string(str(source))} AS previous (READ_ONLY)")
    try:
        comment = conn.execute(
            "SELECT comment FROM duckdb_tables() WHERE database_name = 'previous' AND schema_name = 'main' "
            "AND table_name = ?", [table]).fetchone()
        if comment is None:
            raise SubsetMissing(f"{source.name} has no table {table!r}")
        conn.execute(f"CREATE TABLE {quote_identifier(table)} AS SELECT * FROM previous.main.{quote_identifier(table)}")
        if comment[0]:
            conn.execute(f"COMMENT ON TABLE {quote_identifier(table)} IS {quote_string(comment[0])}")
    finally:
        conn.execute("DETACH previous")


def table_comment(*, path: Path, table: str) -> str | None:
    """`table`'s comment (its self-description) in the subset file `path`."""
    cursor = file_reader(path).cursor()
    try:
        found = cursor.execute(
            "SELECT comment FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database() "
            "AND table_name = ?", [table]).fetchone()
    finally:
        cursor.close()
    return found[0] if found else None


def subset_status() -> tuple[bool, str]:
    paths = subset_paths()
    if not paths:
        if legacy_subset_path() is not None:
            return False, f"{legacy_subset_path().name} has no tables"
        return False, f"no subset installed in {subset_dir()}"
    for table in paths:  # each table's file opens
        table_snapshot(table=table).conn.execute("SELECT 1").fetchall()
    return True, ", ".join(f"{table} ({path.name})" for table, path in paths.items())


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# DuckDB reports a failed write as a duckdb.Error (IOException, TransactionException, ...) with the OS's text.
DISK_FULL_TEXTS = tuple(os.strerror(code) for code in sorted(DISK_FULL_ERRNOS))


def disk_full(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is a write refused for want of space or over a file-size limit."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(exc, duckdb.Error) and any(text in str(exc) for text in DISK_FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
