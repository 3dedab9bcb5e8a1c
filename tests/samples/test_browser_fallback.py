"""Playwright: a search the subset cannot satisfy shows its local rows at once in the one results
table; when the warehouse fallback finishes, that same table grows to the merged rows and its header
says where they came from. The export of that search has the rows on screen. A table without a
warehouse says so and starts nothing."""
from __future__ import annotations

import csv
import io
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from apps.warehouse.models import Fallback

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_one_table_grows_from_local_to_merged_rows(celery_worker, logged_in_page, warehouse_data, settings):
    settings.WAREHOUSE_BACKEND = "local"
    settings.WAREHOUSE_TASK_QUEUE = "celery"
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 4000  # long enough to watch the states
    settings.FALLBACK_CACHE_MAX_AGE_SECONDS = 3600
    page = logged_in_page
    query, local, remote = warehouse_data.id_query(in_subset=3, missing=5, limit=10, offset=600)
    ids = query.filters[0].value

    page.goto(f"/samples/?id__in={ids}&limit=10")
    table = page.locator("[data-results]")
    summary = page.locator("[data-result-summary]")
    expect(page.locator(".fallback-panel .fallback-state")).to_have_text(re.compile("Queued|Running"))
    expect(page.locator(".fallback-panel .fallback-cancel")).to_be_visible()
    expect(summary).to_have_text("3 rows from the subset; the warehouse is being asked for more")
    expect(table.locator("tbody tr")).to_have_count(3)

    # The fallback finishes: the same table now holds the merged rows, local ones first.
    expect(summary).to_have_text("8 rows: 3 from the subset, 5 from the warehouse; the full dataset has no more",
                                 timeout=30_000)
    expect(page.locator("[data-results]")).to_have_count(1)  # one results table...
    expect(page.locator(".fallback-panel table")).to_have_count(0)  # ... and none in the panel
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(8)
    expect(table.locator('tbody tr[data-source="subset"]')).to_have_count(3)
    expect(table.locator('tbody tr[data-source="warehouse"]')).to_have_count(5)
    first_cells = [int(rows.nth(i).locator("td").first.inner_text()) for i in range(8)]
    assert set(first_cells[:3]) == local and set(first_cells[3:]) == remote
    expect(page.locator(".fallback-panel .fallback-state")).to_have_text("Succeeded")
    assert page.locator(".fallback-panel").get_attribute("hx-trigger") is None  # polling stopped
    assert page.console_errors == []

    # Export: exactly the rows on screen, with where each came from.
    with page.expect_download() as download_info:
        page.locator('[data-export="csv"]').click()
    exported = list(csv.reader(io.StringIO(open(download_info.value.path(), encoding="utf-8").read())))
    assert exported[0][-1] == "_source"
    assert [(int(r[0]), r[-1]) for r in exported[1:]] == [
        (cell, "subset" if cell in local else "warehouse") for cell in first_cells]
    assert Fallback.objects.filter(fingerprint=query.fingerprint()).count() == 1

    # The same search again: answered from the cache straight away, merged at once.
    page.goto(f"/samples/?id__in={ids}&limit=10")
    expect(page.locator(".fallback-panel .fallback-cache")).to_have_text("from cache")
    expect(table.locator("tbody tr")).to_have_count(8)
    assert Fallback.objects.count() == 1


def test_a_table_without_a_warehouse_says_so(logged_in_page, warehouse_data, tmp_path):
    pq.write_table(pa.table({"k": list(range(20)), "v": [f"wool {i}" for i in range(20)]}), tmp_path / "t.parquet")
    call_command("import_subset", str(tmp_path / "t.parquet"), table="nowarehouse", key="k", stdout=io.StringIO())
    page = logged_in_page
    page.goto("/samples/?table=nowarehouse&v__contains=wool&limit=50")
    expect(page.locator("[data-notice]")).to_have_text("This table has no warehouse: results come from the local copy only.")
    expect(page.locator("[data-result-summary]")).to_have_text("20 rows from the subset; this table has no warehouse")
    expect(page.locator(".fallback-panel")).to_have_count(0)
    assert not Fallback.objects.exists()
    assert page.console_errors == []


def test_an_unknown_value_is_questioned_before_the_warehouse_is_paid(celery_worker, logged_in_page, warehouse_data,
                                                                      settings):
    settings.WAREHOUSE_BACKEND = "local"
    settings.WAREHOUSE_TASK_QUEUE = "celery"
    # Without a vocabulary of the full data (a table refreshed before they existed): with one, an absent label
    # is proved absent at once instead (tests/search/test_vocabulary_pipeline.py).
    settings.SEARCH_VOCABULARY_ENABLED = False
    page = logged_in_page
    page.goto("/samples/")
    row = page.locator("[data-filter-row]").first
    row.locator("[data-column-picker]").select_option("label")
    assert row.locator("input[name=val]").get_attribute("list") == "values-label"  # the known labels are offered
    assert page.locator("#values-label option").count() >= 5
    row.locator("[data-op-picker]").select_option("eq")
    row.locator("input[name=val]").fill("cooking")
    page.click("form.search-form button[type=submit]")
    expect(page.locator("[data-notice]")).to_contain_text("'cooking' is not a known label: search the warehouse anyway?")
    expect(page.locator(".fallback-panel")).to_have_count(0)
    assert not Fallback.objects.exists()
    page.locator("[data-confirm-fallback]").click()
    expect(page.locator(".fallback-panel")).to_have_count(1)
    assert Fallback.objects.filter(query__filters__0__value="cooking").count() == 1
    assert page.console_errors == []
