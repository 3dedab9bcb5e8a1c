"""Writes: the search log, and building subset files that are installed atomically."""
from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from django.conf import settings
from django.utils import timezone

from .errors import SubsetMissing
from .models import SearchLog
from .query import SearchQuery
from .store import SUBSET, subset_current_path, subset_install, subset_tables_copy
from .tables import TABLE_NAME_RE, quote_identifier, quote_string
from .word_index import index_damage_mark, index_verify


def search_log_prune(*, older_than_days: int) -> int:
    """Delete search log rows older than `older_than_days` days (retention); returns how many.

    Fallback requests that pointed at them keep their fallback (the foreign key is set to NULL)."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = SearchLog.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def search_log_create(*, user, query: SearchQuery, rows: int, elapsed_ms: float, needed_fallback: bool,
                      timed_out: bool, source_counts: dict[str, int]) -> SearchLog:
    """One search as it ran, for the dashboard and the learned store's recency."""
    return SearchLog.objects.create(
        user=user if getattr(user, "is_authenticated", False) else None,
        table=query.table,
        query=query.to_dict(),
        fingerprint=query.fingerprint(),
        limit=query.limit,
        local_rows=rows,
        source_counts=source_counts,
        elapsed_ms=elapsed_ms,
        needed_fallback=needed_fallback,
        timed_out=timed_out,
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
    with SUBSET.writer_lock():  # copy, build and install as one writer: no other write is lost
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


def subset_reindex(*, stdout=None) -> Path:
    """A new subset file with the same tables and a fresh substring index, installed atomically (as one
    writer): after an upgrade changed the index format, or to repair a damaged index folder."""
    started = time.perf_counter()
    with SUBSET.writer_lock():
        current = subset_current_path()
        if current is None:
            raise SubsetMissing(f"No local subset in {SUBSET.directory()} to reindex.")
        with SUBSET.build(threads=max(1, settings.SEARCH_DUCKDB_THREADS), stdout=stdout) as (path, conn):
            subset_tables_copy(conn=conn, source=current, skip="")
        subset_install(path=path)
    if stdout is not None:
        stdout.write(f"  subset reindexed as {path.name} in {time.perf_counter() - started:.1f}s\n")
    return path


def subset_index_verify() -> dict[str, tuple[str, str] | None]:
    """The background verification of the current subset's word index (`manage.py verify_index`, beat task
    `search-verify-index`): every file checked whole against its checksum. A damaged table is marked
    (`word_index.index_damage_mark`), so every process scans it until `subset_reindex` rebuilds it.
    Returns {table: None when sound, else (state, reason)}."""
    path = subset_current_path()
    if path is None:
        return {}
    found = index_verify(path)
    for table, problem in found.items():
        if problem is not None and problem[0] == "damaged":
            index_damage_mark(path, table, problem[1])
    return found
