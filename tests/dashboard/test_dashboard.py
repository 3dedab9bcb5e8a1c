"""The dashboard page: per-day hit rate, latency and spend from the search log and fallback records,
the subset's state, the audit log; and in a real browser, its charts (SVG drawn on the server)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.audit.services import audit_record


@pytest.mark.django_db
def test_dashboard_lists_recent_activity(client, user):
    audit_record(user=user, action="search", target="text contains 'needle'")
    client.force_login(user)
    page = client.get("/dashboard/").content.decode()
    assert "text contains &#x27;needle&#x27;" in page


@pytest.mark.django_db
def test_recent_activity_and_frequent_fallbacks_link_to_their_search(client, user):
    from apps.warehouse.models import Fallback

    log = _log(day=timezone.localdate(), elapsed_ms=5, needed=True, word="needle", user=user)  # their own
    SearchLog = type(log)
    SearchLog.objects.filter(pk=log.pk).update(created_at=timezone.now())
    audit_record(user=user, action="search", target="samples: text contains 'needle'",
                 detail={"search_log_id": log.pk})
    query = {"table": "samples", "filters": [{"column": "lang", "op": "eq", "value": "en"}], "limit": 5,
             "order": {"column": "length", "desc": True}}
    fallback = Fallback.objects.create(user=user, table="samples", query=query, fingerprint="f" * 64, limit=5,
                                       backend="local", state="succeeded")
    audit_record(user=user, action="fallback", target="samples: lang = 'en'", outcome="succeeded",
                 detail={"fallback_id": fallback.pk, "query": query})
    audit_record(user=user, action="token_create", target="abc")  # no search: no link
    client.force_login(user)
    page = client.get("/dashboard/").content.decode()
    rerun = "/samples/?table=samples&amp;text__contains=needle&amp;limit=10"
    assert page.count(f'<a href="{rerun}" data-rerun') == 2  # the activity row and the frequent search
    assert '<a href="/samples/?table=samples&amp;lang__eq=en&amp;_sort_desc=length&amp;limit=5" data-rerun' in page
    assert f'href="/fallbacks/{fallback.pk}/"' in page or f"#{fallback.pk}</a>" in page
    assert page.count("data-rerun") == 3


def _log(*, day: dt.date, elapsed_ms: float, needed: bool, user=None, word="w"):
    from apps.search.models import SearchLog
    from apps.search.query import Filter, SearchQuery

    query = SearchQuery(table="samples", filters=(Filter("text", "contains", word),), limit=10)
    log = SearchLog.objects.create(user=user, table="samples", query=query.to_dict(), fingerprint=query.fingerprint(),
                                   limit=10, local_rows=3 if needed else 10, elapsed_ms=elapsed_ms,
                                   needed_fallback=needed)
    SearchLog.objects.filter(pk=log.pk).update(created_at=_at(day))
    return log


def _at(day: dt.date, hour: int = 12) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour)))


def _fallback(*, day: dt.date, seconds: float, bytes_scanned: int, cost: str, user=None, state="succeeded"):
    from apps.warehouse.models import Fallback

    fallback = Fallback.objects.create(user=user, user_name=user.username if user else "", table="samples",
                                       query={}, fingerprint="f" * 64, limit=10,
                                       backend="local", state=state, bytes_scanned=bytes_scanned,
                                       cost_usd=Decimal(cost))
    Fallback.objects.filter(pk=fallback.pk).update(
        created_at=_at(day), finished_at=_at(day) + dt.timedelta(seconds=seconds))
    return fallback


@pytest.mark.django_db
def test_per_day_hit_rate_latency_and_spend_within_the_date_range(client, user, staff_user):
    today = timezone.localdate()
    yesterday, long_ago = today - dt.timedelta(days=1), today - dt.timedelta(days=40)
    for ms in (1, 2, 3, 4, 100):
        _log(day=today, elapsed_ms=ms, needed=False, user=user)
    _log(day=today, elapsed_ms=5, needed=True, user=user, word="rare")
    _log(day=today, elapsed_ms=5, needed=True, user=staff_user, word="rare")
    _log(day=yesterday, elapsed_ms=7, needed=True, user=user, word="other")
    _log(day=long_ago, elapsed_ms=9, needed=True, user=user, word="ancient")
    _fallback(day=today, seconds=2, bytes_scanned=2 * 1024**3, cost="0.01", user=user)
    _fallback(day=today, seconds=4, bytes_scanned=1024**3, cost="0.005", user=staff_user)
    _fallback(day=long_ago, seconds=9, bytes_scanned=1024**4, cost="5", user=user)

    client.force_login(staff_user)  # staff see everyone's spend (tests/accounts/test_roles.py: others their own)
    response = client.get("/dashboard/", {"from": yesterday.isoformat(), "to": today.isoformat()})
    assert response.status_code == 200
    ctx = response.context
    assert ctx["totals"]["searches"] == 8 and ctx["totals"]["local"] == 5 and ctx["totals"]["local_percent"] == 62.5
    assert ctx["totals"]["fallbacks"] == 2 and ctx["totals"]["cost_usd"] == Decimal("0.015")
    answered = ctx["charts"]["answered"]["data"]
    assert answered[0]["x"] == [yesterday.isoformat(), today.isoformat()]
    assert answered[0]["y"] == [0, 5] and answered[1]["y"] == [1, 2]
    assert answered[2]["y"] == [0.0, round(500 / 7, 2)]
    latency = ctx["charts"]["local_latency"]["data"]
    assert latency[0]["y"] == [7, 4] and latency[1]["y"] == [7, 100]  # p50, p95 (nearest rank)
    assert ctx["charts"]["fallback_latency"]["data"][1]["y"] == [None, 4.0]
    assert ctx["charts"]["spend"]["data"][0]["y"] == [0.0, 3.0]
    assert [r["username"] for r in ctx["spend"]] == ["analyst", "boss"]
    frequent = ctx["frequent"]
    assert frequent[0].searches == 2 and "rare" in frequent[0].description
    assert "ancient" not in response.content.decode(), "outside the date range"
    html = response.content.decode()
    # drawn on the server: five SVG figures, each value in a tooltip; no chart library
    assert html.count('<figure class="svg-chart">') == 5 and "plotly" not in html
    assert f"<title>{today.strftime('%b %d')}: answered locally 5</title>" in html
    assert f"<title>{today.strftime('%b %d')}: p95 100</title>" in html
    assert "<title>boss: $0.0050</title>" in html


@pytest.mark.django_db
def test_bad_dates_give_a_message_not_an_error(client, user):
    client.force_login(user)
    for params in ({"from": "yesterday"}, {"from": "2025-02-10", "to": "2025-01-01"},
                   {"from": "2000-01-01", "to": "2025-01-01"}):
        response = client.get("/dashboard/", params)
        assert response.status_code == 200
        assert 'role="alert"' in response.content.decode()
        assert len(response.context["period"].days) == 14


@pytest.mark.django_db
def test_subset_size_age_and_last_refresh(client, user, dataset):
    from apps.subsets.services import subset_refresh

    client.force_login(user)
    assert "never refreshed" in client.get("/dashboard/").content.decode()
    run = subset_refresh(fraction=0.1, trigger="test")
    html = client.get("/dashboard/").content.decode()
    assert run.file_name in html and f"samples: {run.rows} rows" in html
    assert "Succeeded</span> #" in html


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_dashboard_draws_its_charts_from_a_replayed_workload(logged_in_page, user, dataset, redis_server, settings):
    from apps.samples.bench.workload import workload_draw, workload_pool
    from apps.samples.pipeline import search_answer
    from apps.search.query import SearchQuery
    from apps.subsets.services import subset_refresh
    from apps.warehouse.models import Fallback
    from apps.warehouse.services import fallback_execute

    settings.WAREHOUSE_TASK_QUEUE = "dashboard-test-nobody-listens"  # the fallbacks run here, in-process
    subset_refresh(fraction=0.05, trigger="test")
    workload = workload_draw(pool=workload_pool(size=25, seed=2), count=40, exponent=1.1, seed=2)
    for item in workload:
        result = search_answer(user=user, query=SearchQuery.from_dict(item))
        if result.fallback is not None and result.fallback.state == Fallback.State.QUEUED:
            fallback_execute(fallback_id=result.fallback.id)
    assert Fallback.objects.filter(state="succeeded").exists()

    page = logged_in_page
    page.goto("/dashboard/")
    charts = page.locator("#dashboard-charts figure.svg-chart")
    assert charts.count() == 5
    for index in range(5):  # each drawn, with a visible size
        box = charts.nth(index).locator("svg").bounding_box()
        assert box and box["width"] > 200 and box["height"] > 40, index
    assert page.locator("#dashboard-charts rect.bar").count() >= 3
    assert page.locator("#dashboard-charts circle.point").count() >= 3  # today's p50, p95, % local…
    assert "40" in page.locator("#total-searches").inner_text()
    assert page.get_by_role("table", name="Frequent fallback searches").locator("tbody tr").count() >= 1
    assert "Succeeded" in page.locator("#last-refresh").inner_text()
    page.get_by_label("From").fill((timezone.localdate() - dt.timedelta(days=3)).isoformat())
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/dashboard/?from=*")
    assert page.locator("#dashboard-charts figure.svg-chart svg").count() == 5
    assert not page.console_errors, page.console_errors


@pytest.mark.django_db
@pytest.mark.parametrize("who, sees", [
    ("plain_user", {"nobody"}),  # no role at all
    ("user", {"analyst"}),  # the analyst role: still only their own
    ("staff_user", {"nobody", "analyst", "boss"}),  # staff see everyone
])
def test_non_staff_see_only_their_own_searches_spend_and_activity(request, client, plain_user, user, staff_user,
                                                                   who, sees):
    """README, Roles: staff see everyone's events and spend; everyone else, whatever their role, their own."""
    today = timezone.localdate()
    people = {"nobody": plain_user, "analyst": user, "boss": staff_user}
    cost = {"nobody": "0.001", "analyst": "0.02", "boss": "0.3"}
    for n, (name, person) in enumerate(people.items(), start=1):
        for _ in range(n):  # 1, 2 and 3 searches, all needing a fallback
            _log(day=today, elapsed_ms=5, needed=True, user=person, word=f"query-of-{name}")
        _fallback(day=today, seconds=1, bytes_scanned=n * 1024**2, cost=cost[name], user=person)
        audit_record(user=person, action="search", target=f"event-of-{name}", cost_usd=Decimal(cost[name]))

    client.force_login(request.getfixturevalue(who))
    response = client.get("/dashboard/")
    assert response.status_code == 200
    ctx, html = response.context, response.content.decode()
    searches = {"nobody": 1, "analyst": 2, "boss": 3}
    assert ctx["totals"]["searches"] == sum(searches[name] for name in sees)
    assert ctx["totals"]["fallbacks"] == len(sees)
    assert ctx["totals"]["cost_usd"] == sum(Decimal(cost[name]) for name in sees)
    assert ctx["charts"]["answered"]["data"][1]["y"][-1] == sum(searches[name] for name in sees)
    assert {r["username"] for r in ctx["spend"]} == sees
    assert {r["username"] for r in ctx["audit_spend"]} == sees
    assert {a.event.actor for a in ctx["activity"]} == sees
    assert {q.description.split("'")[1] for q in ctx["frequent"]} == {f"query-of-{name}" for name in sees}
    for name in people:
        shown = name in sees
        assert (f"query-of-{name}" in html) is shown, name
        assert (f"event-of-{name}" in html) is shown, name
    assert ('id="dashboard-scope"' in html) is (who != "staff_user")



def _export(*, day: dt.date, bytes_scanned: int, cost: str, user, state="succeeded"):
    from apps.warehouse.models import Export

    export = Export.objects.create(user=user, user_name=user.username, table="samples", query={}, fingerprint="e",
                                   backend="local", state=state, bytes_scanned=bytes_scanned, cost_usd=Decimal(cost))
    Export.objects.filter(pk=export.pk).update(created_at=_at(day), finished_at=_at(day))
    return export


@pytest.mark.django_db
def test_spend_counts_fallbacks_and_exports(client, user, staff_user):
    today = timezone.localdate()
    yesterday = today - dt.timedelta(days=1)
    _fallback(day=today, seconds=2, bytes_scanned=1024**3, cost="0.01", user=user)
    _export(day=today, bytes_scanned=2 * 1024**3, cost="0.02", user=user)
    _export(day=yesterday, bytes_scanned=1024**3, cost="0.5", user=staff_user)
    _export(day=today, bytes_scanned=0, cost="0", user=staff_user, state="refused")  # nothing sent: not counted

    client.force_login(staff_user)
    response = client.get("/dashboard/", {"from": yesterday.isoformat(), "to": today.isoformat()})
    ctx = response.context
    assert ctx["totals"]["cost_usd"] == Decimal("0.53") and ctx["totals"]["exports"] == 2
    assert ctx["totals"]["fallback_cost_usd"] == Decimal("0.01") and ctx["totals"]["export_cost_usd"] == Decimal("0.52")
    assert ctx["totals"]["bytes_scanned"] == 4 * 1024**3 and ctx["totals"]["fallbacks"] == 1
    spend = ctx["charts"]["spend"]["data"]
    assert spend[0]["y"] == [1.0, 3.0] and spend[1]["y"] == [0.5, 0.03]  # GiB and USD per day, both kinds
    assert ctx["spend"] == [
        {"username": "boss", "fallbacks": 0, "exports": 1, "bytes_scanned": 1024**3, "cost_usd": Decimal("0.5")},
        {"username": "analyst", "fallbacks": 1, "exports": 1, "bytes_scanned": 3 * 1024**3,
         "cost_usd": Decimal("0.03")}]
    html = response.content.decode()
    assert "Scanned / spent (fallbacks + exports)" in html and "$0.5300" in html
    assert "Warehouse spend by user (fallbacks + exports)" in html

    client.force_login(user)  # everyone else: their own fallbacks and exports only
    mine = client.get("/dashboard/", {"from": yesterday.isoformat(), "to": today.isoformat()}).context
    assert mine["totals"]["cost_usd"] == Decimal("0.03") and [r["username"] for r in mine["spend"]] == ["analyst"]
