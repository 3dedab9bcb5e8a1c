"""Issue 25 on the server side: Datasette's `_col` / `_nocol`, row pages, `_facet`, random samples with a
seed, highlighting that follows the operator, the API link's count, and searches too long for a web
address (POSTed, stored, shown at `?_q=<key>`)."""
from __future__ import annotations

import csv
import io
import re
from urllib.parse import parse_qsl, urlsplit

import pytest

from apps.samples.models import SavedSearch
from apps.samples.views import LONG_QUERYSTRING, _marked

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, user, demo_subset):
    client.force_login(user)
    return client


def _headers(html: str) -> list[str]:
    return re.findall(r'<th scope="col"[^>]*>(?:<a[^>]*>)?([a-z_]+)', html.split("data-results")[1])


# --- _col / _nocol ------------------------------------------------------------------------------------------

def test_col_chooses_the_columns_of_page_csv_and_json_and_keeps_the_key(logged_in):
    html = logged_in.get("/samples/?text__contains=match&limit=5&_col=title&_col=label").content.decode()
    assert _headers(html) == ["id", "source", "title", "label"]
    body = logged_in.get("/samples/?text__contains=match&limit=5&_col=title,label&format=csv")
    reader = list(csv.reader(io.StringIO(b"".join(body.streaming_content).decode())))
    assert reader[0] == ["id", "title", "label", "_source"] and len(reader) == 6
    rows = logged_in.get("/samples/?text__contains=match&limit=5&_nocol=text&_nocol=url&format=json")
    import json
    data = json.loads(b"".join(rows.streaming_content))
    assert set(data[0]) == {"id", "domain", "title", "label", "lang", "crawled_at", "length", "_source"}
    # the export links on the page carry the choice
    assert "_col=title&amp;_col=label" in html.split("data-export=\"csv\"")[0].rsplit("<a", 1)[-1]


def test_nocol_cannot_drop_the_key(logged_in):
    html = logged_in.get("/samples/?text__contains=match&limit=3&_nocol=id&_nocol=text").content.decode()
    assert _headers(html)[:2] == ["id", "source"] and "text" not in _headers(html)


@pytest.mark.parametrize("param", ["_col", "_nocol"])
def test_an_unknown_column_is_a_clear_error_on_page_and_export(logged_in, param):
    page = logged_in.get(f"/samples/?text__contains=match&{param}=nope")
    assert page.status_code == 400
    assert f"<code>{param}</code>: Unknown column &#x27;nope&#x27;: choose among id, url," in page.content.decode()
    export = logged_in.get(f"/samples/?text__contains=match&{param}=nope&format=csv")
    assert export.status_code == 422 and "nope" in export.json()["errors"][param][0]


# --- row page ---------------------------------------------------------------------------------------------

def test_row_page_and_its_json_show_one_row_linked_from_the_key_cell(logged_in, demo_subset):
    key, title = demo_subset.query("SELECT id, title FROM samples WHERE contains(text, 'match') ORDER BY id LIMIT 1")[0]
    html = logged_in.get(f"/samples/?id__eq={key}").content.decode()
    assert f'<a href="/samples/samples/{key}/" data-row-link>{key}</a>' in html
    page = logged_in.get(f"/samples/samples/{key}/")
    assert page.status_code == 200 and 'data-row-source>subset<' in page.content.decode()
    assert '<tr data-column="title">' in page.content.decode()
    data = logged_in.get(f"/samples/samples/{key}.json").json()
    assert data["row"]["id"] == key and data["row"]["title"] == title and data["source"] == "subset"
    assert data["key"] == "id" and data["table"] == "samples"


@pytest.mark.parametrize("url", ["/samples/samples/999999999/", "/samples/samples/not-a-number/",
                                 "/samples/nosuchtable/1/", "/samples/samples/999999999.json"])
def test_row_page_is_404_for_a_missing_row_table_or_bad_key(logged_in, url):
    assert logged_in.get(url).status_code == 404


def test_row_page_needs_the_analyst_role(client, plain_user, demo_subset):
    client.force_login(plain_user)
    assert client.get("/samples/samples/1/").status_code == 403
    assert client.get("/samples/samples/1.json").status_code == 403


# --- _facet -----------------------------------------------------------------------------------------------

def test_facet_param_adds_a_facet_on_another_column(logged_in, demo_subset):
    html = logged_in.get("/samples/facets/?text__contains=match&_facet=title").content.decode()
    assert 'data-facet="title"' in html and 'data-facet="label"' in html
    top = demo_subset.query("SELECT title, count(*) n FROM samples WHERE contains(text, 'match') GROUP BY 1 "
                            "ORDER BY n DESC, title LIMIT 1")[0]
    assert f'data-facet-value="{top[0]}"' in html
    plain = logged_in.get("/samples/facets/?text__contains=match").content.decode()
    assert 'data-facet="title"' not in plain and 'data-facet-offer="title"' in plain  # offered, not shown


@pytest.mark.parametrize("column,message", [("nope", "Unknown column"), ("text", "No facet on"), ("id", "No facet on")])
def test_facet_param_refuses_unknown_key_and_text_columns(logged_in, column, message):
    html = logged_in.get(f"/samples/facets/?text__contains=match&_facet={column}").content.decode()
    assert "Facets unavailable" in html and message in html


# --- random samples ---------------------------------------------------------------------------------------

def _ids(html: str) -> list[str]:
    return re.findall(r"data-row-link>(\d+)<", html)


def test_random_sample_is_reproducible_by_seed_and_page_export_agree(logged_in, demo_subset):
    first = _ids(logged_in.get("/samples/?text__contains=match&_sort=random&_seed=7&limit=10").content.decode())
    again = _ids(logged_in.get("/samples/?text__contains=match&_sort=random&_seed=7&limit=10").content.decode())
    other = _ids(logged_in.get("/samples/?text__contains=match&_sort=random&_seed=8&limit=10").content.decode())
    by_key = [str(r[0]) for r in demo_subset.query(
        "SELECT id FROM samples WHERE contains(text, 'match') ORDER BY id LIMIT 10")]
    assert len(first) == 10 and first == again and first != other and first != by_key
    export = logged_in.get("/samples/?text__contains=match&_sort=random&_seed=7&limit=10&format=json")
    import json
    assert [str(r["id"]) for r in json.loads(b"".join(export.streaming_content))] == first


def test_the_page_offers_a_random_sample_link_with_a_seed(logged_in):
    html = logged_in.get("/samples/?text__contains=match&limit=5").content.decode()
    link = re.search(r'<a href="([^"]+)" data-random-sample', html).group(1).replace("&amp;", "&")
    params = dict(parse_qsl(urlsplit(link).query))
    assert params["_sort"] == "random" and params["_seed"].isdigit() and params["text__contains"] == "match"
    random_page = logged_in.get(link).content.decode()
    assert "Another random sample" in random_page and 'name="_seed" value="' + params["_seed"] in random_page
    assert "data-next-page" not in random_page  # a sample has no next page


# --- highlighting -----------------------------------------------------------------------------------------

def _hits(text: str, rules) -> list[str]:
    return [part for part, hit in _marked(text, rules) if hit]


@pytest.mark.parametrize("op,value,text,hits", [
    ("startswith", "ab", "ab xx ab", ["ab"]),  # only the start
    ("endswith", "ab", "ab xx ab", ["ab"]),
    ("contains", "ab", "ab xx ab", ["ab", "ab"]),  # every occurrence
    ("icontains", "AB", "ab xx Ab", ["ab", "Ab"]),  # any case
    ("eq", "ab xx ab", "ab xx ab", ["ab xx ab"]),  # the whole value
    ("eq", "ab", "ab xx ab", []),
])
def test_highlighting_follows_the_operator(op, value, text, hits):
    assert _hits(text, [(op, value)]) == hits


def test_startswith_and_endswith_mark_the_right_end():
    assert _marked("ab xx ab", [("startswith", "ab")]) == [("ab", True), (" xx ab", False)]
    assert _marked("ab xx ab", [("endswith", "ab")]) == [("ab xx ", False), ("ab", True)]


def test_regex_matches_are_highlighted_on_the_page(logged_in, demo_subset):
    html = logged_in.get("/samples/?text__regex=ma[a-z]ch&limit=5").content.decode()
    marks = re.findall(r"<mark>([^<]*)</mark>", html)
    assert marks and all(re.fullmatch("ma[a-z]ch", m) for m in marks)


def test_a_regex_python_could_backtrack_on_is_not_highlighted(logged_in):
    from apps.samples.views import _NESTED_QUANTIFIER
    assert _NESTED_QUANTIFIER.search("(a+)+$") and _NESTED_QUANTIFIER.search(r"(\w*)*x")
    assert not _NESTED_QUANTIFIER.search("ma[a-z]ch") and not _NESTED_QUANTIFIER.search("(ab)+")


# --- long inputs ------------------------------------------------------------------------------------------

def test_a_long_search_is_posted_stored_and_shown_at_a_short_url(logged_in, demo_subset):
    value = "match " + "x" * 994  # 1,000 characters: the limit
    form = {"table": "samples", "col": ["text"], "op": ["not_contains"], "val": [value], "limit": "5"}
    response = logged_in.post("/samples/", form)
    assert response.status_code == 302
    location = response["Location"]
    key = dict(parse_qsl(urlsplit(location).query))["_q"]
    assert len(location) < 50 and SavedSearch.objects.get(key=key).params[1] == ["text__not_contains", value]
    html = logged_in.get(location).content.decode()
    assert f'value="{value}"' in html and len(_ids(html)) == 5  # the form keeps the value; the rows show
    assert logged_in.post("/samples/", form)["Location"] == location  # the same search, the same key
    # htmx: the results at once, the short URL pushed
    partial = logged_in.post("/samples/", form, HTTP_HX_REQUEST="true")
    assert partial["HX-Push-Url"] == location and len(_ids(partial.content.decode())) == 5
    # links on that page stay short: export and facets through `_q`, the fallback named after it
    assert f'href="/samples/?_q={key}&amp;format=csv"' in html or f"_q={key}&amp;fallback=" in html
    export = logged_in.get(f"/samples/?_q={key}&format=json")
    assert export.status_code == 200


def test_an_unknown_saved_search_is_404(logged_in):
    assert logged_in.get("/samples/?_q=0123456789abcdef0123").status_code == 404


def test_a_get_never_stores_a_search_however_long(logged_in):
    logged_in.get("/samples/?text__contains=match&limit=5")
    assert SavedSearch.objects.count() == 0
    half = "y" * (LONG_QUERYSTRING // 2 + 10)
    long_url = f"/samples/?text__not_contains={half}&title__not_contains={half}&limit=5"
    html = logged_in.get(long_url).content.decode()
    facets = re.search(r'hx-get="/samples/facets/\?([^"]+)"', html).group(1)
    assert "_q=" not in facets and half in facets  # its links carry the search itself
    logged_in.get(long_url, HTTP_HX_REQUEST="true")
    logged_in.get(f"/samples/facets/?text__not_contains={half}&title__not_contains={half}&limit=5")
    # the form submitted by GET (no JavaScript) is redirected to its long query string, not stored
    form = f"/samples/?table=samples&col=text&op=not_contains&val={half}&col=title&op=not_contains&val={half}&limit=5"
    assert logged_in.get(form).status_code == 302
    assert SavedSearch.objects.count() == 0


def test_a_stored_search_links_its_next_page_through_its_key(logged_in):
    value = "match " + "x" * 994
    form = {"table": "samples", "col": ["text", "title"], "op": ["not_contains", "not_contains"],
            "val": [value, value.replace("x", "z")], "limit": "2"}
    location = logged_in.post("/samples/", form)["Location"]
    html = logged_in.get(location).content.decode()
    next_url = re.search(r'href="(/samples/\?_q=[0-9a-f]+&amp;_next=[^"]+)"', html).group(1).replace("&amp;", "&")
    assert SavedSearch.objects.count() == 1  # rendering its links stored nothing more
    second = logged_in.get(next_url).content.decode()
    assert _ids(second) and not set(_ids(second)) & set(_ids(html))  # the next rows


def test_a_long_search_by_post_needs_the_role_and_csrf(client, plain_user, demo_subset):
    client.force_login(plain_user)
    assert client.post("/samples/", {"col": ["text"], "op": ["contains"], "val": ["x"]}).status_code == 403
    from django.test import Client
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(plain_user)
    assert strict.post("/samples/", {"col": ["text"], "op": ["contains"], "val": ["x"]}).status_code == 403
    assert SavedSearch.objects.count() == 0


def test_the_api_link_gives_the_pages_columns_and_count(logged_in, api_client, demo_subset):
    html = logged_in.get("/samples/?text__contains=match&limit=3&_col=title").content.decode()
    api_url = re.search(r'<a href="([^"]+)" data-api-link', html).group(1).replace("&amp;", "&")
    shown = re.search(r"data-match-count[^>]*>— of ([\d,]+) matching", html).group(1).replace(",", "")
    data = api_client.get(api_url).json()
    assert data["columns"] == ["id", "title"] and set(data["rows"][0]) == {"id", "title", "_source"}
    assert data["subset_match_count"] == int(shown) == demo_subset.count("contains(text, 'match')")
    assert api_client.get("/api/search?text__contains=match&_col=nope").status_code == 422


def test_a_key_no_url_can_carry_shows_without_a_row_link(logged_in, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from django.core.management import call_command

    pq.write_table(pa.table({"k": ["a/b", "plain"], "body": ["wool one", "wool two"]}), tmp_path / "slashy.parquet")
    call_command("import_subset", str(tmp_path / "slashy.parquet"), table="slashy", key="k", stdout=io.StringIO())
    html = logged_in.get("/samples/?table=slashy&body__contains=wool").content.decode()
    assert '<a href="/samples/slashy/plain/" data-row-link>plain</a>' in html
    assert '<td class="cell-key">a/b</td>' in html
    assert logged_in.get("/samples/slashy/plain.json").json()["row"]["body"] == "wool two"


def test_isnull_is_offered_in_the_form_and_searches(logged_in, demo_subset):
    html = logged_in.get("/samples/?title__isnull=false&limit=3").content.decode()
    assert '<option value="isnull">is empty (true/false)</option>' in html
    assert re.search(r'<option value="title" data-ops="[^"]*\bisnull\b', html)
    assert len(_ids(html)) == 3
    assert "No matching rows" in logged_in.get("/samples/?title__isnull=true&limit=3").content.decode()
    assert demo_subset.count("title IS NULL") == 0
