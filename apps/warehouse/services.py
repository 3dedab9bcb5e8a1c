"""Warehouse fallbacks: create or join one per query fingerprint, run it in a worker, cancel, sweep.

State machine: queued -> running -> succeeded | failed | cancelled | timed_out; refused rows are
born finished. Every transition out of queued/running is one conditional UPDATE (`_finish`), so a
worker, a cancel and the sweeper racing on the same row cannot both win, and the winner writes the
audit event exactly once.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.services import audit_record
from apps.search.models import SearchLog
from apps.search.query import SearchQuery
from apps.search.services import search_log_prune
from apps.search.tables import TableSpec, table_spec_get

from .backends.base import (
    WarehouseBackend,
    WarehouseQueryError,
    WarehouseResult,
    WarehouseTransientError,
    backend_get,
    json_safe,
    scan_cost_usd,
)
from .handles import FallbackHandle
from .learned import learned_from_fallback
from .models import Fallback, FallbackRequest
from .selectors import (
    fallback_can_stop,
    fallback_has_joined,
    fallback_in_flight_count,
    fallback_inflight_for,
    fallback_previous_bytes,
    fallback_reusable_for,
    fallback_spent_today_usd,
    fallback_stale_list,
    fallback_team_spent_today_usd,
)

logger = logging.getLogger(__name__)

QUEUE_UNAVAILABLE = "The warehouse fallback is unavailable: the task queue (Redis) cannot be reached. Showing local rows only."
TICK_WRITE_SECONDS = 0.5


# --- creating or joining a fallback (apps.samples.pipeline asks) --------------------------------

def fallback_request(*, user, query: SearchQuery, spec: TableSpec, local_keys: list | None = None,
                     search_log: SearchLog | None = None, may_spend: bool = True) -> FallbackHandle | None:
    """Reuse a recent result, join the fallback in flight, refuse over budget, or create and enqueue one.

    `local_keys` are the keys of the rows the search already had locally (kept, not the rows).
    `may_spend=False` (a read-only API token): a cached result or a fallback already in flight is used, as
    neither starts a billed query nor costs the asker anything; nothing new is sent, and None comes back
    when there is neither."""
    user = user if getattr(user, "is_authenticated", False) else None
    local_keys = list(local_keys or [])
    fingerprint = query.fingerprint()
    cached, existing = fallback_reusable_for(fingerprint=fingerprint)
    if cached is not None:
        request = _request_record(fallback=cached, user=user, kind=FallbackRequest.Kind.CACHE,
                                  search_log=search_log, local_keys=local_keys)
        return FallbackHandle(fallback=cached, request_id=request.pk, from_cache=True)

    backend = backend_get()
    for attempt in range(3):
        if attempt:  # an identical search created one since: join it
            existing = fallback_inflight_for(fingerprint=fingerprint)
        if existing is not None:
            request = _request_record(fallback=existing, user=user, kind=FallbackRequest.Kind.JOINED,
                                      search_log=search_log, local_keys=local_keys)
            return FallbackHandle(fallback=existing, request_id=request.pk,
                                  may_stop=fallback_can_stop(fallback=existing, user=user))
        if not may_spend:
            return None

        fields = dict(user=user, user_name=user.get_username() if user is not None else "", table=query.table,
                      query=query.to_dict(), fingerprint=fingerprint, limit=query.limit, backend=backend.name,
                      bytes_are_estimate=backend.bytes_are_estimate)
        try:
            estimate = _estimate_bytes(backend=backend, query=query, spec=spec)
        except WarehouseQueryError as exc:
            return _born_finished(fields=fields, state=Fallback.State.FAILED, error=str(exc),
                                  search_log=search_log, local_keys=local_keys)
        # Unknown estimate (Athena, no similar predecessor): reserve the worst case, the per-query cutoff
        # past which the worker stops the query.
        estimated_cost = scan_cost_usd(bytes_scanned=_reserved_bytes(estimate))
        fallback = None
        try:
            # Check and reserve in one write transaction, under the ledger lock: two requests cannot
            # both see the same headroom (apps/warehouse/README.md, "Budget").
            with transaction.atomic():
                _ledger_lock()
                refusal = (_in_flight_refusal(user=user)
                           or _budget_refusal(user=user, estimate=estimate, estimated_cost=estimated_cost))
                if not refusal:
                    fallback = Fallback.objects.create(
                        **fields, inflight_key=fingerprint, bytes_estimate=estimate,
                        estimated_cost_usd=estimated_cost, heartbeat_at=timezone.now(),
                        simulated_latency_ms=settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS if backend.name == "local" else 0,
                    )
        except IntegrityError:
            continue  # an identical search created it a moment ago: join that one
        if fallback is None:
            return _born_finished(fields=fields, state=Fallback.State.REFUSED, error=refusal, bytes_estimate=estimate,
                                  estimated_cost=estimated_cost, search_log=search_log, local_keys=local_keys)
        request = _request_record(fallback=fallback, user=user, kind=FallbackRequest.Kind.CREATED,
                                  search_log=search_log, local_keys=local_keys)
        transaction.on_commit(lambda: fallback_enqueue(fallback=fallback))
        return FallbackHandle(fallback=fallback, request_id=request.pk, created=True)
    raise RuntimeError(f"could not create or join a fallback for {fingerprint}")


def _estimate_bytes(*, backend: WarehouseBackend, query, spec) -> int | None:
    """The bytes the ledger reserves for (None: unknown, the worst case is reserved; `_reserved_bytes`).

    The backend's own estimate where it has one (local). Else (Athena) never less than a full scan of the
    columns the query reads (`backend.full_scan_bytes`, the table's size), or more where a predecessor
    filtering the same columns really scanned more. A predecessor alone is no floor (a LIMIT can stop a scan
    early; a reused result records 0 bytes): with the table's size unknown the worst case is reserved, and a
    predecessor only serves to refuse a query that would pass the per-query cutoff."""
    estimate = backend.estimate_bytes(query=query, spec=spec)
    if estimate is not None:
        return estimate
    previous = fallback_previous_bytes(table=query.table, backend=backend.name,
                                       filter_columns={f.column for f in query.filters})
    floor = backend.full_scan_bytes(query=query, spec=spec)
    if floor is None:
        return previous if previous is not None and previous > settings.FALLBACK_MAX_BYTES_SCANNED else None
    return max(floor, previous or 0)


def _reserved_bytes(estimate: int | None) -> int:
    """What the ledger reserves for a query: its estimate, or the per-query cutoff when unknown."""
    return settings.FALLBACK_MAX_BYTES_SCANNED if estimate is None else estimate


# Any constant: the key of the PostgreSQL advisory lock that serializes "check the budget + reserve".
LEDGER_LOCK_KEY = 0x5A4D_5343_4F50


def _ledger_lock() -> None:
    """Serialize budget checks with the reservations they allow, until the current transaction ends.

    PostgreSQL: a transaction-level advisory lock (one for the whole ledger: the team cap spans every
    user). SQLite: the transaction is already `BEGIN IMMEDIATE` (settings: "transaction_mode"), which
    takes the database's write lock before the first read, so nothing else to do."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LEDGER_LOCK_KEY])


def _in_flight_refusal(*, user) -> str:
    """One user's new warehouse queries wait behind their own, not everyone's: past FALLBACK_MAX_IN_FLIGHT_PER_USER
    queued or running, a new one is refused (a burst of page searches that each miss would otherwise fill the
    worker's queue ahead of other analysts)."""
    cap = settings.FALLBACK_MAX_IN_FLIGHT_PER_USER
    if user is None or cap <= 0:
        return ""
    active = fallback_in_flight_count(user=user)
    if active >= cap:
        return (f"Refused: you already have {active} warehouse queries queued or running (the limit is {cap}). "
                f"Wait for one to finish, or cancel one, and search again.")
    return ""


def _budget_refusal(*, user, estimate: int | None, estimated_cost: Decimal, exclude_id: int | None = None,
                    exclude_export_id: int | None = None) -> str:
    if estimate is not None and estimate > settings.FALLBACK_MAX_BYTES_SCANNED:
        return (f"Refused: this query would scan about {_human_bytes(estimate)}, over the per-query limit of "
                f"{_human_bytes(settings.FALLBACK_MAX_BYTES_SCANNED)}. Narrow the filters.")
    how_much = f"this query would cost {'up to' if estimate is None else 'about'} ${estimated_cost:.4f}"
    budget = Decimal(str(settings.FALLBACK_DAILY_BUDGET_USD))
    spent = fallback_spent_today_usd(user=user, exclude_id=exclude_id, exclude_export_id=exclude_export_id)
    if user is not None and spent + estimated_cost > budget:
        return (f"Refused: today's warehouse budget is ${budget:.2f}; you have used ${spent:.4f} and {how_much}. "
                f"It resets at midnight ({settings.TIME_ZONE}).")
    team_budget = Decimal(str(settings.FALLBACK_TEAM_DAILY_BUDGET_USD))
    team_spent = fallback_team_spent_today_usd(exclude_id=exclude_id, exclude_export_id=exclude_export_id)
    if team_spent + estimated_cost > team_budget:
        return (f"Refused: the team's daily warehouse budget is ${team_budget:.2f}; ${team_spent:.4f} is used or "
                f"reserved and {how_much}. It resets at midnight ({settings.TIME_ZONE}).")
    return ""


def _born_finished(*, fields: dict, state: str, error: str, search_log, local_keys, bytes_estimate=None,
                   estimated_cost=Decimal(0)) -> FallbackHandle:
    now = timezone.now()
    fallback = Fallback.objects.create(**fields, state=state, error=error, bytes_estimate=bytes_estimate,
                                       estimated_cost_usd=estimated_cost, finished_at=now, heartbeat_at=now)
    request = _request_record(fallback=fallback, user=fields["user"], kind=FallbackRequest.Kind.REFUSED,
                              search_log=search_log, local_keys=local_keys, audit=False)
    _audit_finished(fallback)
    return FallbackHandle(fallback=fallback, request_id=request.pk)


def _request_record(*, fallback: Fallback, user, kind: str, search_log, local_keys, audit: bool = True):
    request = FallbackRequest.objects.create(fallback=fallback, user=user, kind=kind, search_log=search_log,
                                             local_keys=json_safe(list(local_keys)))
    if audit and kind != FallbackRequest.Kind.CREATED:  # created ones are audited when they finish
        audit_record(user=user, action="fallback", target=_audit_target(fallback), outcome=kind, cost_usd=0,
                     detail={"fallback_id": fallback.pk, "state": fallback.state, "query": fallback.query,
                             "bytes_scanned": 0, "note": "no new warehouse query"})
    return request


# --- queueing ----------------------------------------------------------------------------------

def fallback_enqueue(*, fallback: Fallback) -> bool:
    """Send the task; with Redis down, fail the fallback at once (broker timeouts are short)."""
    from .tasks import fallback_run_task

    try:
        # Limits go in the message (read now, not at import): the sender's values are the ones that apply.
        fallback_run_task.apply_async(args=[fallback.pk], queue=settings.WAREHOUSE_TASK_QUEUE,
                                      soft_time_limit=settings.FALLBACK_SOFT_TIME_LIMIT,
                                      time_limit=settings.FALLBACK_TIME_LIMIT)
        return True
    except Exception as exc:  # kombu/redis raise several types; all mean "not queued"
        logger.warning("could not enqueue fallback %s: %s", fallback.pk, exc)
        _finish(fallback_id=fallback.pk, state=Fallback.State.FAILED, error=QUEUE_UNAVAILABLE)
        fallback.refresh_from_db()  # the handle the page renders holds this same object
        return False


# --- running (inside the Celery worker) -------------------------------------------------------

class FallbackControl:
    """Passed to the backend: heartbeats and progress to the row, and whether to stop. `model`: Fallback, or
    Export (an export's run ticks its own row the same way)."""

    def __init__(self, fallback_id: int, model=Fallback):
        self.fallback_id = fallback_id
        self.model = model
        self.last_write = 0.0
        self.engine_query_id = ""

    def tick(self, *, engine_query_id: str | None = None, bytes_scanned: int | None = None,
             progress: float | None = None, force: bool = False) -> str | None:
        now = time.monotonic()
        new_query_id = engine_query_id and engine_query_id != self.engine_query_id
        if force or now - self.last_write >= TICK_WRITE_SECONDS or new_query_id:
            self.last_write = now
            changes: dict = {"heartbeat_at": timezone.now()}
            if new_query_id:
                self.engine_query_id = changes["engine_query_id"] = engine_query_id
            if bytes_scanned is not None:
                changes["bytes_scanned"] = bytes_scanned
            if progress is not None:
                changes["progress"] = progress
            self.model.objects.filter(pk=self.fallback_id, state=Fallback.State.RUNNING).update(**changes)
            row = self.model.objects.filter(pk=self.fallback_id).values("state", "cancel_requested_at").first()
            if row is None or row["state"] == Fallback.State.CANCELLED or row["cancel_requested_at"]:
                return "cancelled"
            if row["state"] != Fallback.State.RUNNING:  # the sweeper gave up on this run
                return "cancelled"
        return None


def request_token(fallback: Fallback) -> str:
    """Athena ClientRequestToken (32-128 chars): the same for every attempt of one fallback."""
    return f"samplescope-fallback-{fallback.pk:012d}-{fallback.fingerprint[:24]}"


def _claim(*, fallback_id: int) -> Fallback | None:
    """Mark the fallback running for this worker, or None when it is finished or owned by a live run."""
    now = timezone.now()
    if _refused_at_claim(fallback_id=fallback_id):
        return None
    claimed = Fallback.objects.filter(pk=fallback_id, state=Fallback.State.QUEUED).update(
        state=Fallback.State.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, progress=None)
    if claimed:
        return Fallback.objects.get(pk=fallback_id)
    fallback = Fallback.objects.filter(pk=fallback_id).first()
    if fallback is None or fallback.state != Fallback.State.RUNNING:
        return None  # finished already: a duplicate or late delivery
    stale_before = now - timedelta(seconds=settings.FALLBACK_STALE_AFTER_SECONDS)
    if fallback.heartbeat_at and fallback.heartbeat_at >= stale_before:
        return None  # another worker is running it right now
    if fallback.attempts >= settings.FALLBACK_MAX_ATTEMPTS:
        _finish(fallback_id=fallback_id, state=Fallback.State.FAILED,
                error=f"gave up after {fallback.attempts} attempts: the worker running it stopped answering")
        return None
    # Redelivered after its worker died (acks_late): take it over.
    took = Fallback.objects.filter(pk=fallback_id, state=Fallback.State.RUNNING,
                                   heartbeat_at=fallback.heartbeat_at).update(
        started_at=now, heartbeat_at=now, attempts=F("attempts") + 1)
    return Fallback.objects.get(pk=fallback_id) if took else None


def _refused_at_claim(*, fallback_id: int) -> bool:
    """Check the budget again when a worker picks a queued fallback up: other queries may have cost more
    than they reserved, or the budget was lowered, since it was accepted. Over budget: refused, nothing sent."""
    fallback = Fallback.objects.filter(pk=fallback_id, state=Fallback.State.QUEUED).select_related("user").first()
    if fallback is None:
        return False
    refusal = _budget_refusal(user=fallback.user, estimate=fallback.bytes_estimate,
                              estimated_cost=fallback.estimated_cost_usd, exclude_id=fallback.pk)
    if not refusal:
        return False
    error = "Refused when a worker picked it up, before anything was sent: " + refusal.removeprefix("Refused: ")
    return _finish(fallback_id=fallback_id, state=Fallback.State.REFUSED, error=error,
                   from_states=(Fallback.State.QUEUED,))


def fallback_execute(*, fallback_id: int, retries_left: int = 0, soft_time_limit: int | None = None) -> Fallback | None:
    """Run one fallback to the end. Idempotent: a second delivery of a finished one does nothing."""
    fallback = _claim(fallback_id=fallback_id)
    if fallback is None:
        return Fallback.objects.filter(pk=fallback_id).first()
    if fallback.cancel_requested_at:
        _finish(fallback_id=fallback_id, state=Fallback.State.CANCELLED)
        return Fallback.objects.get(pk=fallback_id)
    try:
        query = SearchQuery.from_dict(fallback.query)
        spec = table_spec_get(name=fallback.table)
        result = backend_get(fallback.backend).run(
            query=query, spec=spec, request_token=request_token(fallback), control=FallbackControl(fallback_id),
            resume_engine_query_id=fallback.engine_query_id if fallback.backend == "athena" else "",
            simulated_latency_ms=fallback.simulated_latency_ms,
        )
    except SoftTimeLimitExceeded:
        _finish(fallback_id=fallback_id, state=Fallback.State.TIMED_OUT,
                error=f"stopped after the {soft_time_limit or settings.FALLBACK_SOFT_TIME_LIMIT}s time limit")
    except WarehouseTransientError as exc:
        if retries_left > 0:
            # Back to queued so the retried task can claim it; Athena's request token keeps it one query.
            Fallback.objects.filter(pk=fallback_id, state=Fallback.State.RUNNING).update(
                state=Fallback.State.QUEUED, heartbeat_at=timezone.now(), error=f"retrying: {exc}"[:2000])
            raise
        _finish(fallback_id=fallback_id, state=Fallback.State.FAILED, error=f"warehouse unreachable: {exc}")
    except Exception as exc:
        logger.exception("fallback %s failed", fallback_id)
        _finish(fallback_id=fallback_id, state=Fallback.State.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        if _finish(fallback_id=fallback_id, state=result.state, error=result.error, result=result) \
                and result.state == Fallback.State.SUCCEEDED:
            _learn(fallback_id=fallback_id)
    return Fallback.objects.get(pk=fallback_id)


def _learn(*, fallback_id: int) -> None:
    """Keep a succeeded fallback's rows in the learned store, after the row is final; never raising."""
    try:
        learned_from_fallback(fallback_id=fallback_id)
    except Exception:  # learning is an optimisation: the fallback itself succeeded
        logger.exception("learning the rows of fallback %s failed", fallback_id)


def _finish(*, fallback_id: int, state: str, error: str = "", result: WarehouseResult | None = None,
            from_states=Fallback.ACTIVE_STATES) -> bool:
    """The one way out of queued/running: a conditional update, then the audit event.

    Every ending is settled with the bytes the engine really scanned (the result's, else the last
    figure a tick recorded): a query stopped, timed out, swept or failed after scanning is billed for
    what it read, so the day's spend includes it. Reused results and queries that never scanned are free.
    """
    changes: dict = {"state": state, "error": error[:4000], "finished_at": timezone.now(), "inflight_key": None}
    with transaction.atomic():  # read the recorded bytes and settle in one write transaction
        row = Fallback.objects.select_for_update().filter(pk=fallback_id, state__in=from_states) \
            .values("bytes_scanned", "cancelled_by_name").first()
        if row is None:
            return False
        if state == Fallback.State.CANCELLED and row["cancelled_by_name"]:  # who stopped it, not "a user"
            changes["error"] = f"cancelled by {row['cancelled_by_name']}"
        elif state == Fallback.State.CANCELLED and not error:
            changes["error"] = "cancelled"
        bytes_scanned = row["bytes_scanned"]
        if result is not None:
            changes.update(rows=result.rows, row_count=len(result.rows), bytes_are_estimate=result.bytes_are_estimate,
                           engine_query_id=result.engine_query_id)
            if result.bytes_scanned is not None:
                bytes_scanned = result.bytes_scanned
            if state == Fallback.State.SUCCEEDED:
                changes["progress"] = 1.0
        changes["bytes_scanned"] = bytes_scanned
        changes["cost_usd"] = _settled_cost_usd(state=state, bytes_scanned=bytes_scanned, result=result)
        updated = Fallback.objects.filter(pk=fallback_id, state__in=from_states).update(**changes)
    if updated:
        _audit_finished(Fallback.objects.select_related("user").get(pk=fallback_id))
    return bool(updated)


def _settled_cost_usd(*, state: str, bytes_scanned: int | None, result: WarehouseResult | None) -> Decimal:
    """What a finished fallback costs: Athena's price of the bytes it scanned, whatever the ending.

    A reused result is free; a success the engine reported no bytes for keeps the backend's own price
    (Athena's 10 MB minimum); any other ending with no bytes scanned never reached the engine: free."""
    if result is not None and result.reused_result:
        return Decimal(0)
    if bytes_scanned:
        return scan_cost_usd(bytes_scanned=bytes_scanned)
    if result is not None and state == Fallback.State.SUCCEEDED:
        return result.cost_usd
    return Decimal(0)


# --- cancel and sweep --------------------------------------------------------------------------

@dataclass(frozen=True)
class FallbackCancel:
    """What a cancel did: `stopped` the fallback (its creator or staff), or only `left` it (a joiner)."""

    fallback: Fallback
    stopped: bool

    @property
    def left(self) -> bool:
        return not self.stopped


def fallback_cancel(*, fallback: Fallback, user) -> FallbackCancel:
    """The one decision for the page and the API. Its creator or staff stop it (queued: cancelled at once;
    running: flagged, the worker stops the engine query on its next tick), and the row keeps who did.
    Someone whose search only joined it leaves it: their page stops waiting, the query runs on for the
    others (its creator is billed, so only they or staff may stop it). Anyone else: PermissionDenied."""
    if not fallback_can_stop(fallback=fallback, user=user):
        if not fallback_has_joined(fallback=fallback, user=user):
            raise PermissionDenied("Only the people whose searches use this fallback can cancel it "
                                   "(its creator and staff stop it; the others leave it).")
        _leave(fallback=fallback, user=user)
        fallback.refresh_from_db()
        return FallbackCancel(fallback=fallback, stopped=False)
    # The first stop wins; the name stays if the account goes (the creator sees "cancelled by <name>").
    Fallback.objects.filter(pk=fallback.pk, state__in=Fallback.ACTIVE_STATES, cancel_requested_at__isnull=True) \
        .update(cancel_requested_at=timezone.now(), cancelled_by=user, cancelled_by_name=user.get_username())
    _finish(fallback_id=fallback.pk, state=Fallback.State.CANCELLED, from_states=(Fallback.State.QUEUED,))
    fallback.refresh_from_db()
    return FallbackCancel(fallback=fallback, stopped=True)


def _leave(*, fallback: Fallback, user) -> None:
    left = FallbackRequest.objects.filter(fallback=fallback, user=user, left_at__isnull=True) \
        .update(left_at=timezone.now())
    if left and fallback.is_active:
        audit_record(user=user, action="fallback", target=_audit_target(fallback), outcome="left", cost_usd=0,
                     detail={"fallback_id": fallback.pk, "state": fallback.state, "query": fallback.query,
                             "note": "stopped waiting; the fallback runs on for its creator"})


def fallback_sweep(*, stale_after_seconds: int | None = None) -> dict[str, int]:
    """Fallbacks whose worker died: requeue them (a few times) or fail them, so none stays running forever."""
    stale_after = settings.FALLBACK_STALE_AFTER_SECONDS if stale_after_seconds is None else stale_after_seconds
    counts = {"stale": 0, "requeued": 0, "failed": 0, "cancelled": 0}
    for fallback in fallback_stale_list(stale_after_seconds=stale_after):
        counts["stale"] += 1
        if fallback.cancel_requested_at:
            if _finish(fallback_id=fallback.pk, state=Fallback.State.CANCELLED):
                counts["cancelled"] += 1
                _stop_engine(fallback)
            continue
        if fallback.state == Fallback.State.RUNNING and fallback.attempts < settings.FALLBACK_MAX_ATTEMPTS:
            requeued = Fallback.objects.filter(pk=fallback.pk, state=Fallback.State.RUNNING,
                                               heartbeat_at=fallback.heartbeat_at).update(
                state=Fallback.State.QUEUED, heartbeat_at=timezone.now(),
                error=f"requeued after its worker stopped answering (attempt {fallback.attempts})")
            if requeued and fallback_enqueue(fallback=fallback):
                counts["requeued"] += 1
            elif requeued:
                counts["failed"] += 1
            continue
        reason = (f"no worker picked it up within {stale_after}s" if fallback.state == Fallback.State.QUEUED
                  else f"its worker stopped answering {fallback.attempts} time(s); gave up")
        if _finish(fallback_id=fallback.pk, state=Fallback.State.FAILED, error=reason):
            counts["failed"] += 1
            _stop_engine(fallback)
    return counts


def _stop_engine(fallback: Fallback) -> None:
    if fallback.backend == "athena" and fallback.engine_query_id:
        backend_get("athena").stop(engine_query_id=fallback.engine_query_id)


# --- retention -----------------------------------------------------------------------------------

ROWS_KEEP_AT_LEAST_SECONDS = 3600  # a finished fallback's rows back the page's merged view for a while


def fallback_rows_prune(*, older_than_seconds: int | None = None) -> int:
    """Drop the row copies (`Fallback.rows`) of fallbacks finished longer ago than the cache age: they can
    no longer be reused, and the learned store keeps what is worth keeping. Counts, costs and the audit
    trail stay. Returns how many fallbacks lost their rows."""
    age = settings.FALLBACK_CACHE_MAX_AGE_SECONDS if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=max(age, ROWS_KEEP_AT_LEAST_SECONDS))
    return (Fallback.objects.exclude(state__in=Fallback.ACTIVE_STATES).filter(finished_at__lt=cutoff)
            .exclude(rows=[]).update(rows=[]))


def logs_prune(*, older_than_days: int | None = None) -> dict[str, int]:
    """Retention (`manage.py prune_logs`, beat `warehouse-prune-logs`): search logs older than
    LOG_RETENTION_DAYS, old fallbacks' row copies, and the files of exports finished more than EXPORT_KEEP_DAYS
    ago (export_services.exports_prune). Audit events are never deleted here."""
    from .export_services import exports_prune  # it imports this module

    days = settings.LOG_RETENTION_DAYS if older_than_days is None else older_than_days
    return {"search_logs_deleted": search_log_prune(older_than_days=days),
            "fallback_rows_pruned": fallback_rows_prune(),
            "exports_expired": exports_prune(older_than_days=settings.EXPORT_KEEP_DAYS)}


# --- audit -------------------------------------------------------------------------------------

def _audit_target(fallback: Fallback) -> str:
    try:
        return SearchQuery.from_dict(fallback.query).describe()
    except (KeyError, TypeError, ValueError):
        return f"{fallback.table}: {fallback.fingerprint}"


def _audit_finished(fallback: Fallback) -> None:
    audit_record(
        user=fallback.user,
        action="fallback",
        target=_audit_target(fallback),
        outcome=fallback.state,
        cost_usd=fallback.cost_usd,
        detail={
            "fallback_id": fallback.pk,
            "backend": fallback.backend,
            "query": fallback.query,
            "bytes_scanned": fallback.bytes_scanned,
            "bytes_are_estimate": fallback.bytes_are_estimate,
            "rows": fallback.row_count,
            "engine_query_id": fallback.engine_query_id,
            "elapsed_ms": fallback.elapsed_ms,
            "error": fallback.error,
            # Who stopped it (the event's user is its creator, who is billed); None when nobody did.
            "cancelled_by": fallback.cancelled_by_name or None,
            "cancelled_by_id": fallback.cancelled_by_id,
        },
    )


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{size} B"
