"""The learned-rows store: answers that warehouse fallbacks brought back, kept next to the subset.

Layout under settings.SUBSET_LEARNED_DIR: immutable DuckDB files `learned-<stamp>.duckdb` and a
`CURRENT` pointer, exactly like the subset (apps/search/store.py). One writer at a time (a file
lock) builds a new file from the current one plus the new answer, evicts, and swaps the pointer with
os.replace; web processes read it read-only and reopen it when CURRENT changes.

Inside a file:
- one table per searched table, same name and column types as the subset's table: the rows;
- `_answers`: one row per learned query answer (filters, limit, how many rows it had, whether that was
  all the matching rows, when it was learned and last used);
- `_answer_keys`: which keys (as text) belong to which answer, so eviction drops whole answers.

Rows are stored even when the subset holds them too: the subset may be refreshed without them, and a
"complete" answer must stay complete. Search removes rows the subset already returned (by key).
"""
from __future__ import annotations

import fcntl
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import duckdb

from apps.search.store import SwappedFiles

ANSWERS = "_answers"
ANSWER_KEYS = "_answer_keys"
_local = threading.local()


LEARNED = SwappedFiles(dir_setting="SUBSET_LEARNED_DIR", prefix="learned")


def learned_dir() -> Path:
    return LEARNED.directory()


def learned_current_path() -> Path | None:
    return LEARNED.current_path()


def learned_install(*, path: Path, keep: int = 2) -> None:
    LEARNED.install(path=path, keep=keep)


@contextmanager
def learned_write_lock(timeout: float = 60.0) -> Iterator[None]:
    """The single-writer lock (flock on a file next to the store): concurrent workers take turns."""
    learned_dir().mkdir(parents=True, exist_ok=True)
    with open(learned_dir() / ".lock", "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the learned-rows store in {learned_dir()} stayed locked for {timeout}s")
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def filters_key(filters) -> frozenset[tuple[str, str, str]]:
    """A query's filters as a set, for "is this query narrower than a learned one"."""
    items = []
    for f in filters:
        if isinstance(f, dict):
            items.append((f["column"], f["op"], f.get("value") or ""))
        else:
            items.append((f.column, f.op, f.value or ""))
    return frozenset(items)


@dataclass(frozen=True)
class LearnedSnapshot:
    """One open learned file as a reader sees it."""

    path: Path
    conn: duckdb.DuckDBPyConnection
    tables: frozenset[str]
    complete: dict[str, set[frozenset]]  # table -> filter sets whose answers hold every matching row

    def is_complete(self, *, table: str, wanted: frozenset) -> bool:
        """Does a complete answer exist for these filters or a subset of them (a broader query)?"""
        known = self.complete.get(table)
        if not known:
            return False
        if len(wanted) <= 10:  # look up each subset of the query's filters: 2^n set probes
            items = list(wanted)
            return any(frozenset(c) in known for r in range(len(items) + 1) for c in combinations(items, r))
        return any(answer <= wanted for answer in known)


def learned_snapshot() -> LearnedSnapshot | None:
    """Read-only view of the current learned file, one per thread, reopened after a swap."""
    path = learned_current_path()
    cached: LearnedSnapshot | None = getattr(_local, "snapshot", None)
    if path is None:
        return None
    if cached is not None and cached.path == path:
        return cached
    if cached is not None:
        cached.conn.close()
    conn = duckdb.connect(str(path), read_only=True, config={"threads": 1})
    tables = frozenset(r[0] for r in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database()"
    ).fetchall())
    complete: dict[str, set[frozenset]] = {}
    if ANSWERS in tables:
        for table, filters in conn.execute(f"SELECT table_name, filters FROM {ANSWERS} WHERE complete").fetchall():
            complete.setdefault(table, set()).add(filters_key(json.loads(filters)))
    snapshot = LearnedSnapshot(path=path, conn=conn, tables=tables - {ANSWERS, ANSWER_KEYS}, complete=complete)
    _local.snapshot = snapshot
    return snapshot
