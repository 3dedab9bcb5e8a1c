"""Money: every ending of a fallback is billed for what it scanned, and the daily spend ledger
(per user and team-wide) cannot be overdrawn, even by concurrent requests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as django_settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.warehouse.backends.base import WarehouseResult, scan_cost_usd
from apps.warehouse.backends.local import LocalBackend
from apps.warehouse.checks import ledger_database_check, ledger_database_problems
from apps.warehouse.models import Fallback
from apps.warehouse.selectors import fallback_spent_today_usd
from apps.warehouse.services import fallback_cancel, fallback_execute, fallback_sweep
from tests.conftest import ROOT

from .conftest import fallback_for_search, local_rows_for
from .ledger_race import ledger_race

pytestmark = pytest.mark.django_db

GIB = 1024**3


@pytest.fixture(autouse=True)
def local_backend(settings, warehouse_data):
    settings.WAREHOUSE_BACKEND = "local"
    settings.FALLBACK_DAILY_BUDGET_USD = 5.0
    settings.FALLBACK_TEAM_DAILY_BUDGET_USD = 50.0
    settings.FALLBACK_MAX_BYTES_SCANNED = 200 * GIB
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 3600
    settings.WAREHOUSE_TASK_QUEUE = "celery"
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 0


def make_queued(user, query, **extra) -> Fallback:
    fields = dict(user=user, table="samples", query=query.to_dict(), fingerprint=query.fingerprint(),
                  limit=query.limit, backend="local", inflight_key=query.fingerprint(), heartbeat_at=timezone.now())
    return Fallback.objects.create(**{**fields, **extra})


def scanning_run(*, scanned: int, then):
    """A backend run that reports `scanned` bytes through a tick, then ends with `then()`."""
    def run(self, *, query, spec, request_token, control, **_):
        control.last_write = 0.0  # make the tick write at once
        control.tick(engine_query_id="q-1", bytes_scanned=scanned)
        return then()
    return run


# --- 1. stopped queries are billed --------------------------------------------------------------

def _raise(exc):
    def fail():
        raise exc
    return fail


@pytest.mark.parametrize("ending, state", [
    (_raise(SoftTimeLimitExceeded()), "timed_out"),
    (_raise(RuntimeError("engine crashed")), "failed"),
    (lambda: WarehouseResult(state="cancelled", error="cancelled by a user", engine_query_id="q-1"), "cancelled"),
    (lambda: WarehouseResult(state="failed", error="Athena: FAILED", bytes_scanned=7 * GIB,
                             engine_query_id="q-1"), "failed"),
])
def test_a_stopped_query_is_billed_for_what_it_scanned(user, warehouse_data, monkeypatch, ending, state):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=200)
    monkeypatch.setattr(LocalBackend, "run", scanning_run(scanned=3 * GIB, then=ending))
    fallback = make_queued(user, query)
    done = fallback_execute(fallback_id=fallback.pk)
    assert done.state == state
    scanned = 7 * GIB if "Athena" in done.error else 3 * GIB  # the engine's final figure wins over a tick's
    assert done.bytes_scanned == scanned
    assert done.cost_usd == scan_cost_usd(bytes_scanned=scanned) > 0
    assert fallback_spent_today_usd(user=user) == done.cost_usd
    event = AuditEvent.objects.get(action="fallback", outcome=state)
    assert event.cost_usd == pytest.approx(done.cost_usd, abs=Decimal("1e-6"))


def test_a_swept_query_is_billed_for_what_it_scanned(user, warehouse_data, settings):
    settings.FALLBACK_MAX_ATTEMPTS = 1
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=210)
    dead = make_queued(user, query, state="running", attempts=1, bytes_scanned=2 * GIB, engine_query_id="q-dead")
    Fallback.objects.filter(pk=dead.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert fallback_sweep(stale_after_seconds=60)["failed"] == 1
    dead.refresh_from_db()
    assert dead.state == "failed" and dead.cost_usd == scan_cost_usd(bytes_scanned=2 * GIB)
    assert fallback_spent_today_usd(user=user) == dead.cost_usd


def test_a_cancel_of_a_running_query_that_scanned_is_billed(user, warehouse_data):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=215)
    running = make_queued(user, query, state="running", attempts=1, bytes_scanned=GIB,
                          cancel_requested_at=timezone.now() - timedelta(hours=1))
    Fallback.objects.filter(pk=running.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    fallback_sweep(stale_after_seconds=60)
    running.refresh_from_db()
    assert running.state == "cancelled" and running.cost_usd == scan_cost_usd(bytes_scanned=GIB)


def test_queries_that_never_reached_the_engine_or_reused_a_result_stay_free(user, warehouse_data, monkeypatch):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=220)
    queued = make_queued(user, query)
    assert fallback_cancel(fallback=queued, user=user).fallback.cost_usd == 0
    other, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=221)
    monkeypatch.setattr(LocalBackend, "run", scanning_run(scanned=0, then=lambda: WarehouseResult(
        state="succeeded", rows=[], bytes_scanned=0, reused_result=True, cost_usd=Decimal(0))))
    assert fallback_execute(fallback_id=make_queued(user, other).pk).cost_usd == 0
    assert fallback_spent_today_usd(user=user) == 0


@pytest.fixture(scope="module")
def big_table(tmp_path_factory):
    """A table whose full scan takes the local backend a second or more (3M rows, ~200 MB of Parquet), so a
    run can be stopped half-way through a real scan."""
    import duckdb

    from apps.search.query import Filter, SearchQuery
    from apps.search.tables import TableSpec

    path = tmp_path_factory.mktemp("big") / "big.parquet"
    duckdb.connect().execute(
        "COPY (SELECT i AS id, md5(i::varchar) || md5((i * 7)::varchar) AS text FROM range(3000000) t(i)) "
        f"TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 50000)")
    spec = TableSpec(name="big", key="id", columns={"id": "BIGINT", "text": "VARCHAR"},
                     searchable={"text": ("regex",)}, shown=("id", "text"), full_data_glob=str(path))
    query = SearchQuery(table="big", filters=(Filter("text", "regex", "(ab|cd)+[0-9]{3}zz"),), limit=10)  # no match
    return spec, query


def big_run(user, big_table, monkeypatch) -> tuple[Fallback, int]:
    from apps.warehouse import services

    spec, query = big_table
    monkeypatch.setattr(services, "table_spec_get", lambda name=None: spec)
    fallback = Fallback.objects.create(user=user, table="big", query=query.to_dict(), fingerprint=query.fingerprint(),
                                       limit=query.limit, backend="local", bytes_are_estimate=True,
                                       inflight_key=query.fingerprint(), heartbeat_at=timezone.now())
    return fallback, LocalBackend().estimate_bytes(query=query, spec=spec)


def test_a_local_run_cancelled_mid_scan_is_billed_for_what_it_read(user, big_table, monkeypatch):
    """Issue 22: DuckDB reports no progress for this scan, so a cancelled local run recorded no bytes and cost $0."""
    from apps.warehouse.services import FallbackControl

    fallback, estimate = big_run(user, big_table, monkeypatch)
    real_tick, ticks = FallbackControl.tick, []

    def tick(self, **kwargs):
        ticks.append(kwargs)
        if len(ticks) == 1:  # the first poll, just after the scan (~0.4-0.8 s here) started: its creator cancels it
            assert fallback_cancel(fallback=Fallback.objects.get(pk=fallback.pk), user=user).stopped
        return real_tick(self, **kwargs)

    monkeypatch.setattr(FallbackControl, "tick", tick)
    done = fallback_execute(fallback_id=fallback.pk)
    assert done.state == "cancelled" and done.error == "cancelled by analyst" and done.rows == []
    assert done.bytes_scanned == estimate > 0 and done.bytes_are_estimate  # the upper bound of what it read
    assert done.cost_usd == scan_cost_usd(bytes_scanned=estimate) > 0
    assert fallback_spent_today_usd(user=user) == done.cost_usd


def test_a_local_run_stopped_by_the_soft_time_limit_is_billed_for_what_it_read(user, big_table, monkeypatch):
    """Celery's soft time limit is an exception raised in the worker's main thread by a signal: the same here."""
    import signal

    from apps.warehouse.services import FallbackControl

    fallback, estimate = big_run(user, big_table, monkeypatch)
    real_tick, ticks = FallbackControl.tick, []

    def tick(self, **kwargs):
        ticks.append(kwargs)
        if len(ticks) == 1:  # the first poll: the limit strikes 0.05 s later, while the worker waits on the scan
            signal.setitimer(signal.ITIMER_REAL, 0.05)
        return real_tick(self, **kwargs)

    def soft_limit(signum, frame):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(FallbackControl, "tick", tick)
    previous = signal.signal(signal.SIGALRM, soft_limit)
    try:
        done = fallback_execute(fallback_id=fallback.pk, soft_time_limit=1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert done.state == "timed_out" and "time limit" in done.error
    assert done.bytes_scanned == estimate > 0 and done.cost_usd == scan_cost_usd(bytes_scanned=estimate)
    assert AuditEvent.objects.get(action="fallback", outcome="timed_out").cost_usd > 0


# --- 2. a spend ledger that cannot be overdrawn --------------------------------------------------

def ask(user, query):
    return fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))


def test_unknown_estimate_reserves_the_per_query_cutoff(user, warehouse_data, settings, monkeypatch,
                                                        django_capture_on_commit_callbacks):
    """Athena cannot estimate: without a similar predecessor the worst case is reserved, not 10 MB."""
    monkeypatch.setattr(LocalBackend, "estimate_bytes", lambda self, **_: None)
    settings.FALLBACK_MAX_BYTES_SCANNED = 100 * GIB
    worst = scan_cost_usd(bytes_scanned=100 * GIB)
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=230)
    with django_capture_on_commit_callbacks():
        handle = ask(user, query)
    assert handle.state == "queued" and handle.fallback.bytes_estimate is None
    assert handle.fallback.estimated_cost_usd == worst
    assert fallback_spent_today_usd(user=user) == worst
    settings.FALLBACK_DAILY_BUDGET_USD = float(worst) * 1.5  # room for one worst case, not two
    other, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=231)
    refused = ask(user, other)
    assert refused.state == "refused" and "up to $" in refused.error_message


def test_team_wide_cap_refuses_once_everyone_together_spent_it(user, staff_user, warehouse_data, settings,
                                                               monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(LocalBackend, "estimate_bytes", lambda self, **_: 100 * GIB)
    each = scan_cost_usd(bytes_scanned=100 * GIB)
    settings.FALLBACK_TEAM_DAILY_BUDGET_USD = float(each) * 1.5
    first, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=240)
    second, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=241)
    with django_capture_on_commit_callbacks():
        assert ask(user, first).state == "queued"
        refused = ask(staff_user, second)  # well within staff_user's own budget
    assert refused.state == "refused" and "team's daily warehouse budget" in refused.error_message


def test_worker_rechecks_the_budget_when_it_claims_the_job(user, warehouse_data, settings, monkeypatch):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=250)
    queued = make_queued(user, query, bytes_estimate=GIB, estimated_cost_usd=scan_cost_usd(bytes_scanned=GIB))
    # Meanwhile another query of this user cost far more than it had reserved.
    make_queued(user, warehouse_data.id_query(in_subset=1, missing=1, offset=251)[0], inflight_key=None,
                state="succeeded", cost_usd=Decimal("4.999"), finished_at=timezone.now())
    sent = []
    monkeypatch.setattr(LocalBackend, "run", lambda self, **kwargs: sent.append(kwargs))
    done = fallback_execute(fallback_id=queued.pk)
    assert sent == []  # nothing reached the engine
    assert done.state == "refused" and done.inflight_key is None and done.cost_usd == 0
    assert "when a worker picked it up" in done.error and "budget" in done.error
    assert AuditEvent.objects.get(action="fallback", outcome="refused").detail["fallback_id"] == queued.pk


def test_worker_runs_a_job_still_within_budget(user, warehouse_data):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=255)
    queued = make_queued(user, query, bytes_estimate=GIB, estimated_cost_usd=scan_cost_usd(bytes_scanned=GIB))
    assert fallback_execute(fallback_id=queued.pk).state == "succeeded"


def reused_athena_result(user, query) -> Fallback:
    """A succeeded Athena fallback that reused an earlier result: Athena reports 0 bytes scanned for it."""
    return Fallback.objects.create(user=user, table="samples", query=query.to_dict(), fingerprint="r" * 64,
                                   limit=query.limit, backend="athena", state="succeeded", bytes_scanned=0,
                                   finished_at=timezone.now())


def test_a_reused_result_does_not_lower_the_next_reservation_below_the_tables_size(
        user, warehouse_data, settings, django_capture_on_commit_callbacks):
    """Issue 22: after a reused (0-byte) result, queries on the same columns reserved ~$0.00005 each."""
    from apps.search.tables import table_spec_get
    from apps.warehouse.backends.base import query_columns
    from apps.warehouse.backends.local import parquet_bytes_for_columns

    settings.WAREHOUSE_BACKEND = "athena"
    earlier, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=230)
    reused_athena_result(user, earlier)
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=232)  # filters the same column
    spec = table_spec_get(name="samples")
    floor = parquet_bytes_for_columns(pattern=spec.full_data_glob, columns=query_columns(query=query, spec=spec))
    with django_capture_on_commit_callbacks():
        handle = ask(user, query)
    assert handle.state == "queued"
    assert handle.fallback.bytes_estimate >= floor > 0  # a full scan of the columns it reads, not 0
    assert handle.fallback.estimated_cost_usd >= scan_cost_usd(bytes_scanned=floor)


def test_with_the_tables_size_unknown_a_reused_result_leaves_the_worst_case_reserved(
        user, warehouse_data, settings, monkeypatch, django_capture_on_commit_callbacks):
    from apps.warehouse.backends.athena import AthenaBackend

    settings.WAREHOUSE_BACKEND = "athena"
    monkeypatch.setattr(AthenaBackend, "full_scan_bytes", lambda self, **_: None, raising=False)  # no footers here
    earlier, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=234)
    reused_athena_result(user, earlier)
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=236)
    with django_capture_on_commit_callbacks():
        handle = ask(user, query)
    assert handle.state == "queued" and handle.fallback.bytes_estimate is None
    assert handle.fallback.estimated_cost_usd == scan_cost_usd(bytes_scanned=settings.FALLBACK_MAX_BYTES_SCANNED)


def test_queries_after_a_reused_result_cannot_overdraw_the_budget(user, warehouse_data, settings, monkeypatch,
                                                                 django_capture_on_commit_callbacks):
    """The issue's overdraft: in-flight queries that reserved ~$0.00005 each all fit in $1, then each scanned
    far more. Each must reserve what it may cost, so no more of them start than the budget pays for."""
    from apps.warehouse.backends.athena import AthenaBackend

    settings.WAREHOUSE_BACKEND = "athena"
    settings.FALLBACK_DAILY_BUDGET_USD = 1.0
    settings.FALLBACK_MAX_BYTES_SCANNED = 100 * GIB  # $0.4883 a query at most
    monkeypatch.setattr(AthenaBackend, "full_scan_bytes", lambda self, **_: None, raising=False)
    earlier, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=240)
    reused_athena_result(user, earlier)
    states = []
    for offset in range(242, 252, 2):
        query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=offset)
        with django_capture_on_commit_callbacks():
            states.append(ask(user, query).state)
    assert states == ["queued", "queued", "refused", "refused", "refused"]
    in_flight = Fallback.objects.filter(user=user, state="queued")
    worst = scan_cost_usd(bytes_scanned=100 * GIB)
    assert sum(f.estimated_cost_usd for f in in_flight) == 2 * worst <= Decimal("1.0")
    # However much each then scans, up to the cutoff the worker enforces, the day stays within the budget.
    in_flight.update(state="failed", bytes_scanned=100 * GIB, cost_usd=worst, inflight_key=None)
    assert fallback_spent_today_usd(user=user) <= Decimal("1.0")


@pytest.mark.django_db(transaction=True)  # each thread has its own connection and commits
@pytest.mark.parametrize("team", [False, True], ids=["user-cap", "team-cap"])
def test_concurrent_requests_never_overdraw_the_budget_sqlite(warehouse_data, team):
    assert connection.vendor == "sqlite"
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    result = ledger_race(threads=16, estimate_bytes=100 * GIB, user_budget_usd=5.0 if not team else 1e6,
                         team_budget_usd=5.0 if team else 1e6, team=team)
    print("LEDGER_RACE", result)
    assert result["errors"] == []
    assert Decimal(result["reserved_usd"]) <= Decimal(result["budget_usd"])
    assert result["created"] == result["fit_in_budget"] == 10  # 10 × $0.4883 fit in $5
    assert result["refused"] == 6


@pytest.mark.integration
def test_concurrent_requests_never_overdraw_the_budget_postgresql(postgres_server, warehouse_data):
    """The same race on a real PostgreSQL (advisory lock): run in a process of its own whose Django
    database is that server (tests/warehouse/ledger_race.py migrates it)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "apps.samplescope.settings.test",
           "DATABASE_URL": postgres_server.database_url("ledger_race"), "DATA_DIR": str(django_settings.DATA_DIR)}
    run = subprocess.run([sys.executable, "-m", "tests.warehouse.ledger_race", "--threads", "16"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("LEDGER_RACE "))
    results = json.loads(line.removeprefix("LEDGER_RACE "))
    print("LEDGER_RACE", results)
    for result in results:
        assert result["database"] == "postgresql"
        assert result["errors"] == []
        assert Decimal(result["reserved_usd"]) <= Decimal(result["budget_usd"])
        assert result["created"] == result["fit_in_budget"] == 10 and result["refused"] == 6
    smoke = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("SMOKE ")).split(" ", 1)[1])
    assert smoke == {"swept_failed": 1, "swept_cost_ok": True, "pruned": 1, "rows_after_prune": []}


def test_panel_shows_the_estimated_cost_and_the_budget_left_while_it_runs(client, user, warehouse_data, settings,
                                                                          monkeypatch):
    monkeypatch.setattr(LocalBackend, "estimate_bytes", lambda self, **_: None)  # unknown: worst case
    settings.FALLBACK_MAX_BYTES_SCANNED = 100 * GIB
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=260)
    handle = ask(user, query)
    client.force_login(user)
    html = client.get(reverse("warehouse:detail", kwargs={"fallback_id": handle.id}), HTTP_HX_REQUEST="true") \
        .content.decode()
    assert "Estimated cost" in html and "up to $0.4883" in html and "worst case reserved" in html
    assert "Budget left today: <strong class=\"fallback-budget-left\">$4.5117</strong> of your $5.00" in html
    assert "team: $49.5117 of $50.00" in html

    listing = client.get(reverse("warehouse:list")).content.decode()
    assert "$4.5117 left" in listing and "$49.5117</strong> of its $50.00 left" in listing
    assert "≤ 0.488281" in listing  # the reserved worst case, in the Estimated column


def test_a_running_query_counts_at_what_it_scanned_once_that_passes_its_reservation(user, warehouse_data):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=270)
    running = make_queued(user, query, state="running", bytes_estimate=GIB,
                          estimated_cost_usd=scan_cost_usd(bytes_scanned=GIB))
    assert fallback_spent_today_usd(user=user) == scan_cost_usd(bytes_scanned=GIB)
    Fallback.objects.filter(pk=running.pk).update(bytes_scanned=50 * GIB)  # a tick: the estimate was low
    assert fallback_spent_today_usd(user=user) == scan_cost_usd(bytes_scanned=50 * GIB)


def test_system_check_refuses_sqlite_without_immediate_transactions(settings):
    assert ledger_database_check() == []  # the project's settings (and the test settings) are right
    deferred = {**settings.DATABASES["default"], "OPTIONS": {"timeout": 20}}
    assert [m.id for m in ledger_database_problems(deferred)] == ["warehouse.E001"]


def test_spend_by_user_keeps_the_name_a_fallback_was_made_under(client, user, staff_user, warehouse_data):
    """Issue 22: a renamed account's fallbacks moved to its new name on the dashboard, a deleted one's to (system)."""
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=290)
    handle = ask(user, query)
    assert handle.fallback.user_name == "analyst"
    Fallback.objects.filter(pk=handle.fallback.pk).update(state="succeeded", cost_usd=Decimal("0.5"))

    user.username = "renamed-analyst"
    user.save()
    client.force_login(staff_user)
    spend = client.get("/dashboard/").context["spend"]
    assert [(r["username"], r["cost_usd"]) for r in spend] == [("analyst", Decimal("0.5"))]
    user.delete()
    assert [r["username"] for r in client.get("/dashboard/").context["spend"]] == ["analyst"]


def test_a_users_queries_in_flight_are_capped_and_others_are_not(user, staff_user, warehouse_data, settings):
    """Issue 22: a burst of page searches that each miss queued one fallback each, ahead of everyone else's."""
    settings.FALLBACK_MAX_IN_FLIGHT_PER_USER = 2
    queries = [warehouse_data.id_query(in_subset=1, missing=1, offset=300 + n)[0] for n in range(4)]
    first, second, third = (ask(user, query) for query in queries[:3])
    assert first.created and second.created
    assert third.fallback.state == "refused" and "already have 2 warehouse queries" in third.fallback.error
    assert ask(staff_user, queries[2]).created  # another analyst's query is not held back by this user's
    Fallback.objects.filter(pk=first.fallback.pk).update(state="succeeded", finished_at=timezone.now())
    assert ask(user, queries[3]).created  # one finished: room for one more
