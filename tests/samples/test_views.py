"""The search page without JavaScript, htmx partials, exports and the JSON API."""
from __future__ import annotations

import csv
import io
import json
import re
from urllib.parse import parse_qsl, urlsplit

import pytest

from apps.search.models import SearchLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, user, demo_subset):
    client.force_login(user)
    return client


def test_page_requires_login(client):
    response = client.get("/samples/")
    assert response.status_code == 302 and "/accounts/login" in response["Location"]


def test_form_submission_redirects_to_canonical_url(logged_in):
    response = logged_in.get("/samples/", {"table": "samples", "col": ["text", "url", ""], "op": ["contains", "contains", "eq"],
                                           "val": ["match", "sports", ""], "limit": "7"})
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert url.path == "/samples/"
    assert parse_qsl(url.query) == [("table", "samples"), ("text__contains", "match"), ("url__contains", "sports"), ("limit", "7")]


def test_page_shows_results_in_a_table(logged_in, demo_subset):
    expected = demo_subset.count("contains(text, 'match') AND contains(url, 'sports')")
    response = logged_in.get("/samples/?text__contains=match&url__contains=sports&limit=1000")
    html = response.content.decode()
    assert response.status_code == 200
    assert f"<strong>{expected} rows from the subset; the warehouse is being asked for more</strong>" in html
    assert re.search(r"data-elapsed[^>]*>[\d.]+ ms<", html)
    assert html.count('<tr data-source="subset">') == expected and html.count("<table") == 1  # one results table
    headers = re.findall(r'<th scope="col"[^>]*>(?:<a[^>]*>)?([a-z_]+)', html.split("data-results")[1])
    # the key, where the row came from (always in view), the matched text, then table order
    assert headers[:4] == ["id", "source", "text", "url"]
    assert "<details class=\"cell\">" in html  # long text folds
    # the form keeps the filters, plus empty rows for adding filters without JavaScript
    assert 'value="match"' in html and 'value="sports"' in html and html.count('name="val"') == 4
    fallback = SearchLog.objects.get().fallback_requests.get().fallback_id  # the export names the fallback on screen
    assert (f'href="/samples/?table=samples&amp;text__contains=match&amp;url__contains=sports&amp;limit=1000'
            f'&amp;fallback={fallback}&amp;format=csv"') in html
    # the API link gives what the page shows, the match count included
    assert 'href="/api/search?table=samples&amp;text__contains=match&amp;url__contains=sports&amp;limit=1000&amp;_count=1"' in html
    assert SearchLog.objects.filter(local_rows=expected).exists()


def test_page_errors_are_form_errors_not_500(logged_in):
    response = logged_in.get("/samples/?length__gt=long&text__regex=(oops&nope__eq=1")
    html = response.content.decode()
    assert response.status_code == 400
    assert "Please fix the filters" in html and "is not a whole number" in html
    assert "Invalid regular expression" in html and "Unknown column" in html
    assert 'value="(oops"' in html  # what was typed stays in the form
    assert html.count("(not searchable)") == 1  # only "nope"; "length" is a real column with a bad value
    assert "Limit must be between 1 and 1000" in logged_in.get("/samples/?limit=5000").content.decode()
    response = logged_in.get("/samples/?length__gt=long", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "is not a whole number" in response.content.decode()
    response = logged_in.get("/samples/?text__regex=(?<=a)b", HTTP_HX_REQUEST="true")
    assert "RE2" in response.content.decode()
    response = logged_in.get("/samples/?table=nope")
    assert response.status_code == 400 and "Unknown table" in response.content.decode()


def test_htmx_gets_only_the_results_and_a_canonical_url(logged_in):
    response = logged_in.get("/samples/", {"col": ["text"], "op": ["contains"], "val": ["match"], "limit": "3"},
                             HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.strip().startswith('<section id="results"') and "<form" not in html
    assert response["HX-Push-Url"] == "/samples/?table=samples&text__contains=match&limit=3"
    assert 'hx-get="/samples/facets/?table=samples&amp;text__contains=match&amp;limit=3"' in html
    restore = logged_in.get("/samples/?text__contains=match", HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<form" in restore.content.decode()


def test_facets_are_links_that_add_a_filter(logged_in, demo_subset):
    response = logged_in.get("/samples/facets/?text__contains=match&limit=10")
    html = response.content.decode()
    assert response.status_code == 200 and 'data-facet="label"' in html
    expected = dict(demo_subset.query("SELECT label, count(*) FROM samples WHERE contains(text, 'match') GROUP BY 1"))
    label_block = html.split('data-facet="label"')[1].split("</section>")[0]
    shown = {value: int(count) for value, _, count in
             re.findall(r'data-facet-value="([^"]+)">([^<]+)</a> <span class="muted num">(\d+)<', label_block)}
    assert shown == {k: v for k, v in expected.items() if k in shown}
    assert len(shown) == min(10, len(expected))
    top = max(expected, key=lambda k: (expected[k], k))
    assert f'href="/samples/?table=samples&amp;text__contains=match&amp;label__eq={top}&amp;limit=10"' in label_block
    # Chosen already: the link removes it again.
    chosen = logged_in.get(f"/samples/facets/?text__contains=match&label__eq={top}&limit=10").content.decode()
    block = chosen.split('data-facet="label"')[1].split("</section>")[0]
    assert 'class="selected"' in block and 'href="/samples/?table=samples&amp;text__contains=match&amp;limit=10"' in block
    assert "Facets unavailable" in logged_in.get("/samples/facets/?length__gt=x").content.decode()


def test_a_long_facet_offers_more(logged_in, demo_subset):
    html = logged_in.get("/samples/facets/?limit=10").content.decode()
    domains = html.split('data-facet="domain"')[1].split("</section>")[0]
    assert demo_subset.query("SELECT count(DISTINCT domain) FROM samples")[0][0] > 10
    assert domains.count("<li") == 10 and "data-facet-more" in domains
    more = logged_in.get("/samples/facets/?limit=10&_facet_more=domain").content.decode()
    assert more.split('data-facet="domain"')[1].split("</section>")[0].count("<li") > 10


def test_export_csv_and_json_stream_the_results(logged_in, demo_subset, settings):
    response = logged_in.get("/samples/?text__contains=match&limit=25&format=csv")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:2] == ["id", "url"] and len(rows) == 26
    assert all("match" in r[rows[0].index("text")] for r in rows[1:])

    response = logged_in.get("/samples/?text__contains=match&limit=25&format=json")
    data = json.loads(b"".join(response.streaming_content))
    assert [str(r["id"]) for r in data] == [r[0] for r in rows[1:]]

    settings.SEARCH_EXPORT_MAX_ROWS = 4
    response = logged_in.get("/samples/?limit=5000&format=json")
    assert len(json.loads(b"".join(response.streaming_content))) == 4
    assert logged_in.get("/samples/?format=xml").status_code == 400
    bad = logged_in.get("/samples/?length__gt=x&format=csv")
    assert bad.status_code == 422 and "length__gt" in bad.json()["errors"]


def test_api_search(api_client, demo_subset):
    response = api_client.get("/api/search?text__contains=match&lang__in=en,de&limit=4")
    body = response.json()
    assert response.status_code == 200
    assert set(body) >= {"rows", "local_count", "source", "fallback", "elapsed_ms"}
    assert body["local_count"] == 4 and body["source"] == "local" and body["fallback"] is None
    assert all("match" in r["text"] and r["lang"] in ("en", "de") for r in body["rows"])
    assert isinstance(body["rows"][0]["crawled_at"], str) and body["elapsed_ms"] > 0

    literal = api_client.get("/api/search", {"text__contains": "100%_x", "limit": "5"})
    assert literal.status_code == 200 and literal.json()["rows"] == []

    assert api_client.get("/api/search?text__like=x").status_code == 400
    assert api_client.get("/api/search?limit=abc").status_code == 400
    assert api_client.get("/api/search?what=1").status_code == 400
    for bad, field in [("nope__contains=x", "nope__contains"), ("length__gt=abc", "length__gt"),
                       ("text__regex=(", "text__regex"), ("crawled_at__gte=2024-99-01", "crawled_at__gte"),
                       ("label__gt=x", "label__gt")]:
        response = api_client.get(f"/api/search?{bad}")
        assert response.status_code == 422, bad
        assert field in response.json()["errors"]


def test_api_requires_auth_and_is_documented(user):
    from django.test import Client

    client = Client()
    assert client.get("/api/search?text__contains=x").status_code == 401
    client.force_login(user)
    schema = client.get("/api/openapi.json").json()
    operation = schema["paths"]["/api/search"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"limit", "table", "filters"}
    assert {"200", "400", "422"} <= set(operation["responses"])


def test_without_a_subset_the_page_and_api_say_so(logged_in, api_client, settings, tmp_path):
    settings.SEARCH_SUBSET_DIR = tmp_path / "empty"
    response = logged_in.get("/samples/?text__contains=match")
    assert response.status_code == 200 and "No local subset" in response.content.decode()
    response = api_client.get("/api/search?text__contains=match")
    assert response.status_code == 503 and "import_subset" in response.json()["detail"]


def test_matches_are_marked_and_escaped_and_long_cells_show_the_match(logged_in, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from django.core.management import call_command

    long_text = "filler " * 60 + "the Needle is here " + "tail " * 40
    pq.write_table(pa.table({"k": [1, 2], "body": ["<script>alert(1)</script> wool", long_text]}),
                   tmp_path / "marks.parquet")
    call_command("import_subset", str(tmp_path / "marks.parquet"), table="marks", key="k", stdout=io.StringIO())

    html = logged_in.get("/samples/", {"table": "marks", "body__contains": "<script>"}).content.decode()
    assert "<mark>&lt;script&gt;</mark>alert(1)&lt;/script&gt; wool" in html
    assert "<script>alert" not in html

    html = logged_in.get("/samples/", {"table": "marks", "body__icontains": "needle"}).content.decode()
    summary = html.split('<details class="cell"><summary>')[1].split("</summary>")[0]
    assert summary.startswith("…") and "the <mark>Needle</mark> is here" in summary  # a snippet around the match
    assert len(re.sub(r"<[^>]+>", "", summary)) < 200
    assert html.count("<mark>Needle</mark>") == 2  # in the snippet and in the full text


def test_my_recent_searches_rerun_and_link_their_fallback(logged_in, user, warehouse_data, django_user_model):
    query, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=700)
    logged_in.get(f"/samples/?id__in={query.filters[0].value}&limit={query.limit}")
    logged_in.get("/samples/?text__contains=match&limit=5")
    logged_in.get("/samples/?text__contains=match&limit=5")  # the same search twice is listed once
    other = django_user_model.objects.create_user(username="someone", password="someone-pass-1")
    SearchLog.objects.create(user=other, table="samples", query={"table": "samples", "filters": [], "limit": 77},
                             fingerprint="x" * 64, limit=77)
    html = logged_in.get("/samples/").content.decode()
    recent = html.split("data-recent-searches")[1].split("</details>")[0]
    assert recent.count("data-rerun") == 3  # the two distinct searches above, then the page itself
    assert 'href="/samples/?table=samples&amp;text__contains=match&amp;limit=5" data-rerun>text contains' in recent
    fallback = SearchLog.objects.filter(fallback_requests__isnull=False).get().fallback_requests.get().fallback_id
    assert f'href="/fallbacks/{fallback}/">fallback #{fallback}</a>' in recent
    assert "LIMIT 77" not in recent and recent.count("fallback #") == 1  # nobody else's searches


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_search_opened_from_another_site_never_starts_a_fallback(logged_in, demo_subset, site):
    from apps.warehouse.models import Fallback

    url = "/samples/?text__contains=match&url__contains=sports&limit=1000"  # short locally: would need the warehouse
    response = logged_in.get(url, HTTP_SEC_FETCH_SITE=site)
    html = response.content.decode()
    assert response.status_code == 200
    assert not Fallback.objects.exists()  # nothing billed
    assert "open this search from the app to query the warehouse" in html and "data-cross-site" in html
    assert html.count('<tr data-source="subset">') == demo_subset.count(
        "contains(text, 'match') AND contains(url, 'sports')")  # the local rows still show


@pytest.mark.parametrize("site", ["same-origin", "none", None])
def test_a_search_opened_from_the_app_starts_its_fallback(logged_in, demo_subset, site):
    from apps.warehouse.models import Fallback

    headers = {"HTTP_SEC_FETCH_SITE": site} if site else {}
    html = logged_in.get("/samples/?text__contains=match&url__contains=sports&limit=1000", **headers).content.decode()
    assert Fallback.objects.count() == 1
    assert "open this search from the app" not in html


def test_api_search_from_another_site_never_starts_a_fallback(client, user, demo_subset):
    from apps.warehouse.models import Fallback

    client.force_login(user)  # a session cookie a cross-site page could make the browser send
    body = client.get("/api/search?text__contains=match&url__contains=sports&limit=1000",
                      HTTP_SEC_FETCH_SITE="cross-site").json()
    assert body["fallback"] is None and "open this search from the app" in body["notice"]
    assert not Fallback.objects.exists()


def test_headers_sort_and_the_page_offers_the_next_page(logged_in, demo_subset):
    import re
    from html import unescape

    page = logged_in.get("/samples/?text__contains=match&limit=5").content.decode()
    headers = dict(re.findall(r'<a href="([^"]+)" data-sort-column="(\w+)"', page)[i][::-1] for i in range(9))
    assert unescape(headers["length"]) == "/samples/?table=samples&text__contains=match&_sort=length&limit=5"
    assert "Next page →" in page and "in the subset" in page
    total = demo_subset.count("contains(text, 'match')")
    assert f"of {total:,} matching rows in the subset" in page

    sorted_page = logged_in.get("/samples/?text__contains=match&_sort_desc=length&limit=5")
    html = sorted_page.content.decode()
    assert 'aria-sort="descending"' in html and "sorted by length descending" in html
    want = [r[0] for r in demo_subset.query(
        "SELECT id FROM samples WHERE contains(text, 'match') ORDER BY length DESC NULLS LAST, id LIMIT 10")]
    assert [r["id"] for r in sorted_page.context["answer"].as_dicts()] == want[:5]
    next_url = unescape(re.search(r'<a href="([^"]+)" rel="next"', html).group(1))
    assert "_sort_desc=length" in next_url and "_next=" in next_url
    second = logged_in.get(next_url)
    assert [r["id"] for r in second.context["answer"].as_dicts()] == want[5:]
    assert "← First page" in second.content.decode()

    # The export of a sorted second page is that page.
    export = logged_in.get(next_url + "&format=json")
    assert [r["id"] for r in json.loads(b"".join(export.streaming_content))] == want[5:]

    bad = logged_in.get("/samples/?text__contains=match&_sort=nope")
    assert bad.status_code == 400 and "Cannot sort by" in bad.content.decode()
    assert logged_in.get("/samples/?_next=!!!").status_code == 400


def test_api_sorts_pages_and_counts(api_client, demo_subset):
    uncounted = api_client.get("/api/search?text__contains=match&_sort=crawled_at&limit=4").json()
    assert uncounted["subset_match_count"] is None  # counting every match is asked for, not paid on each call
    body = api_client.get("/api/search?text__contains=match&_sort=crawled_at&limit=4&_count=1").json()
    total = demo_subset.count("contains(text, 'match')")
    assert body["subset_match_count"] == total and body["subset_match_count_exact"] is True
    assert body["sort"] == "crawled_at" and body["next"].startswith("http://testserver/api/search?")
    want = [r[0] for r in demo_subset.query(
        "SELECT id FROM samples WHERE contains(text, 'match') ORDER BY crawled_at NULLS LAST, id LIMIT 8")]
    assert [r["id"] for r in body["rows"]] == want[:4]
    second = api_client.get(body["next"]).json()
    assert [r["id"] for r in second["rows"]] == want[4:] and second["fallback"] is None
    assert api_client.get("/api/search?_sort_desc=text_x").status_code == 422
    last = api_client.get(f"/api/search?id__eq={want[0]}").json()
    assert last["next"] is None and last["subset_match_count"] == 1 and last["sort"] is None


def test_urls_wrap_after_slashes_and_dots_not_letter_by_letter(logged_in, demo_subset):
    from apps.samples.views import _url_parts

    assert _url_parts([("https://news.example.com/sports/", False), ("match", True), ("-x?a=1", False)]) == [
        ("https://", False), ("news.", False), ("example.", False), ("com/", False), ("sports/", False),
        ("match", True), ("-", False), ("x?", False), ("a=", False), ("1", False)]
    page = logged_in.get("/samples/?url__contains=sports&limit=3").content.decode()
    assert '<td class="cell-url">https://<wbr>' in page
    assert "<mark>sports</mark>/<wbr>" in page and "<mark>sports</mark><wbr>" not in page  # never inside a word


def test_a_new_search_from_the_form_keeps_the_sort(logged_in, demo_subset):
    page = logged_in.get("/samples/?text__contains=match&_sort_desc=length&limit=5").content.decode()
    assert '<input type="hidden" name="_sort_desc" value="length" data-sort-input>' in page
    response = logged_in.get("/samples/", {"col": ["lang"], "op": ["eq"], "val": ["en"], "_sort_desc": "length",
                                            "limit": "5"})
    assert response.status_code == 302
    assert response["Location"] == "/samples/?lang__eq=en&_sort_desc=length&limit=5"
