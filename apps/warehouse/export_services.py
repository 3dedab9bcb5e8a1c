"""Exports: one warehouse query that writes every row of the full dataset matching a search to the store.

Athena: an UNLOAD to S3 (gzipped CSV lines under the export's own prefix); local backend: a DuckDB COPY of the
full Parquet files to `WAREHOUSE_EXPORT_DIR/<id>.csv`. Started from the search page (the analyst role), run by a
Celery task, watched, cancelled, priced and capped exactly like a fallback: the same reservation under the
same ledger lock, the same per-user and team daily caps (which count fallbacks and exports together), the same
in-flight cap, the same re-check when a worker picks it up, and every ending settled on the bytes scanned.

State machine as for fallbacks: queued -> running -> succeeded | failed | cancelled | timed_out; refused rows are
born finished; every way out of queued/running is one conditional UPDATE (`_export_finish`), which writes the
audit event once.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.accounts.roles import SEARCH, role_missing_message, user_has_role
from apps.audit.services import audit_record
from apps.search.query import SearchQuery, where_compile
from apps.search.tables import TableSpec, table_spec_get

from .backends.base import ExportResult, WarehouseTransientError, backend_get, scan_cost_usd
from .models import Export
from .selectors import export_can_view, export_stale_list
from .services import (
    QUEUE_UNAVAILABLE,
    FallbackControl,
    _budget_refusal,
    _estimate_bytes,
    _in_flight_refusal,
    _ledger_lock,
    _reserved_bytes,
    _settled_cost_usd,
)

logger = logging.getLogger(__name__)


class ExportNotPossible(ValueError):
    """This table or backend cannot export (no warehouse, nowhere to write): nothing was created."""


# --- starting one (the search page asks) ---------------------------------------------------------

def export_request(*, user, query: SearchQuery, spec: TableSpec) -> Export:
    """Create and enqueue an export of every row of the full table matching `query`, or a refused one (over a
    budget cap, too many in flight, over the per-query byte limit). The budget is checked and the reservation
    made in one transaction under the ledger lock, as for a fallback. Without the analyst role:
    PermissionDenied; a table without a warehouse: ExportNotPossible. The query's filters are validated
    (SearchValidationError); its limit, sort and page are dropped: an export has every row."""
    if not user_has_role(user=user, permission=SEARCH):
        raise PermissionDenied(role_missing_message(permission=SEARCH, what="Exporting from the warehouse"))
    backend = backend_get()
    if not spec.has_warehouse(backend.name):
        raise ExportNotPossible(f"Table {spec.name!r} has no warehouse on the {backend.name} backend: nothing to export.")
    query = replace(query, order=None, after=None)
    where_compile(query=query, spec=spec, dialect="trino")  # SearchValidationError before anything is stored
    fields = dict(user=user, user_name=user.get_username(), table=query.table, query=query.to_dict(),
                  fingerprint=query.fingerprint(), backend=backend.name,
                  bytes_are_estimate=backend.bytes_are_estimate)
    estimate = _estimate_bytes(backend=backend, query=query, spec=spec)
    estimated_cost = scan_cost_usd(bytes_scanned=_reserved_bytes(estimate))
    export = None
    with transaction.atomic():
        _ledger_lock()
        refusal = (_in_flight_refusal(user=user)
                   or _budget_refusal(user=user, estimate=estimate, estimated_cost=estimated_cost))
        if not refusal:
            export = Export.objects.create(**fields, bytes_estimate=estimate, estimated_cost_usd=estimated_cost,
                                           heartbeat_at=timezone.now())
    if export is None:
        now = timezone.now()
        export = Export.objects.create(**fields, state=Export.State.REFUSED, error=refusal, bytes_estimate=estimate,
                                       estimated_cost_usd=estimated_cost, finished_at=now, heartbeat_at=now)
        _audit_finished(export)
        return export
    export.location = export_location(export=export)
    Export.objects.filter(pk=export.pk).update(location=export.location)
    transaction.on_commit(lambda: export_enqueue(export=export))
    return export


def export_estimate(*, query: SearchQuery, spec: TableSpec) -> tuple[int | None, Decimal]:
    """(bytes, cost) that starting this export would reserve: what the confirmation page shows (nothing is
    written). Bytes None: the engine cannot say before running, and the worst case is reserved."""
    estimate = _estimate_bytes(backend=backend_get(), query=query, spec=spec)
    return estimate, scan_cost_usd(bytes_scanned=_reserved_bytes(estimate))


def export_location(*, export: Export) -> str:
    """Where an export's rows go: `WAREHOUSE_EXPORT_DIR/<id>.csv`, or its own empty S3 prefix (UNLOAD refuses a
    prefix that holds anything)."""
    if export.backend == "athena":
        base = settings.ATHENA_EXPORT_LOCATION or (
            settings.ATHENA_OUTPUT_LOCATION.rstrip("/") + "/exports/" if settings.ATHENA_OUTPUT_LOCATION else "")
        if not base:
            return ""
        return f"{base.rstrip('/')}/{export.pk:012d}/"
    return str(Path(settings.WAREHOUSE_EXPORT_DIR) / f"{export.pk}.csv")


def export_enqueue(*, export: Export) -> bool:
    from .tasks import export_run_task

    try:
        export_run_task.apply_async(args=[export.pk], queue=settings.WAREHOUSE_TASK_QUEUE,
                                    soft_time_limit=settings.EXPORT_SOFT_TIME_LIMIT,
                                    time_limit=settings.EXPORT_TIME_LIMIT)
        return True
    except Exception as exc:  # kombu/redis raise several types; all mean "not queued"
        logger.warning("could not enqueue export %s: %s", export.pk, exc)
        _export_finish(export_id=export.pk, state=Export.State.FAILED, error=QUEUE_UNAVAILABLE)
        export.refresh_from_db()
        return False


# --- running (inside the Celery worker) ----------------------------------------------------------

def export_request_token(export: Export) -> str:
    """Athena ClientRequestToken (32-128 chars): the same for every attempt of one export."""
    return f"samplescope-export-{export.pk:012d}-{export.fingerprint[:24]}"


def _export_claim(*, export_id: int) -> Export | None:
    """Queued -> running for this worker, after checking the budget again (as a fallback's claim does)."""
    queued = Export.objects.filter(pk=export_id, state=Export.State.QUEUED).select_related("user").first()
    if queued is None:
        return None  # finished already, or another delivery runs it
    refusal = _budget_refusal(user=queued.user, estimate=queued.bytes_estimate,
                              estimated_cost=queued.estimated_cost_usd, exclude_export_id=queued.pk)
    if refusal:
        _export_finish(export_id=export_id, state=Export.State.REFUSED, from_states=(Export.State.QUEUED,),
                       error="Refused when a worker picked it up, before anything was sent: "
                             + refusal.removeprefix("Refused: "))
        return None
    now = timezone.now()
    claimed = Export.objects.filter(pk=export_id, state=Export.State.QUEUED).update(
        state=Export.State.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, progress=None)
    return Export.objects.get(pk=export_id) if claimed else None


def export_execute(*, export_id: int, soft_time_limit: int | None = None) -> Export | None:
    """Run one export to the end. Idempotent: a second delivery of a started or finished one does nothing."""
    export = _export_claim(export_id=export_id)
    if export is None:
        return Export.objects.filter(pk=export_id).first()
    if export.cancel_requested_at:
        _export_finish(export_id=export_id, state=Export.State.CANCELLED)
        return Export.objects.get(pk=export_id)
    if not export.location:
        _export_finish(export_id=export_id, state=Export.State.FAILED,
                       error="Nowhere to write the export: set ATHENA_EXPORT_LOCATION (or ATHENA_OUTPUT_LOCATION).")
        return Export.objects.get(pk=export_id)
    try:
        result = backend_get(export.backend).export(
            query=SearchQuery.from_dict(export.query), spec=table_spec_get(name=export.table),
            request_token=export_request_token(export), control=FallbackControl(export_id, model=Export),
            location=export.location, simulated_latency_ms=settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS
            if export.backend == "local" else 0,
        )
    except SoftTimeLimitExceeded:
        _export_finish(export_id=export_id, state=Export.State.TIMED_OUT,
                       error=f"stopped after the {soft_time_limit or settings.EXPORT_SOFT_TIME_LIMIT}s time limit")
    except WarehouseTransientError as exc:
        _export_finish(export_id=export_id, state=Export.State.FAILED, error=f"warehouse unreachable: {exc}")
    except Exception as exc:
        logger.exception("export %s failed", export_id)
        _export_finish(export_id=export_id, state=Export.State.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        _export_finish(export_id=export_id, state=result.state, error=result.error, result=result)
    return Export.objects.get(pk=export_id)


def _export_finish(*, export_id: int, state: str, error: str = "", result: ExportResult | None = None,
                   from_states=Export.ACTIVE_STATES) -> bool:
    """The one way out of queued/running: settled on the bytes scanned, as a fallback is (services._finish)."""
    changes: dict = {"state": state, "error": error[:4000], "finished_at": timezone.now()}
    with transaction.atomic():
        row = Export.objects.select_for_update().filter(pk=export_id, state__in=from_states) \
            .values("bytes_scanned", "cancelled_by_name").first()
        if row is None:
            return False
        if state == Export.State.CANCELLED:
            changes["error"] = f"cancelled by {row['cancelled_by_name']}" if row["cancelled_by_name"] else (error or "cancelled")
        bytes_scanned = row["bytes_scanned"]
        if result is not None:
            changes.update(bytes_are_estimate=result.bytes_are_estimate, engine_query_id=result.engine_query_id)
            if result.bytes_scanned is not None:
                bytes_scanned = result.bytes_scanned
            if state == Export.State.SUCCEEDED:
                changes.update(progress=1.0, row_count=result.row_count, file_bytes=result.file_bytes)
        changes["bytes_scanned"] = bytes_scanned
        changes["cost_usd"] = _settled_cost_usd(state=state, bytes_scanned=bytes_scanned, result=result)
        updated = Export.objects.filter(pk=export_id, state__in=from_states).update(**changes)
    if updated:
        _audit_finished(Export.objects.select_related("user").get(pk=export_id))
    return bool(updated)


# --- cancel, sweep ---------------------------------------------------------------------------------

def export_cancel(*, export: Export, user) -> Export:
    """Its creator or staff stop it (queued: cancelled at once; running: flagged, the worker stops the engine
    query on its next tick). Anyone else: PermissionDenied."""
    if not export_can_view(export=export, user=user):
        raise PermissionDenied("Only its creator and staff can cancel an export.")
    Export.objects.filter(pk=export.pk, state__in=Export.ACTIVE_STATES, cancel_requested_at__isnull=True) \
        .update(cancel_requested_at=timezone.now(), cancelled_by=user, cancelled_by_name=user.get_username())
    _export_finish(export_id=export.pk, state=Export.State.CANCELLED, from_states=(Export.State.QUEUED,))
    export.refresh_from_db()
    return export


def export_sweep(*, stale_after_seconds: int | None = None) -> int:
    """Exports whose worker died (no heartbeat for FALLBACK_STALE_AFTER_SECONDS) are failed, their engine query
    stopped: an export is never retried on its own (its S3 prefix may hold part of the rows)."""
    stale_after = settings.FALLBACK_STALE_AFTER_SECONDS if stale_after_seconds is None else stale_after_seconds
    failed = 0
    for export in export_stale_list(stale_after_seconds=stale_after):
        if _export_finish(export_id=export.pk, state=Export.State.FAILED,
                          error=f"its worker stopped answering for {stale_after}s; gave up"):
            failed += 1
            if export.backend == "athena" and export.engine_query_id:
                backend_get("athena").stop(engine_query_id=export.engine_query_id)
    return failed


# --- retention ------------------------------------------------------------------------------------

def exports_prune(*, older_than_days: int) -> int:
    """Retention (`manage.py prune_logs`): delete the files of exports that finished more than `older_than_days`
    ago (the local CSV, or every object under its S3 prefix) and mark them expired, so their pages and download say
    so (410) instead of failing on a missing file. Their rows, counts and cost stay. The number expired; an export
    whose files could not be deleted (S3 refused) is left for the next run."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    expired = 0
    for export in Export.objects.filter(expired_at__isnull=True, finished_at__lt=cutoff) \
            .exclude(state__in=Export.ACTIVE_STATES).only("pk", "backend", "location"):
        try:
            _export_files_delete(export=export)
        except Exception:  # boto3/OS errors of every kind: logged, retried on the next run
            logger.warning("could not delete the files of export %s at %s", export.pk, export.location, exc_info=True)
            continue
        expired += Export.objects.filter(pk=export.pk, expired_at__isnull=True).update(expired_at=timezone.now())
    return expired


def _export_files_delete(*, export: Export) -> None:
    if not export.location:
        return
    if export.backend != "athena":
        Path(export.location).unlink(missing_ok=True)
        return
    from .backends.athena import s3_client, s3_split

    client = s3_client()
    bucket, prefix = s3_split(export.location)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:  # at most 1,000 a page, as delete_objects takes
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


# --- audit ----------------------------------------------------------------------------------------

def _audit_finished(export: Export) -> None:
    audit_record(
        user=export.user, action="export", target=f"{export.table}: {export.query_text}"[:255], outcome=export.state,
        cost_usd=export.cost_usd,
        detail={"export_id": export.pk, "kind": "warehouse", "backend": export.backend, "query": export.query,
                "rows": export.row_count, "file_bytes": export.file_bytes, "bytes_scanned": export.bytes_scanned,
                "bytes_are_estimate": export.bytes_are_estimate, "engine_query_id": export.engine_query_id,
                "elapsed_ms": export.elapsed_ms, "error": export.error,
                "cancelled_by": export.cancelled_by_name or None},
    )

