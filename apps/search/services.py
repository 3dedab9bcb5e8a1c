"""Writes: the search log, and building subset table files that are installed atomically."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
from django.conf import settings
from django.utils import timezone

from .errors import SubsetMissing
from .models import SearchLog
from .query import SearchQuery
from .store import (
    SUBSET,
    legacy_subset_path,
    legacy_subset_tables,
    subset_paths,
    table_copy,
    table_current_path,
    table_files,
)
from .vocabulary import vocabulary_copy
from .tables import TABLE_NAME_RE, quote_identifier, quote_string
from .word_index import index_damage_mark, index_verify


def search_log_prune(*, older_than_days: int) -> int:
    """Delete search log rows older than `older_than_days` days (retention); returns how many.

    Fallback requests that pointed at them keep their fallback (the foreign key is set to NULL)."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = SearchLog.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def search_log_create(*, user, query: SearchQuery, rows: int, elapsed_ms: float, needed_fallback: bool,
                      timed_out: bool, source_counts: dict[str, int], plan: dict | None = None) -> SearchLog:
    """One search as it ran, for the dashboard and the learned store's recency: one INSERT (no query before
    it). `plan`: how it was answered (apps.samples.pipeline.AnswerPlan.as_dict())."""
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
        plan=plan or {},
    )


# --- Building subset files ------------------------------------------------------------------

def _threads() -> int:
    return max(1, settings.SEARCH_DUCKDB_THREADS)


@contextmanager
def subset_table_build(
    *, table: str, stdout=None, vocabulary: Callable[[Path, duckdb.DuckDBPyConnection], object] | None = None,
) -> Iterator[tuple[Path, duckdb.DuckDBPyConnection]]:
    """A new file of subset table `table`, installed when the block ends without an error.

    The block fills `conn` (a new, empty DuckDB file) with table `table`; then its word index is built and
    the file installed as the table's CURRENT (store.SwappedFiles.build/install). Only `table`'s folder is
    written: the other tables' files are neither read nor touched. It runs under the table's writer lock,
    so the block reads the table's current file (table_current_path) knowing no other writer replaces it
    meanwhile, and what killed builds left in the folder is deleted first. Tables still in the old
    one-file layout get their own files first (subset_legacy_convert), and that file is retired once none
    of its tables is served from it (subset_legacy_retire). A failure leaves the served file alone.
    `vocabulary(path, conn)`, when given, builds the full data's vocabulary beside the new file
    (apps/search/vocabulary.py) after the block, reading the new rows through `conn`: it is installed, or
    deleted, with the file."""
    subset_legacy_convert(skip=table, stdout=stdout)
    files = table_files(table=table)
    with files.writer_lock():
        with files.build(threads=_threads(), stdout=stdout) as (path, conn):
            yield path, conn
            if vocabulary is not None:
                vocabulary(path, conn)
        files.install(path=path)
    subset_legacy_retire()


def subset_legacy_convert(*, skip: str = "", stdout=None) -> list[str]:
    """Give every table of the old one-file subset (SEARCH_SUBSET_DIR/CURRENT) that has no file of its own
    one, copied as it is (but `skip`, which the caller is rebuilding). Returns the tables converted."""
    if legacy_subset_path() is None:
        return []
    converted = []
    with SUBSET.writer_lock():  # one conversion at a time
        legacy = legacy_subset_path()
        if legacy is None:
            return []
        for table in legacy_subset_tables(legacy):
            files = table_files(table=table)
            if table == skip or files.current_path() is not None:
                continue
            with files.writer_lock():
                if files.current_path() is not None:
                    continue
                with files.build(threads=_threads(), stdout=stdout) as (path, conn):
                    table_copy(conn=conn, source=legacy, table=table)
                files.install(path=path)
            converted.append(table)
            if stdout is not None:
                stdout.write(f"  subset: table {table!r} moved from {legacy.name} to its own file {path.name}\n")
    return converted


def subset_legacy_retire() -> bool:
    """Retire the old one-file subset once each of its tables is served from a file of its own."""
    if legacy_subset_path() is None:
        return False
    with SUBSET.writer_lock():
        legacy = legacy_subset_path()
        if legacy is None or any(table_files(table=t).current_path() is None for t in legacy_subset_tables(legacy)):
            return False
        SUBSET.retire()
    return True


def subset_tables_drop(*, keep: str) -> list[str]:
    """Stop serving every subset table but `keep` (import_subset --replace-all): each table's CURRENT goes,
    then its files; the old one-file layout is retired too."""
    dropped = []
    with SUBSET.writer_lock():
        for table in subset_paths():
            if table == keep:
                continue
            files = table_files(table=table)
            with files.writer_lock():
                files.retire()
            dropped.append(table)
        SUBSET.retire()
    return dropped


def subset_table_write(
    *,
    name: str,
    arrow: pa.Table | None = None,
    parquet: list[str] | str | None = None,
    description: dict | None = None,
    keep_other_tables: bool = True,
    sample_fraction: float = 1.0,
    stdout=None,
    vocabulary: Callable[[Path, duckdb.DuckDBPyConnection], object] | None = None,
) -> Path:
    """Build a new file of subset table `name` (from an Arrow table or Parquet files) and install it
    atomically (subset_table_build); the other tables stay as they are, unless keep_other_tables=False
    drops them.

    `description` (key, searchable, shown, facets, ...) is stored as the table's comment so the
    table describes itself (see tables.py); tables in tables.json need none.
    """
    if not TABLE_NAME_RE.match(name):
        raise ValueError(f"Table name {name!r} must be letters, digits and underscores, starting with a letter.")
    if (arrow is None) == (parquet is None):
        raise ValueError("Give exactly one of arrow= or parquet=.")
    started = time.perf_counter()
    with subset_table_build(table=name, vocabulary=vocabulary) as (path, conn):
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
    if not keep_other_tables:
        subset_tables_drop(keep=name)
    if stdout is not None:
        stdout.write(f"  subset: table {name!r} with {rows:,} rows installed as {path.name} "
                     f"in {time.perf_counter() - started:.1f}s\n")
    return path


def subset_reindex(*, table: str | None = None, stdout=None) -> list[Path]:
    """A new file of `table` (default: of every table) with the same rows and a fresh word index, each
    installed atomically as its own writer: after an upgrade changed the index format, or to repair a
    damaged index folder. Tables still in the old one-file layout get their own files this way."""
    started = time.perf_counter()
    tables = [table] if table else list(subset_paths())
    if not tables:
        raise SubsetMissing(f"No local subset in {SUBSET.directory()} to reindex.")
    converted = set(subset_legacy_convert(stdout=stdout))  # their new files have fresh indexes
    subset_legacy_retire()
    installed = [path for name in tables if name in converted and (path := table_current_path(table=name))]
    for name in tables:
        if name in converted:
            continue
        with subset_table_build(table=name, stdout=stdout) as (path, conn):
            current = table_current_path(table=name)  # read under the table's writer lock
            if current is None:
                raise SubsetMissing(f"No local subset of table {name!r} in {SUBSET.directory()} to reindex.")
            table_copy(conn=conn, source=current, table=name)
            vocabulary_copy(source=current, target=path)  # the same rows: the full data's vocabulary still holds
        installed.append(path)
        if stdout is not None:
            stdout.write(f"  subset table {name!r} reindexed as {path.name}\n")
    if stdout is not None:
        stdout.write(f"  subset reindexed in {time.perf_counter() - started:.1f}s\n")
    return installed


def subset_index_verify() -> dict[str, tuple[str, str] | None]:
    """The background verification of the subset's word indexes (`manage.py verify_index`, beat task
    `search-verify-index`): every file of each table's index checked whole against its checksum. A damaged
    table is marked (`word_index.index_damage_mark`), so every process scans it until `subset_reindex`
    rebuilds it. Returns {table: None when sound, else (state, reason)}."""
    paths = subset_paths()
    found: dict[str, tuple[str, str] | None] = {}
    for path in dict.fromkeys(paths.values()):  # a file of the old one-file layout serves several tables
        for table, problem in index_verify(path).items():
            if paths.get(table) != path:
                continue  # a table of the old file that has a file of its own now
            if problem is not None and problem[0] == "damaged":
                index_damage_mark(path, table, problem[1])
            found[table] = problem
    return found


def subset_vocabulary_build(*, table: str, stdout=None) -> Path:
    """A new file of `table` with the same rows, its index and a fresh vocabulary of its full data (local
    Parquet: `full_data_glob`), installed atomically: for a subset built before vocabularies existed."""
    from .tables import table_spec_get
    from .vocabulary import vocabulary_builder

    builder = vocabulary_builder(spec=table_spec_get(name=table), stdout=stdout)
    if builder is None:
        raise ValueError(f"Table {table!r} has no local full data to build a vocabulary from.")
    with subset_table_build(table=table, stdout=stdout, vocabulary=builder) as (path, conn):
        current = table_current_path(table=table)
        if current is None:
            raise SubsetMissing(f"No local subset of table {table!r} in {SUBSET.directory()}.")
        table_copy(conn=conn, source=current, table=table)
    return path
