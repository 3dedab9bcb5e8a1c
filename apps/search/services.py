"""Writes: running (and logging) a search, building and installing subset files."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from django.conf import settings
from django.utils.module_loading import import_string

from apps.audit.services import audit_record

from .models import SearchLog
from .query import SearchQuery, compile_search, rows_merge
from .selectors import subset_query_run
from .store import SUBSET, subset_connection, subset_current_path, subset_install, subset_tables_copy
from .tables import TABLE_NAME_RE, TableSpec, quote_identifier, quote_string, table_spec_get

logger = logging.getLogger(__name__)


@dataclass
class SearchResult:
    query: SearchQuery
    spec: TableSpec
    columns: list[str]
    rows: list[dict]
    local_count: int
    elapsed_ms: float
    timed_out: bool
    log_id: int | None
    fallback: object | None = None
    sql: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def learned_count(self) -> int:
        """Rows from the learned store (apps.subsets), counted in local_count."""
        return sum(1 for r in self.rows if r.get("_source") == "learned")

    @property
    def source(self) -> str:
        local = ("local", "subset", "learned")  # learned rows are local too (apps.subsets)
        return "local" if all(r.get("_source", "local") in local for r in self.rows) else "mixed"


def search_run(*, user, query: SearchQuery, timeout_ms: int | None = None) -> SearchResult:
    """Run `query` on the local subset (time-limited), log it, and ask for a warehouse fallback
    when the subset had fewer rows than asked. Raises SearchValidationError for bad filters,
    TableNotFound for an unknown table, FileNotFoundError when no subset is installed."""
    subset_connection()  # no subset installed: say so (FileNotFoundError) before judging the filters
    spec = table_spec_get(name=query.table)
    compiled = compile_search(query=query, spec=spec)
    outcome = subset_query_run(compiled=compiled, timeout_ms=timeout_ms or settings.SEARCH_TIMEOUT_MS)
    rows = [dict(zip(outcome.columns, row)) for row in outcome.rows]
    elapsed_ms = outcome.elapsed_ms
    complete = False
    if len(rows) < query.limit and settings.SEARCH_LEARNED_ROWS_HOOK and not outcome.timed_out:
        # Rows earlier fallbacks brought back (apps.subsets): unioned after the subset's, key-deduped.
        began = time.perf_counter()
        try:
            learned = import_string(settings.SEARCH_LEARNED_ROWS_HOOK)(query=query, spec=spec, local_rows=rows)
        except Exception:  # learned rows are an optimisation: the subset's rows must still show
            logger.exception("learned rows hook %s failed", settings.SEARCH_LEARNED_ROWS_HOOK)
        else:
            complete = learned.complete
            if learned.rows:
                rows = [{**row, "_source": "subset"} for row in rows] + list(learned.rows)
        elapsed_ms = round(elapsed_ms + (time.perf_counter() - began) * 1000, 2)
    needs_more = len(rows) < query.limit and not complete  # complete: every matching row is known locally
    log = SearchLog.objects.create(
        user=user if getattr(user, "is_authenticated", False) else None,
        table=spec.name,
        query=query.to_dict(),
        fingerprint=query.fingerprint(),
        limit=query.limit,
        local_rows=len(rows),
        elapsed_ms=elapsed_ms,
        needed_fallback=needs_more,
        timed_out=outcome.timed_out,
    )
    audit_record(
        user=user, action="search", target=query.describe(), outcome="timeout" if outcome.timed_out else "ok",
        detail={"search_log_id": log.id, "local_rows": len(rows), "elapsed_ms": elapsed_ms},
    )
    fallback = None
    if needs_more and settings.SEARCH_FALLBACK_HOOK:
        try:
            hook = import_string(settings.SEARCH_FALLBACK_HOOK)
            fallback = hook(user=user, query=query, local_rows=rows, search_log_id=log.id)
        except Exception:  # the hook promises not to raise; local results must still show if it does
            logger.exception("search fallback hook %s failed", settings.SEARCH_FALLBACK_HOOK)
            fallback = None
    merged = rows
    if fallback is not None and getattr(fallback, "rows", None):
        merged = rows_merge(local=rows, remote=list(fallback.rows), key=spec.key, limit=query.limit)
    return SearchResult(
        query=query, spec=spec, columns=list(outcome.columns) or list(spec.selected), rows=merged,
        local_count=len(rows), elapsed_ms=elapsed_ms, timed_out=outcome.timed_out, log_id=log.id,
        fallback=fallback, sql=compiled.sql,
    )


# --- Building subset files ------------------------------------------------------------------

def subset_table_write(
    *,
    name: str,
    arrow: pa.Table | None = None,
    parquet: list[str] | str | None = None,
    description: dict | None = None,
    keep_other_tables: bool = True,
    sample_fraction: float = 1.0,
    stdout=None,
) -> Path:
    """Build a new subset file holding table `name` (from an Arrow table or Parquet files) plus,
    by default, the other tables of the current subset; then install it atomically.

    `description` (key, searchable, shown, facets, ...) is stored as the table's comment so the
    table describes itself (see tables.py); tables in tables.json need none.
    """
    if not TABLE_NAME_RE.match(name):
        raise ValueError(f"Table name {name!r} must be letters, digits and underscores, starting with a letter.")
    if (arrow is None) == (parquet is None):
        raise ValueError("Give exactly one of arrow= or parquet=.")
    started = time.perf_counter()
    current = subset_current_path()
    with SUBSET.build(threads=max(1, settings.SEARCH_DUCKDB_THREADS)) as (path, conn):
        if keep_other_tables and current is not None:
            subset_tables_copy(conn=conn, source=current, skip=name)
        target = quote_identifier(name)
        if arrow is not None:
            conn.register("incoming", arrow)
            conn.execute(f"CREATE TABLE {target} AS SELECT * FROM incoming")
            conn.unregister("incoming")
        else:
            files = [parquet] if isinstance(parquet, str) else list(parquet)
            sample = f" USING SAMPLE {float(sample_fraction) * 100:.6f}% (bernoulli)" if sample_fraction < 1 else ""
            conn.execute(f"CREATE TABLE {target} AS SELECT * FROM read_parquet(?){sample}", [files])
        if description:
            conn.execute(f"COMMENT ON TABLE {target} IS {quote_string(json.dumps(description))}")
        rows = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    subset_install(path=path)
    if stdout is not None:
        stdout.write(f"  subset: table {name!r} with {rows:,} rows installed as {path.name} "
                     f"in {time.perf_counter() - started:.1f}s\n")
    return path


