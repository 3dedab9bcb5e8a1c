"""Writes: rebuilding the subset from the warehouse, and learning the rows fallbacks bring back.

Refresh: sample the full table (DuckDB over the full Parquet files on the local backend; an Athena
UNLOAD to S3, downloaded with boto3, on Athena) into a NEW DuckDB file of that table alone, verify it (rows > 0, the
table's columns and types), then swap it in (apps.search.services.subset_table_build: a durable, atomic
replace of the table's CURRENT pointer; the other tables' files are not touched). Anything failing before
the swap deletes the new file and leaves the served subset alone.
One refresh per table at a time: SubsetRefresh.running_key is unique while a refresh runs.
"""
from __future__ import annotations

import logging
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.services import audit_record
from apps.search.coverage import coverage_insert, coverage_keys
from apps.search.services import subset_table_build
from apps.search.store import SUBSET, disk_full, table_comment, table_current_path
from apps.search.tables import quote_identifier, quote_string, table_spec_get
from apps.search.vocabulary import vocabulary_builder
from apps.warehouse.backends.athena import AthenaBackend

from .models import SubsetRefresh

logger = logging.getLogger(__name__)

METHODS = ("hash", "system", "bernoulli")
HASH_BUCKETS = 1_000_000


class RefreshBusy(RuntimeError):
    """Another refresh of the same table is running."""


class RefreshVerificationError(RuntimeError):
    """The new subset file is not fit to serve (empty, or not the table's schema)."""




# --- sampling predicates ---------------------------------------------------------------------

def sample_clause(*, method: str, fraction: float, key: str, dialect: str) -> str:
    """The SQL that keeps ~fraction of the rows, appended after `FROM <relation>`.

    hash: a WHERE on a hash of the key (same rows every time for the same salt and fraction; new rows
    join by their own hash). system / bernoulli: the engine's sampling clause.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown sample method {method!r}; use one of {', '.join(METHODS)}")
    if not 0 < fraction <= 1:
        raise ValueError("The fraction must be in (0, 1].")
    percent = f"{fraction * 100:.6g}"
    threshold = int(round(fraction * HASH_BUCKETS))
    if method == "hash":
        return f" WHERE {sample_hash(key=key, dialect=dialect)} < {threshold}"
    if dialect == "duckdb":
        return f" USING SAMPLE {percent}% ({method})"
    return f" TABLESAMPLE {method.upper()} ({percent})"


def sample_hash(*, key: str, dialect: str) -> str:
    """The hash sample's SQL bucket of a row (0..HASH_BUCKETS-1): the `hash` method keeps the lowest ones, and the
    coverage rows of a cell (apps.search.coverage) are taken in the same order, so a cell's sampled rows come first."""
    salt = quote_string(settings.SUBSET_SAMPLE_SALT)
    if dialect == "duckdb":
        return f"hash(CAST({quote_identifier(key)} AS VARCHAR) || {salt}) % {HASH_BUCKETS}"
    return f"abs(from_big_endian_64(xxhash64(to_utf8(CAST({quote_identifier(key)} AS varchar) || {salt}))) % {HASH_BUCKETS})"


def default_method(backend: str) -> str:
    return settings.SUBSET_SAMPLE_METHOD or ("system" if backend == "athena" else "hash")


# --- the refresh -----------------------------------------------------------------------------

def subset_refresh(
    *,
    table: str | None = None,
    fraction: float | None = None,
    method: str | None = None,
    backend: str | None = None,
    trigger: str = "command",
    stdout=None,
    athena_backend=None,
    s3_client=None,
) -> SubsetRefresh:
    """Rebuild the subset table from the warehouse and swap it in. Returns the finished run (state
    succeeded or failed); raises RefreshBusy when another refresh of the table holds the lock and
    ValueError for bad arguments."""
    spec = table_spec_get(name=table)
    backend = backend or settings.WAREHOUSE_BACKEND
    if backend not in ("local", "athena"):
        raise ValueError(f"Unknown backend {backend!r}: use 'local' or 'athena'")
    fraction = settings.SUBSET_DEFAULT_FRACTION if fraction is None else float(fraction)
    method = method or default_method(backend)
    sample_clause(method=method, fraction=fraction, key=spec.key, dialect="duckdb")  # validates
    if not spec.columns:
        raise ValueError(f"Table {spec.name!r} has no known columns: no subset and no full data to read them from.")
    run = _lock(table=spec.name, backend=backend, method=method, fraction=fraction, trigger=trigger)
    started = time.perf_counter()
    out = stdout or _Null()
    out.write(f"Refreshing subset table {spec.name!r}: {fraction:.4%} by {method} from the {backend} warehouse "
              f"(refresh #{run.pk})\n")
    try:
        with tempfile.TemporaryDirectory(prefix="subset-refresh-") as workdir:
            if backend == "athena":
                files = _athena_unload(run=run, spec=spec, fraction=fraction, method=method, workdir=Path(workdir),
                                       athena_backend=athena_backend, s3_client=s3_client, out=out)
                relation, clause = f"read_parquet({_sql_string_list(files)})", ""
                coverage = _athena_coverage(run=run, spec=spec, sample=relation, fraction=fraction,
                                            workdir=Path(workdir), athena_backend=athena_backend, s3_client=s3_client,
                                            out=out)
            else:
                relation = f"read_parquet({quote_string(spec.full_data_glob)})"
                clause = sample_clause(method=method, fraction=fraction, key=spec.key, dialect="duckdb")
                SubsetRefresh.objects.filter(pk=run.pk).update(statement=f"SELECT * FROM {relation}{clause}")
                coverage = _local_coverage(spec=spec, relation=relation, fraction=fraction)
            # The full data's vocabulary is rebuilt with the sample and installed with it (local backend: DuckDB
            # over the full Parquet; Athena: its statements UNLOADed, their cost added to this refresh's).
            if backend == "local":
                vocabulary = vocabulary_builder(spec=spec, stdout=out)
            elif settings.SUBSET_VOCABULARY_ON_ATHENA:
                vocabulary = _athena_vocabulary_builder(run=run, spec=spec, workdir=Path(workdir),
                                                        athena_backend=athena_backend, s3_client=s3_client, out=out)
            else:
                vocabulary = None
            path, rows = _build(spec=spec, relation=relation, clause=clause, out=out,
                                vocabulary=vocabulary, coverage=coverage)  # and installs it
    except BaseException as exc:
        # Exception: the run fails and is returned. KeyboardInterrupt / SystemExit (SIGTERM, Ctrl-C): the run is
        # ended the same way (never left "running"), then the interruption goes on up. The build deleted its file.
        error = _error_text(exc)
        if disk_full(exc):
            error = (f"could not write the new subset file: the disk is full (or the file is over the size limit); "
                     f"free space under {SUBSET.directory()} and run the refresh again. {error}")
        # A full disk needs space, not a traceback; anything else gets one in the log.
        logger.error("subset refresh #%s failed: %s", run.pk, error, exc_info=not disk_full(exc))
        out.write(f"  refresh #{run.pk} FAILED, the current subset keeps serving: {error}\n")
        failed = _end(run=run, state=SubsetRefresh.State.FAILED, started=started, error=error)
        if not isinstance(exc, Exception):
            raise
        return failed
    run = _end(run=run, state=SubsetRefresh.State.SUCCEEDED, started=started, rows=rows, file_name=path.name,
               file_bytes=path.stat().st_size)
    out.write(f"  installed {path.name}: {rows:,} rows in {run.duration_ms / 1000:.1f}s "
              f"({rows / max(run.duration_ms / 1000, 1e-3):,.0f} rows/s)\n")
    return run


def _error_text(exc: BaseException) -> str:
    """`Type: message`, plus the notes added on the way up (e.g. that the Athena UNLOAD was stopped)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return "; ".join([text, *getattr(exc, "__notes__", ())])


class _Null:
    def write(self, _text: str) -> None:
        pass


def _sql_string_list(files: list[Path]) -> str:
    return "[" + ", ".join(quote_string(str(f)) for f in files) + "]"


def _lock(*, table: str, backend: str, method: str, fraction: float, trigger: str) -> SubsetRefresh:
    fields = dict(table=table, backend=backend, method=method, fraction=fraction, trigger=trigger)
    for _ in range(2):
        try:
            with transaction.atomic():
                return SubsetRefresh.objects.create(**fields, running_key=table, heartbeat_at=timezone.now())
        except IntegrityError:
            holder = SubsetRefresh.objects.filter(running_key=table).first()
            if holder is None:
                continue  # it ended a moment ago
            stale_before = timezone.now() - timedelta(seconds=settings.SUBSET_REFRESH_STALE_AFTER_SECONDS)
            if (holder.heartbeat_at or holder.started_at) >= stale_before:
                raise RefreshBusy(f"Refresh #{holder.pk} of {table!r} is running since "
                                  f"{holder.started_at:%Y-%m-%d %H:%M:%S}; try again when it has finished.")
            # Its process died without cleaning up: release the lock and take it.
            SubsetRefresh.objects.filter(pk=holder.pk, running_key=table).update(
                running_key=None, state=SubsetRefresh.State.FAILED, finished_at=timezone.now(),
                error="abandoned: its process stopped before finishing")
    raise RefreshBusy(f"could not take the refresh lock for {table!r}")


def _end(*, run: SubsetRefresh, state: str, started: float, error: str = "", **fields) -> SubsetRefresh:
    duration_ms = int((time.perf_counter() - started) * 1000)
    SubsetRefresh.objects.filter(pk=run.pk).update(state=state, running_key=None, finished_at=timezone.now(),
                                                   duration_ms=duration_ms, error=error[:4000], **fields)
    run.refresh_from_db()
    audit_record(user=None, action="subset_refresh", target=f"{run.table} {run.fraction:.4%} by {run.method}",
                 outcome=state, cost_usd=run.cost_usd,
                 detail={"refresh_id": run.pk, "backend": run.backend, "rows": run.rows, "error": run.error,
                         "duration_ms": duration_ms, "bytes_scanned": run.bytes_scanned})
    return run


def _build(*, spec, relation: str, clause: str, out, vocabulary=None, coverage=None) -> tuple[Path, int]:
    """A new file of the table (the fresh sample, with the table's self-description; then the coverage rows it
    lacks: `coverage(sample_rows)` gives their relation and keys statement), verified, then installed; only this
    table's folder is written (subset_table_build)."""
    with subset_table_build(table=spec.name, vocabulary=vocabulary) as (path, conn):
        current = table_current_path(table=spec.name)
        comment = table_comment(path=current, table=spec.name) if current is not None else None
        # Columns cast to the table's known types, so Parquet written by another engine still fits.
        columns = ", ".join(f"CAST({quote_identifier(c)} AS {t}) AS {quote_identifier(c)}" for c, t in spec.columns.items())
        conn.execute(f"CREATE TABLE {quote_identifier(spec.name)} AS SELECT {columns} FROM {relation}{clause}")
        if coverage is not None:
            sampled = conn.execute(f"SELECT count(*) FROM {quote_identifier(spec.name)}").fetchone()[0]
            source, keys = coverage(sampled)
            if keys is not None:
                added = coverage_insert(conn=conn, table=spec.name, key=spec.key, relation=source, keys=keys,
                                        columns=columns)
                out.write(f"  coverage: {added:,} rows of rare words and thin cells added to the {sampled:,} sampled\n")
        if comment:
            conn.execute(f"COMMENT ON TABLE {quote_identifier(spec.name)} IS {quote_string(comment)}")
        rows = subset_file_verify(conn=conn, spec=spec)
        out.write(f"  built {path.name}: {rows:,} rows, verified\n")
    return path, rows


def _local_coverage(*, spec, relation: str, fraction: float):
    """The local backend's coverage step for _build: the keys statement over the full Parquet (None: nothing to add)."""

    def keys(sampled: int) -> tuple[str, str | None]:
        return relation, coverage_keys(spec=spec, relation=relation, sample_rows=sampled, fraction=fraction,
                                       order=sample_hash(key=spec.key, dialect="duckdb"), dialect="duckdb")

    return keys


def subset_file_verify(*, conn, spec) -> int:
    """Raise RefreshVerificationError unless the new table has rows and exactly the spec's columns and types."""
    rows = conn.execute(f"SELECT count(*) FROM {quote_identifier(spec.name)}").fetchone()[0]
    if rows == 0:
        raise RefreshVerificationError("the sample is empty (0 rows): not installing it")
    found = {r[0]: r[1] for r in conn.execute(f"DESCRIBE {quote_identifier(spec.name)}").fetchall()}
    if found != dict(spec.columns):
        raise RefreshVerificationError(f"the sample's schema {found} differs from the table's {dict(spec.columns)}")
    return rows


# --- Athena: UNLOAD to S3, download, build -------------------------------------------------------

class _RefreshControl:
    """Heartbeats the refresh row while Athena runs (the stale-lock check reads it)."""

    def __init__(self, run_id: int):
        self.run_id = run_id

    def tick(self, *, engine_query_id=None, bytes_scanned=None, progress=None):
        changes = {"heartbeat_at": timezone.now()}
        if engine_query_id:
            changes["engine_query_id"] = engine_query_id
        if bytes_scanned is not None:
            changes["bytes_scanned"] = bytes_scanned
        SubsetRefresh.objects.filter(pk=self.run_id).update(**changes)
        return None


def s3_client_get():
    import boto3

    return boto3.client("s3", region_name=settings.AWS_REGION, endpoint_url=settings.AWS_S3_ENDPOINT_URL or None)


def _split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"SUBSET_UNLOAD_S3_URI must look like s3://bucket/prefix/, not {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix


def unload_statement(*, spec, relation: str, fraction: float, method: str, target_uri: str) -> str:
    columns = ", ".join(quote_identifier(c) for c in spec.columns)
    clause = sample_clause(method=method, fraction=fraction, key=spec.key, dialect="trino")
    return (f"UNLOAD (SELECT {columns} FROM {relation}{clause}) TO {quote_string(target_uri)} "
            f"WITH (format = 'PARQUET', compression = 'SNAPPY')")


def _athena_unload(*, run, spec, fraction, method, workdir: Path, athena_backend, s3_client, out) -> list[Path]:
    if not settings.SUBSET_UNLOAD_S3_URI:
        raise ValueError("Set SUBSET_UNLOAD_S3_URI (s3://bucket/prefix/) for Athena refreshes.")
    athena = athena_backend or AthenaBackend()
    s3 = s3_client or s3_client_get()
    bucket, base = _split_s3_uri(settings.SUBSET_UNLOAD_S3_URI)
    # UNLOAD needs an empty prefix: one per run.
    prefix = f"{base.rstrip('/') + '/' if base.strip('/') else ''}{spec.name}/refresh-{run.pk:06d}-{time.strftime('%Y%m%dT%H%M%S')}/"
    target = f"s3://{bucket}/{prefix}"
    statement = unload_statement(spec=spec, relation=athena.relation(spec), fraction=fraction, method=method,
                                 target_uri=target)
    SubsetRefresh.objects.filter(pk=run.pk).update(statement=statement, s3_prefix=target)
    request = {
        "QueryString": statement,
        "ClientRequestToken": f"samplescope-subset-refresh-{run.pk:012d}",  # a retried call runs it once
        "QueryExecutionContext": {"Database": settings.ATHENA_DATABASE},
        "WorkGroup": settings.ATHENA_WORKGROUP,
    }
    if settings.ATHENA_OUTPUT_LOCATION:
        request["ResultConfiguration"] = {"OutputLocation": settings.ATHENA_OUTPUT_LOCATION}
    query_id = athena.call("start_query_execution", **request)["QueryExecutionId"]
    SubsetRefresh.objects.filter(pk=run.pk).update(engine_query_id=query_id)
    out.write(f"  Athena UNLOAD {query_id} -> {target}\n")
    try:
        # The warehouse's polling loop (backoff, throttling retries, DataScannedInBytes); limit=0 fetches no rows.
        result = athena._follow(query_id=query_id, limit=0, control=_RefreshControl(run.pk), started=time.monotonic())
    except BaseException as exc:
        # SoftTimeLimitExceeded, SIGTERM (SystemExit), Ctrl-C, a bug or a lost connection while waiting: the UNLOAD
        # may still be running (and billing): stop it, say so on the run (subset_refresh records the note), re-raise.
        _unload_stop(athena=athena, query_id=query_id, exc=exc, out=out)
        raise
    SubsetRefresh.objects.filter(pk=run.pk).update(engine_query_id=query_id, bytes_scanned=result.bytes_scanned,
                                                   cost_usd=result.cost_usd)
    if result.state != "succeeded":
        raise RuntimeError(f"Athena UNLOAD {result.state}: {result.error}")
    files: list[Path] = []
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Size"] == 0 or item["Key"].endswith("/"):
                continue
            local = workdir / f"part-{len(files):05d}.parquet"
            s3.download_file(bucket, item["Key"], str(local))
            files.append(local)
            total += item["Size"]
    SubsetRefresh.objects.filter(pk=run.pk).update(downloaded_files=len(files))
    out.write(f"  downloaded {len(files)} file(s), {total:,} bytes; Athena scanned {result.bytes_scanned or 0:,} "
              f"bytes (${result.cost_usd})\n")
    if not files:
        raise RefreshVerificationError(f"the UNLOAD wrote no files under {target}")
    return files


def _unload_stop(*, athena, query_id: str, exc: BaseException, out) -> None:
    """Stop an UNLOAD whose wait was interrupted (AthenaBackend.stop: best effort, logs a failure)."""
    athena.stop(engine_query_id=query_id)
    note = f"interrupted while waiting for Athena UNLOAD {query_id}, so it was stopped (StopQueryExecution sent)"
    exc.add_note(note)
    out.write(f"  {note}\n")


# --- Athena: the full data's vocabulary ------------------------------------------------------------

def _athena_vocabulary_builder(*, run, spec, workdir: Path, athena_backend, s3_client, out):
    """The `vocabulary=` step of the build for an Athena refresh: the vocabulary statements
    (apps.search.vocabulary: the total, each low-cardinality column's values, each text column's words),
    each UNLOADed to S3 as Parquet and downloaded; what they scan is added to this refresh's bytes and cost
    (system spend: the refresh is audited without a user)."""

    def build(path: Path, conn) -> dict:
        from apps.search.vocabulary import (
            VALUES_MAX,
            cells_from_rows,
            cells_statement,
            subset_word_counts,
            total_statement,
            value_columns,
            values_statement,
            vocabulary_columns,
            vocabulary_write,
            words_statement,
        )

        started = time.perf_counter()
        athena = athena_backend or AthenaBackend()
        s3 = s3_client or s3_client_get()
        relation = athena.relation(spec)
        columns = vocabulary_columns(spec=spec)
        spent = {"bytes": 0, "cost": 0, "statements": 0}

        def unloaded(select: str, name: str):
            return _athena_unload_select(run=run, athena=athena, s3=s3, select=select, name=name,
                                         workdir=workdir, spent=spent, out=out)

        total = int(unloaded(total_statement(relation=relation), "total").column(0)[0].as_py())
        values = {}
        for column in value_columns(spec=spec, columns=columns):
            found = unloaded(values_statement(relation=relation, column=column), f"values-{column}").to_pylist()
            if len(found) <= VALUES_MAX:
                values[column] = {row["value"]: int(row["n"]) for row in found}
        cells = None  # the rows of each combination of those columns' values (label x lang x ...)
        if len(values) > 1:
            found = unloaded(cells_statement(relation=relation, columns=list(values)), "cells").to_pylist()
            cells = cells_from_rows(columns=list(values), rows=[[row[c] for c in values] + [row["n"]] for row in found])
        words = {column: unloaded(words_statement(relation=relation, column=column), f"words-{column}")
                 for column in columns}
        SubsetRefresh.objects.filter(pk=run.pk).update(
            bytes_scanned=F("bytes_scanned") + spent["bytes"], cost_usd=F("cost_usd") + spent["cost"])
        out.write(f"  vocabulary: {spent['statements']} Athena statements scanned {spent['bytes']:,} bytes "
                  f"(${spent['cost']}), counted in this refresh's cost\n")
        return vocabulary_write(path=path, table=spec.name, total_rows=total, words=words, values=values,
                                source="athena", started=started, stdout=out, cells=cells,
                                subset_words=subset_word_counts(conn=conn, spec=spec, columns=columns),
                                extra={"athena_bytes_scanned": spent["bytes"], "athena_cost_usd": str(spent["cost"])})

    return build


def _athena_unload_select(*, run, athena, s3, select: str, name: str, workdir: Path, spent: dict, out):
    """UNLOAD one SELECT of the vocabulary to its own prefix, wait, download and read it (an Arrow table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = _athena_unload_files(run=run, athena=athena, s3=s3, select=select, name=name, workdir=workdir,
                                 spent=spent, purpose="vocabulary", out=out)
    return pa.concat_tables([pq.read_table(local) for local in files], promote_options="default")


def _athena_coverage(*, run, spec, sample: str, fraction: float, workdir: Path, athena_backend, s3_client, out):
    """The Athena refresh's coverage step for _build (apps.search.coverage): the coverage rows UNLOADed and
    downloaded now (their budget from the sample's rows); what it scans is added to the refresh's cost."""
    import duckdb

    athena = athena_backend or AthenaBackend()
    s3 = s3_client or s3_client_get()
    sampled = duckdb.connect().execute(f"SELECT count(*) FROM {sample}").fetchone()[0]
    relation = athena.relation(spec)
    keys = coverage_keys(spec=spec, relation=relation, sample_rows=sampled, fraction=fraction,
                         order=sample_hash(key=spec.key, dialect="trino"), dialect="trino")
    if keys is None:
        return None
    columns = ", ".join(quote_identifier(c) for c in spec.columns)
    spent = {"bytes": 0, "cost": 0, "statements": 0}
    files = _athena_unload_files(run=run, athena=athena, s3=s3, workdir=workdir, spent=spent, purpose="coverage", out=out,
                                 name="rows", allow_empty=True, select=f"SELECT {columns} FROM {relation} "
                                                     f"WHERE {quote_identifier(spec.key)} IN ({keys})")
    SubsetRefresh.objects.filter(pk=run.pk).update(
        bytes_scanned=F("bytes_scanned") + spent["bytes"], cost_usd=F("cost_usd") + spent["cost"])
    out.write(f"  coverage: Athena scanned {spent['bytes']:,} bytes (${spent['cost']}), counted in this refresh's cost\n")
    if not files:
        return None
    source = f"read_parquet({_sql_string_list(files)})"
    return lambda sampled_rows: (source, f"SELECT {quote_identifier(spec.key)} FROM {source}")


def _athena_unload_files(*, run, athena, s3, select: str, name: str, workdir: Path, spent: dict,
                         purpose: str, out, allow_empty: bool = False) -> list[Path]:
    """UNLOAD one SELECT of the refresh (its vocabulary or coverage rows: `purpose`) to its own prefix, wait and
    download it: the local Parquet files."""
    bucket, base = _split_s3_uri(settings.SUBSET_UNLOAD_S3_URI)
    prefix = (f"{base.rstrip('/') + '/' if base.strip('/') else ''}{run.table}/refresh-{run.pk:06d}-{purpose}/"
              f"{spent['statements']:03d}-{name}/")
    statement = (f"UNLOAD ({select}) TO {quote_string(f's3://{bucket}/{prefix}')} "
                 f"WITH (format = 'PARQUET', compression = 'SNAPPY')")
    request = {
        "QueryString": statement,
        "ClientRequestToken": f"samplescope-{purpose}-{run.pk:012d}-{spent['statements']:03d}",
        "QueryExecutionContext": {"Database": settings.ATHENA_DATABASE},
        "WorkGroup": settings.ATHENA_WORKGROUP,
    }
    if settings.ATHENA_OUTPUT_LOCATION:
        request["ResultConfiguration"] = {"OutputLocation": settings.ATHENA_OUTPUT_LOCATION}
    spent["statements"] += 1
    query_id = athena.call("start_query_execution", **request)["QueryExecutionId"]
    try:
        result = athena._follow(query_id=query_id, limit=0, control=_RefreshControl(run.pk), started=time.monotonic())
    except BaseException as exc:
        _unload_stop(athena=athena, query_id=query_id, exc=exc, out=out)
        raise
    spent["bytes"] += result.bytes_scanned or 0
    spent["cost"] += result.cost_usd or 0
    if result.state != "succeeded":
        raise RuntimeError(f"Athena {purpose} UNLOAD ({name}) {result.state}: {result.error}")
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Size"] == 0 or item["Key"].endswith("/"):
                continue
            local = workdir / f"{purpose}-{spent['statements']:03d}-{len(files):05d}.parquet"
            s3.download_file(bucket, item["Key"], str(local))
            files.append(local)
    if not files and not allow_empty:
        raise RefreshVerificationError(f"the {purpose} UNLOAD ({name}) wrote no files under s3://{bucket}/{prefix}")
    return files
