"""Fallback services without a worker: budget, cache, joining, Redis down, the sweeper, running
in-process with the local backend, and the panel and API views."""
from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.warehouse.backends.base import scan_cost_usd
from apps.warehouse.backends.local import LocalBackend
from apps.warehouse.models import Fallback, FallbackRequest
from apps.warehouse.selectors import fallback_spent_today_usd
from apps.warehouse.services import fallback_cancel, fallback_execute, fallback_sweep

from .conftest import fallback_for_search, local_rows_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def local_backend(settings, warehouse_data):
    settings.WAREHOUSE_BACKEND = "local"
    settings.FALLBACK_DAILY_BUDGET_USD = 5.0
    settings.FALLBACK_MAX_BYTES_SCANNED = 200 * 1024**3
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 3600
    settings.WAREHOUSE_TASK_QUEUE = "celery"
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 0


def ask(user, query, **kwargs):
    return fallback_for_search(user=user, query=query, local_rows=local_rows_for(query), **kwargs)


def test_over_budget_is_refused_before_anything_is_sent(user, warehouse_data, settings,
                                                         django_capture_on_commit_callbacks):
    from apps.search.tables import table_spec_get

    query, _, _ = warehouse_data.id_query(in_subset=2, missing=3)
    one_query = scan_cost_usd(bytes_scanned=LocalBackend().estimate_bytes(query=query,
                                                                          spec=table_spec_get(name="samples")))
    settings.FALLBACK_DAILY_BUDGET_USD = float(one_query * 3)  # room for three such queries a day...
    Fallback.objects.create(user=user, table="samples", query={}, fingerprint="earlier", limit=1, backend="local",
                            state="succeeded", cost_usd=one_query * Decimal("2.5"), finished_at=timezone.now())
    with django_capture_on_commit_callbacks() as callbacks:  # ...and two and a half are spent already
        handle = ask(user, query)
    assert callbacks == []  # no task was sent
    assert handle.state == "refused"
    assert "budget" in handle.error_message
    assert f"you have used ${one_query * Decimal('2.5'):.4f}" in handle.error_message
    assert handle.rows == []
    fallback = Fallback.objects.get(pk=handle.id)
    assert fallback.inflight_key is None and fallback.finished_at is not None
    event = AuditEvent.objects.get(action="fallback", outcome="refused")
    assert event.user == user and event.detail["fallback_id"] == handle.id and event.cost_usd == 0


def test_money_already_spent_today_counts_against_the_budget(user, staff_user, warehouse_data, settings,
                                                             django_capture_on_commit_callbacks):
    from apps.search.tables import table_spec_get

    first, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=600)
    second, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=610)
    estimate = LocalBackend().estimate_bytes(query=first, spec=table_spec_get(name="samples"))
    one_query = scan_cost_usd(bytes_scanned=estimate)
    assert one_query == scan_cost_usd(bytes_scanned=LocalBackend().estimate_bytes(
        query=second, spec=table_spec_get(name="samples")))
    budget = one_query * 10
    settings.FALLBACK_DAILY_BUDGET_USD = float(budget)
    common = {"table": "samples", "query": {}, "limit": 1, "backend": "local"}
    # Another user spent far more than the budget today: that is their budget, not this user's.
    Fallback.objects.create(user=staff_user, fingerprint="x", state="succeeded", cost_usd=budget * 100,
                            finished_at=timezone.now(), **common)
    with django_capture_on_commit_callbacks() as callbacks:
        allowed = ask(user, first)
    assert allowed.state == "queued" and len(callbacks) == 1

    # This user already spent most of the budget today: one query alone fits, but not on top of that.
    spent_before = budget - one_query - one_query / 2  # + the first query's estimate in flight
    Fallback.objects.create(user=user, fingerprint="y", state="succeeded", cost_usd=spent_before,
                            finished_at=timezone.now(), **common)
    assert one_query < budget and fallback_spent_today_usd(user=user) + one_query > budget
    with django_capture_on_commit_callbacks() as callbacks:
        refused = ask(user, second)
    assert callbacks == [] and refused.state == "refused"
    assert "budget" in refused.error_message
    assert f"you have used ${fallback_spent_today_usd(user=user):.4f}" in refused.error_message


def test_query_over_the_bytes_cutoff_is_refused(user, warehouse_data, settings, django_capture_on_commit_callbacks):
    settings.FALLBACK_MAX_BYTES_SCANNED = 1000
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1)
    with django_capture_on_commit_callbacks() as callbacks:
        handle = ask(user, query)
    assert callbacks == [] and handle.state == "refused"
    assert "per-query limit" in handle.error_message


def test_estimate_reads_only_the_columns_the_query_needs(warehouse_data):
    from apps.search.query import Filter, SearchQuery
    from apps.search.tables import table_spec_get
    from apps.warehouse.backends.local import parquet_bytes_for_columns

    spec = table_spec_get(name="samples")
    query = SearchQuery(table="samples", filters=(Filter("lang", "eq", "de"),), limit=5)
    everything = parquet_bytes_for_columns(pattern=spec.full_data_glob, columns=set(spec.columns))
    estimate = LocalBackend().estimate_bytes(query=query, spec=spec)
    assert estimate == parquet_bytes_for_columns(pattern=spec.full_data_glob, columns=set(spec.selected))
    assert 0 < parquet_bytes_for_columns(pattern=spec.full_data_glob, columns={"id"}) < estimate <= everything


def test_todays_spend_counts_finished_costs_and_in_flight_estimates(user, staff_user):
    now = timezone.now()
    common = dict(table="samples", query={}, limit=1, backend="local")
    Fallback.objects.create(user=user, fingerprint="a", state="succeeded", cost_usd=Decimal("0.5"), **common)
    Fallback.objects.create(user=user, fingerprint="b", state="running", estimated_cost_usd=Decimal("0.25"),
                            inflight_key="b", **common)
    Fallback.objects.create(user=staff_user, fingerprint="c", state="succeeded", cost_usd=Decimal("9"), **common)
    old = Fallback.objects.create(user=user, fingerprint="d", state="succeeded", cost_usd=Decimal("7"), **common)
    Fallback.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=2))
    assert fallback_spent_today_usd(user=user) == Decimal("0.75")


def test_identical_searches_join_the_fallback_in_flight(user, staff_user, warehouse_data,
                                                        django_capture_on_commit_callbacks):
    query, _, _ = warehouse_data.id_query(in_subset=2, missing=3)
    with django_capture_on_commit_callbacks() as callbacks:
        first = ask(user, query)
        second = ask(staff_user, query)
    assert first.id == second.id and first.state == "queued"
    assert len(callbacks) == 1  # one task for both searches
    kinds = sorted(FallbackRequest.objects.filter(fallback_id=first.id).values_list("kind", flat=True))
    assert kinds == ["created", "joined"]
    assert AuditEvent.objects.filter(action="fallback", outcome="joined", user=staff_user).exists()


def test_database_refuses_a_second_live_fallback_for_one_fingerprint():
    common = dict(table="samples", query={}, limit=1, backend="local", fingerprint="f" * 64)
    Fallback.objects.create(inflight_key="f" * 64, **common)
    with pytest.raises(IntegrityError), transaction.atomic():
        Fallback.objects.create(inflight_key="f" * 64, **common)
    Fallback.objects.create(inflight_key=None, state="succeeded", **common)  # finished ones do not count


def test_recent_success_is_reused_from_the_cache(user, warehouse_data, settings, django_capture_on_commit_callbacks):
    query, _, remote = warehouse_data.id_query(in_subset=1, missing=2)
    cached = Fallback.objects.create(
        user=user, table="samples", query=query.to_dict(), fingerprint=query.fingerprint(), limit=query.limit,
        backend="local", state="succeeded", finished_at=timezone.now(), rows=[{"id": i} for i in sorted(remote)],
        row_count=2, cost_usd=Decimal("0.001"))
    with django_capture_on_commit_callbacks() as callbacks:
        handle = ask(user, query)
    assert callbacks == [] and handle.id == cached.pk and handle.from_cache
    assert handle.rows == [{"id": i} for i in sorted(remote)]
    assert AuditEvent.objects.filter(action="fallback", outcome="cache").count() == 1

    Fallback.objects.filter(pk=cached.pk).update(finished_at=timezone.now() - timedelta(seconds=7200))
    with django_capture_on_commit_callbacks() as callbacks:
        fresh = ask(user, query)
    assert fresh.id != cached.pk and not fresh.from_cache and len(callbacks) == 1


def test_redis_down_fails_fast_and_says_so(user, warehouse_data, broker_down, django_capture_on_commit_callbacks):
    query, _, _ = warehouse_data.id_query(in_subset=2, missing=2)
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        handle = ask(user, query)
    assert time.monotonic() - started < 5
    assert handle.state == "failed"
    assert "unavailable" in handle.error_message and "Redis" in handle.error_message
    fallback = Fallback.objects.get(pk=handle.id)
    assert fallback.inflight_key is None  # the next search may try again
    assert AuditEvent.objects.filter(action="fallback", outcome="failed").exists()


def test_search_still_returns_local_rows_when_redis_is_down(user, warehouse_data, settings, broker_down,
                                                            django_capture_on_commit_callbacks):
    from apps.samples.pipeline import search_answer

    query, local, _ = warehouse_data.id_query(in_subset=3, missing=2, offset=10)
    with django_capture_on_commit_callbacks(execute=True):
        result = search_answer(user=user, query=query)
    assert {row.values["id"] for row in result.rows} == local
    assert result.fallback is not None and "unavailable" in result.fallback.error_message
    assert result.fallback.as_api()["state"] == "failed"


def make_queued(user, query, **extra) -> Fallback:
    fields = dict(user=user, table="samples", query=query.to_dict(), fingerprint=query.fingerprint(),
                  limit=query.limit, backend="local", inflight_key=query.fingerprint(), heartbeat_at=timezone.now())
    return Fallback.objects.create(**{**fields, **extra})


def test_execute_in_process_fetches_the_missing_rows_and_prices_the_estimate(user, warehouse_data):
    query, local, remote = warehouse_data.id_query(in_subset=2, missing=4, offset=20)
    fallback = make_queued(user, query)
    done = fallback_execute(fallback_id=fallback.pk)
    assert done.state == "succeeded" and done.inflight_key is None
    assert {row["id"] for row in done.rows} == local | remote
    assert done.bytes_are_estimate and done.bytes_scanned > 0
    assert done.cost_usd == scan_cost_usd(bytes_scanned=done.bytes_scanned)
    event = AuditEvent.objects.get(action="fallback", outcome="succeeded")
    assert event.detail["bytes_scanned"] == done.bytes_scanned and event.detail["rows"] == 6
    assert event.cost_usd == pytest.approx(done.cost_usd, abs=Decimal("1e-6"))
    assert "id is one of" in event.target

    # A second delivery of the same task changes nothing and audits nothing.
    again = fallback_execute(fallback_id=fallback.pk)
    assert again.finished_at == done.finished_at
    assert AuditEvent.objects.filter(action="fallback").count() == 1


def test_cancel_while_queued_is_immediate_and_the_task_then_does_nothing(user, warehouse_data):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=30)
    fallback = make_queued(user, query)
    fallback_cancel(fallback=fallback, user=user)
    assert fallback.state == "cancelled" and fallback.inflight_key is None
    assert fallback_execute(fallback_id=fallback.pk).state == "cancelled"


def test_sweeper_fails_or_requeues_stale_fallbacks(user, warehouse_data, settings, broker_down):
    settings.FALLBACK_MAX_ATTEMPTS = 2
    long_ago = timezone.now() - timedelta(hours=1)
    queries = [warehouse_data.id_query(in_subset=1, missing=1, offset=40 + i)[0] for i in range(5)]
    never_picked = make_queued(user, queries[0])
    gave_up = make_queued(user, queries[1], state="running", attempts=2)
    cancelled = make_queued(user, queries[2], state="running", attempts=1, cancel_requested_at=long_ago)
    requeue_fails = make_queued(user, queries[3], state="running", attempts=1)
    alive = make_queued(user, queries[4], state="running", attempts=1)
    Fallback.objects.exclude(pk=alive.pk).update(heartbeat_at=long_ago)

    counts = fallback_sweep(stale_after_seconds=60)
    assert counts["stale"] == 4
    states = {f.pk: (f.state, f.error) for f in Fallback.objects.all()}
    assert states[never_picked.pk][0] == "failed" and "no worker" in states[never_picked.pk][1]
    assert states[gave_up.pk][0] == "failed" and "gave up" in states[gave_up.pk][1]
    assert states[cancelled.pk][0] == "cancelled"
    assert states[requeue_fails.pk][0] == "failed" and "unavailable" in states[requeue_fails.pk][1]  # Redis is down
    assert states[alive.pk][0] == "running"
    assert not Fallback.objects.filter(state__in=["queued", "running"]).exclude(pk=alive.pk).exists()


# --- views and API ----------------------------------------------------------------------------

def test_panel_polls_while_active_and_stops_when_done(client, user, warehouse_data):
    query, local, remote = warehouse_data.id_query(in_subset=2, missing=3, offset=50)
    client.force_login(user)
    handle = fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))
    url = handle.poll_url
    response = client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'hx-trigger="every 1s"' in html and "Queued" in html and "Cancel" in html
    assert "<html" not in html  # only the panel

    fallback_execute(fallback_id=handle.id)
    response = client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 286  # htmx stops polling
    html = response.content.decode()
    assert "hx-trigger" not in html and "Succeeded" in html
    assert "estimate from Parquet metadata" in html
    # ... and tells the search page to reload its one results table with the merged rows.
    assert json.loads(response["HX-Trigger"]) == {"fallback-finished": {"id": handle.id, "state": "succeeded"}}
    assert "<table" not in html  # the panel has no table of its own
    assert f"fallback={handle.id}" in html  # a link to the merged rows on the search page
    request = FallbackRequest.objects.get(pk=handle.request_id)
    assert sorted(request.local_keys) == sorted(local)  # the keys it already had, not copies of rows

    # The same query again comes from the cache, and the panel says so.
    cached = fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))
    assert cached.from_cache and cached.id == handle.id
    html = client.get(cached.poll_url, headers={"HX-Request": "true"}).content.decode()
    assert "from cache" in html

    page = client.get(url)  # without htmx: the whole page
    assert page.status_code == 200 and b"<html" in page.content and b"Fallback #" in page.content


def test_cancel_button_works_without_javascript(client, user, warehouse_data):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=60)
    client.force_login(user)
    handle = fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))
    response = client.post(handle.cancel_url, {"request": handle.request_id})
    assert response.status_code == 302 and response["Location"] == handle.poll_url
    assert Fallback.objects.get(pk=handle.id).state == "cancelled"
    assert b"cancelled by analyst" in client.get(handle.poll_url).content


def test_only_people_using_a_fallback_may_cancel_it(client, user, django_user_model, warehouse_data):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=70)
    handle = fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))
    stranger = django_user_model.objects.create_user(username="stranger", password="stranger-pass-1")
    client.force_login(stranger)
    assert client.post(handle.cancel_url).status_code == 403
    assert client.get(handle.poll_url).status_code == 403  # nor see its query and rows (issue 13)
    assert Fallback.objects.get(pk=handle.id).state == "queued"


def test_api_reports_a_fallback_and_cancels_it(api_client, user, warehouse_data):
    query, local, remote = warehouse_data.id_query(in_subset=1, missing=2, offset=80)
    handle = fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))
    assert handle.as_api() == {"id": handle.id, "state": "queued", "url": f"/api/fallbacks/{handle.id}"}
    body = api_client.get(handle.url).json()
    assert body["state"] == "queued" and body["rows"] == []
    assert set(body) >= {"state", "rows", "bytes_scanned", "cost_usd", "elapsed_ms", "error", "engine_query_id"}

    cancelled = api_client.post(f"/api/fallbacks/{handle.id}/cancel").json()
    assert cancelled["state"] == "cancelled"
    assert api_client.get("/api/fallbacks/999999").status_code == 404

    other, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=90)
    done = fallback_execute(fallback_id=fallback_for_search(user=user, query=other, local_rows=[]).id)
    body = api_client.get(f"/api/fallbacks/{done.pk}").json()
    assert body["state"] == "succeeded" and len(body["rows"]) == 3
    assert body["bytes_scanned"] == done.bytes_scanned and body["cost_usd"] == pytest.approx(float(done.cost_usd))
    assert body["engine_query_id"]


def test_api_needs_authentication(client):
    assert client.get("/api/fallbacks/1").status_code == 401


def test_fallback_list_shows_spend(client, user, staff_user, settings):
    settings.FALLBACK_DAILY_BUDGET_USD = 2.5
    common = {"table": "samples", "query": {}, "limit": 1, "backend": "local"}
    mine = Fallback.objects.create(user=user, fingerprint="a", state="succeeded", cost_usd=Decimal("0.125"),
                                   row_count=7, **common)
    Fallback.objects.create(user=user, fingerprint="b", state="running", inflight_key="b",
                            estimated_cost_usd=Decimal("0.0625"), **common)
    theirs = Fallback.objects.create(user=staff_user, fingerprint="c", state="succeeded", cost_usd=Decimal(9),
                                     **common)
    client.force_login(user)
    response = client.get(reverse("warehouse:list"))
    assert response.status_code == 200
    html = response.content.decode()
    # Finished cost + the estimate in flight; another user's $9 does not count.
    assert "Today you have used <strong>$0.1875</strong> of your <strong>$2.50</strong> daily budget" in html
    assert f">#{mine.pk}</a>" in html and ">0.125000<" in html
    assert f">#{theirs.pk}</a>" not in html  # not theirs to list
    assert html.count("/fallbacks/") >= 2 and "No fallbacks yet" not in html


def test_api_cancel_is_refused_to_strangers(client, user, django_user_model, warehouse_data):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=95)
    handle = fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))
    stranger = django_user_model.objects.create_user(username="stranger", password="stranger-pass-1")
    client.force_login(stranger)
    response = client.post(f"/api/fallbacks/{handle.id}/cancel")
    assert response.status_code == 403 and "cancel" in response.json()["detail"]
    assert Fallback.objects.get(pk=handle.id).state == "queued"


def test_sweep_command_reports_counts(user, warehouse_data):
    from io import StringIO

    from django.core.management import call_command

    query, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=97)
    stale = make_queued(user, query, state="running", attempts=99)
    Fallback.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(hours=2))
    out = StringIO()
    call_command("sweep_fallbacks", stdout=out)
    assert "stale: 1" in out.getvalue() and "failed: 1" in out.getvalue()
    assert Fallback.objects.get(pk=stale.pk).state == "failed"


@pytest.mark.django_db(transaction=True)  # the replay commits, so each fallback runs (eagerly) at once
def test_bench_command_prints_share_and_latency(warehouse_data, tmp_path):
    import json
    from io import StringIO

    from django.core.management import call_command

    out, err = StringIO(), StringIO()
    call_command("bench_fallback", "--queries", "12", "--seed", "5", "--json", str(tmp_path / "bench.json"),
                 stdout=out, stderr=err)
    report = json.loads(out.getvalue())
    assert report == json.loads((tmp_path / "bench.json").read_text())
    assert report["queries"] == 12 and 0 < report["needed_fallback"] <= 12
    assert report["share_needed_fallback"] == round(report["needed_fallback"] / 12, 4)
    assert report["fallback_failed"] == 0 and report["fallback_ms_median"] > 0
    # Every answer counted its rows by source, as the page does: subset rows, then what the warehouse added.
    assert report["rows_by_source"]["learned"] == 0  # learning is off in this replay
    assert report["rows_by_source"]["subset"] > 0
    assert sum(kind["queries"] for kind in report["by_kind"].values()) == 12
    assert sum(kind["needed_fallback"] for kind in report["by_kind"].values()) == report["needed_fallback"]
    assert "12/12 queries" in err.getvalue()


def test_athena_refuses_a_query_whose_similar_predecessor_scanned_too_much(user, warehouse_data, settings,
                                                                           django_capture_on_commit_callbacks):
    settings.WAREHOUSE_BACKEND = "athena"
    settings.FALLBACK_MAX_BYTES_SCANNED = 100 * 1024**3
    earlier, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=120)
    Fallback.objects.create(user=user, table="samples", query=earlier.to_dict(), fingerprint="e" * 64, limit=2,
                            backend="athena", state="succeeded", finished_at=timezone.now(),
                            bytes_scanned=300 * 1024**3)
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=130)  # filters the same column
    with django_capture_on_commit_callbacks() as callbacks:
        handle = ask(user, query)
    assert callbacks == [] and handle.state == "refused" and "per-query limit" in handle.error_message
    assert Fallback.objects.get(pk=handle.id).bytes_estimate == 300 * 1024**3


def test_athena_fallback_runs_through_the_service_against_moto(user, warehouse_data, settings, monkeypatch):
    import boto3
    import requests
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.WAREHOUSE_BACKEND = "athena"
    settings.AWS_ENDPOINT_URL = ""
    settings.ATHENA_WORKGROUP = "primary"  # moto creates it
    settings.ATHENA_OUTPUT_LOCATION = "s3://athena-results/samplescope/"
    query, _, remote = warehouse_data.id_query(in_subset=0, missing=2, offset=140)
    with mock_aws():
        boto3.client("s3", region_name=settings.AWS_REGION).create_bucket(Bucket="athena-results")
        rows = [{"Data": [{"VarCharValue": "id"}, {"VarCharValue": "title"}]}] + [
            {"Data": [{"VarCharValue": str(i)}, {"VarCharValue": f"sample {i}"}]} for i in sorted(remote)]
        requests.post("http://motoapi.amazonaws.com/moto-api/static/athena/query-results", json={
            "region": settings.AWS_REGION,
            "results": [{"rows": rows, "column_info": [{"Name": "id", "Type": "bigint"},
                                                       {"Name": "title", "Type": "varchar"}]}]})
        fallback = make_queued(user, query, backend="athena")
        done = fallback_execute(fallback_id=fallback.pk)
    assert done.state == "succeeded", done.error
    assert done.rows == [{"id": i, "title": f"sample {i}"} for i in sorted(remote)]
    assert done.engine_query_id and not done.bytes_are_estimate
    assert done.cost_usd == scan_cost_usd(bytes_scanned=0)  # the 10 MB minimum
    assert AuditEvent.objects.get(action="fallback").detail["engine_query_id"] == done.engine_query_id


# --- claiming a delivered task, and the worker's tick ------------------------------------------

def test_a_stale_running_fallback_is_taken_over_when_its_task_is_redelivered(user, warehouse_data, settings):
    """acks_late: the task of a worker that died comes back; the row still says running, with an old heartbeat."""
    settings.FALLBACK_MAX_ATTEMPTS = 3
    settings.FALLBACK_STALE_AFTER_SECONDS = 60
    query, local, remote = warehouse_data.id_query(in_subset=1, missing=2, offset=620)
    fallback = make_queued(user, query, state="running", attempts=1,
                           heartbeat_at=timezone.now() - timedelta(minutes=5))
    done = fallback_execute(fallback_id=fallback.pk)
    assert done.state == "succeeded", done.error
    assert done.attempts == 2 and {row["id"] for row in done.rows} == local | remote
    assert done.inflight_key is None


def test_a_stale_running_fallback_is_given_up_after_its_maximum_attempts(user, warehouse_data, settings):
    settings.FALLBACK_MAX_ATTEMPTS = 3
    settings.FALLBACK_STALE_AFTER_SECONDS = 60
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=630)
    fallback = make_queued(user, query, state="running", attempts=3,
                           heartbeat_at=timezone.now() - timedelta(minutes=5))
    done = fallback_execute(fallback_id=fallback.pk)
    assert done.state == "failed" and "gave up after 3 attempts" in done.error
    assert done.attempts == 3 and done.rows == [] and done.inflight_key is None
    assert AuditEvent.objects.get(action="fallback").outcome == "failed"


def test_a_running_fallback_with_a_fresh_heartbeat_is_left_alone(user, warehouse_data, settings):
    """A duplicate delivery while another worker is alive and running it: do nothing."""
    settings.FALLBACK_MAX_ATTEMPTS = 3
    settings.FALLBACK_STALE_AFTER_SECONDS = 60
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=640)
    heartbeat = timezone.now() - timedelta(seconds=5)
    fallback = make_queued(user, query, state="running", attempts=1, heartbeat_at=heartbeat)
    same = fallback_execute(fallback_id=fallback.pk)
    assert same.state == "running" and same.attempts == 1 and same.rows == []
    assert same.heartbeat_at == heartbeat and same.finished_at is None
    assert not AuditEvent.objects.filter(action="fallback").exists()


def test_the_workers_tick_stops_a_run_the_sweeper_already_finished(user, warehouse_data, settings):
    from apps.warehouse.services import FallbackControl

    settings.FALLBACK_MAX_ATTEMPTS = 1
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=650)
    fallback = make_queued(user, query, state="running", attempts=1)
    control = FallbackControl(fallback.pk)  # what the backend's run loop calls
    assert control.tick(bytes_scanned=10) is None  # running, nobody asked it to stop
    Fallback.objects.filter(pk=fallback.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert fallback_sweep(stale_after_seconds=60)["failed"] == 1  # it looked dead: the sweeper gave up on it
    time.sleep(0.6)  # the tick checks the row at most every 0.5 s
    assert control.tick(bytes_scanned=20) == "cancelled"
    row = Fallback.objects.get(pk=fallback.pk)
    assert row.state == "failed" and row.bytes_scanned == 10  # the late tick changed nothing


# --- who may cancel --------------------------------------------------------------------------

def _joined(user, django_user_model, warehouse_data, offset):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=offset)
    created = fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))
    colleague = django_user_model.objects.create_user(username="colleague", password="colleague-pass-1")
    joined = fallback_for_search(user=colleague, query=query, local_rows=local_rows_for(query))
    assert joined.id == created.id and not colleague.is_staff
    return created, joined, colleague


def test_a_joiner_who_cancels_only_leaves_and_the_fallback_runs_on(client, user, django_user_model, warehouse_data):
    """Issue 22: joining someone's fallback must not let you stop it (its creator is billed)."""
    created, joined, colleague = _joined(user, django_user_model, warehouse_data, offset=660)
    client.force_login(colleague)
    response = client.post(joined.cancel_url, {"request": joined.request_id})
    assert response.status_code == 302
    fallback = Fallback.objects.get(pk=created.id)
    assert fallback.state == "queued" and fallback.cancel_requested_at is None and fallback.cancelled_by is None
    assert created.may_stop and not joined.may_stop
    page = client.get(reverse("warehouse:detail", kwargs={"fallback_id": created.id})).content.decode()
    assert "Stop waiting" in page and "fallback-leave" in page  # the joiner's button: not "Cancel"
    assert FallbackRequest.objects.get(pk=joined.request_id).left_at is not None
    assert FallbackRequest.objects.get(pk=created.request_id).left_at is None  # the creator still waits
    assert AuditEvent.objects.filter(action="fallback", outcome="left", user=colleague).count() == 1
    # The joiner's page stops waiting for it (htmx: 286, no more polling, no "finished" event)...
    panel = client.get(joined.poll_url, HTTP_HX_REQUEST="true")
    assert panel.status_code == 286 and "HX-Trigger" not in panel
    assert "You stopped waiting" in panel.content.decode() and "hx-get" not in panel.content.decode()
    # ...while the creator's still polls, and it still runs: the worker finishes it for them.
    client.force_login(user)
    assert client.get(created.poll_url, HTTP_HX_REQUEST="true").status_code == 200
    assert fallback_execute(fallback_id=created.id).state == "succeeded"


def test_a_joiner_who_cancels_through_the_api_only_leaves(client, user, django_user_model, warehouse_data):
    from apps.accounts.services import api_token_create

    created, _, colleague = _joined(user, django_user_model, warehouse_data, offset=670)
    _, raw = api_token_create(user=colleague, name="tests")
    response = client.post(f"/api/fallbacks/{created.id}/cancel", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json()["state"] == "queued" and Fallback.objects.get(pk=created.id).state == "queued"
    assert response.json()["left"] is True and response.json()["cancelled_by"] == ""


def test_its_creator_stops_it_and_the_row_and_audit_say_who(api_client, user, django_user_model, warehouse_data):
    created, _, _ = _joined(user, django_user_model, warehouse_data, offset=675)
    body = api_client.post(f"/api/fallbacks/{created.id}/cancel").json()
    assert body["state"] == "cancelled" and body["left"] is False and body["cancelled_by"] == "analyst"
    fallback = Fallback.objects.get(pk=created.id)
    assert fallback.cancelled_by == user and fallback.error == "cancelled by analyst"
    event = AuditEvent.objects.get(action="fallback", outcome="cancelled")
    assert event.user == user and event.detail["cancelled_by"] == "analyst"


def test_staff_stop_a_running_fallback_and_its_creator_sees_who(client, user, staff_user, django_user_model,
                                                                warehouse_data):
    """Issue 22: a cancel by someone else used to read "cancelled by a user" once the worker ended it."""
    created, _, _ = _joined(user, django_user_model, warehouse_data, offset=678)
    Fallback.objects.filter(pk=created.id).update(state="running", attempts=1)
    client.force_login(staff_user)
    assert client.post(created.cancel_url).status_code == 302
    fallback = Fallback.objects.get(pk=created.id)
    assert fallback.state == "running" and fallback.cancel_requested_at  # the worker stops it on its next tick
    Fallback.objects.filter(pk=created.id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    fallback_sweep(stale_after_seconds=60)  # the worker is gone: the sweeper ends it, as the worker would
    fallback = Fallback.objects.get(pk=created.id)
    assert fallback.state == "cancelled" and fallback.error == "cancelled by boss"
    assert fallback.cancelled_by == staff_user
    event = AuditEvent.objects.get(action="fallback", outcome="cancelled")
    assert event.user == user and event.detail["cancelled_by"] == "boss"  # billed to its creator, stopped by boss
    client.force_login(user)
    assert "cancelled by boss" in client.get(created.poll_url).content.decode()


# --- read-only API tokens never spend (issue 22) ---------------------------------------------

def _api_search(client, raw, query):
    from urllib.parse import urlencode

    return client.get(f"/api/search?{urlencode(query.to_params())}", HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_a_read_only_token_never_starts_a_billed_fallback(client, user, warehouse_data):
    from apps.accounts.services import api_token_create

    query, local, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=690)
    _, read_only = api_token_create(user=user, name="ro", read_only=True)
    response = _api_search(client, read_only, query)
    assert response.status_code == 200
    body = response.json()
    assert body["fallback"] is None and not Fallback.objects.exists()
    from apps.samples.pipeline import NO_SPENDING

    assert body["notice"] == NO_SPENDING
    assert {row["id"] for row in body["rows"]} == local  # the local rows still come back
    assert not Fallback.objects.exists() and fallback_spent_today_usd(user=user) == 0
    # The same search with a read-write token of the same user does start one.
    _, read_write = api_token_create(user=user, name="rw")
    body = _api_search(client, read_write, query).json()
    assert body["fallback"]["state"] == "queued" and body["notice"] == ""
    assert Fallback.objects.get().user == user


def test_a_read_only_token_reads_a_cached_result_but_starts_nothing_new(client, user, warehouse_data):
    from apps.accounts.services import api_token_create

    query, local, remote = warehouse_data.id_query(in_subset=1, missing=2, offset=695)
    done = fallback_execute(fallback_id=ask(user, query).id)
    assert done.state == "succeeded"
    _, read_only = api_token_create(user=user, name="ro", read_only=True)
    body = _api_search(client, read_only, query).json()
    assert body["fallback"]["id"] == done.pk and {row["id"] for row in body["rows"]} == local | remote
    assert Fallback.objects.count() == 1  # reused, nothing new sent or billed
    assert FallbackRequest.objects.filter(fallback=done, kind="cache").count() == 1


# --- who may see a fallback (issue 13) ------------------------------------------------------

def test_another_users_fallback_is_403_on_the_page_and_the_api(client, user, plain_user, staff_user,
                                                               django_user_model, warehouse_data):
    from apps.accounts.services import api_token_create

    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=680)
    handle = fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))
    client.force_login(plain_user)
    assert client.get(handle.poll_url).status_code == 403
    assert client.get(handle.poll_url, HTTP_HX_REQUEST="true").status_code == 403
    response = client.get(f"/api/fallbacks/{handle.id}")
    assert response.status_code == 403 and "rows" not in response.json()
    _, raw = api_token_create(user=plain_user, name="tests")
    client.logout()
    assert client.get(f"/api/fallbacks/{handle.id}", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 403

    # Its creator, a user whose search joined it, and staff see it.
    colleague = django_user_model.objects.create_user(username="colleague", password="colleague-pass-1")
    fallback_for_search(user=colleague, query=query, local_rows=local_rows_for(query))
    for viewer in (user, colleague, staff_user):
        client.force_login(viewer)
        assert client.get(handle.poll_url).status_code == 200, viewer
        assert client.get(f"/api/fallbacks/{handle.id}").status_code == 200, viewer


def test_the_fallback_list_shows_the_query_and_who_ran_it(client, user, warehouse_data):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=640)
    handle = fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))
    client.force_login(user)
    html = client.get(reverse("warehouse:list")).content.decode()
    row = html.split(f'href="/fallbacks/{handle.id}/"')[1].split("</tr>")[0]
    assert f"samples: id is one of &#x27;{query.filters[0].value}&#x27; LIMIT {query.limit}" in row
    assert f"fallback={handle.id}" in row and f"<td>{user.username}</td>" in row


def test_one_query_finds_the_newest_recent_success_and_the_fallback_in_flight(settings, django_assert_num_queries):
    from apps.warehouse.selectors import fallback_reusable_for

    common = dict(table="samples", query={}, limit=1, backend="local", fingerprint="g" * 64)
    now = timezone.now()
    with django_assert_num_queries(1):
        assert fallback_reusable_for(fingerprint="g" * 64) == (None, None)
    old = Fallback.objects.create(state="succeeded", finished_at=now - timedelta(seconds=600), **common)
    new = Fallback.objects.create(state="succeeded", finished_at=now - timedelta(seconds=60), **common)
    Fallback.objects.create(state="failed", finished_at=now, **common)
    Fallback.objects.create(state="succeeded", finished_at=now, **{**common, "fingerprint": "h" * 64})
    assert fallback_reusable_for(fingerprint="g" * 64) == (new, None)
    running = Fallback.objects.create(state="running", inflight_key="g" * 64, **common)
    with django_assert_num_queries(1):
        assert fallback_reusable_for(fingerprint="g" * 64) == (new, running)
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 300  # `new` only
    Fallback.objects.filter(pk=new.pk).update(finished_at=now - timedelta(seconds=400))
    assert fallback_reusable_for(fingerprint="g" * 64) == (None, running)
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 0  # no cache
    assert fallback_reusable_for(fingerprint="g" * 64) == (None, running)
    Fallback.objects.filter(pk=running.pk).update(inflight_key=None, state="cancelled")
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 3600
    assert fallback_reusable_for(fingerprint="g" * 64) == (new, None)  # 400 s ago: newer than `old`
    Fallback.objects.filter(pk=new.pk).delete()
    assert fallback_reusable_for(fingerprint="g" * 64) == (old, None)
