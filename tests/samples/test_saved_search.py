"""Stored long searches (`?_q=<key>`): opening one marks it used at most once a day (a service, not the selector),
and `prune_logs` deletes those unused for SAVED_SEARCH_KEEP_DAYS."""
from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.samples.models import SavedSearch
from apps.samples.services import saved_search_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, user, demo_subset):
    client.force_login(user)
    return client


def _stored(*, value: str, used_days_ago: float) -> str:
    key = saved_search_store(params=[("text__contains", value), ("limit", "3")])
    SavedSearch.objects.filter(key=key).update(last_used_at=timezone.now() - timedelta(days=used_days_ago))
    return key


def test_opening_a_stored_search_refreshes_its_use_at_most_once_a_day(logged_in, django_assert_num_queries):
    stale, fresh = _stored(value="match", used_days_ago=2), _stored(value="text", used_days_ago=0.5)
    before = SavedSearch.objects.get(key=fresh).last_used_at
    assert logged_in.get(f"/samples/?_q={stale}").status_code == 200
    assert timezone.now() - SavedSearch.objects.get(key=stale).last_used_at < timedelta(minutes=1)
    assert logged_in.get(f"/samples/?_q={fresh}").status_code == 200
    assert SavedSearch.objects.get(key=fresh).last_used_at == before  # used within the day: no write
    assert logged_in.get(f"/samples/facets/?_q={fresh}").status_code == 200
    assert SavedSearch.objects.get(key=fresh).last_used_at == before


def test_posting_a_stored_search_again_refreshes_it(logged_in):
    key = _stored(value="match", used_days_ago=50)
    saved_search_store(params=[("text__contains", "match"), ("limit", "3")])
    assert timezone.now() - SavedSearch.objects.get(key=key).last_used_at < timedelta(minutes=1)


def test_prune_logs_deletes_saved_searches_unused_for_the_keep_days(settings):
    settings.SAVED_SEARCH_KEEP_DAYS = 30
    old, recent = _stored(value="old", used_days_ago=31), _stored(value="recent", used_days_ago=29)
    out = StringIO()
    call_command("prune_logs", stdout=out)
    assert "saved_searches_deleted: 1" in out.getvalue()
    assert list(SavedSearch.objects.values_list("key", flat=True)) == [recent]
    assert old != recent


def test_a_pruned_saved_search_is_a_clear_404(logged_in, settings):
    settings.SAVED_SEARCH_KEEP_DAYS = 1
    key = _stored(value="match", used_days_ago=3)
    call_command("prune_logs", stdout=StringIO())
    response = logged_in.get(f"/samples/?_q={key}")
    assert response.status_code == 404


# --- `_q` wherever the page takes it: its exports, /api/search ------------------------------------------

LONG = "match " + "x" * 994  # 1,000 characters: a search the form POSTs


def _posted(client) -> str:
    form = {"table": "samples", "col": ["text"], "op": ["not_contains"], "val": [LONG], "limit": "4"}
    location = client.post("/samples/", form)["Location"]
    return location.split("_q=", 1)[1]


def test_the_page_exports_of_a_stored_search_are_its_rows(logged_in):
    key = _posted(logged_in)
    import csv
    import io
    body = logged_in.get(f"/samples/?_q={key}&format=csv")
    rows = list(csv.reader(io.StringIO(b"".join(body.streaming_content).decode())))
    direct = logged_in.get("/samples/", {"text__not_contains": LONG, "limit": "4", "format": "csv"})
    assert body.status_code == 200 and len(rows) == 5
    assert rows == list(csv.reader(io.StringIO(b"".join(direct.streaming_content).decode())))


def test_api_search_expands_a_stored_search(logged_in, api_client):
    key = _posted(logged_in)
    data = api_client.get(f"/api/search?_q={key}&_count=1").json()
    direct = api_client.get("/api/search", {"text__not_contains": LONG, "limit": "4", "_count": "1"}).json()
    assert data["limit"] == 4 and data["rows"] == direct["rows"] and len(data["rows"]) == 4
    assert data["subset_match_count"] == direct["subset_match_count"] is not None  # `_count` overlays the key


def test_api_search_with_an_unknown_key_is_a_clear_404(api_client, demo_subset):
    response = api_client.get("/api/search?_q=0123456789abcdef0123")
    assert response.status_code == 404
    assert response.json()["detail"] == "This saved search is unknown: search again from the form."


def test_a_stored_search_links_the_api_and_score_search_by_its_key(logged_in, api_client):
    key = _posted(logged_in)
    html = logged_in.get(f"/samples/?_q={key}").content.decode()
    api = re.search(r'<a href="([^"]+)" data-api-link', html).group(1).replace("&amp;", "&")
    score = re.search(r'<a href="([^"]+)" data-score-link', html).group(1).replace("&amp;", "&")
    assert api == f"/api/search?_q={key}&_count=1" and score == f"/models/score-search/?_q={key}"
    assert len(api_client.get(api).json()["rows"]) == 4
