"""The learned-rows store: answers that warehouse fallbacks brought back, kept next to the subset.

Reads (`learned_rows_for_search`, asked by apps.samples.pipeline) and writes (`learned_from_fallback`,
called by the worker when a fallback succeeds) live here together.

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

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path

import duckdb
import pyarrow as pa
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from apps.search.models import SearchLog
from apps.search.query import SearchQuery, compile_search
from apps.search.selectors import indexed_search
from apps.search.store import SwappedFiles
from apps.search.tables import quote_identifier, quote_string, table_spec_get

from .models import Fallback

logger = logging.getLogger(__name__)
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


def learned_write_lock(timeout: float = 60.0):
    """The single-writer lock of the learned store (SwappedFiles.writer_lock): concurrent workers take turns."""
    return LEARNED.writer_lock(timeout=timeout)


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
    complete: dict[str, dict[frozenset, dt.datetime]]  # table -> filter sets whose answers hold every
    # matching row, each with when it was learned (naive UTC)

    def is_complete(self, *, table: str, wanted: frozenset, learned_after: dt.datetime | None = None) -> bool:
        """Does a complete answer exist for these filters or a subset of them (a broader query)?

        `learned_after`: only answers learned after it count (older ones may miss rows added since)."""
        known = self.complete.get(table)
        if not known:
            return False

        def fresh(answer: frozenset) -> bool:
            return answer in known and (learned_after is None or known[answer] > learned_after)

        if len(wanted) <= 10:  # look up each subset of the query's filters: 2^n set probes
            items = list(wanted)
            return any(fresh(frozenset(c)) for r in range(len(items) + 1) for c in combinations(items, r))
        return any(answer <= wanted and fresh(answer) for answer in known)


def complete_answers_learned_after() -> dt.datetime | None:
    """A "complete" answer older than SUBSET_LEARNED_COMPLETE_MAX_AGE_SECONDS no longer counts as complete:
    the full table may have gained matching rows since (0 = no limit). Naive UTC, as the store keeps times."""
    max_age = settings.SUBSET_LEARNED_COMPLETE_MAX_AGE_SECONDS
    if max_age <= 0:
        return None
    return timezone.now().astimezone(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=max_age)


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
    complete: dict[str, dict[frozenset, dt.datetime]] = {}
    if ANSWERS in tables:
        for table, filters, learned_at in conn.execute(
                f"SELECT table_name, filters, learned_at FROM {ANSWERS} WHERE complete").fetchall():
            known = complete.setdefault(table, {})
            key = filters_key(json.loads(filters))
            known[key] = max(learned_at, known.get(key, learned_at))
    snapshot = LearnedSnapshot(path=path, conn=conn, tables=tables - {ANSWERS, ANSWER_KEYS}, complete=complete)
    _local.snapshot = snapshot
    return snapshot


# --- reading: rows for a search -------------------------------------------------------------

@dataclass(frozen=True)
class LearnedLookup:
    rows: list[dict] = field(default_factory=list)  # keys not in local_rows
    complete: bool = False  # a learned answer held every row matching this query (or a broader one)
    plan: object = None  # how the learned rows were searched (apps.search.selectors.PlanReport); None: not searched


_CURRENT = object()


def learned_rows_for_search(*, query, spec, local_rows: list[dict], snapshot=_CURRENT,
                            context=None) -> LearnedLookup:
    """Rows the learned store adds to what the subset returned (apps.samples.pipeline asks).

    `snapshot`: the learned store as the request took it once (learned_snapshot(); None: no store), else it
    is taken now; `context` (apps.search.context.SearchContext): the request's validated search, so the
    filters are not validated again. Rows whose key the subset already returned are skipped (key-dedup
    against the subset). Never raises: a broken or stale store only means no learned rows."""
    if not settings.SUBSET_LEARNING_ENABLED:
        return LearnedLookup()
    try:
        if snapshot is _CURRENT:
            snapshot = learned_snapshot()
        if snapshot is None:
            return LearnedLookup()
        wanted = filters_key(query.filters)
        complete = snapshot.is_complete(table=spec.name, wanted=wanted, learned_after=complete_answers_learned_after())
        if spec.name not in snapshot.tables or len(local_rows) >= query.limit:
            return LearnedLookup(complete=complete)
        seen = {row.get(spec.key) for row in local_rows}
        wider = replace(query, limit=query.limit + len(seen))
        if context is not None:
            outcome = indexed_search(path=snapshot.path, conn=snapshot.conn, timeout_ms=settings.SEARCH_TIMEOUT_MS,
                                     context=context.over(snapshot=(snapshot.path, snapshot.conn), limit=wider.limit))
        else:
            outcome = indexed_search(path=snapshot.path, conn=snapshot.conn, query=wider, spec=spec,
                                     compiled=compile_search(query=wider, spec=spec),
                                     timeout_ms=settings.SEARCH_TIMEOUT_MS)
        names = outcome.columns
        rows = []
        for values in outcome.rows:
            row = dict(zip(names, values))
            if row.get(spec.key) in seen:
                continue
            rows.append(row)
            if len(local_rows) + len(rows) >= query.limit:
                break
        return LearnedLookup(rows=rows, complete=complete, plan=outcome.plan)
    except (duckdb.Error, OSError, ValueError) as exc:
        logger.warning("learned rows unavailable for %s: %s", spec.name, exc)
        return LearnedLookup()


# --- learning from fallbacks ---------------------------------------------------------------------

def learned_from_fallback(*, fallback_id: int) -> dict | None:
    """Add a succeeded fallback's rows to the learned store (the worker calls it after the run)."""
    if not settings.SUBSET_LEARNING_ENABLED:
        return None
    fallback = Fallback.objects.filter(pk=fallback_id, state=Fallback.State.SUCCEEDED).first()
    if fallback is None:
        return None
    return learned_answer_add(spec=table_spec_get(name=fallback.table), query=SearchQuery.from_dict(fallback.query),
                              rows=list(fallback.rows), fallback_id=fallback.pk)


def learned_answer_add(*, spec, query, rows: list[dict], fallback_id: int | None = None) -> dict:
    """Add one warehouse answer (all the rows a fallback returned for `query`) to the learned store.

    An answer with fewer rows than its limit holds EVERY matching row: it is marked complete, and the
    same or a narrower query (a superset of its filters) is then answered locally, even with 0 rows.
    A newer answer for the same filters replaces the older one. Then the store is cut back to
    SUBSET_LEARNED_MAX_ROWS rows / SUBSET_LEARNED_MAX_ANSWERS answers by evicting whole answers,
    least recently used first ("used" = learned, or the same search run again per the search log).
    """
    with learned_write_lock():
        current = learned_current_path()
        with LEARNED.build(threads=1) as (path, conn):
            stats = _learned_rebuild(conn=conn, current=current, spec=spec, query=query, rows=rows,
                                     fallback_id=fallback_id)
        learned_install(path=path)
    return stats


def _learned_rebuild(*, conn, current: Path | None, spec, query, rows: list[dict], fallback_id) -> dict:
    conn.execute(f"CREATE TABLE {ANSWERS} (id BIGINT, table_name VARCHAR, key_column VARCHAR, fingerprint VARCHAR, "
                 "filters VARCHAR, filters_key VARCHAR, limit_rows INTEGER, row_count INTEGER, complete BOOLEAN, "
                 "fallback_id BIGINT, learned_at TIMESTAMP, last_used_at TIMESTAMP)")
    conn.execute(f"CREATE TABLE {ANSWER_KEYS} (answer_id BIGINT, table_name VARCHAR, key VARCHAR)")
    if current is not None:
        conn.execute(f"ATTACH {quote_string(str(current))} AS previous (READ_ONLY)")
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'previous' AND schema_name = 'main'"
        ).fetchall()]
        for name in tables:
            if name in (ANSWERS, ANSWER_KEYS):
                conn.execute(f"INSERT INTO {name} SELECT * FROM previous.main.{name}")
            else:
                conn.execute(f"CREATE TABLE {quote_identifier(name)} AS SELECT * FROM previous.main.{quote_identifier(name)}")
        conn.execute("DETACH previous")
    existing = {r[0]: r[1] for r in conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [spec.name]).fetchall()}
    if existing and existing != dict(spec.columns):
        _learned_drop_table(conn, spec.name)  # the table's schema changed: what was learned no longer fits
        existing = {}
    if not existing:
        columns = ", ".join(f"{quote_identifier(c)} {t}" for c, t in spec.columns.items())
        conn.execute(f"CREATE TABLE {quote_identifier(spec.name)} ({columns})")

    # Replace an older answer for exactly these filters.
    key_text = json.dumps(sorted(filters_key(query.filters)))
    old = [r[0] for r in conn.execute(f"SELECT id FROM {ANSWERS} WHERE table_name = ? AND filters_key = ?",
                                      [spec.name, key_text]).fetchall()]
    for answer_id in old:
        conn.execute(f"DELETE FROM {ANSWER_KEYS} WHERE answer_id = ?", [answer_id])
        conn.execute(f"DELETE FROM {ANSWERS} WHERE id = ?", [answer_id])
    answer_id = conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {ANSWERS}").fetchone()[0]
    now = timezone.now().astimezone(dt.timezone.utc).replace(tzinfo=None)
    unique_rows: dict = {}
    for row in rows:
        unique_rows.setdefault(row.get(spec.key), row)
    conn.execute(f"INSERT INTO {ANSWERS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        answer_id, spec.name, spec.key, query.fingerprint(), json.dumps(query.to_dict()["filters"]), key_text,
        query.limit, len(unique_rows), len(rows) < query.limit, fallback_id, now, now])
    added = 0
    if unique_rows:
        incoming = pa.Table.from_pylist([{c: row.get(c) for c in spec.columns} for row in unique_rows.values()])
        conn.register("incoming", incoming)
        casts = ", ".join(f"CAST({quote_identifier(c)} AS {t}) AS {quote_identifier(c)}" for c, t in spec.columns.items())
        key = quote_identifier(spec.key)
        added = conn.execute(
            f"INSERT INTO {quote_identifier(spec.name)} SELECT {casts} FROM incoming WHERE CAST({key} AS VARCHAR) NOT IN "
            f"(SELECT CAST({key} AS VARCHAR) FROM {quote_identifier(spec.name)} WHERE {key} IS NOT NULL)").fetchone()[0]
        conn.execute(f"INSERT INTO {ANSWER_KEYS} SELECT ?, ?, CAST({key} AS VARCHAR) FROM incoming",
                     [answer_id, spec.name])
        conn.unregister("incoming")

    # Recency from the search log: an answer is "used" whenever the same search runs again.
    fingerprints = [r[0] for r in conn.execute(f"SELECT DISTINCT fingerprint FROM {ANSWERS}").fetchall()]
    last_seen: dict[str, object] = {}
    for start in range(0, len(fingerprints), 500):
        for item in (SearchLog.objects.filter(fingerprint__in=fingerprints[start:start + 500])
                     .values("fingerprint").order_by().annotate(last=Max("created_at"))):
            last = item["last"]
            last_seen[item["fingerprint"]] = last.astimezone(dt.timezone.utc).replace(tzinfo=None) if last.tzinfo else last
    if last_seen:
        conn.register("seen", pa.table({"fingerprint": list(last_seen),
                                        "last": pa.array(list(last_seen.values()), type=pa.timestamp("us"))}))
        conn.execute(f"UPDATE {ANSWERS} SET last_used_at = greatest(last_used_at, seen.last) FROM seen "
                     f"WHERE {ANSWERS}.fingerprint = seen.fingerprint")
        conn.unregister("seen")

    # Evict whole answers, least recently used first, until the rest fit both bounds.
    evicted = conn.execute(
        f"SELECT id FROM (SELECT id, sum(row_count) OVER w AS rows_so_far, row_number() OVER w AS answers_so_far "
        f"FROM {ANSWERS} WINDOW w AS (ORDER BY last_used_at DESC, id DESC ROWS UNBOUNDED PRECEDING)) "
        f"WHERE rows_so_far > ? OR answers_so_far > ?",
        [settings.SUBSET_LEARNED_MAX_ROWS, settings.SUBSET_LEARNED_MAX_ANSWERS]).fetchall()
    if evicted:
        conn.register("evicted", pa.table({"id": [r[0] for r in evicted]}))
        conn.execute(f"DELETE FROM {ANSWER_KEYS} WHERE answer_id IN (SELECT id FROM evicted)")
        conn.execute(f"DELETE FROM {ANSWERS} WHERE id IN (SELECT id FROM evicted)")
        conn.unregister("evicted")
    row_tables = set(conn.execute(f"SELECT DISTINCT table_name, key_column FROM {ANSWERS}").fetchall())
    for table, key_column in row_tables | {(spec.name, spec.key)}:
        conn.execute(f"DELETE FROM {quote_identifier(table)} WHERE CAST({quote_identifier(key_column)} AS VARCHAR) NOT IN "
                     f"(SELECT key FROM {ANSWER_KEYS} WHERE table_name = ?)", [table])
    total = conn.execute(f"SELECT count(*) FROM {quote_identifier(spec.name)}").fetchone()[0]
    answers = conn.execute(f"SELECT count(*) FROM {ANSWERS}").fetchone()[0]
    return {"answer_id": answer_id, "rows_added": added, "rows_in_table": total, "answers": answers,
            "evicted_answers": len(evicted), "complete": len(rows) < query.limit}


def _learned_drop_table(conn, table: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {quote_identifier(table)}")
    conn.execute(f"DELETE FROM {ANSWER_KEYS} WHERE table_name = ?", [table])
    conn.execute(f"DELETE FROM {ANSWERS} WHERE table_name = ?", [table])


def learned_clear() -> None:
    """Forget everything learned (a new empty store)."""
    with learned_write_lock():
        with LEARNED.build() as (path, _conn):
            pass
        learned_install(path=path)
