"""The learned-rows store: answers that warehouse fallbacks brought back, kept next to the subset as small
immutable segments (apps/warehouse/segments.py has the layout on disk).

Reads (`learned_snapshot`, `learned_rows_for_search`, asked by apps.samples.pipeline) and writes
(`learned_from_fallback` / `learned_answer_add`, called by the worker when a fallback succeeds;
`learned_segments_merge`, the Celery beat's compaction; `learned_clear`) live here together.

- **Learning** writes one segment (the answer's rows, unique by key, in key order, with its own word
  index) and a new manifest, under the writer lock: it never reads or rewrites the other segments, so it
  costs the size of the answer, not of the store.
- **A search** reads one manifest (`learned_snapshot`: read-only connections per thread, reused until the
  manifest changes) and searches every segment through its index (`indexed_search`), each for its first rows
  in the query's order; rows the subset already returned, rows of answers dropped since (hidden) and keys
  seen in a newer segment are skipped, and the rest come back in the query's order (key order without a sort).
- **Eviction** drops whole answers, least recently used first, past SUBSET_LEARNED_MAX_ROWS rows /
  SUBSET_LEARNED_MAX_ANSWERS answers: a manifest change. A segment left without live answers is unlisted and
  deleted; rows of a dropped answer inside a merged segment are hidden at once (by the keys of its
  `_answer_keys` no live answer holds) and left out by the next merge of that segment.
- **Merging** (`learned_segments_merge`, beat `warehouse-merge-learned`): past SUBSET_LEARNED_MAX_SEGMENTS
  segments, the segments of the smallest size tier (tier = floor(log4(rows))) are merged into one, built
  outside the lock from a manifest read once; under the lock a manifest replacing exactly those segments
  (and keeping any added meanwhile) is swapped in. A segment mostly made of dropped answers is rewritten too.

Rows are stored even when the subset holds them too: the subset may be refreshed without them, and a
"complete" answer must stay complete. Search removes rows the subset already returned (by key).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import threading
import time
from collections import defaultdict
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
from apps.search.selectors import PlanReport, indexed_search
from apps.search.word_index import file_index_forget
from apps.search.tables import quote_identifier, quote_string, table_spec_get

from .models import Fallback
from .segments import (
    ANSWER_KEYS,
    ANSWERS,
    WRITER,
    legacy_delete,
    legacy_manifest,
    legacy_path,
    manifest_empty,
    manifest_parse,
    manifest_path,
    manifest_read,
    manifest_write,
    orphans_delete,
    segment_build,
    segment_delete,
    segment_path,
    store_dir,
    time_parse,
    time_text,
)

logger = logging.getLogger(__name__)
__all__ = ["ANSWERS", "ANSWER_KEYS", "LearnedLookup", "LearnedSnapshot", "learned_answer_add", "learned_clear",
           "learned_from_fallback", "learned_rows_for_search", "learned_segments_merge", "learned_snapshot"]
_local = threading.local()
TIER_FANOUT = 4  # segments of rows within a factor 4 of each other are one size tier
MERGE_MAX_INPUTS = 32  # segments merged into one at most
MERGE_ROUNDS = 8  # merges per learned_segments_merge call at most
DIRTY_SHARE = 0.5  # a segment whose live answers hold less than this share of its rows is rewritten


def learned_dir() -> Path:
    return store_dir()


def learned_current_path() -> Path | None:
    """What the store serves from: its manifest, or the old single-file layout's file; None = nothing learned."""
    path = manifest_path()
    return path if path.exists() else legacy_path()


def learned_write_lock(timeout: float = 60.0):
    """The single-writer lock of the learned store (SwappedFiles.writer_lock): concurrent workers take turns."""
    return WRITER.writer_lock(timeout=timeout)


def filters_key(filters) -> frozenset[tuple[str, str, str]]:
    """A query's filters as a set, for "is this query narrower than a learned one"."""
    items = []
    for f in filters:
        if isinstance(f, dict):
            items.append((f["column"], f["op"], f.get("value") or ""))
        else:
            items.append((f.column, f.op, f.value or ""))
    return frozenset(items)


def _filters_key_text(filters) -> str:
    return json.dumps(sorted(filters_key(filters)))


@dataclass(frozen=True)
class LearnedSegment:
    """One segment as a reader sees it: an open read-only connection and what the manifest says of it."""

    id: int
    path: Path
    conn: duckdb.DuckDBPyConnection
    tables: dict  # table -> {"key", "columns": [[name, type], ...], "rows"}
    sorted: bool  # rows stored in key order (every segment but the old single-file layout's)
    newest: int  # the newest answer id written into it: a key in two segments is served from the newer
    hidden: dict[str, frozenset] = field(default_factory=dict)  # table -> keys no live answer holds


@dataclass(frozen=True)
class LearnedSnapshot:
    """One manifest (a set of segments) as a reader sees it."""

    path: Path  # the manifest (or the old layout's file)
    conn: duckdb.DuckDBPyConnection | None  # unused since segments (kept for callers that build one)
    tables: frozenset[str]
    complete: dict[str, dict[frozenset, dt.datetime]]  # table -> filter sets whose answers hold every
    # matching row, each with when it was learned (naive UTC)
    segments: tuple[LearnedSegment, ...] = ()
    signature: object = None  # what identifies the manifest read (path, device, inode, mtime, size)
    answers: tuple = ()  # the manifest's live answers

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
    return _utc_now() - dt.timedelta(seconds=max_age)


def _utc_now() -> dt.datetime:
    return timezone.now().astimezone(dt.timezone.utc).replace(tzinfo=None)


# --- reading: one manifest per snapshot ----------------------------------------------------------

def learned_snapshot() -> LearnedSnapshot | None:
    """The store as one manifest names it: this thread's read-only connections to its segments, reused until
    the manifest changes. None = nothing learned. A segment deleted between reading a manifest and opening it
    (a merge swapped it out) means a newer manifest: read again."""
    for attempt in range(3):
        try:
            return _snapshot_get()
        except (duckdb.IOException, FileNotFoundError):
            if attempt == 2:
                raise
    return None  # not reached


def _snapshot_get() -> LearnedSnapshot | None:
    cached: LearnedSnapshot | None = getattr(_local, "snapshot", None)
    try:
        handle = open(manifest_path())  # noqa: SIM115 - closed below
    except FileNotFoundError:
        old = legacy_path()
        if old is None:
            _snapshot_forget()
            return None
        signature = ("legacy", str(old))
        if cached is not None and cached.signature == signature:
            return cached
        return _snapshot_open(manifest=legacy_manifest(old), signature=signature, path=old)
    with handle:
        stat = os.fstat(handle.fileno())
        signature = (str(manifest_path()), stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if cached is not None and cached.signature == signature:
            return cached
        manifest = manifest_parse(handle.read())
    return _snapshot_open(manifest=manifest, signature=signature, path=manifest_path())


def _snapshot_open(*, manifest: dict, signature, path: Path) -> LearnedSnapshot:
    conns: dict[Path, duckdb.DuckDBPyConnection] = getattr(_local, "conns", {})
    _local.conns = conns
    live: dict[int, set[int]] = defaultdict(set)
    complete: dict[str, dict[frozenset, dt.datetime]] = {}
    for answer in manifest["answers"]:
        if answer["segment"] is not None:
            live[answer["segment"]].add(answer["id"])
        if answer["complete"]:
            known = complete.setdefault(answer["table"], {})
            key = filters_key(answer["filters"])
            learned_at = time_parse(answer["learned_at"])
            known[key] = max(learned_at, known.get(key, learned_at))
    segments = []
    for entry in manifest["segments"]:
        segment_file = segment_path(entry)
        conn = conns.get(segment_file)
        if conn is None:
            if not segment_file.exists():
                raise FileNotFoundError(segment_file)
            conn = conns[segment_file] = duckdb.connect(str(segment_file), read_only=True, config={"threads": 1})
        built = set(entry["built_answers"])
        hidden = _hidden_keys(conn=conn, entry=entry, live=live[entry["id"]]) if built - live[entry["id"]] else {}
        segments.append(LearnedSegment(id=entry["id"], path=segment_file, conn=conn, tables=entry["tables"],
                                       sorted=entry["sorted"], newest=max(built, default=0), hidden=hidden))
    listed = {s.path for s in segments}
    for stale in [p for p in conns if p not in listed]:
        conns.pop(stale).close()
        file_index_forget(stale)
    snapshot = LearnedSnapshot(path=path, conn=None, tables=frozenset(t for s in segments for t in s.tables),
                               complete=complete, segments=tuple(segments), signature=signature,
                               answers=tuple(manifest["answers"]))
    _local.snapshot = snapshot
    return snapshot


def _snapshot_forget() -> None:
    for stale, conn in getattr(_local, "conns", {}).items():
        conn.close()
        file_index_forget(stale)
    _local.conns = {}
    _local.snapshot = None


def _hidden_keys(*, conn, entry: dict, live: set[int]) -> dict[str, frozenset]:
    """Per table, the keys of a segment that no live answer holds (answers dropped since it was built)."""
    ids = ", ".join(str(int(i)) for i in sorted(live)) or "NULL"
    hidden = {}
    for table, info in entry["tables"].items():
        key = quote_identifier(info["key"])
        rows = conn.execute(
            f"SELECT {key} FROM {quote_identifier(table)} WHERE CAST({key} AS VARCHAR) NOT IN "
            f"(SELECT key FROM {ANSWER_KEYS} WHERE table_name = ? AND answer_id IN ({ids}) AND key IS NOT NULL)",
            [table]).fetchall()
        hidden[table] = frozenset(r[0] for r in rows)
    return hidden


# --- reading: rows for a search -------------------------------------------------------------

@dataclass(frozen=True)
class LearnedLookup:
    rows: list[dict] = field(default_factory=list)  # keys not in local_rows
    complete: bool = False  # a learned answer held every row matching this query (or a broader one)
    plan: PlanReport | None = None  # how the segments were searched; None: not searched


_CURRENT = object()


def learned_rows_for_search(*, query, spec, local_rows: list[dict], snapshot=_CURRENT, context=None) -> LearnedLookup:
    """Rows the learned store adds to what the subset returned (apps.samples.pipeline asks), from `snapshot`
    (the one resolved once for the request, learned_snapshot(); None: no store) or else the current one;
    `context` (apps.search.context.SearchContext): the request's validated search, so the filters are not
    validated again in each segment. The lookup's `plan` sums how the segments were searched.

    Rows whose key the subset already returned are skipped (key-dedup against the subset), and so are keys
    seen twice across segments; the rest come in the query's order (key order without a sort), at most
    limit - len(local_rows). Never raises: a broken or stale store only means no learned rows."""
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
        rows, plan = _segments_search(segments=snapshot.segments, query=query, spec=spec, seen=seen,
                                      wanted=query.limit - len(local_rows), context=context)
        return LearnedLookup(rows=rows, complete=complete, plan=plan)
    except (duckdb.Error, OSError, ValueError) as exc:
        logger.warning("learned rows unavailable for %s: %s", spec.name, exc)
        return LearnedLookup()


def learned_segments_serving(*, segments, spec) -> list[LearnedSegment]:
    """The segments that serve `spec`'s table, newest first (a key in two segments is served from the newer):
    those learned under the table's current schema (key and columns)."""
    columns = [[name, kind] for name, kind in spec.columns.items()]
    serving = []
    for segment in sorted(segments, key=lambda s: -s.newest):
        info = segment.tables.get(spec.name)
        if info is None or info["key"] != spec.key or [list(c) for c in info["columns"]] != columns:
            continue  # learned under another schema of the table: not served
        serving.append(segment)
    return serving


def _segments_search(*, segments, query, spec, seen: set, wanted: int, context=None) -> tuple[list[dict], PlanReport]:
    """The first `wanted` rows, in the query's order, of the union of the segments less `seen` and hidden keys.

    Each sorted segment is asked for its first wanted + |seen| + |hidden| rows in that order: every row of
    the answer is among them (fewer than that many rows of the segment come before it)."""
    found: dict = {}
    plans: list[PlanReport] = []
    for segment in learned_segments_serving(segments=segments, spec=spec):
        info = segment.tables[spec.name]
        hidden = segment.hidden.get(spec.name, frozenset())
        limit = wanted + len(seen) + len(hidden) if segment.sorted else max(int(info["rows"]), 1)
        if context is not None:  # the request's validated filters, over this segment's file
            outcome = indexed_search(path=segment.path, conn=segment.conn, timeout_ms=settings.SEARCH_TIMEOUT_MS,
                                     context=context.over(snapshot=(segment.path, segment.conn), limit=limit))
        else:
            wider = replace(query, limit=limit)
            outcome = indexed_search(path=segment.path, conn=segment.conn, query=wider, spec=spec,
                                     compiled=compile_search(query=wider, spec=spec),
                                     timeout_ms=settings.SEARCH_TIMEOUT_MS)
        if outcome.plan is not None:
            plans.append(outcome.plan)
        at = outcome.columns.index(spec.key)
        for values in outcome.rows:
            key = values[at]
            if key in seen or key in hidden or key in found:
                continue
            found[key] = dict(zip(outcome.columns, values))
    rows = sorted(found.values(), key=_order_key(query=query, spec=spec))
    return rows[:wanted], _plans_combine(plans)


def _plans_combine(plans: list[PlanReport]) -> PlanReport:
    """One plan for the learned rows: each segment is searched with its own index; the kinds used, and the
    candidates and rows read summed."""
    kinds: dict[str, int] = {}
    for plan in plans:
        kinds[plan.kind] = kinds.get(plan.kind, 0) + 1
    kind = "index" if "index" in kinds else "scan" if "scan" in kinds else "empty"
    used = ", ".join(f"{count} {name}" for name, count in sorted(kinds.items()))
    reason = f"{len(plans)} learned segment{'s' if len(plans) != 1 else ''}" + (f" ({used})" if used else "")

    def total(values):
        values = [v for v in values if v is not None]
        return sum(values) if values else None

    return PlanReport(kind=kind, reason=reason, candidates=total(p.candidates for p in plans),
                      read=total(p.read for p in plans))


class _Descending:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return self.value == other.value

    def __lt__(self, other):
        return other.value < self.value


def _sortable(value):
    """DuckDB's order for a non-NULL value: NaN after every number."""
    if isinstance(value, float) and math.isnan(value):
        return (1, 0.0)
    return (0, value)


def _order_key(*, query, spec):
    """The query's order (compile_search: ORDER BY column NULLS LAST, key; or key order) as a Python sort key."""
    key = spec.key
    if query.order is None:
        return lambda row: _sortable(row[key])
    column, desc = query.order.column, query.order.desc

    def order(row):
        value = row.get(column)
        if value is None:
            return (True, 0, _sortable(row[key]))
        return (False, _Descending(_sortable(value)) if desc else _sortable(value), _sortable(row[key]))

    return order


# --- learning from fallbacks ---------------------------------------------------------------------

def learned_from_fallback(*, fallback_id: int) -> dict | None:
    """Add a succeeded fallback's rows to the learned store (the worker calls it after the run); past twice
    SUBSET_LEARNED_MAX_SEGMENTS segments, merge at once rather than wait for the beat."""
    if not settings.SUBSET_LEARNING_ENABLED:
        return None
    fallback = Fallback.objects.filter(pk=fallback_id, state=Fallback.State.SUCCEEDED).first()
    if fallback is None:
        return None
    stats = learned_answer_add(spec=table_spec_get(name=fallback.table), query=SearchQuery.from_dict(fallback.query),
                               rows=list(fallback.rows), fallback_id=fallback.pk)
    if stats["segments"] > 2 * settings.SUBSET_LEARNED_MAX_SEGMENTS:
        # A burst of fallbacks between two beats: this worker compacts now (outside the writer lock but for the
        # swap), so searches never read more than about twice the bound of segments.
        stats["merge"] = learned_segments_merge()
    return stats


def learned_answer_add(*, spec, query, rows: list[dict], fallback_id: int | None = None) -> dict:
    """Add one warehouse answer (all the rows a fallback returned for `query`) to the learned store: one new
    segment and a new manifest, under the writer lock.

    An answer with fewer rows than its limit holds EVERY matching row: it is marked complete, and the
    same or a narrower query (a superset of its filters) is then answered locally, even with 0 rows.
    A newer answer for the same filters replaces the older one, and one for a table whose columns changed
    replaces what was learned under the old ones. Then the store is cut back to SUBSET_LEARNED_MAX_ROWS rows /
    SUBSET_LEARNED_MAX_ANSWERS answers by evicting whole answers, least recently used first ("used" = learned,
    or the same search run again per the search log).
    """
    unique_rows: dict = {}
    for row in rows:
        if row.get(spec.key) is not None:
            unique_rows.setdefault(row.get(spec.key), row)
    columns = [[name, kind] for name, kind in spec.columns.items()]
    key_text = _filters_key_text(query.filters)
    with learned_write_lock():
        manifest, converted = _manifest_for_writing()
        answer_id = manifest["next_id"]
        manifest["next_id"] = answer_id + 1
        segment = None
        if unique_rows:  # an empty answer needs no segment: the manifest holds all there is to it
            path, tables = segment_build(name=f"seg-{answer_id}-{time.time_ns()}",
                                         fill=lambda conn: _answer_fill(conn=conn, spec=spec, rows=unique_rows,
                                                                        answer_id=answer_id))
            segment = {"id": answer_id, "file": str(path.relative_to(store_dir())), "sorted": True, "tables": tables,
                       "built_answers": [answer_id]}
        try:
            segment_tables = {s["id"]: s["tables"] for s in manifest["segments"]}
            kept = []
            for answer in manifest["answers"]:
                if answer["table"] == spec.name:
                    if answer["filters_key"] == key_text:
                        continue  # replaced by this one
                    learned_columns = segment_tables.get(answer["segment"], {}).get(spec.name, {}).get("columns")
                    if answer["segment"] is not None and learned_columns != columns:
                        continue  # the table's schema changed: what was learned no longer fits
                kept.append(answer)
            now = time_text(_utc_now())
            kept.append({"id": answer_id, "segment": answer_id if segment is not None else None, "table": spec.name,
                         "key_column": spec.key,
                         "fingerprint": query.fingerprint(), "filters": query.to_dict()["filters"],
                         "filters_key": key_text, "limit": query.limit, "rows": len(unique_rows),
                         "complete": len(rows) < query.limit, "fallback_id": fallback_id, "learned_at": now,
                         "last_used_at": now})
            _recency_update(manifest=manifest, answers=kept)
            kept, evicted = _evict(kept)
            manifest["answers"] = kept
            if segment is not None:
                manifest["segments"].append(segment)
            gone = _segments_unlisted(manifest)
            manifest_write(manifest)
        except BaseException:
            if segment is not None:
                segment_delete(segment)
            raise
        if converted:
            legacy_delete()
        for entry in gone:
            segment_delete(entry)
    rows_in_table = sum(a["rows"] for a in kept if a["table"] == spec.name)
    return {"answer_id": answer_id, "rows_added": len(unique_rows), "rows_in_table": rows_in_table,
            "answers": len(kept), "evicted_answers": len(evicted), "segments": len(manifest["segments"]),
            "complete": len(rows) < query.limit}


def _answer_fill(*, conn, spec, rows: dict, answer_id: int) -> dict:
    """One answer's segment: its rows typed like the subset's table, unique by key, in key order."""
    incoming = pa.Table.from_pylist([{c: row.get(c) for c in spec.columns} for row in rows.values()])
    conn.register("incoming", incoming)
    casts = ", ".join(f"CAST({quote_identifier(c)} AS {t}) AS {quote_identifier(c)}" for c, t in spec.columns.items())
    key = quote_identifier(spec.key)
    conn.execute(f"CREATE TABLE {quote_identifier(spec.name)} AS SELECT {casts} FROM incoming ORDER BY {key}")
    conn.unregister("incoming")
    conn.execute(f"CREATE TABLE {ANSWER_KEYS} AS SELECT CAST(? AS BIGINT) AS answer_id, CAST(? AS VARCHAR) AS "
                 f"table_name, CAST({key} AS VARCHAR) AS key FROM {quote_identifier(spec.name)}",
                 [answer_id, spec.name])
    return {spec.name: {"key": spec.key, "columns": [[c, t] for c, t in spec.columns.items()], "rows": len(rows)}}


def _recency_update(*, manifest: dict, answers: list[dict]) -> None:
    """An answer is "used" whenever the same search runs again: searches logged since the last check."""
    checked = timezone.now()
    since = time_parse(manifest.get("recency_checked_at"))
    manifest["recency_checked_at"] = time_text(checked)
    if since is None:
        return
    last_seen = {
        fingerprint: time_text(last) for fingerprint, last in
        SearchLog.objects.filter(created_at__gte=since.replace(tzinfo=dt.timezone.utc))
        .order_by().values("fingerprint").annotate(last=Max("created_at")).values_list("fingerprint", "last")}
    for answer in answers:
        last = last_seen.get(answer["fingerprint"])
        if last is not None and last > answer["last_used_at"]:
            answer["last_used_at"] = last


def _evict(answers: list[dict]) -> tuple[list[dict], list[dict]]:
    """Whole answers, least recently used first, until the rest fit both bounds (inclusive)."""
    kept, evicted, rows_so_far = [], [], 0
    for rank, answer in enumerate(sorted(answers, key=lambda a: (a["last_used_at"], a["id"]), reverse=True), 1):
        rows_so_far += answer["rows"]
        if rows_so_far > settings.SUBSET_LEARNED_MAX_ROWS or rank > settings.SUBSET_LEARNED_MAX_ANSWERS:
            evicted.append(answer)
        else:
            kept.append(answer)
    kept.sort(key=lambda a: a["id"])
    return kept, evicted


def _segments_unlisted(manifest: dict) -> list[dict]:
    """Unlist the segments no live answer uses any more; return them (to delete once the manifest is written)."""
    used = {a["segment"] for a in manifest["answers"]}
    gone = [s for s in manifest["segments"] if s["id"] not in used]
    manifest["segments"] = [s for s in manifest["segments"] if s["id"] in used]
    return gone


def _manifest_for_writing() -> tuple[dict, bool]:
    """The manifest to build the next one from (the caller holds the writer lock), and whether it converts the
    old single-file layout (then its files go once the new manifest is written)."""
    manifest = manifest_read()
    if manifest is not None:
        return manifest, False
    old = legacy_path()
    if old is None:
        return manifest_empty(), False
    try:
        return _legacy_convert(old), True
    except (duckdb.Error, OSError, ValueError, KeyError) as exc:
        logger.warning("learned rows of %s unreadable, starting afresh: %s", old.name, exc)
        return manifest_empty(), True


def _legacy_convert(old: Path) -> dict:
    """The old single file as one segment in key order, with a fresh word index (a one-time copy)."""
    manifest = legacy_manifest(old)
    if not manifest["segments"]:
        for answer in manifest["answers"]:
            answer["segment"] = None
        return manifest
    entry = manifest["segments"][0]
    segment_id = manifest["next_id"]
    manifest["next_id"] += 1

    def fill(conn) -> dict:
        conn.execute(f"ATTACH {quote_string(str(old))} AS previous (READ_ONLY)")
        for table, info in entry["tables"].items():
            conn.execute(f"CREATE TABLE {quote_identifier(table)} AS SELECT * FROM "
                         f"previous.main.{quote_identifier(table)} ORDER BY {quote_identifier(info['key'])}")
        conn.execute(f"CREATE TABLE {ANSWER_KEYS} AS SELECT answer_id, table_name, key "
                     f"FROM previous.main.{ANSWER_KEYS}")
        conn.execute("DETACH previous")
        return entry["tables"]

    path, tables = segment_build(name=f"seg-{segment_id}-{time.time_ns()}", fill=fill)
    manifest["segments"] = [{**entry, "id": segment_id, "file": str(path.relative_to(store_dir())), "sorted": True,
                             "tables": tables}]
    for answer in manifest["answers"]:
        answer["segment"] = segment_id if answer["rows"] else None
    manifest.pop("legacy", None)
    return manifest


def learned_clear() -> None:
    """Forget everything learned (an empty manifest; every segment goes)."""
    with learned_write_lock():
        manifest = manifest_read()
        empty = manifest_empty()
        if manifest is not None:
            empty["next_id"] = manifest["next_id"]
            empty["generation"] = manifest["generation"]
        manifest_write(empty)
        legacy_delete()
        for entry in (manifest or {}).get("segments", []):
            segment_delete(entry)


# --- merging segments (Celery beat) --------------------------------------------------------------

def learned_segments_merge(*, max_segments: int | None = None) -> dict:
    """Compact the store: while it has more than `max_segments` (SUBSET_LEARNED_MAX_SEGMENTS) segments, merge
    those of the smallest size tier that has several; rewrite a segment mostly made of dropped answers.
    Each merged segment is built outside the writer lock, from a manifest read once; the swap under the lock
    replaces exactly the merged segments and keeps the ones added meanwhile. Also converts the old single-file
    layout and removes segment folders a killed writer left. Returns what it did."""
    limit = settings.SUBSET_LEARNED_MAX_SEGMENTS if max_segments is None else max_segments
    report = {"merges": 0, "segments_merged": 0, "rows_written": 0, "abandoned": 0, "orphans_removed": 0}
    if manifest_read() is None and legacy_path() is not None:
        with learned_write_lock():
            manifest, converted = _manifest_for_writing()
            if converted:
                manifest_write(manifest)
                legacy_delete()
    for _ in range(MERGE_ROUNDS):
        manifest = manifest_read()
        chosen = _merge_plan(manifest, limit) if manifest is not None else []
        if not chosen:
            break
        built = _merge_build(manifest=manifest, segment_ids=chosen)
        if _merge_install(built):
            report["merges"] += 1
            report["segments_merged"] += len(chosen)
            report["rows_written"] += sum(int(t["rows"]) for t in built["tables"].values())
        else:
            report["abandoned"] += 1
    manifest = manifest_read()
    if manifest is not None:
        report["orphans_removed"] = orphans_delete(manifest=manifest)
        report["segments"] = len(manifest["segments"])
    return report


def _segment_rows(entry: dict) -> int:
    return sum(int(t["rows"]) for t in entry["tables"].values())


def _merge_plan(manifest: dict, limit: int) -> list[int]:
    """Which segments to merge next (ids; [] = none)."""
    segments = manifest["segments"]
    live_rows: dict[int, int] = defaultdict(int)
    for answer in manifest["answers"]:
        if answer["segment"] is not None:
            live_rows[answer["segment"]] += answer["rows"]
    dirty = [s["id"] for s in segments if live_rows[s["id"]] < DIRTY_SHARE * _segment_rows(s)]
    if len(segments) <= max(limit, 1):
        return dirty[:1]
    tiers: dict[int, list[dict]] = defaultdict(list)
    for entry in segments:
        tiers[int(math.log(max(_segment_rows(entry), 1), TIER_FANOUT))].append(entry)
    for tier in sorted(tiers):
        if len(tiers[tier]) >= 2:
            return [s["id"] for s in tiers[tier][:MERGE_MAX_INPUTS]]
    smallest = sorted(segments, key=_segment_rows)[:2]
    return [s["id"] for s in smallest]


def _merge_build(*, manifest: dict, segment_ids: list[int]) -> dict:
    """One segment holding the live rows of `segment_ids` (unique by key: a key's row comes from the newest
    segment holding it), built outside the writer lock."""
    inputs = [s for s in manifest["segments"] if s["id"] in set(segment_ids)]
    live: dict[int, list[int]] = defaultdict(list)
    for answer in manifest["answers"]:
        if answer["segment"] is not None:
            live[answer["segment"]].append(answer["id"])
    answer_table = {a["id"]: a["table"] for a in manifest["answers"]}
    copied: set[int] = set()

    def fill(conn) -> dict:
        conn.execute(f"CREATE TABLE {ANSWER_KEYS} (answer_id BIGINT, table_name VARCHAR, key VARCHAR)")
        holders: dict[str, list[tuple[str, dict, dict]]] = defaultdict(list)
        for i, entry in enumerate(inputs):
            conn.execute(f"ATTACH {quote_string(str(segment_path(entry)))} AS s{i} (READ_ONLY)")
            for table, info in entry["tables"].items():
                holders[table].append((f"s{i}", entry, info))
        tables = {}
        for table, held in holders.items():
            newest = max(held, key=lambda h: max(h[1]["built_answers"], default=0))[2]
            parts, keys_parts = [], []
            names = ", ".join(quote_identifier(c) for c, _ in newest["columns"])
            key = quote_identifier(newest["key"])
            for alias, entry, info in held:
                ids = live[entry["id"]]
                if info["columns"] != newest["columns"] or info["key"] != newest["key"] or not ids:
                    continue  # learned under other columns (dropped with the answers), or nothing live
                id_list = ", ".join(str(int(i)) for i in ids)
                rank = max(entry["built_answers"], default=0)
                live_keys = (f"SELECT key FROM {alias}.main.{ANSWER_KEYS} WHERE table_name = {quote_string(table)} "
                             f"AND answer_id IN ({id_list})")
                parts.append(f"SELECT {names}, {rank} AS _rank FROM {alias}.main.{quote_identifier(table)} "
                             f"WHERE CAST({key} AS VARCHAR) IN ({live_keys})")
                keys_parts.append(f"SELECT answer_id, table_name, key FROM {alias}.main.{ANSWER_KEYS} "
                                  f"WHERE table_name = {quote_string(table)} AND answer_id IN ({id_list})")
                copied.update(a for a in ids if answer_table.get(a) == table)
            if not parts:
                continue
            conn.execute(f"CREATE TABLE {quote_identifier(table)} AS SELECT {names} FROM (SELECT *, row_number() OVER "
                         f"(PARTITION BY {key} ORDER BY _rank DESC) AS _n FROM ({' UNION ALL '.join(parts)})) "
                         f"WHERE _n = 1 ORDER BY {key}")
            conn.execute(f"INSERT INTO {ANSWER_KEYS} {' UNION ALL '.join(keys_parts)}")
            rows = conn.execute(f"SELECT count(*) FROM {quote_identifier(table)}").fetchone()[0]
            tables[table] = {"key": newest["key"], "columns": newest["columns"], "rows": int(rows)}
        for i in range(len(inputs)):
            conn.execute(f"DETACH s{i}")
        return tables

    path, tables = segment_build(name=f"merge-{time.time_ns()}-{os.getpid()}", fill=fill)
    return {"inputs": [s["id"] for s in inputs], "path": path, "tables": tables, "built_answers": sorted(copied)}


def _merge_install(built: dict) -> bool:
    """Swap the merged segment in for exactly its inputs, under the writer lock. Abandoned (False, the new
    segment deleted) when an input is no longer listed: another merge or a clear got there first."""
    inputs = set(built["inputs"])
    entry = {"file": str(built["path"].relative_to(store_dir())), "sorted": True, "tables": built["tables"],
             "built_answers": built["built_answers"]}
    with learned_write_lock():
        manifest = manifest_read()
        listed = {s["id"] for s in (manifest or {}).get("segments", [])}
        if manifest is None or not inputs <= listed:
            segment_delete(entry)
            return False
        entry["id"] = manifest["next_id"]
        manifest["next_id"] += 1
        copied = set(built["built_answers"])
        answers = []
        for answer in manifest["answers"]:
            if answer["segment"] in inputs:
                if answer["id"] not in copied:
                    continue  # its rows were not carried over (its table's columns changed): it goes
                answer = {**answer, "segment": entry["id"]}
            answers.append(answer)
        replaced = [s for s in manifest["segments"] if s["id"] in inputs]
        manifest["segments"] = [s for s in manifest["segments"] if s["id"] not in inputs] + [entry]
        manifest["answers"] = answers
        gone = replaced + _segments_unlisted(manifest)
        manifest_write(manifest)
    for old in gone:
        segment_delete(old)
    return True


def learned_stats() -> dict:
    """What the store holds, for the dashboard (apps.subsets.selectors.learned_status_get): per table the rows
    of its live answers, answers, complete answers, segments, bytes on disk, when the manifest was written."""
    current = learned_current_path()
    if current is None:
        return {}
    snapshot = learned_snapshot()
    answers = snapshot.answers if snapshot is not None else ()
    tables: dict[str, int] = defaultdict(int)
    for answer in answers:
        tables[answer["table"]] += answer["rows"]
    size = 0
    for segment in snapshot.segments if snapshot is not None else ():
        for path in [segment.path, *segment.path.with_name(segment.path.name + ".words").glob("*")]:
            try:
                size += path.stat().st_size
            except OSError:
                pass
    try:
        modified = dt.datetime.fromtimestamp(current.stat().st_mtime, tz=dt.timezone.utc)
    except OSError:
        modified = None
    segments = len(snapshot.segments) if snapshot is not None else 0
    return {"file_name": f"{current.name} ({segments} segment{'s' if segments != 1 else ''})", "file_bytes": size,
            "modified_at": modified, "tables": dict(tables), "answers": len(answers),
            "complete_answers": sum(1 for a in answers if a["complete"]), "segments": segments}
