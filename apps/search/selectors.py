"""Reads from the local DuckDB subset: time-limited queries (planned over the substring index), facets,
the known values of low-cardinality columns."""
from __future__ import annotations

import array
import math
import operator
import re
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from pyroaring import BitMap

from .deadline import WATCHDOG
from .vocabulary import vocabulary_for
from .word_index import (
    DAMAGED_SUFFIX,
    IndexDamaged,
    Lookup,
    TableIndex,
    file_index,
    index_is_current,
    indexed_tables,
    regex_required_literal,
    worth_verifying,
)
from .context import SearchContext, SearchStore, search_context_build
from .operators import operator_get
from .query import CompiledQuery, SearchQuery, query_validate
from .errors import SubsetMissing
from .store import subset_connection, subset_dir, subset_paths, subset_snapshot, table_snapshot
from .tables import TableSpec, quote_identifier, table_spec_list

# The planner's thresholds (see subset_search).
DENSE_SHARE = 0.002  # candidates in more than this share of the rows: the LIMIT scan finds rows at once
VERIFY_MAX_ROWS = 20_000  # candidate rows verified before the rest is left to a scan from where they stopped
FIRST_ROUND_ROWS = 64  # candidate rows verified in the first round; each later round doubles
POSITION = "__samplescope_position"


@dataclass(frozen=True)
class PlanReport:
    """How a search was answered, kept (SearchAnswer.plan, SearchLog.plan, the API's `plan`, the page's "how
    this was answered"): the plan's kind ("index", "scan" or "empty"), why, how many candidate rows the
    index gave (None: it was not read) and how many of them were read and verified."""

    kind: str
    reason: str
    candidates: int | None = None
    read: int | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "reason": self.reason, "candidates": self.candidates, "read": self.read}

    def describe(self) -> str:
        """"index: candidate rows from the word postings (1,204 candidates, 64 read)"."""
        counts = []
        if self.candidates is not None:
            counts.append(f"{self.candidates:,} candidate{'s' if self.candidates != 1 else ''}")
        if self.read is not None:
            counts.append(f"{self.read:,} read")
        return f"{self.kind}: {self.reason}" + (f" ({', '.join(counts)})" if counts else "")


@dataclass(frozen=True)
class QueryOutcome:
    columns: list[str]
    rows: list[tuple]
    elapsed_ms: float
    timed_out: bool
    plan: PlanReport | None = None  # set by indexed_search

    def rows_as_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, row)) for row in self.rows]


@dataclass
class SearchPlan:
    """How subset_search answers: "scan" (the compiled query on DuckDB), "empty" (no row can match) or
    "index" (candidate rows from the index, verified in table order)."""

    kind: str
    reason: str
    index: TableIndex | None = None
    candidates: BitMap | None = None
    needles: list[tuple[str, str]] = field(default_factory=list)  # (column, value every match contains)

    def report(self, *, read: int | None = None, reason: str = "") -> PlanReport:
        return PlanReport(kind=self.kind, reason=reason or self.reason,
                          candidates=None if self.candidates is None else len(self.candidates), read=read)


def search_plan(*, query: SearchQuery, spec: TableSpec, index: TableIndex | None,
                validated: tuple | list | None = None) -> SearchPlan:
    """Choose by posting sizes. Filters on indexed text columns narrow by their operator's `narrows`
    (apps.search.operators): contains / icontains, startswith, eq / in (each value's words) and regexes
    with a required literal. Each such filter is first a lookup (its words and an upper bound of its rows,
    no postings read); the candidates are the intersection of their rows, smallest first, less those whose
    code (TableIndex.coded: label, lang, …) an eq / in filter does not ask for. A single lookup bounded above
    DENSE_SHARE of the rows (times the share of rows those filters keep) is not read at all: the LIMIT scan
    answers it. `validated`: query_validate's answer, when the caller has it (SearchContext.validated)."""
    if index is None:
        return SearchPlan("scan", "no substring index for this table")
    lookups: list[tuple[int, list[Lookup]]] = []
    needles: list[tuple[str, str]] = []
    coded: list[tuple[str, list[str]]] = []  # eq / in on a column with a code per row: candidates are kept by it
    for flt, value in query_validate(query=query, spec=spec) if validated is None else validated:
        if flt.column in index.coded and flt.op in ("eq", "in"):
            coded.append((flt.column, value if isinstance(value, list) else [value]))
        if flt.column not in index.columns:
            continue
        found = _filter_lookups(index, flt.column, operator_get(flt.op).narrows, value)
        if found is None:
            continue
        needles.append((flt.column, ",".join(value) if isinstance(value, list) else value))
        lookups.append((min(sum(lookup.estimate for lookup in found), index.rows), found))
    if not lookups:
        return SearchPlan("scan", "no filter the index can narrow (short needles, frequent fragments, other operators)")
    lookups.sort(key=lambda item: item[0])
    dense = DENSE_SHARE * index.rows
    # What the coded columns' filters keep of the rows (as if independent of the needles): `text contains
    # since` (1.2% of the rows) with `label = science` (10%) leaves ~0.12%, few enough to read by position.
    kept = math.prod(index.codes_share(column, wanted) for column, wanted in coded)
    if len(lookups) == 1 and lookups[0][0] * kept > dense:
        return SearchPlan("scan", "frequent: the LIMIT scan finds rows at once", index, None, needles)
    candidates: BitMap | None = None
    for _, found in lookups:
        if candidates is not None and worth_verifying(len(candidates), sum(lookup.words for lookup in found)):
            continue  # few candidates left: verifying them costs less than reading these postings
        rows = BitMap.union(BitMap(), *(index.lookup_rows(lookup, within=candidates) for lookup in found))
        candidates = rows
        if not candidates:
            break
    if candidates and coded:  # drop the candidates whose label / lang / … is not the one asked for
        positions = np.frombuffer(candidates.to_array(), dtype=np.uint32).astype(np.int64)
        for column, wanted in coded:
            positions = positions[index.codes_keep(column, wanted, positions)]
        candidates = BitMap(array.array("I", positions.astype(np.uint32).tobytes()))
    if not candidates:
        return SearchPlan("empty", "no row holds the needles' words (and the values asked of coded columns)",
                          index, candidates, needles)
    if query.order is not None or query.after is not None or query.seed is not None:
        return SearchPlan("scan", "sorted or paged: the scan's ORDER BY and keyset answer", index, candidates, needles)
    if len(candidates) > dense:
        return SearchPlan("scan", "frequent: the LIMIT scan finds rows at once", index, candidates, needles)
    return SearchPlan("index", "candidate rows from the word postings", index, candidates, needles)


def _filter_lookups(index: TableIndex, column: str, narrows: str, value) -> list[Lookup] | None:
    """What the index knows of one filter: lookups any one of which a kept row satisfies (several for
    `in`), or None when the index cannot narrow it."""
    if narrows == "whole":  # eq, or in: any of the values
        found = []
        for item in value if isinstance(value, list) else [value]:
            lookup = index.lookup(column, item, whole=True)
            if lookup is None:
                return None
            found.append(lookup)
        return found
    if narrows == "regex":
        literal = regex_required_literal(value)
        lookup = index.lookup(column, literal) if literal else None
    elif narrows in ("contains", "start"):
        lookup = index.lookup(column, value, at_start=narrows == "start")
    else:
        return None
    return None if lookup is None else [lookup]


def subset_search(*, query: SearchQuery | None = None, spec: TableSpec | None = None,
                  compiled: CompiledQuery | None = None, timeout_ms: int,
                  context: SearchContext | None = None) -> QueryOutcome:
    """The subset's rows for a search: at most query.limit rows matching every filter, the first ones in
    table order (as the LIMIT scan returns them), whichever plan answers.

    The planner (search_plan) uses the subset file's word index where it prunes: candidate blocks
    are the intersection of the needles' gram postings. A round of candidate blocks at a time (in
    table order, rounds doubling), each needle's column is read from the index's column files and
    kept where its lowercased value contains the lowercased needle (a superset of the matches); the
    surviving rows are read whole and DuckDB runs the query's own WHERE over them, so the rows are
    exactly those the scan returns. Past VERIFY_MAX_ROWS candidate rows without enough matches, a
    DuckDB scan continues after the last verified row. Frequent terms and filters the index cannot
    narrow run the scan.

    `context` (apps.search.context, built once per request) names the subset file and holds the validated
    filters; without one, one is built here (the current file, the filters validated now)."""
    context = context or search_context_build(query=query, spec=spec)
    path, conn = context.snapshot
    return indexed_search(path=path, conn=conn, compiled=compiled, timeout_ms=timeout_ms, context=context)


def indexed_search(*, path: Path, conn: duckdb.DuckDBPyConnection, query: SearchQuery | None = None,
                   spec: TableSpec | None = None, compiled: CompiledQuery | None = None, timeout_ms: int,
                   context: SearchContext | None = None) -> QueryOutcome:
    """subset_search over any indexed DuckDB file of SwappedFiles (the subset, the learned rows): `conn`
    is a read-only connection to `path`, whose index folder answers where it can. The outcome's `plan`
    says how (PlanReport)."""
    if context is None:
        context = search_context_build(query=query, spec=spec,
                                       store=SearchStore(snapshot=None, specs=(spec,), files={spec.name: (path, conn)}))
    query, spec = context.query, context.spec
    compiled = compiled or context.compiled
    started = time.perf_counter()
    indexes = file_index(path)
    try:
        plan = search_plan(query=query, spec=spec, index=indexes.table(spec.name), validated=context.validated)
        if plan.kind == "index":
            return _index_search(context=context, plan=plan, conn=conn, started=started, timeout_ms=timeout_ms)
    except IndexDamaged as exc:  # this search and the table's later ones scan; logged once
        indexes.damaged(spec.name, exc)
        plan = SearchPlan("scan", f"index damaged: {exc.reason}")
    if plan.kind == "empty":
        return QueryOutcome(list(spec.selected), [], _ms(started), False, plan.report(read=0))
    return replace(subset_query_run(compiled=compiled, timeout_ms=timeout_ms, conn=conn), plan=plan.report())


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


_verifiers = threading.local()
# Column types whose values Arrow's to_pylist gives exactly as DuckDB's fetchall does.
PYTHON_SAFE_TYPES = {"VARCHAR", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "USMALLINT",
                     "UTINYINT", "DOUBLE", "BOOLEAN", "DATE", "TIMESTAMP"}


# The only non-ASCII characters whose lowercase holds an ASCII letter, in DuckDB's lower (its ILIKE) or in
# Python's str.lower: İ (DuckDB "i", Python "i̇") and the Kelvin sign (both "k"). Every other character
# lowers to non-ASCII in both, so an ASCII needle matches DuckDB's ILIKE exactly where it is in
# str.lower() of a value without these. tests/search/test_index.py re-derives the set from DuckDB.
LOWERS_TO_ASCII = re.compile("[\u0130\u212a]")


class _Undecided(Exception):
    """A Python check cannot promise DuckDB's answer for this row (ILIKE on non-ASCII text)."""


def _python_value(kind: str, value):
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    return value


def _python_check(flt, value, kind: str):
    """A function (columns, i) -> bool that decides the filter exactly as DuckDB's SQL for it, or None."""
    c, op = flt.column, flt.op
    if op == "contains":
        return lambda cols, i: (x := cols[c][i]) is not None and value in x
    if op == "not_contains":
        return lambda cols, i: (x := cols[c][i]) is None or value not in x
    if op == "startswith":
        return lambda cols, i: (x := cols[c][i]) is not None and x.startswith(value)
    if op == "endswith":
        return lambda cols, i: (x := cols[c][i]) is not None and x.endswith(value)
    if op == "icontains":
        if not value.isascii():
            return None
        folded = value.lower()
        ascii_from = LOWERS_TO_ASCII.search

        def icontains(cols, i):
            x = cols[c][i]
            if x is None:
                return False
            if not x.isascii() and ascii_from(x):
                raise _Undecided
            return folded in x.lower()
        return icontains
    if op == "isnull":
        return lambda cols, i: (cols[c][i] is None) == value
    if op == "in":
        wanted = {_python_value(kind, v) for v in value}
        return lambda cols, i: (x := cols[c][i]) is not None and x in wanted
    if op in ("eq", "ne", "gt", "gte", "lt", "lte"):
        v = _python_value(kind, value)
        if op == "eq":
            return lambda cols, i: (x := cols[c][i]) is not None and x == v
        if op == "ne":  # IS DISTINCT FROM
            return lambda cols, i: cols[c][i] is None or cols[c][i] != v
        # Text compares by code point in Python, as DuckDB's VARCHAR does by its UTF-8 bytes (the same order).
        compare = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}[op]
        if kind == "float" and op in ("gt", "gte"):  # DuckDB orders NaN above every number (v is finite)
            return lambda cols, i: (x := cols[c][i]) is not None and (x != x or compare(x, v))
        return lambda cols, i: (x := cols[c][i]) is not None and compare(x, v)
    return None  # regex: RE2 is DuckDB's


def _python_filter(query: SearchQuery, spec: TableSpec, validated=None):
    """Checks for every filter, when each can be decided in Python exactly as DuckDB would; else None.
    `validated`: query_validate's answer, when the caller has it."""
    checks = []
    for flt, value in query_validate(query=query, spec=spec) if validated is None else validated:
        if spec.columns.get(flt.column, "").upper() not in PYTHON_SAFE_TYPES:
            return None
        check = _python_check(flt, value, spec.kind(flt.column))
        if check is None:
            return None
        checks.append((flt.column, check))
    if any(spec.columns.get(c, "").upper() not in PYTHON_SAFE_TYPES for c in spec.selected):
        return None
    return checks


def _python_verify(checks, rows: pa.Table, columns: tuple[str, ...], limit: int) -> list[tuple] | None:
    """The first `limit` rows passing every check, as DuckDB's fetchall would give them; None when a row
    cannot be decided in Python."""
    cols = {name: rows.column(name).to_pylist() for name in {column for column, _ in checks}}
    kept = []
    try:
        for i in range(rows.num_rows):
            if all(check(cols, i) for _, check in checks):
                kept.append(i)
                if len(kept) >= limit:
                    break
    except _Undecided:
        return None
    if not kept:
        return []
    picked = rows.select(list(columns)).take(pa.array(kept)).to_pylist()
    return [tuple(row[name] for name in columns) for row in picked]


_verifier_base: list[duckdb.DuckDBPyConnection] = []
_verifier_lock = threading.Lock()


def _verifier() -> duckdb.DuckDBPyConnection:
    """This thread's cursor on the process's in-memory DuckDB (one thread): runs the query's WHERE over
    candidate rows, so they are judged by DuckDB itself, without waking the subset connection's thread
    pool. Opening an in-memory database costs ~30 ms, a cursor on it nothing: one database per process."""
    conn = getattr(_verifiers, "conn", None)
    if conn is None:
        with _verifier_lock:
            if not _verifier_base:
                _verifier_base.append(duckdb.connect(config={"threads": 1}))
            conn = _verifiers.conn = _verifier_base[0].cursor()
    return conn


def subset_warm() -> list[str]:
    """Open the current subset, its tables' indexes and the verifier, and read the facet columns' known
    values, now (a web worker calls this before it serves: at 10M rows opening the index's word lists
    takes ~0.4 s and the known values ~0.3 s, which the first searches would pay). Returns the tables
    whose index is open."""
    paths = subset_paths()
    if not paths:
        raise SubsetMissing(f"No local subset in {subset_dir()}.")
    _verifier().execute("SELECT 1").fetchall()
    subset_snapshot()  # this thread's connection that sees every table (ATTACHed files: ~15 ms the first time)
    opened = []
    for name in paths:  # each table's own file and index
        snapshot = table_snapshot(table=name)
        snapshot.conn.execute("SELECT 1").fetchall()
        vocabulary_for(snapshot.path, table=name)  # checked whole at open (~1 s at 50M rows of full data)
        table = file_index(snapshot.path).table(name)
        if table is None:
            continue
        try:
            if table.rows:  # first use of the row file's decompressor and of every column's word lookup
                table.rows_at(np.array([0], dtype=np.int64))
            for column in table.columns:
                table.needle_rows(column, "warm")
        except IndexDamaged as exc:
            file_index(snapshot.path).damaged(name, exc)
            continue
        for column in table.coded:  # rows per code (~20 ms a column at 10M rows)
            table.codes_share(column, [])
        opened.append(name)
    for spec in table_spec_list():  # the known values of low-cardinality columns: a DISTINCT over the whole
        if spec.facets:  # table (~0.3 s at 10M rows), which every short answer with an eq/in filter needs
            facet_values_known(spec=spec)
    return opened


def _index_search(*, context: SearchContext, plan: SearchPlan, conn, started: float,
                  timeout_ms: int) -> QueryOutcome:
    query, spec = context.query, context.spec
    index = plan.index
    candidates = np.frombuffer(plan.candidates.to_array(), dtype=np.uint32).astype(np.int64)
    where = context.where
    columns = ", ".join(quote_identifier(c) for c in spec.selected)
    found: list[tuple] = []
    done = 0
    round_rows = FIRST_ROUND_ROWS
    checks = _python_filter(query, spec, context.validated)
    while done < len(candidates) and len(found) < query.limit:
        if done >= VERIFY_MAX_ROWS and index.dense_rowid:
            last = int(candidates[done - 1]) + 1  # every candidate before it was verified
            rest = subset_query_run(
                compiled=CompiledQuery(
                    f"SELECT {columns} FROM {quote_identifier(spec.name)} WHERE rowid >= {last} "
                    f"AND ({where.sql}) LIMIT {int(query.limit - len(found))}", where.params),
                timeout_ms=max(1, timeout_ms - int(_ms(started))), conn=conn)
            if rest.timed_out:
                return QueryOutcome(list(spec.selected), [], _ms(started), True,
                                    plan.report(read=done, reason=plan.reason + "; then a scan from the last verified row"))
            found.extend(rest.rows)
            return QueryOutcome(list(spec.selected), found[: query.limit], _ms(started), False,
                                plan.report(read=done, reason=plan.reason + "; then a scan from the last verified row"))
        positions = candidates[done: done + round_rows]
        done += len(positions)
        round_rows *= 2
        rows = index.rows_at(positions)
        decided = _python_verify(checks, rows, spec.selected, query.limit - len(found)) if checks else None
        if decided is not None:
            found.extend(decided)
            continue
        rows = rows.append_column(POSITION, pa.array(positions))
        verifier = _verifier()
        verifier.register("candidates", rows)
        try:
            found.extend(verifier.execute(
                f"SELECT {columns} FROM candidates WHERE {where.sql} ORDER BY {POSITION} "
                f"LIMIT {int(query.limit - len(found))}", where.params).fetchall())
        finally:
            verifier.unregister("candidates")
    return QueryOutcome(list(spec.selected), found[: query.limit], _ms(started), False, plan.report(read=done))


def subset_query_run(*, compiled: CompiledQuery, timeout_ms: int,
                     conn: duckdb.DuckDBPyConnection | None = None) -> QueryOutcome:
    """Run one read-only query on its own cursor; interrupt it after timeout_ms.

    DuckDB's interrupt() stops a running query from another thread, so a slow scan ends with
    `timed_out=True` instead of holding a web worker.
    """
    cursor = (conn or subset_connection()).cursor()
    started = time.perf_counter()
    deadline = WATCHDOG.schedule(timeout_ms / 1000.0, cursor.interrupt)
    try:
        result = cursor.execute(compiled.sql, compiled.params)
        columns = [d[0] for d in result.description]
        rows = result.fetchall()
        timed_out = False
    except duckdb.InterruptException:
        columns, rows, timed_out = [], [], True
    finally:
        WATCHDOG.cancel(deadline)
        cursor.close()
    return QueryOutcome(columns, rows, round((time.perf_counter() - started) * 1000, 2), timed_out)


def subset_row_count(*, spec: TableSpec, store: SearchStore | None = None) -> int | None:
    cursor = (store.subset(spec.name)[1] if store is not None else table_snapshot(table=spec.name).conn).cursor()
    try:
        return cursor.execute(f"SELECT count(*) FROM {quote_identifier(spec.name)}").fetchone()[0]
    except duckdb.Error:
        return None
    finally:
        cursor.close()


@dataclass(frozen=True)
class Facet:
    column: str
    values: list[tuple[str, int]]  # (value, matching rows), most frequent first
    more: bool = False  # the column has more values than shown


def search_facets(*, query: SearchQuery | None = None, spec: TableSpec | None = None, timeout_ms: int,
                  top: int = 10, context: SearchContext | None = None,
                  columns: tuple[str, ...] | None = None) -> tuple[list[Facet], bool]:
    """Value counts of the table's facet columns (or of `columns`) over ALL matching subset rows, in one scan
    (of the context's subset file: one is built when not given)."""
    context = context or search_context_build(query=query, spec=spec)
    spec = context.spec
    facet_columns = tuple(columns) if columns is not None else spec.facets
    if not facet_columns:
        return [], False
    where = context.where
    cols = [quote_identifier(c) for c in facet_columns]
    sets = ", ".join(f"({c})" for c in cols)
    grouping = ", ".join(f"GROUPING({c})" for c in cols)
    sql = (
        f"SELECT [{grouping}] AS g, {', '.join(f'CAST({c} AS VARCHAR)' for c in cols)}, count(*) AS n "
        f"FROM {quote_identifier(spec.name)} WHERE {where.sql} GROUP BY GROUPING SETS ({sets})"
    )
    outcome = subset_query_run(compiled=CompiledQuery(sql, where.params), timeout_ms=timeout_ms,
                               conn=context.snapshot[1])
    if outcome.timed_out:
        return [], True
    by_column: dict[str, list[tuple[str, int]]] = {c: [] for c in facet_columns}
    for row in outcome.rows:
        flags, values, count = row[0], row[1:-1], row[-1]
        index = list(flags).index(0)  # the one column grouped in this set
        value = values[index]
        by_column[facet_columns[index]].append(("(empty)" if value is None else value, count))
    ranked = {c: sorted(v, key=lambda item: (-item[1], str(item[0]))) for c, v in by_column.items()}
    facets = [Facet(c, v[:top], more=len(v) > top) for c, v in ranked.items()]
    return [f for f in facets if f.values], False


KNOWN_VALUES_MAX = 1000  # a facet column with more distinct values than this is not checked
_known_lock = threading.Lock()
_known_cache: dict[tuple, dict[str, tuple[str, ...]]] = {}


def facet_values_known(*, spec: TableSpec, store: SearchStore | None = None) -> dict[str, tuple[str, ...]]:
    """Every value each low-cardinality (facet) column takes in the subset (the request's file, `store`,
    else the current one), sorted; read once per subset file. For suggestions in the form, and to warn
    before a paid warehouse search for a value the subset has never seen (a typo, usually)."""
    if store is not None:
        path, conn = store.subset(spec.name)
    else:
        taken = table_snapshot(table=spec.name)
        path, conn = taken.path, taken.conn
    key = (str(path), spec.name, spec.facets)
    with _known_lock:
        if key in _known_cache:
            return _known_cache[key]
    known: dict[str, tuple[str, ...]] = {}
    cursor = conn.cursor()
    try:
        for column in spec.facets:
            col = quote_identifier(column)
            values = cursor.execute(f"SELECT DISTINCT CAST({col} AS VARCHAR) FROM {quote_identifier(spec.name)} "
                                    f"WHERE {col} IS NOT NULL LIMIT {KNOWN_VALUES_MAX + 1}").fetchall()
            if len(values) <= KNOWN_VALUES_MAX:
                known[column] = tuple(sorted(v[0] for v in values))
    except duckdb.Error:
        known = {}
    finally:
        cursor.close()
    with _known_lock:
        _known_cache[key] = known
    return known


@dataclass(frozen=True)
class MatchCount:
    count: int
    exact: bool  # False: at least `count` (counting ran past its time limit)


def subset_match_count(*, query: SearchQuery | None = None, spec: TableSpec | None = None, timeout_ms: int,
                       context: SearchContext | None = None) -> MatchCount | None:
    """How many subset rows match the filters (every page, not just this one): count(*) under a short
    time limit; None when it ran past it (the caller then knows only a lower bound)."""
    context = context or search_context_build(query=query, spec=spec)
    where = context.where
    sql = f"SELECT count(*) FROM {quote_identifier(context.spec.name)} WHERE {where.sql}"
    outcome = subset_query_run(compiled=CompiledQuery(sql, where.params), timeout_ms=timeout_ms,
                               conn=context.snapshot[1])
    if outcome.timed_out or not outcome.rows:
        return None
    return MatchCount(int(outcome.rows[0][0]), True)


def subset_index_stale() -> list[str]:
    """Tables of the current subset whose substring index is missing or of another format version: their
    searches scan until `subset_reindex` (or any rebuild) makes a new one."""
    stale = []
    for table, path in subset_paths().items():
        cursor = table_snapshot(table=table).conn.cursor()
        try:
            covered = indexed_tables(cursor, [table])
        finally:
            cursor.close()
        stale.extend(name for name in covered if not index_is_current(path, name))
    return stale


def subset_index_problems() -> dict[str, tuple[str, str]]:
    """The current subset's tables whose index cannot serve, in this process: {table: (state, reason)}, state
    "stale" (another format version or tokenizer) or "damaged" (found at open, by a read, or by index_verify).
    Opens the indexes not yet opened, with the checks opening makes."""
    problems: dict[str, tuple[str, str]] = {}
    for table, path in subset_paths().items():
        cursor = table_snapshot(table=table).conn.cursor()
        try:
            covered = indexed_tables(cursor, [table])
        finally:
            cursor.close()
        if table not in covered:
            continue
        indexes = file_index(path)
        indexes.table(table)
        marker = indexes.folder / f"{table}{DAMAGED_SUFFIX}"  # index_verify found damage after this process opened it
        if table not in indexes.problems and marker.exists():
            indexes.damaged(table, IndexDamaged(table, marker.read_text().strip() or "marked damaged"))
        if table in indexes.problems:
            problems[table] = indexes.problems[table]
    return problems
