"""Playwright, with a real Celery worker: from the search page, one click exports every one of 100,000 matching rows
of a demo full dataset; the progress page shows it finish with its cost, and the CSV downloads through the browser.
A second export that the day's budget cannot cover is refused with a message, before anything runs (issue 24)."""
from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from apps.audit.models import AuditEvent
from apps.search.demo import demo_dataset_write
from apps.search.query import Filter, SearchQuery
from apps.search.tables import table_spec_get
from apps.warehouse.backends.base import scan_cost_usd
from apps.warehouse.backends.local import LocalBackend
from apps.warehouse.models import Export

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MATCHING = 100_000


@pytest.fixture
def big_demo_table(tmp_path_factory):
    """A demo full dataset of 120,000 rows (ids 0..119,999) with a 2% subset, as table `bigdemo`."""
    full = tmp_path_factory.mktemp("bigdemo")
    demo_dataset_write(rows=120_000, subset_fraction=0.02, seed=5, full_dir=full, stdout=io.StringIO())
    glob = str(full / "samples" / "*.parquet")
    call_command("import_subset", glob, table="bigdemo", key="id", sample_fraction=0.02, full_data_glob=glob,
                 stdout=io.StringIO())
    return table_spec_get(name="bigdemo")


def test_every_matching_row_downloads_as_csv_and_the_budget_holds(celery_worker, logged_in_page, big_demo_table,
                                                                   settings):
    settings.WAREHOUSE_BACKEND = "local"
    settings.WAREHOUSE_TASK_QUEUE = "celery"
    query = SearchQuery(table="bigdemo", filters=(Filter("id", "lt", str(MATCHING)),), limit=10)
    reserved = scan_cost_usd(bytes_scanned=LocalBackend().estimate_bytes(query=query, spec=big_demo_table))
    settings.FALLBACK_DAILY_BUDGET_USD = float(reserved) * 1.5  # one export fits today, not two
    page = logged_in_page

    page.goto(f"/samples/?table=bigdemo&id__lt={MATCHING}&limit=10")
    expect(page.locator("[data-results] tbody tr")).to_have_count(10)
    page.locator("[data-export-new]").click()  # the cost first, then one click starts it
    expect(page.locator("[data-export-estimate]")).to_contain_text(f"${reserved:.6f}")
    page.locator("[data-export-start]").click()
    expect(page.locator(".export-state")).to_have_text("Succeeded", timeout=90_000)  # the panel polled until done
    export = Export.objects.get()
    assert export.row_count == MATCHING and export.state == "succeeded"
    assert export.cost_usd == reserved > 0  # the cost is recorded...
    expect(page.locator(".export-cost")).to_have_text(f"${export.cost_usd:.6f}")  # ... and shown
    expect(page.locator("[data-export-rows]")).to_have_text(str(MATCHING))

    with page.expect_download() as download_info:
        page.locator("[data-export-download]").click()
    with open(download_info.value.path(), newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(big_demo_table.selected)
    assert len(rows) - 1 == MATCHING and sorted(int(r[0]) for r in rows[1:]) == list(range(MATCHING))
    event = AuditEvent.objects.get(action="export", outcome="succeeded")
    assert event.detail["rows"] == MATCHING and Decimal(str(event.cost_usd)) > 0

    # A second export the same day: what is left of the budget cannot cover it, so it is refused, with a message.
    page.goto(f"/samples/?table=bigdemo&id__lt={MATCHING}&limit=10")
    page.locator("[data-export-new]").click()
    page.locator("[data-export-start]").click()
    expect(page.locator(".export-state")).to_have_text("Refused")
    expect(page.locator(".export-error")).to_contain_text("today's warehouse budget")
    expect(page.locator(".messages")).to_contain_text("today's warehouse budget")
    refused = Export.objects.order_by("-pk").first()
    assert refused.state == "refused" and refused.cost_usd == 0 and refused.bytes_scanned is None
    assert page.locator("[data-export-download]").count() == 0
    assert page.console_errors == []
