"""Playwright: a search the subset cannot satisfy shows local rows at once, then the fallback
panel goes from queued/running to done and shows the merged rows."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from apps.warehouse.models import Fallback

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_search_needing_the_fallback_shows_the_panel_until_merged_rows_arrive(
        celery_worker, logged_in_page, warehouse_data, settings):
    settings.SEARCH_FALLBACK_HOOK = "apps.warehouse.services.fallback_for_search"
    settings.WAREHOUSE_BACKEND = "local"
    settings.WAREHOUSE_TASK_QUEUE = "celery"
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 2500  # long enough to watch the states
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 3600
    page = logged_in_page
    query, local, remote = warehouse_data.id_query(in_subset=3, missing=5, offset=600)
    ids = query.filters[0].value

    page.goto(f"/samples/?id__in={ids}&limit=8")
    panel = page.locator(".fallback-panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".fallback-state")).to_have_text(re.compile("Queued|Running"))
    expect(panel.locator(".fallback-cancel")).to_be_visible()
    expect(panel.locator(".fallback-state")).to_have_text("Succeeded", timeout=30_000)

    rows = panel.locator(".fallback-rows tbody tr")
    expect(rows).to_have_count(8)
    expect(panel.locator(".fallback-rows tbody tr.source-local")).to_have_count(3)
    expect(panel.locator(".fallback-rows tbody tr.source-warehouse")).to_have_count(5)
    expect(panel).to_contain_text("estimate")
    first_cells = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(8)]
    assert {int(c) for c in first_cells[:3]} == local  # local rows first
    assert {int(c) for c in first_cells[3:]} == remote
    assert page.console_errors == []

    # Polling stopped: the panel no longer asks the server for updates.
    assert panel.get_attribute("hx-trigger") is None
    fallback = Fallback.objects.get(fingerprint=query.fingerprint())
    assert fallback.state == "succeeded"

    # The same search again: answered from the cache straight away.
    page.goto(f"/samples/?id__in={ids}&limit=8")
    expect(page.locator(".fallback-panel .fallback-cache")).to_have_text("from cache")
    assert Fallback.objects.count() == 1
