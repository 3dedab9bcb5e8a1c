"""The local DuckDB subset on disk, swapped atomically.

Layout under settings.SEARCH_SUBSET_DIR: immutable database files `subset-<stamp>.duckdb`
and a `CURRENT` file naming the one being served. A refresh writes a new file, then
replaces CURRENT with os.replace (atomic on POSIX). Readers open files read-only and
re-check CURRENT on each request, so every web process picks up a new subset without a
restart; an old file can be unlinked while open readers finish with it.

Each file has an word index folder beside it (`<file>.words/`, apps/search/word_index.py), built inside
`build()` before the file can be installed and deleted with it, so a file and its index always swap
together.
"""
from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb
from django.conf import settings

from .errors import SubsetMissing
from .word_index import index_build, index_remove
from .sql import quote_identifier, quote_string

POINTER = "CURRENT"
_local = threading.local()


class SwappedFiles:
    """Immutable DuckDB files `<prefix>-<stamp>.duckdb` in the folder a setting names, and a CURRENT
    pointer naming the one being served. Used for the subset and for the learned rows (apps.subsets)."""

    def __init__(self, *, dir_setting: str, prefix: str):
        self.dir_setting = dir_setting
        self.prefix = prefix

    def directory(self) -> Path:
        return Path(getattr(settings, self.dir_setting))

    def current_path(self) -> Path | None:
        try:
            name = (self.directory() / POINTER).read_text().strip()
        except FileNotFoundError:
            return None
        path = self.directory() / name
        return path if path.exists() else None

    def new_path(self) -> Path:
        self.directory().mkdir(parents=True, exist_ok=True)
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}"
        return self.directory() / f"{self.prefix}-{stamp}.duckdb"

    @contextmanager
    def writer_lock(self, *, timeout: float = 600.0) -> Iterator[None]:
        """One writer at a time (an flock on `.writer.lock` in the folder, so across processes too), held
        around "read the current file, build the next one from it, install it": two writers never build
        from the same current file, so neither loses what the other wrote."""
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
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def install(self, *, path: Path, keep: int = 2) -> Path:
        """Make `path` (a complete, closed file in the folder) the served one. Older files beyond `keep`
        are deleted; a file newer than `path` (another writer's, not yet installed) never is."""
        tmp_pointer = self.directory() / f".{POINTER}.{os.getpid()}.tmp"
        tmp_pointer.write_text(path.name)
        os.replace(tmp_pointer, self.directory() / POINTER)
        installed_at = path.stat().st_mtime_ns
        old = sorted(p for p in self.directory().glob(f"{self.prefix}-*.duckdb")
                     if p != path and _mtime_ns(p) <= installed_at)
        for stale in old[: max(0, len(old) - (keep - 1))]:
            stale.unlink(missing_ok=True)  # open readers keep their handle (and mappings); new ones see CURRENT
            index_remove(stale)
        return path

    @contextmanager
    def build(self, *, threads: int | None = None, stdout=None) -> Iterator[tuple[Path, duckdb.DuckDBPyConnection]]:
        """A new file open for writing; then its word index is built from it (apps/search/word_index.py), and
        it is checkpointed and closed; on any failure both are deleted (with DuckDB's `.wal` beside the file, which a
        write that failed half way, e.g. on a full disk, leaves). The caller installs it (or not)."""
        path = self.new_path()
        conn = duckdb.connect(str(path), config={"threads": threads} if threads else {})
        try:
            yield path, conn
            conn.execute("CHECKPOINT")
            index_build(conn=conn, path=path, stdout=stdout)
        except BaseException:
            with suppress(Exception):  # closing may fail too (a disk full): the files go all the same
                conn.close()
            path.unlink(missing_ok=True)
            path.with_name(f"{path.name}.wal").unlink(missing_ok=True)  # DuckDB's log of the failed write
            index_remove(path)
            raise
        conn.close()


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:  # deleted meanwhile
        return 0


SUBSET = SwappedFiles(dir_setting="SEARCH_SUBSET_DIR", prefix="subset")


def subset_dir() -> Path:
    return SUBSET.directory()


def subset_current_path() -> Path | None:
    return SUBSET.current_path()


def subset_new_path() -> Path:
    return SUBSET.new_path()


def subset_install(*, path: Path, keep: int = 2) -> Path:
    """Make `path` (a complete, closed DuckDB file in subset_dir) the served subset."""
    return SUBSET.install(path=path, keep=keep)


def subset_tables_copy(*, conn: duckdb.DuckDBPyConnection, source: Path, skip: str) -> str | None:
    """Copy every table of the subset file `source` except `skip` into `conn` (a file being built),
    with their comments; return `skip`'s comment (its self-description), if it had one."""
    skipped_comment = None
    conn.execute(f"ATTACH {quote_string(str(source))} AS previous (READ_ONLY)")
    tables = conn.execute(
        "SELECT table_name, comment FROM duckdb_tables() WHERE database_name = 'previous' AND schema_name = 'main'"
    ).fetchall()
    for table, comment in tables:
        if table == skip:
            skipped_comment = comment
            continue
        conn.execute(f"CREATE TABLE {quote_identifier(table)} AS SELECT * FROM previous.main.{quote_identifier(table)}")
        if comment:
            conn.execute(f"COMMENT ON TABLE {quote_identifier(table)} IS {quote_string(comment)}")
    conn.execute("DETACH previous")
    return skipped_comment


def subset_connection() -> duckdb.DuckDBPyConnection:
    """A read-only connection to the current subset, one per thread, reopened after a swap."""
    return subset_snapshot()[1]


def subset_snapshot() -> tuple[Path, duckdb.DuckDBPyConnection]:
    """The current subset file and this thread's read-only connection to it (reopened after a swap)."""
    path = subset_current_path()
    if path is None:
        raise SubsetMissing(
            f"No local subset in {subset_dir()}. Build one with `python manage.py make_demo_data` "
            "or `python manage.py import_subset`."
        )
    cached = getattr(_local, "conn", None)
    if cached is not None and cached[0] == path:
        return cached
    if cached is not None:
        cached[1].close()
    conn = duckdb.connect(str(path), read_only=True, config={"threads": settings.SEARCH_DUCKDB_THREADS})
    _local.conn = (path, conn)
    return _local.conn


def subset_status() -> tuple[bool, str]:
    path = subset_current_path()
    if path is None:
        return False, f"no subset installed in {subset_dir()}"
    tables = [row[0] for row in subset_connection().execute("SHOW TABLES").fetchall()]
    if not tables:
        return False, f"{path.name} has no tables"
    return True, f"{path.name}: {', '.join(tables)}"


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
