"""Issue 25 in a real Chromium, at 1366 and 390 px: the source column in view, titles not one word a line,
`_col`, the row page, a 1,000-character value from the form (POSTed, shown at `?_q=`), a 414 shown on the
page, `_sort=random&_seed=` reproducible, and highlighting that follows the operator; no page scrolls
sideways at 390 px."""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = [1366, 390]
OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def _sized(page, width: int):
    page.set_viewport_size({"width": width, "height": 900 if width == 1366 else 844})
    return page


def _keys(page) -> list[str]:
    return page.locator("[data-results] [data-row-link]").all_inner_texts()


@pytest.mark.parametrize("width", WIDTHS)
def test_source_column_in_view_titles_readable_col_and_row_page(logged_in_page, demo_subset, width):
    page = _sized(logged_in_page, width)
    page.goto("/samples/?text__contains=match&limit=20")
    page.wait_for_selector("[data-results]")
    headers = page.locator("[data-results] thead th").all_inner_texts()
    assert [h.strip(" ▲▼") for h in headers[:3]] == ["id", "source", "text"]
    # the source column is on screen without scrolling, at both widths
    right = page.evaluate("() => document.querySelector('[data-source-header]').getBoundingClientRect().right")
    assert right <= width, f"source header ends at {right}px"
    assert page.evaluate(OVERFLOW) <= 0
    if width == 1366:  # titles get a wide cell: a few words a line, not one
        widths = page.evaluate("() => [...document.querySelectorAll('[data-results] td.cell-words')]"
                               ".map(td => td.getBoundingClientRect().width)")
        assert widths and min(widths) >= 200, widths

    page.goto("/samples/?text__contains=match&limit=5&_facet=title")  # a facet beyond tables.json's
    page.locator("#facets [data-facet=title] [data-facet-value]").first.wait_for()
    assert page.evaluate(OVERFLOW) <= 0

    page.goto("/samples/?text__contains=match&limit=5&_col=title&_col=label")
    page.wait_for_selector("[data-results]")
    assert [h.strip(" ▲▼") for h in page.locator("[data-results] thead th").all_inner_texts()] == \
        ["id", "source", "title", "label"]
    key = _keys(page)[0]
    page.click(f"[data-results] [data-row-link]:text-is('{key}')")
    page.wait_for_url(f"**/samples/samples/{key}/")
    assert page.locator("[data-row-source]").inner_text() == "subset"
    title = demo_subset.query("SELECT title FROM samples WHERE id = ?", [int(key)])[0][0]
    assert page.locator("tr[data-column=title] td").inner_text() == title
    assert page.evaluate(OVERFLOW) <= 0
    response = page.request.get(page.locator("[data-row-json]").get_attribute("href"))
    assert response.json()["row"]["title"] == title
    assert page.console_errors == []


@pytest.mark.parametrize("width", WIDTHS)
def test_a_1000_character_value_from_the_form_and_a_414_shown_on_the_page(logged_in_page, demo_subset, width):
    page = _sized(logged_in_page, width)
    page.goto("/samples/")
    page.wait_for_selector("[data-results]")
    value = "match " + "é" * 994  # 1,000 characters, ~2,000 bytes, ~6,000 once %-encoded: too long for a GET
    row = page.locator("[data-filter-row]").nth(0)
    row.locator("[data-column-picker]").select_option("text")
    row.locator("[data-op-picker]").select_option("not_contains")
    row.locator("input[name=val]").fill(value)
    page.fill("input[name=limit]", "7")
    page.click("form.search-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/samples/\?_q=[0-9a-f]+$"))
    page.wait_for_function("() => document.querySelectorAll('[data-results] tbody tr').length === 7")
    assert page.locator("[data-request-error]").is_hidden()
    shared = page.url
    page.goto(shared)  # the short address shows the same search again, the value in the form
    assert page.locator("[data-filter-row] input[name=val]").first.input_value() == value
    assert page.locator("[data-results] tbody tr").count() == 7
    assert page.evaluate(OVERFLOW) <= 0

    # A server or proxy that refuses the request (414): a clear message on the page, never nothing.
    page.wait_for_function("() => !document.querySelector('.htmx-request')")  # the page's own loads (facets) done
    page.route(re.compile(r".*/samples/\?.*"), lambda route: route.fulfill(status=414, body="URI Too Long")
               if route.request.headers.get("hx-request") else route.continue_())
    row = page.locator("[data-filter-row]").nth(0)
    row.locator("input[name=val]").fill("match")
    page.click("form.search-form button[type=submit]")
    error = page.locator("[data-request-error]")
    error.wait_for()
    assert "too long" in error.inner_text() and "414" in error.inner_text()
    # The status banner's poll (every 30 s) does not hide the message (it did: this test failed whenever the poll
    # fell between the refusal and the check)
    with page.expect_response(re.compile(r".*/status/$")):
        page.evaluate("() => htmx.ajax('GET', '/status/', {source: '#status-banner', target: '#status-banner'})")
    assert error.is_visible() and "414" in error.inner_text()


@pytest.mark.parametrize("width", WIDTHS)
def test_random_sample_is_reproducible_and_highlighting_follows_the_operator(logged_in_page, demo_subset, width):
    page = _sized(logged_in_page, width)
    page.goto("/samples/?text__contains=match&limit=10")
    page.wait_for_selector("[data-results]")
    page.click("[data-random-sample]")
    page.wait_for_url(re.compile(r".*_seed=\d+.*"))
    page.wait_for_selector("[data-results]")
    sample = _keys(page)
    params = dict(parse_qsl(urlsplit(page.url).query))
    assert params["_sort"] == "random" and len(sample) == 10
    page.reload()
    page.wait_for_selector("[data-results]")
    assert _keys(page) == sample  # the same URL, the same rows
    first = sorted(r[0] for r in demo_subset.query(
        "SELECT id FROM samples WHERE contains(text, 'match') ORDER BY id LIMIT 10"))
    assert sorted(int(k) for k in sample) != first

    word = demo_subset.query("SELECT split_part(title, ' ', 1) FROM samples WHERE title LIKE '% % %' "
                             "ORDER BY id LIMIT 1")[0][0]
    last = demo_subset.query("SELECT split_part(title, ' ', -1) FROM samples WHERE title LIKE '% % %' "
                             "ORDER BY id LIMIT 1")[0][0]
    cells = "() => [...document.querySelectorAll('[data-results] tbody tr')].map(tr => { const td = tr.children[{i}];" \
            " return [td.innerText, [...td.querySelectorAll('mark')].map(m => m.innerText)]; })"
    title_index = 2  # _col=title: id, source, title
    for op, value, check in (
        ("startswith", word, lambda text, marks: marks == [word] and text.startswith(word)),
        ("endswith", last, lambda text, marks: marks == [last] and text.endswith(last)),
        ("contains", "e", lambda text, marks: len(marks) == text.count("e") and set(marks) == {"e"}),
        ("icontains", word.upper(), lambda text, marks: len(marks) >= 1 and all(m.lower() == word.lower() for m in marks)),
        ("regex", "[aeiou]{2}", lambda text, marks: marks and all(re.fullmatch("[aeiou]{2}", m) for m in marks)),
    ):
        page.goto(f"/samples/?title__{op}={value}&limit=10&_col=title")
        page.wait_for_selector("[data-results]")
        rows = page.evaluate(cells.replace("{i}", str(title_index)))
        assert rows, (op, value)
        for text, marks in rows:
            assert check(text, marks), (op, value, text, marks)
        assert page.evaluate(OVERFLOW) <= 0
    assert page.console_errors == []


@pytest.mark.parametrize("width", WIDTHS)
def test_the_api_link_gives_the_count_and_a_blank_value_is_dropped(logged_in_page, demo_subset, width):
    """Item 11: the API link the page offers asks for the count the page shows (`_count=1`), and a value of only
    spaces typed in the form is dropped (as an empty one), not searched; at both widths, no sideways scroll."""
    page = _sized(logged_in_page, width)
    page.goto("/samples/?text__contains=match&limit=5")
    page.wait_for_selector("[data-results]")
    page.locator("details.api-link:not([data-plan]) summary").click()
    api = page.locator("[data-api-link]").get_attribute("href")
    assert dict(parse_qsl(urlsplit(api).query)).get("_count") == "1"
    answer = page.request.get(api).json()
    assert answer["subset_match_count"] is not None and len(answer["rows"]) == 5
    assert page.evaluate(OVERFLOW) <= 0

    row = page.locator("[data-filter-row]").last
    row.locator("[data-column-picker]").select_option("title")
    row.locator("[data-op-picker]").select_option("contains")
    row.locator("input[name=val]").fill("   ")
    page.click("form.search-form button[type=submit]")
    page.wait_for_url(lambda url: "title__contains" not in url and "text__contains=match" in url)
    page.wait_for_selector("[data-results]")
    assert page.locator(".errorlist, [data-field-error]").count() == 0
    assert len(_keys(page)) == 5 and page.evaluate(OVERFLOW) <= 0
    assert page.console_errors == []
