"""The whole flow through a real redis-server and real Celery workers, with the local backend."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from apps.audit.models import AuditEvent
from apps.samples.pipeline import search_answer as search_run
from apps.search.models import SearchLog
from apps.warehouse.models import Fallback, FallbackRequest
from apps.warehouse.services import fallback_sweep
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def hooked(settings, warehouse_data):
    settings.WAREHOUSE_BACKEND = "local"
    settings.WAREHOUSE_TASK_QUEUE = "celery"
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 0
    settings.FALLBACK_DAILY_BUDGET_USD = 5.0
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 3600


def state_of(fallback_id: int) -> str:
    return Fallback.objects.get(pk=fallback_id).state


def wait_for_state(fallback_id: int, *states: str, timeout: float = 30) -> Fallback:
    wait_until(lambda: state_of(fallback_id) in states, timeout=timeout, interval=0.1,
               what=f"fallback {fallback_id} to be {' or '.join(states)}")
    return Fallback.objects.get(pk=fallback_id)


def test_missing_rows_come_from_the_full_data(celery_worker, user, warehouse_data):
    query, local, remote = warehouse_data.id_query(in_subset=3, missing=5, offset=100)
    result = search_run(user=user, query=query)
    assert {row.values["id"] for row in result.rows} == local  # local rows at once
    assert result.fallback is not None and result.fallback.state in ("queued", "running")
    assert result.fallback.as_api()["url"] == f"/api/fallbacks/{result.fallback.id}"

    done = wait_for_state(result.fallback.id, "succeeded", "failed")
    assert done.state == "succeeded", done.error
    assert {row["id"] for row in done.rows} == local | remote
    merged = search_run(user=user, query=query, fallback_id=done.pk, log=False)  # what the page asks when told
    assert [row.source.value for row in merged.rows] == ["subset"] * 3 + ["warehouse"] * 5
    assert {row.values["id"] for row in merged.rows} == local | remote
    assert not merged.complete  # 8 rows for a limit of 8: the full data might hold more
    assert SearchLog.objects.get(pk=result.log_id).fallback_requests.get().fallback_id == done.pk
    event = AuditEvent.objects.get(action="fallback", outcome="succeeded")
    assert event.user == user and event.detail["bytes_scanned"] == done.bytes_scanned and event.cost_usd > 0

    again = search_run(user=user, query=query)  # the same search: the cached result, merged at once
    assert again.fallback.from_cache and again.fallback.id == done.pk
    assert len(again.rows) == 8 and {row.values["id"] for row in again.rows} == local | remote
    assert Fallback.objects.count() == 1


def test_two_identical_concurrent_searches_make_one_fallback(celery_worker, user, staff_user, warehouse_data,
                                                            settings):
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 1500  # still in flight when the second search asks
    query, local, remote = warehouse_data.id_query(in_subset=2, missing=4, offset=200)
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def search(who):
        try:
            barrier.wait(5)
            results[who.username] = search_run(user=who, query=query)
        except Exception as exc:  # reported below
            results[who.username] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=search, args=(who,)) for who in (user, staff_user)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    first, second = results["analyst"], results["boss"]
    assert not isinstance(first, Exception) and not isinstance(second, Exception), results
    assert first.fallback.id == second.fallback.id
    assert Fallback.objects.filter(fingerprint=query.fingerprint()).count() == 1
    assert sorted(FallbackRequest.objects.values_list("kind", flat=True)) == ["created", "joined"]
    done = wait_for_state(first.fallback.id, "succeeded", "failed")
    assert done.state == "succeeded" and done.row_count == 6 and done.attempts == 1


def test_cancel_stops_a_running_fallback(celery_worker, api_client, user, warehouse_data, settings):
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 60_000
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=3, offset=300)
    result = search_run(user=user, query=query)
    wait_for_state(result.fallback.id, "running")
    started = time.monotonic()
    body = api_client.post(f"/api/fallbacks/{result.fallback.id}/cancel").json()
    assert body["state"] in ("running", "cancelled")
    done = wait_for_state(result.fallback.id, "cancelled", timeout=15)
    assert time.monotonic() - started < 10  # well before the 60 s the run would have taken
    assert done.inflight_key is None and done.rows == []
    assert done.error == "cancelled by analyst" and done.cancelled_by == user  # who, not "a user" (issue 22)
    assert done.cost_usd > 0  # it reached the engine: billed for what it read
    # The worker writes the audit row just after the state: wait for it (it came ~ms later in a clean-clone run).
    wait_until(lambda: AuditEvent.objects.filter(action="fallback", outcome="cancelled").count() == 1, timeout=5,
               what="the cancelled fallback's audit event")
    assert AuditEvent.objects.filter(action="fallback", outcome="cancelled").count() == 1


def test_a_killed_worker_does_not_leave_a_stuck_fallback(queue_worker_factory, user, warehouse_data, settings):
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 4000
    doomed = queue_worker_factory(queue="warehouse-kill")
    query, local, remote = warehouse_data.id_query(in_subset=2, missing=3, offset=400)
    result = search_run(user=user, query=query)
    fallback_id = result.fallback.id
    wait_for_state(fallback_id, "running")
    doomed.kill()  # SIGKILL mid-run: no cleanup, no ack
    time.sleep(1.5)
    assert state_of(fallback_id) == "running"  # stuck, as far as the row can tell

    counts = fallback_sweep(stale_after_seconds=1)  # what celery beat runs every minute
    assert counts["requeued"] == 1 and state_of(fallback_id) == "queued"
    queue_worker_factory(queue="warehouse-kill")  # a fresh worker picks the requeued task up
    done = wait_for_state(fallback_id, "succeeded", "failed", timeout=40)
    assert done.state == "succeeded", done.error
    assert done.attempts == 2 and {row["id"] for row in done.rows} == local | remote


def test_soft_time_limit_marks_the_fallback_timed_out(queue_worker_factory, user, warehouse_data, settings):
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 30_000
    settings.FALLBACK_SOFT_TIME_LIMIT, settings.FALLBACK_TIME_LIMIT = 2, 10  # sent with the task
    queue_worker_factory(queue="warehouse-limits")
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=500)
    result = search_run(user=user, query=query)
    done = wait_for_state(result.fallback.id, "timed_out", "succeeded", "failed", timeout=20)
    assert done.state == "timed_out" and "2s time limit" in done.error
    assert done.inflight_key is None
    assert AuditEvent.objects.filter(action="fallback", outcome="timed_out").exists()


def test_a_real_worker_learns_the_fallbacks_rows_and_the_same_search_is_then_answered_locally(
        queue_worker_factory, api_client, user, warehouse_data, settings, tmp_path):
    """Learning on in the worker (its environment) and here: the fallback's rows go to the learned
    store in the worker process, and the web side answers the repeated search from it."""
    learned_dir = tmp_path / "learned"
    settings.SUBSET_LEARNING_ENABLED = True
    settings.SUBSET_LEARNED_DIR = learned_dir
    queue_worker_factory(queue="warehouse-learning",
                         env={"SUBSET_LEARNING_ENABLED": "1", "SUBSET_LEARNED_DIR": str(learned_dir)})
    query, local, remote = warehouse_data.id_query(in_subset=2, missing=4, offset=700)
    params = {"id__in": ",".join(str(i) for i in sorted(local | remote)), "limit": str(query.limit)}

    first = api_client.get("/api/search", params).json()
    assert {row["id"] for row in first["rows"]} == local and first["local_count"] == 2
    assert first["fallback"] is not None
    done = wait_for_state(first["fallback"]["id"], "succeeded", "failed", timeout=40)
    assert done.state == "succeeded", done.error
    assert {row["id"] for row in done.rows} == local | remote

    def answered_locally():
        body = api_client.get("/api/search", params).json()
        return body if body["fallback"] is None else None

    # The worker runs the learning hook just after marking the fallback succeeded; until it has, the
    # same search is answered from the fallback cache (a "cache" request, no new fallback).
    wait_until(answered_locally, timeout=20, interval=0.2, what="the learned rows to answer the search")
    requests_before = FallbackRequest.objects.count()
    again = api_client.get("/api/search", params).json()
    assert again["fallback"] is None and again["source"] == "local" and again["local_count"] == 6
    assert {row["id"] for row in again["rows"]} == local | remote
    assert Fallback.objects.count() == 1  # no new fallback
    assert FallbackRequest.objects.count() == requests_before  # nor a join of the old one or its cache
