"""The budget's edges: a query that spends exactly what is left is accepted, one cent more is not; the per-query
byte cutoff is inclusive; the worker's recheck does not count the job twice; what the page shows as left never
goes below zero and is the smaller of the two caps; the team's cap is today's; row copies live at least an hour."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.warehouse.backends.base import scan_cost_usd
from apps.warehouse.backends.local import LocalBackend
from apps.warehouse.models import Fallback
from apps.warehouse.selectors import fallback_budget_left, fallback_team_spent_today_usd
from apps.warehouse.services import ROWS_KEEP_AT_LEAST_SECONDS, fallback_execute, fallback_rows_prune

from .conftest import fallback_for_search, local_rows_for

pytestmark = pytest.mark.django_db

GIB = 1024**3
EACH = scan_cost_usd(bytes_scanned=100 * GIB)  # $0.48828125: exact as a float, so a budget can equal it


@pytest.fixture(autouse=True)
def local_backend(settings, warehouse_data, monkeypatch):
    settings.WAREHOUSE_BACKEND = "local"
    settings.FALLBACK_DAILY_BUDGET_USD = 5.0
    settings.FALLBACK_TEAM_DAILY_BUDGET_USD = 50.0
    settings.FALLBACK_MAX_BYTES_SCANNED = 200 * GIB
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 3600
    settings.WAREHOUSE_TASK_QUEUE = "celery"
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 0
    monkeypatch.setattr(LocalBackend, "estimate_bytes", lambda self, **_: 100 * GIB)
    assert float(EACH) == EACH


def ask(user, query):
    return fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))


def finished(user, *, cost: Decimal, fingerprint: str, **extra) -> Fallback:
    return Fallback.objects.create(user=user, table="samples", query={"table": "samples", "filters": [], "limit": 1},
                                   fingerprint=fingerprint, limit=1, backend="local", state="succeeded",
                                   cost_usd=cost, finished_at=timezone.now(), **extra)


def test_a_query_that_spends_exactly_the_daily_budget_is_accepted(user, warehouse_data, settings,
                                                                  django_capture_on_commit_callbacks):
    settings.FALLBACK_DAILY_BUDGET_USD = float(EACH * 2)
    with django_capture_on_commit_callbacks():
        assert ask(user, warehouse_data.id_query(in_subset=1, missing=1, offset=300)[0]).state == "queued"
        last = ask(user, warehouse_data.id_query(in_subset=1, missing=1, offset=301)[0])
        assert last.state == "queued", last.error_message  # spent + this == the budget: allowed
        refused = ask(user, warehouse_data.id_query(in_subset=1, missing=1, offset=302)[0])
    assert refused.state == "refused" and "today's warehouse budget" in refused.error_message


def test_a_query_that_spends_exactly_the_team_budget_is_accepted(user, staff_user, warehouse_data, settings,
                                                                 django_capture_on_commit_callbacks):
    settings.FALLBACK_TEAM_DAILY_BUDGET_USD = float(EACH * 2)
    with django_capture_on_commit_callbacks():
        assert ask(user, warehouse_data.id_query(in_subset=1, missing=1, offset=310)[0]).state == "queued"
        last = ask(staff_user, warehouse_data.id_query(in_subset=1, missing=1, offset=311)[0])
        assert last.state == "queued", last.error_message
        refused = ask(staff_user, warehouse_data.id_query(in_subset=1, missing=1, offset=312)[0])
    assert refused.state == "refused" and "team's daily warehouse budget" in refused.error_message


def test_a_query_estimated_at_exactly_the_per_query_cutoff_is_sent(user, warehouse_data, settings, monkeypatch,
                                                                    django_capture_on_commit_callbacks):
    settings.FALLBACK_MAX_BYTES_SCANNED = 100 * GIB  # the estimate, to the byte
    with django_capture_on_commit_callbacks():
        handle = ask(user, warehouse_data.id_query(in_subset=1, missing=1, offset=320)[0])
    assert handle.state == "queued", handle.error_message
    monkeypatch.setattr(LocalBackend, "estimate_bytes", lambda self, **_: 100 * GIB + 1)
    refused = ask(user, warehouse_data.id_query(in_subset=1, missing=1, offset=321)[0])
    assert refused.state == "refused" and "per-query limit" in refused.error_message


def test_the_workers_recheck_does_not_count_the_jobs_own_reservation(user, warehouse_data, settings):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=330)
    queued = Fallback.objects.create(user=user, table="samples", query=query.to_dict(), fingerprint=query.fingerprint(),
                                     limit=query.limit, backend="local", inflight_key=query.fingerprint(),
                                     heartbeat_at=timezone.now(), bytes_estimate=100 * GIB, estimated_cost_usd=EACH)
    settings.FALLBACK_DAILY_BUDGET_USD = float(EACH) * 1.5  # room for this job once, not twice
    done = fallback_execute(fallback_id=queued.pk)
    assert done.state == "succeeded", done.error


def test_the_budget_left_never_goes_below_zero_and_is_the_smaller_cap(user, staff_user, settings):
    settings.FALLBACK_DAILY_BUDGET_USD = 5.0
    settings.FALLBACK_TEAM_DAILY_BUDGET_USD = 50.0
    finished(user, cost=Decimal("6"), fingerprint="a" * 64)  # ran past its reservation: over the budget
    left = fallback_budget_left(user=user)
    assert left.user_spent == Decimal("6") and left.user_left == 0 and left.left == 0

    settings.FALLBACK_TEAM_DAILY_BUDGET_USD = 7.0
    finished(staff_user, cost=Decimal("0.5"), fingerprint="b" * 64)
    left = fallback_budget_left(user=staff_user)
    assert left.user_left == Decimal("4.5") and left.team_left == Decimal("0.5")
    assert left.left == Decimal("0.5")  # the team's remainder, the smaller one, is what one more query may cost


def test_the_team_cap_counts_only_todays_spend(user):
    yesterday = finished(user, cost=Decimal("40"), fingerprint="c" * 64)
    Fallback.objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - timedelta(days=1, hours=1))
    finished(user, cost=Decimal("1.25"), fingerprint="d" * 64)
    assert fallback_team_spent_today_usd() == Decimal("1.25")
    assert fallback_budget_left(user=user).user_spent == Decimal("1.25")


def test_row_copies_are_kept_at_least_an_hour_whatever_the_cache_age(user, settings):
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 60
    recent = finished(user, cost=Decimal(0), fingerprint="e" * 64, rows=[{"id": 1}])
    old = finished(user, cost=Decimal(0), fingerprint="f" * 64, rows=[{"id": 2}])
    now = timezone.now()
    Fallback.objects.filter(pk=recent.pk).update(finished_at=now - timedelta(minutes=10))
    Fallback.objects.filter(pk=old.pk).update(finished_at=now - timedelta(seconds=ROWS_KEEP_AT_LEAST_SECONDS + 60))
    assert fallback_rows_prune() == 1
    recent.refresh_from_db()
    old.refresh_from_db()
    assert recent.rows == [{"id": 1}] and old.rows == []


def test_a_predecessor_stopped_early_never_lowers_the_reservation_below_a_full_scan(
        user, warehouse_data, settings, monkeypatch, django_capture_on_commit_callbacks):
    """Athena cannot estimate: the reservation is a full scan of the columns read, or more where a predecessor
    filtering the same columns really scanned more; a predecessor that scanned less (its LIMIT stopped it) is
    no estimate at all."""
    from apps.warehouse.backends.athena import AthenaBackend

    settings.WAREHOUSE_BACKEND = "athena"
    monkeypatch.setattr(AthenaBackend, "full_scan_bytes", lambda self, **_: 100 * GIB, raising=False)

    def predecessor(offset: int, scanned: int) -> None:
        earlier, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=offset)
        Fallback.objects.create(user=user, table="samples", query=earlier.to_dict(), fingerprint=f"{offset:064d}",
                                limit=earlier.limit, backend="athena", state="succeeded", bytes_scanned=scanned,
                                finished_at=timezone.now())

    predecessor(340, GIB)  # stopped after 1 GiB
    with django_capture_on_commit_callbacks():
        handle = ask(user, warehouse_data.id_query(in_subset=1, missing=2, offset=342)[0])
    assert handle.state == "queued" and handle.fallback.bytes_estimate == 100 * GIB
    predecessor(345, 150 * GIB)  # really scanned more than the columns' size says
    with django_capture_on_commit_callbacks():
        handle = ask(user, warehouse_data.id_query(in_subset=1, missing=2, offset=347)[0])
    assert handle.state == "queued" and handle.fallback.bytes_estimate == 150 * GIB
    predecessor(350, 0)  # a newer result Athena reused (0 bytes) says nothing: the 150 GiB still counts
    with django_capture_on_commit_callbacks():
        handle = ask(user, warehouse_data.id_query(in_subset=1, missing=2, offset=352)[0])
    assert handle.state == "queued" and handle.fallback.bytes_estimate == 150 * GIB


def test_with_the_tables_size_unknown_a_small_predecessor_leaves_the_worst_case_reserved(
        user, warehouse_data, settings, monkeypatch, django_capture_on_commit_callbacks):
    from apps.warehouse.backends.athena import AthenaBackend

    settings.WAREHOUSE_BACKEND = "athena"
    monkeypatch.setattr(AthenaBackend, "full_scan_bytes", lambda self, **_: None, raising=False)
    earlier, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=360)
    Fallback.objects.create(user=user, table="samples", query=earlier.to_dict(), fingerprint="s" * 64,
                            limit=earlier.limit, backend="athena", state="succeeded", bytes_scanned=GIB,
                            finished_at=timezone.now())  # its LIMIT stopped it after 1 GiB
    with django_capture_on_commit_callbacks():
        handle = ask(user, warehouse_data.id_query(in_subset=1, missing=2, offset=362)[0])
    assert handle.state == "queued" and handle.fallback.bytes_estimate is None
    assert handle.fallback.estimated_cost_usd == scan_cost_usd(bytes_scanned=settings.FALLBACK_MAX_BYTES_SCANNED)
