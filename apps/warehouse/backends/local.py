"""The embedded stand-in for Athena: DuckDB scanning the full Parquet files.

Runs only in the Celery worker (a full scan would block a web process). Bytes scanned cannot
be measured, so they are estimated from the Parquet footers: the compressed size of the column
chunks of every column the query reads, over all row groups. That is an upper bound (a LIMIT
can stop early), is shown as an estimate, and is priced like Athena so budgets work on the demo.
A run stopped half-way (cancelled, timed out) reports the same upper bound: DuckDB cannot say how
much it had read, and a stopped query is billed for what it read, never 0.
"""
from __future__ import annotations

import glob as globlib
import logging
import os
import threading
import time
from functools import lru_cache
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from django.conf import settings

from apps.search.query import compile_search

from .base import (
    ExportResult,
    RunControl,
    WarehouseBackend,
    WarehouseQueryError,
    WarehouseResult,
    json_safe,
    query_columns,
    scan_cost_usd,
)
from .export_sql import copy_sql

logger = logging.getLogger(__name__)
TICK_SECONDS = 0.2


@lru_cache(maxsize=4096)
def _column_bytes(path: str, mtime_ns: int, size: int) -> dict[str, int]:
    """{top-level column: compressed bytes over all row groups} from one file's footer (cached per version)."""
    metadata = pq.read_metadata(path)
    totals: dict[str, int] = {}
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            column = chunk.path_in_schema.split(".")[0]
            totals[column] = totals.get(column, 0) + chunk.total_compressed_size
    return totals


def parquet_bytes_for_columns(*, pattern: str, columns: set[str]) -> int:
    files = sorted(globlib.glob(pattern))
    if not files:
        raise WarehouseQueryError(f"No Parquet files match {pattern}: build the demo data (`manage.py setup_demo`).")
    total = 0
    for path in files:
        stat = os.stat(path)
        per_column = _column_bytes(path, stat.st_mtime_ns, stat.st_size)
        total += sum(size for column, size in per_column.items() if column in columns)
    return total


def _stop(finished: threading.Event, connection, *, name: str, wait_seconds: float = 5.0) -> None:
    """Interrupt the query until its thread says it is done, then close the connection. Interrupting again
    matters: an interrupt sent before the helper thread has started the query is lost, and the whole scan
    would run. (Its own Event, not Thread.is_alive(): a signal that interrupts Thread.join, as Celery's soft
    time limit does, leaves Python 3.11 believing the thread has ended.)"""
    deadline = time.monotonic() + wait_seconds
    while not finished.is_set() and time.monotonic() < deadline:
        connection.interrupt()
        finished.wait(0.05)
    if not finished.is_set():  # closing a connection in use raises, and would hide why the run stopped
        logger.warning("DuckDB query %s did not stop within %ss", name, wait_seconds)
        return
    connection.close()


def duckdb_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class LocalBackend(WarehouseBackend):
    name = "local"
    bytes_are_estimate = True

    def estimate_bytes(self, *, query, spec) -> int | None:
        return parquet_bytes_for_columns(pattern=spec.full_data_glob, columns=query_columns(query=query, spec=spec))

    def full_scan_bytes(self, *, query, spec) -> int | None:
        return self.estimate_bytes(query=query, spec=spec)

    def run(self, *, query, spec, request_token: str, control: RunControl,
            resume_engine_query_id: str = "", simulated_latency_ms: int = 0) -> WarehouseResult:
        started = time.monotonic()
        estimate = self.estimate_bytes(query=query, spec=spec)
        relation = f"read_parquet({duckdb_string(spec.full_data_glob)})"
        compiled = compile_search(query=query, spec=spec, dialect="duckdb", relation=relation)
        connection = duckdb.connect(":memory:", config={"threads": settings.SEARCH_DUCKDB_THREADS})

        def execute(outcome: dict) -> None:
            cursor = connection.execute(compiled.sql, compiled.params)
            names = [d[0] for d in cursor.description]
            outcome["rows"] = [dict(zip(names, (json_safe(v) for v in row))) for row in cursor.fetchmany(query.limit)]

        stop_reason, outcome = self._drive(connection=connection, execute=execute, control=control,
                                           name=f"fallback-{request_token}", request_token=request_token,
                                           estimate=estimate, started=started,
                                           simulated_latency_ms=simulated_latency_ms)
        elapsed = int((time.monotonic() - started) * 1000)
        if stop_reason:
            # DuckDB cannot say how much it read before it was stopped: bill the upper bound, the column
            # chunks the query reads (as for a success), never 0 (apps/warehouse/README.md, "Cost").
            return WarehouseResult(state=stop_reason, engine_query_id=request_token, elapsed_ms=elapsed,
                                   bytes_scanned=estimate, bytes_are_estimate=True,
                                   error="cancelled by a user" if stop_reason == "cancelled" else "timed out")
        if "error" in outcome:
            return WarehouseResult(state="failed", engine_query_id=request_token, elapsed_ms=elapsed,
                                   bytes_are_estimate=True, error=f"DuckDB: {outcome['error']}"[:2000])
        return WarehouseResult(
            state="succeeded",
            rows=outcome.get("rows", []),
            bytes_scanned=estimate,
            bytes_are_estimate=True,
            cost_usd=scan_cost_usd(bytes_scanned=estimate),
            engine_query_id=request_token,
            elapsed_ms=elapsed,
        )

    def _drive(self, *, connection, execute, control: RunControl, name: str, request_token: str, estimate: int,
               started: float, simulated_latency_ms: int = 0) -> tuple[str | None, dict]:
        """Run `execute(outcome)` on `connection` in a helper thread, ticking `control` until it ends (or the
        demo's padding is over); stop the engine when control says so. Returns (stop reason, outcome): the
        outcome holds what execute put there, or "error"."""
        outcome: dict = {}
        finished = threading.Event()

        def target() -> None:
            try:
                execute(outcome)
            except BaseException as exc:  # handed to the polling thread, which decides what it means
                outcome["error"] = exc
            finally:
                finished.set()

        # The query runs in a helper thread so this thread stays free to poll for cancellation and
        # to receive Celery's soft time limit (a signal, delivered only between Python bytecodes).
        runner = threading.Thread(target=target, name=name, daemon=True)
        runner.start()
        stop_reason = None
        try:
            while not finished.is_set() or (time.monotonic() - started) * 1000 < simulated_latency_ms:
                progress = self._progress(connection) if not finished.is_set() else 1.0
                stop_reason = control.tick(
                    engine_query_id=request_token,
                    progress=progress,
                    bytes_scanned=int(estimate * progress) if progress is not None else None,
                )
                if stop_reason:
                    break
                if finished.is_set():  # only the demo's padding is left: wait without spinning
                    time.sleep(TICK_SECONDS)
                else:
                    finished.wait(TICK_SECONDS)
        except BaseException:
            _stop(finished, connection, name=runner.name)  # soft time limit or shutdown: free the worker's CPU at once
            # Settled like any stopped query, on what it read: record the upper bound before the row ends.
            try:
                control.tick(engine_query_id=request_token, bytes_scanned=estimate, force=True)
            except Exception:  # the stop itself matters more than the figure
                logger.warning("could not record the bytes of stopped run %s", request_token, exc_info=True)
            raise
        _stop(finished, connection, name=runner.name)
        return stop_reason, outcome

    def export(self, *, query, spec, request_token: str, control: RunControl, location: str,
               simulated_latency_ms: int = 0) -> ExportResult:
        """DuckDB COPY of every row of the full Parquet files matching the search to the CSV file `location`
        (written as `<location>.part`, renamed when complete: a half-written file is never served)."""
        started = time.monotonic()
        estimate = self.estimate_bytes(query=query, spec=spec)
        relation = f"read_parquet({duckdb_string(spec.full_data_glob)})"
        target = Path(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        compiled = copy_sql(query=query, spec=spec, relation=relation, path=str(partial))
        connection = duckdb.connect(":memory:", config={"threads": settings.SEARCH_DUCKDB_THREADS})

        def execute(outcome: dict) -> None:
            outcome["rows"] = connection.execute(compiled.sql, compiled.params).fetchone()[0]

        try:
            stop_reason, outcome = self._drive(connection=connection, execute=execute, control=control,
                                               name=f"export-{request_token}", request_token=request_token,
                                               estimate=estimate, started=started,
                                               simulated_latency_ms=simulated_latency_ms)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        elapsed = int((time.monotonic() - started) * 1000)
        if stop_reason or "error" in outcome:
            partial.unlink(missing_ok=True)
        if stop_reason:
            return ExportResult(state=stop_reason, engine_query_id=request_token, elapsed_ms=elapsed,
                                bytes_scanned=estimate, bytes_are_estimate=True,
                                error="cancelled by a user" if stop_reason == "cancelled" else "timed out")
        if "error" in outcome:
            return ExportResult(state="failed", engine_query_id=request_token, elapsed_ms=elapsed,
                                bytes_are_estimate=True, error=f"DuckDB: {outcome['error']}"[:2000])
        os.replace(partial, target)
        return ExportResult(state="succeeded", bytes_scanned=estimate, bytes_are_estimate=True,
                            cost_usd=scan_cost_usd(bytes_scanned=estimate), engine_query_id=request_token,
                            elapsed_ms=elapsed, row_count=int(outcome.get("rows") or 0),
                            file_bytes=target.stat().st_size, location=str(target))

    @staticmethod
    def _progress(connection) -> float | None:
        try:
            value = connection.query_progress()
        except Exception:  # not every DuckDB build reports progress for every plan
            return None
        return value / 100.0 if value is not None and value >= 0 else None
