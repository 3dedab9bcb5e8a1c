"""Issue 25: a finished fallback's panel says what it scanned and cost, never "not known yet": a cancelled, failed
or timed-out fallback that never reached the engine says "nothing was scanned" (and costs nothing); one the engine
ran says the bytes it read and what they cost."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.template.loader import render_to_string

from apps.warehouse.backends.base import scan_cost_usd
from apps.warehouse.handles import PANEL_TEMPLATE, FallbackHandle
from apps.warehouse.models import Fallback

from .conftest import fallback_for_search, local_rows_for

pytestmark = pytest.mark.django_db


def _panel(**fields) -> str:
    fallback = Fallback.objects.create(table="samples", query={}, fingerprint="f" * 64, limit=10, backend="athena",
                                       **fields)
    return render_to_string(PANEL_TEMPLATE, {"fallback": FallbackHandle(fallback=fallback)})


def _bytes(html: str) -> str:
    return html.split('class="fallback-bytes">')[1].split("</strong>")[0]


def _cost(html: str) -> str:
    return html.split('class="fallback-cost">')[1].split("</strong>")[0]


def test_cancelling_a_queued_fallback_shows_nothing_was_scanned_and_no_cost(client, user, warehouse_data):
    query, local, _ = warehouse_data.id_query(in_subset=2, missing=3, offset=70)
    client.force_login(user)
    handle = fallback_for_search(user=user, query=query, local_rows=local_rows_for(query))
    assert _bytes(client.get(handle.poll_url).content.decode()).startswith("up to ")  # queued: its estimate
    client.post(handle.cancel_url, {"request": handle.request_id})
    assert Fallback.objects.get(pk=handle.id).state == "cancelled"
    html = client.get(handle.poll_url).content.decode()
    assert "Cancelled" in html and "not known yet" not in html
    assert _bytes(html) == "nothing was scanned"
    assert _cost(html) == "$0.000000"


@pytest.mark.parametrize("state", ["cancelled", "failed", "timed_out"])
def test_a_finished_fallback_that_scanned_says_what_and_what_it_cost(state):
    scanned = 250 * 1024 * 1024
    cost = scan_cost_usd(bytes_scanned=scanned)
    html = _panel(state=state, engine_query_id="q-1", bytes_scanned=scanned, cost_usd=cost, error="stopped")
    assert _bytes(html) == "250.0\xa0MB"
    assert _cost(html) == f"${cost:.6f}" and cost > 0
    assert "so far" not in html and "not known yet" not in html


@pytest.mark.parametrize("state", ["cancelled", "failed", "timed_out", "refused"])
def test_a_finished_fallback_that_never_reached_the_engine_says_nothing_was_scanned(state):
    html = _panel(state=state, bytes_estimate=10**9, error="stopped")
    assert _bytes(html) == "nothing was scanned"
    assert "not known yet" not in html and "up to" not in _bytes(html)


def test_a_finished_fallback_the_engine_ran_without_a_figure_says_so():
    html = _panel(state="cancelled", engine_query_id="q-2", cost_usd=Decimal(0))
    assert _bytes(html) == "none reported by the engine"


def test_a_running_fallback_still_says_so_far():
    assert _bytes(_panel(state="running", inflight_key="k")) == "not known yet"
