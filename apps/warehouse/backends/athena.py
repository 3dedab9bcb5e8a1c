"""AWS Athena on plain boto3.

Plain boto3 rather than PyAthena because the fallback needs every knob of StartQueryExecution
(ClientRequestToken, ResultReuseConfiguration, ExecutionParameters), the query id before the
first poll (to record it and to stop it on cancel), DataScannedInBytes while it runs, and our
own polling loop that checks for cancellation between polls.
"""
from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any, Callable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings

from apps.search.query import CompiledQuery, compile_search

from .base import (
    ExportResult,
    RunControl,
    WarehouseBackend,
    WarehouseQueryError,
    WarehouseResult,
    WarehouseTransientError,
    query_columns,
    scan_cost_usd,
)
from .export_sql import unload_sql

logger = logging.getLogger(__name__)

THROTTLING_CODES = {"TooManyRequestsException", "ThrottlingException", "ThrottledException",
                    "RequestLimitExceeded", "SlowDown"}
PAGE_SIZE = 1000  # GetQueryResults' maximum
INTEGER_TYPES = {"tinyint", "smallint", "integer", "int", "bigint"}
FLOAT_TYPES = {"double", "float", "real"}


def athena_client():
    # Our own loop retries throttling (with backoff and a visible count); botocore's would hide it.
    return boto3.client(
        "athena",
        region_name=settings.AWS_REGION,
        endpoint_url=settings.AWS_ENDPOINT_URL or None,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )


def sql_literal(value: Any) -> str:
    """ExecutionParameters are substituted as SQL text, so strings need their quotes."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def typed_value(raw: dict, athena_type: str) -> Any:
    if "VarCharValue" not in raw:
        return None
    text = raw["VarCharValue"]
    kind = athena_type.lower().split("(")[0]
    try:
        if kind in INTEGER_TYPES:
            return int(text)
        if kind in FLOAT_TYPES:
            return float(text)
        if kind == "decimal":
            return float(Decimal(text))
        if kind == "boolean":
            return text.lower() == "true"
    except (ValueError, ArithmeticError):
        return text
    return text  # varchar, char, date, timestamp, json...: kept as Athena prints them


class AthenaBackend(WarehouseBackend):
    name = "athena"
    bytes_are_estimate = False

    def __init__(self, client=None, sleep: Callable[[float], None] = time.sleep, max_throttle_retries: int = 5):
        self.client = client or athena_client()
        self.sleep = sleep
        self.max_throttle_retries = max_throttle_retries

    # --- calls with retries ------------------------------------------------------------------
    def call(self, operation: str, **kwargs) -> dict:
        """One API call; throttling and network errors are retried with exponential backoff."""
        delay = 0.5
        for attempt in range(self.max_throttle_retries + 1):
            try:
                return getattr(self.client, operation)(**kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in THROTTLING_CODES:
                    raise
                problem: Exception = exc
            except (BotoConnectionError, HTTPClientError) as exc:  # network trouble, not a bad request
                problem = exc
            if attempt == self.max_throttle_retries:
                raise WarehouseTransientError(f"Athena {operation}: {problem}") from problem
            logger.warning("Athena %s: %s; retrying in %.1fs", operation, problem, delay)
            self.sleep(delay)
            delay = min(delay * 2, 20.0)
        raise AssertionError("unreachable")

    # --- the interface -----------------------------------------------------------------------
    def relation(self, spec) -> str:
        return f'"{settings.ATHENA_DATABASE}"."{spec.athena_table or settings.ATHENA_TABLE}"'

    def estimate_bytes(self, *, query, spec) -> int | None:
        # Athena cannot say before running; the service reserves the table's size (or the worst case).
        return None

    def full_scan_bytes(self, *, query, spec) -> int | None:
        """The compressed size of the columns the query reads, from the Parquet footers of the table's full
        data where this machine has them (a tables.json entry names the same table for both backends);
        None where it has not."""
        if not spec.full_data_glob:
            return None
        from .local import parquet_bytes_for_columns

        try:
            return parquet_bytes_for_columns(pattern=spec.full_data_glob, columns=query_columns(query=query, spec=spec))
        except (WarehouseQueryError, OSError, ValueError):  # no files, or unreadable footers
            return None

    def start(self, *, query, spec, request_token: str, compiled: CompiledQuery | None = None,
              reuse: bool = True) -> str:
        """StartQueryExecution of the search (or of `compiled`, an export's UNLOAD; `reuse` False: never answer
        from a previous result, which would write nothing)."""
        compiled = compiled or compile_search(query=query, spec=spec, dialect="trino", relation=self.relation(spec))
        request: dict[str, Any] = {
            "QueryString": compiled.sql,
            # The same token for every retry of one fallback: Athena then starts it only once.
            "ClientRequestToken": request_token,
            "QueryExecutionContext": {"Database": settings.ATHENA_DATABASE},
            "WorkGroup": settings.ATHENA_WORKGROUP,
        }
        if compiled.params:
            request["ExecutionParameters"] = [sql_literal(p) for p in compiled.params]
        if settings.ATHENA_OUTPUT_LOCATION:
            request["ResultConfiguration"] = {"OutputLocation": settings.ATHENA_OUTPUT_LOCATION}
        if reuse and settings.ATHENA_RESULT_REUSE_MAX_AGE_MINUTES > 0:
            request["ResultReuseConfiguration"] = {
                "ResultReuseByAgeConfiguration": {
                    "Enabled": True, "MaxAgeInMinutes": settings.ATHENA_RESULT_REUSE_MAX_AGE_MINUTES,
                }
            }
        try:
            return self.call("start_query_execution", **request)["QueryExecutionId"]
        except ClientError as exc:
            raise WarehouseQueryError(f"Athena refused the query: {exc}") from exc

    def stop(self, *, engine_query_id: str) -> None:
        try:
            self.call("stop_query_execution", QueryExecutionId=engine_query_id)
        except Exception:  # stopping is best effort: the query may be over already
            logger.warning("could not stop Athena query %s", engine_query_id, exc_info=True)

    def run(self, *, query, spec, request_token: str, control: RunControl,
            resume_engine_query_id: str = "", simulated_latency_ms: int = 0) -> WarehouseResult:
        started = time.monotonic()
        query_id = resume_engine_query_id or self.start(query=query, spec=spec, request_token=request_token)
        try:
            return self._follow(query_id=query_id, limit=query.limit, control=control, started=started)
        except WarehouseTransientError:
            raise  # the task retries and resumes following this same query
        except BaseException:
            # SoftTimeLimitExceeded, worker shutdown, a bug: do not leave the query burning money.
            self.stop(engine_query_id=query_id)
            raise

    def export(self, *, query, spec, request_token: str, control: RunControl, location: str,
               simulated_latency_ms: int = 0, resume_engine_query_id: str = "") -> ExportResult:
        """One UNLOAD of every matching row to the empty S3 prefix `location` (gzipped CSV lines, in parallel
        files), followed like a fallback (cost, cancel, cutoff); the rows are not fetched back."""
        started = time.monotonic()
        compiled = unload_sql(query=query, spec=spec, relation=self.relation(spec), location=location)
        query_id = resume_engine_query_id or self.start(query=query, spec=spec, request_token=request_token,
                                                        compiled=compiled, reuse=False)
        try:
            result = self._follow(query_id=query_id, limit=0, control=control, started=started)
        except WarehouseTransientError:
            raise
        except BaseException:
            self.stop(engine_query_id=query_id)
            raise
        fields = {name: getattr(result, name) for name in ("state", "bytes_scanned", "bytes_are_estimate",
                                                            "cost_usd", "engine_query_id", "elapsed_ms", "error",
                                                            "reused_result")}
        return ExportResult(**fields, location=location,
                            file_bytes=export_objects_size(location) if result.state == "succeeded" else None)

    def _follow(self, *, query_id: str, limit: int, control: RunControl, started: float) -> WarehouseResult:
        delay = 0.25
        stop_reason = control.tick(engine_query_id=query_id)
        while True:
            execution = self.call("get_query_execution", QueryExecutionId=query_id)["QueryExecution"]
            state = execution["Status"]["State"]
            stats = execution.get("Statistics", {})
            scanned = int(stats.get("DataScannedInBytes") or 0)
            reused = bool(stats.get("ResultReuseInformation", {}).get("ReusedPreviousResult"))

            def result(**kwargs) -> WarehouseResult:
                elapsed = int((time.monotonic() - started) * 1000)
                return WarehouseResult(engine_query_id=query_id, bytes_scanned=scanned, elapsed_ms=elapsed,
                                       reused_result=reused, **kwargs)

            if state == "SUCCEEDED":
                rows = self.fetch_rows(query_id=query_id, limit=limit)
                cost = Decimal(0) if reused else scan_cost_usd(bytes_scanned=scanned)
                return result(state="succeeded", rows=rows, cost_usd=cost)
            if state == "FAILED":
                reason = (execution["Status"].get("AthenaError", {}).get("ErrorMessage")
                          or execution["Status"].get("StateChangeReason") or "Athena reported FAILED")
                # Settled on what it scanned, as every ending is (apps/warehouse/README.md, "Cost").
                return result(state="failed", error=reason, cost_usd=self._partial_cost(scanned))
            if state == "CANCELLED":
                # Stopped outside this app (console, workgroup limit): still billed for what it read.
                return result(state="cancelled", error=execution["Status"].get("StateChangeReason", "")
                              or "cancelled in Athena", cost_usd=self._partial_cost(scanned))

            if stop_reason is None and scanned > settings.FALLBACK_MAX_BYTES_SCANNED:
                self.stop(engine_query_id=query_id)
                return result(state="failed", cost_usd=self._partial_cost(scanned),
                              error=f"stopped: scanned {scanned:,} bytes, over the per-query cutoff of "
                                    f"{settings.FALLBACK_MAX_BYTES_SCANNED:,}")
            if stop_reason:
                self.stop(engine_query_id=query_id)
                return result(state=stop_reason, cost_usd=self._partial_cost(scanned),
                              error="cancelled by a user" if stop_reason == "cancelled" else "timed out")
            self.sleep(delay)
            delay = min(delay * 1.6, float(settings.ATHENA_POLL_MAX_SECONDS))
            stop_reason = control.tick(engine_query_id=query_id, bytes_scanned=scanned)

    @staticmethod
    def _partial_cost(scanned: int) -> Decimal:
        return scan_cost_usd(bytes_scanned=scanned) if scanned else Decimal(0)

    def fetch_rows(self, *, query_id: str, limit: int) -> list[dict]:
        """Page through GetQueryResults until `limit` rows; the first row of the first page is the header."""
        rows: list[dict] = []
        columns: list[tuple[str, str]] = []
        token: str | None = None
        first_page = True
        while len(rows) < limit:
            kwargs: dict[str, Any] = {"QueryExecutionId": query_id, "MaxResults": PAGE_SIZE}
            if token:
                kwargs["NextToken"] = token
            page = self.call("get_query_results", **kwargs)
            result_set = page["ResultSet"]
            if not columns:
                columns = [(c["Name"], c.get("Type", "varchar"))
                           for c in result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
            data = result_set.get("Rows", [])
            if first_page and data and columns and \
                    [d.get("VarCharValue") for d in data[0]["Data"]] == [name for name, _ in columns]:
                data = data[1:]
            first_page = False
            for raw in data:
                cells = raw.get("Data", [])
                rows.append({name: typed_value(cells[i] if i < len(cells) else {}, kind)
                             for i, (name, kind) in enumerate(columns)})
                if len(rows) >= limit:
                    break
            token = page.get("NextToken")
            if not token:
                break
        return rows


def s3_client():
    return boto3.client("s3", region_name=settings.AWS_REGION, endpoint_url=settings.AWS_S3_ENDPOINT_URL or None)


def s3_split(location: str) -> tuple[str, str]:
    """s3://bucket/some/prefix/ -> (bucket, some/prefix/)."""
    if not location.startswith("s3://"):
        raise ValueError(f"not an s3:// location: {location!r}")
    bucket, _, prefix = location[len("s3://"):].partition("/")
    return bucket, prefix


def export_objects(location: str, client=None) -> list[dict]:
    """The data files an UNLOAD wrote under `location` (its own prefix: nothing else is there), by key."""
    client = client or s3_client()
    bucket, prefix = s3_split(location)
    objects: list[dict] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects += [o for o in page.get("Contents", []) if o["Size"] > 0 and not o["Key"].endswith("/")]
    return sorted(objects, key=lambda o: o["Key"])


def export_objects_size(location: str) -> int | None:
    try:
        return sum(o["Size"] for o in export_objects(location))
    except Exception:  # the size is shown, not needed: S3 may deny listing to the worker
        logger.warning("could not list the export files under %s", location, exc_info=True)
        return None
