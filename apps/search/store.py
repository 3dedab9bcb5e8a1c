"""The local DuckDB subset on disk, swapped atomically.

Layout under settings.SEARCH_SUBSET_DIR: immutable database files `subset-<stamp>.duckdb`
and a `CURRENT` file naming the one being served. A refresh writes a new file, then
replaces CURRENT with os.replace (atomic on POSIX). Readers open files read-only and
re-check CURRENT on each request, so every web process picks up a new subset without a
restart; an old file can be unlinked while open readers finish with it.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import duckdb
from django.conf import settings

POINTER = "CURRENT"
_local = threading.local()


def subset_dir() -> Path:
    return Path(settings.SEARCH_SUBSET_DIR)


def subset_current_path() -> Path | None:
    try:
        name = (subset_dir() / POINTER).read_text().strip()
    except FileNotFoundError:
        return None
    path = subset_dir() / name
    return path if path.exists() else None


def subset_new_path() -> Path:
    subset_dir().mkdir(parents=True, exist_ok=True)
    return subset_dir() / f"subset-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}.duckdb"


def subset_install(*, path: Path, keep: int = 2) -> Path:
    """Make `path` (a complete, closed DuckDB file in subset_dir) the served subset."""
    tmp_pointer = subset_dir() / f".{POINTER}.{os.getpid()}.tmp"
    tmp_pointer.write_text(path.name)
    os.replace(tmp_pointer, subset_dir() / POINTER)
    old = sorted(p for p in subset_dir().glob("subset-*.duckdb") if p != path)
    for stale in old[: max(0, len(old) - (keep - 1))]:
        stale.unlink(missing_ok=True)  # open readers keep their handle; new ones see CURRENT
    return path


def subset_connection() -> duckdb.DuckDBPyConnection:
    """A read-only connection to the current subset, one per thread, reopened after a swap."""
    path = subset_current_path()
    if path is None:
        raise FileNotFoundError(
            f"No local subset in {subset_dir()}. Build one with `python manage.py make_demo_data` "
            "or `python manage.py import_subset`."
        )
    cached = getattr(_local, "conn", None)
    if cached is not None and cached[0] == path:
        return cached[1]
    if cached is not None:
        cached[1].close()
    conn = duckdb.connect(str(path), read_only=True, config={"threads": settings.SEARCH_DUCKDB_THREADS})
    _local.conn = (path, conn)
    return conn


def subset_status() -> tuple[bool, str]:
    path = subset_current_path()
    if path is None:
        return False, f"no subset installed in {subset_dir()}"
    tables = [row[0] for row in subset_connection().execute("SHOW TABLES").fetchall()]
    if not tables:
        return False, f"{path.name} has no tables"
    return True, f"{path.name}: {', '.join(tables)}"
