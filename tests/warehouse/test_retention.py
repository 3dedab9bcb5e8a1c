"""Retention: `prune_logs` deletes old search logs and old fallbacks' row copies, never audit events."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.search.models import SearchLog
from apps.warehouse.models import Fallback, FallbackRequest

pytestmark = pytest.mark.django_db


def _log(*, days_ago: float) -> SearchLog:
    log = SearchLog.objects.create(table="samples", query={}, fingerprint="f", limit=10)
    SearchLog.objects.filter(pk=log.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    return log


def _fallback(*, fingerprint: str, state: str = "succeeded", finished_hours_ago: float | None = None) -> Fallback:
    finished = None if finished_hours_ago is None else timezone.now() - timedelta(hours=finished_hours_ago)
    return Fallback.objects.create(table="samples", query={}, fingerprint=fingerprint, limit=2, backend="local",
                                   state=state, rows=[{"id": 1}, {"id": 2}], row_count=2, finished_at=finished,
                                   inflight_key=fingerprint if state in ("queued", "running") else None)


def test_prune_logs_deletes_old_search_logs_and_old_row_copies_only(settings):
    settings.LOG_RETENTION_DAYS = 30
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 24 * 3600
    old_log, recent_log = _log(days_ago=31), _log(days_ago=29)
    old_done = _fallback(fingerprint="a", finished_hours_ago=25)
    recent_done = _fallback(fingerprint="b", finished_hours_ago=23)
    running = _fallback(fingerprint="c", state="running")
    request = FallbackRequest.objects.create(fallback=old_done, kind="created", search_log=old_log)
    audit_record(user=None, action="fallback", target="samples", outcome="succeeded", cost_usd=0, detail={})
    AuditEvent.objects.update(created_at=timezone.now() - timedelta(days=400))

    out = StringIO()
    call_command("prune_logs", stdout=out)
    assert out.getvalue().strip() == ("search_logs_deleted: 1, fallback_rows_pruned: 1, exports_expired: 0, "
                                      "saved_searches_deleted: 0")
    assert list(SearchLog.objects.values_list("pk", flat=True)) == [recent_log.pk]
    old_done.refresh_from_db()
    assert old_done.rows == [] and old_done.row_count == 2 and old_done.state == "succeeded"  # counts stay
    assert Fallback.objects.get(pk=recent_done.pk).rows == [{"id": 1}, {"id": 2}]  # still reusable from cache
    assert Fallback.objects.get(pk=running.pk).rows == [{"id": 1}, {"id": 2}]
    request.refresh_from_db()
    assert request.search_log is None  # the request stays, its log is gone
    assert AuditEvent.objects.count() == 1  # the audit trail is never pruned here

    out = StringIO()
    call_command("prune_logs", "--days", "1", stdout=out)  # a second run: only what is newly old
    assert "search_logs_deleted: 1, fallback_rows_pruned: 0" in out.getvalue()


def test_prune_logs_runs_daily_from_beat():
    entry = django_settings.CELERY_BEAT_SCHEDULE["warehouse-prune-logs"]
    assert entry["task"] == "apps.samples.tasks.retention_prune_task"
    from apps.samples.tasks import retention_prune_task

    assert retention_prune_task.name == entry["task"]
    assert retention_prune_task() == {"search_logs_deleted": 0, "fallback_rows_pruned": 0, "exports_expired": 0,
                                      "saved_searches_deleted": 0}


def test_a_pruned_fallback_named_by_an_old_link_is_not_taken_for_a_complete_answer(user, warehouse_data, settings,
                                                                                  django_capture_on_commit_callbacks):
    from apps.samples.pipeline import search_answer

    settings.WAREHOUSE_BACKEND = "local"
    query, _, _ = warehouse_data.id_query(in_subset=2, missing=3, offset=300)
    pruned = Fallback.objects.create(table="samples", query=query.to_dict(), fingerprint=query.fingerprint(),
                                     limit=query.limit, backend="local", state="succeeded", rows=[], row_count=3,
                                     finished_at=timezone.now() - timedelta(days=3))
    with django_capture_on_commit_callbacks():
        answer = search_answer(user=user, query=query, fallback_id=pruned.pk, log=False)
    assert not answer.complete  # 2 local rows of 5 wanted: it must not claim "the full dataset has no more"
    assert answer.fallback is not None and answer.fallback.id != pruned.pk  # asked the warehouse afresh
