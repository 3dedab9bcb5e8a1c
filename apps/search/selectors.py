"""Reads from the local DuckDB subset: time-limited queries and facets."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import duckdb

from .query import CompiledQuery, SearchQuery, compile_search, where_compile
from .store import subset_connection, subset_current_path
from .tables import TableSpec, quote_identifier


@dataclass(frozen=True)
class QueryOutcome:
    columns: list[str]
    rows: list[tuple]
    elapsed_ms: float
    timed_out: bool

    def rows_as_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def subset_search(*, query: SearchQuery, spec: TableSpec, compiled: CompiledQuery | None = None,
                  timeout_ms: int) -> QueryOutcome:
    """The subset's rows for a search: at most query.limit rows matching every filter."""
    compiled = compiled or compile_search(query=query, spec=spec)
    return subset_query_run(compiled=compiled, timeout_ms=timeout_ms)


def subset_query_run(*, compiled: CompiledQuery, timeout_ms: int) -> QueryOutcome:
    """Run one read-only query on its own cursor; interrupt it after timeout_ms.

    DuckDB's interrupt() stops a running query from another thread, so a slow scan ends with
    `timed_out=True` instead of holding a web worker.
    """
    cursor = subset_connection().cursor()
    timer = threading.Timer(timeout_ms / 1000.0, cursor.interrupt)
    started = time.perf_counter()
    timer.start()
    try:
        result = cursor.execute(compiled.sql, compiled.params)
        columns = [d[0] for d in result.description]
        rows = result.fetchall()
        timed_out = False
    except duckdb.InterruptException:
        columns, rows, timed_out = [], [], True
    finally:
        timer.cancel()
        cursor.close()
    return QueryOutcome(columns, rows, round((time.perf_counter() - started) * 1000, 2), timed_out)


def subset_row_count(*, spec: TableSpec) -> int | None:
    cursor = subset_connection().cursor()
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


def search_facets(*, query: SearchQuery, spec: TableSpec, timeout_ms: int, top: int = 10) -> tuple[list[Facet], bool]:
    """Value counts of the table's facet columns over ALL matching subset rows, in one scan."""
    if not spec.facets:
        return [], False
    where = where_compile(query=query, spec=spec)
    cols = [quote_identifier(c) for c in spec.facets]
    sets = ", ".join(f"({c})" for c in cols)
    grouping = ", ".join(f"GROUPING({c})" for c in cols)
    sql = (
        f"SELECT [{grouping}] AS g, {', '.join(f'CAST({c} AS VARCHAR)' for c in cols)}, count(*) AS n "
        f"FROM {quote_identifier(spec.name)} WHERE {where.sql} GROUP BY GROUPING SETS ({sets})"
    )
    outcome = subset_query_run(compiled=CompiledQuery(sql, where.params), timeout_ms=timeout_ms)
    if outcome.timed_out:
        return [], True
    by_column: dict[str, list[tuple[str, int]]] = {c: [] for c in spec.facets}
    for row in outcome.rows:
        flags, values, count = row[0], row[1:-1], row[-1]
        index = list(flags).index(0)  # the one column grouped in this set
        value = values[index]
        by_column[spec.facets[index]].append(("(empty)" if value is None else value, count))
    ranked = {c: sorted(v, key=lambda item: (-item[1], str(item[0]))) for c, v in by_column.items()}
    facets = [Facet(c, v[:top], more=len(v) > top) for c, v in ranked.items()]
    return [f for f in facets if f.values], False


KNOWN_VALUES_MAX = 1000  # a facet column with more distinct values than this is not checked
_known_lock = threading.Lock()
_known_cache: dict[tuple, dict[str, tuple[str, ...]]] = {}


def facet_values_known(*, spec: TableSpec) -> dict[str, tuple[str, ...]]:
    """Every value each low-cardinality (facet) column takes in the subset, sorted; read once per subset
    file. For suggestions in the form, and to warn before a paid warehouse search for a value the
    subset has never seen (a typo, usually)."""
    path = subset_current_path()
    key = (str(path), spec.name, spec.facets)
    with _known_lock:
        if key in _known_cache:
            return _known_cache[key]
    known: dict[str, tuple[str, ...]] = {}
    cursor = subset_connection().cursor()
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


def subset_match_count(*, query: SearchQuery, spec: TableSpec, timeout_ms: int) -> MatchCount | None:
    """How many subset rows match the filters (every page, not just this one): count(*) under a short
    time limit; None when it ran past it (the caller then knows only a lower bound)."""
    where = where_compile(query=query, spec=spec)
    sql = f"SELECT count(*) FROM {quote_identifier(spec.name)} WHERE {where.sql}"
    outcome = subset_query_run(compiled=CompiledQuery(sql, where.params), timeout_ms=timeout_ms)
    if outcome.timed_out or not outcome.rows:
        return None
    return MatchCount(int(outcome.rows[0][0]), True)
