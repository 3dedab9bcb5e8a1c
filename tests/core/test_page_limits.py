"""Issue 22: one rate limit for pages, htmx partials, exports and the API alike, keyed by user: past it every
expensive surface answers 429 with Retry-After (pages: a page; htmx: a notice swapped into the target), and
another user is not affected."""
import types

import pytest

from apps.core import ratelimit
from tests.search.conftest import demo_subset  # noqa: F401 - the browser test's search page needs rows

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "results"}

# (surface, scope, method, url, params, htmx)
SURFACES = [
    ("search-page", "search", "get", "/samples/", {"text__contains": "x"}, False),
    ("search-htmx-partial", "search", "get", "/samples/", {"text__contains": "x"}, True),
    ("search-export-csv", "search", "get", "/samples/", {"text__contains": "x", "format": "csv"}, False),
    ("search-facets", "search", "get", "/samples/facets/", {"text__contains": "x"}, True),
    ("score-search", "score", "get", "/models/score-search/", {"model": "nope", "text__contains": "x"}, False),
    ("model-demo", "predict", "get", "/models/nope/", {"text": "hello"}, False),
    ("model-demo-htmx", "predict", "post", "/models/nope/", {"text": "hello"}, True),
    ("model-compare", "predict", "get", "/models/nope/compare/", {"text": "hello"}, False),
    ("linking-page", "link", "get", "/linking/", {"text": "Paris"}, False),
    ("linking-htmx", "link", "get", "/linking/", {"text": "Paris"}, True),
    ("linking-correct", "link", "post", "/linking/kb/nope/correct/", {"text": "Paris", "start": 0, "end": 5}, False),
    ("batch-preview", "batch", "post", "/models/nope/batch/preview/", {}, True),
    ("batch-upload", "batch", "post", "/models/nope/batch/", {}, False),
]


@pytest.fixture
def frozen_minute(monkeypatch):
    """Every request of a test in the same window, 10 s into it: no test straddles a minute."""
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: 6_000_010.0,
                                                                 monotonic=ratelimit.time.monotonic))


@pytest.mark.parametrize("surface,scope,method,url,params,htmx", SURFACES, ids=[s[0] for s in SURFACES])
def test_every_expensive_page_answers_429_with_retry_after_past_the_limit(
        client, user, staff_user, settings, frozen_minute, surface, scope, method, url, params, htmx):
    setattr(settings, f"RATE_LIMIT_{scope.upper()}_PER_MINUTE", 2)
    headers = HTMX if htmx else {}

    def send():
        return getattr(client, method)(url, params, **headers)

    client.force_login(user)
    statuses = [send().status_code for _ in range(2)]
    assert 429 not in statuses, (surface, statuses)
    response = send()
    assert response.status_code == 429, surface
    assert response["Retry-After"] == "50"  # the seconds left in the minute
    body = response.content.decode()
    assert "The limit is 2 per minute; try again in 50 s." in body
    if htmx:  # a notice for the target, kept in place (the target element stays), not a whole page
        assert "<html" not in body and response["HX-Reswap"] == "innerHTML"
    else:
        assert "<title>Too many requests" in body and "HX-Reswap" not in response
    client.force_login(staff_user)  # another user: their own window
    assert send().status_code != 429, surface


def test_the_limit_is_per_scope_and_anonymous_requests_are_not_counted(client, user, settings, frozen_minute):
    settings.RATE_LIMIT_SEARCH_PER_MINUTE = 1
    assert client.get("/samples/facets/").status_code == 302  # the login page first: not counted
    client.force_login(user)
    assert client.get("/samples/facets/").status_code == 200
    assert client.get("/samples/", {"text__contains": "x", "format": "csv"}).status_code == 429
    assert client.get("/linking/", {"text": "Paris"}).status_code != 429  # another scope
    assert client.get("/models/nope/").status_code == 404  # the demo page without a text runs no model: not counted


def test_page_and_api_share_the_users_search_window(client, api_client, user, settings, frozen_minute):
    settings.RATE_LIMIT_SEARCH_PER_MINUTE = 2
    assert api_client.get("/api/search", {"text__contains": "x"}).status_code != 429
    client.force_login(user)
    assert client.get("/samples/facets/", HTTP_HX_REQUEST="true").status_code == 200
    response = api_client.get("/api/search", {"text__contains": "x"})
    assert response.status_code == 429 and response["Retry-After"] == "50"
    assert "limit is 2 per minute" in response.json()["detail"]


def test_score_search_has_its_own_low_default_and_pages_have_room_to_page():
    from django.conf import settings

    assert 1 <= settings.RATE_LIMIT_SCORE_PER_MINUTE <= 10
    # a search on the page is two requests (results, facets): one a second must fit
    assert settings.RATE_LIMIT_SEARCH_PER_MINUTE >= 120


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_the_browser_a_limited_htmx_search_shows_the_notice_where_results_go(logged_in_page, settings,
                                                                                  frozen_minute, demo_subset):
    settings.RATE_LIMIT_SEARCH_PER_MINUTE = 2
    page = logged_in_page
    page.goto("/samples/?text__contains=match")  # 1: the page
    page.locator("#facets").wait_for()  # 2: its facets, loaded by htmx
    page.wait_for_load_state("networkidle")
    page.click("form.search-form button[type=submit]")  # 3: over the limit
    notice = page.locator("#results .rate-limited")
    notice.wait_for()
    assert "Too many searches." in notice.inner_text() and "try again in 50 s" in notice.inner_text()
    assert page.locator("#results").count() == 1  # the target is kept, so the next search has somewhere to go
