"""The analyst's table in a real Chromium: sort by a header, walk to the next page, and every page of
the app fits a 390 px phone without the page body scrolling sideways."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.linking.conftest import kb, kb_lines  # noqa: F401
from tests.modelhub.conftest import demo_build, demo_data_dir, demo_models  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = os.environ.get("SCREENSHOT_DIR")  # set it to keep screenshots of every page checked for overflow

OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}-top.png"))
        if page.locator("#results").count():
            page.locator("#results").screenshot(path=str(Path(SHOTS) / f"{name}-results.png"))


def ids_on_page(page) -> list[int]:
    return [int(t) for t in page.locator("[data-results] tbody tr td:first-child").all_inner_texts()]


def test_click_a_header_to_sort_then_walk_to_the_next_page(logged_in_page, demo_subset):
    page = logged_in_page
    want = [r[0] for r in demo_subset.query(
        "SELECT id FROM samples WHERE contains(text, 'match') ORDER BY length DESC NULLS LAST, id LIMIT 20")]
    page.goto("/samples/?text__contains=match&limit=10")
    page.wait_for_selector("[data-results]")
    assert page.locator("[data-match-count]").inner_text().endswith("matching rows in the subset")

    page.click("[data-sort-column=length]")  # ascending ...
    page.wait_for_selector("th[aria-sort=ascending] [data-sort-column=length]")
    assert ("_sort", "length") in parse_qsl(urlsplit(page.url).query)
    page.click("[data-sort-column=length]")  # ... then descending
    page.wait_for_selector("th[aria-sort=descending] [data-sort-column=length]")
    assert ("_sort_desc", "length") in parse_qsl(urlsplit(page.url).query)
    assert ids_on_page(page) == want[:10]

    page.click("[data-next-page]")
    page.wait_for_url("**_next=*")
    assert ("_sort_desc", "length") in parse_qsl(urlsplit(page.url).query)
    assert ids_on_page(page) == want[10:20]  # new rows, still in order
    assert page.locator("[data-first-page]").count() == 1

    # A new search from the form keeps the sort, and starts again from the first page.
    page.fill("input[name=limit]", "5")
    page.click("form.search-form button[type=submit]")
    page.wait_for_function("() => location.search.includes('limit=5')")
    params = parse_qsl(urlsplit(page.url).query)
    assert ("_sort_desc", "length") in params and not any(name == "_next" for name, _ in params)
    page.wait_for_function("() => document.querySelectorAll('[data-results] tbody tr').length === 5")
    assert ids_on_page(page) == want[:5]
    assert page.console_errors == []


PAGES = {
    "samples": "/samples/?text__contains=match&limit=20",
    "models": "/models/",
    "model-tfidf": "/models/tfidf-logreg/",
    "linking": "/linking/",
    "dashboard": "/dashboard/",
}


@pytest.mark.parametrize("width", [390, 1366])
def test_pages_fit_the_screen_without_sideways_scrolling(logged_in_page, demo_subset, demo_models, kb, width):  # noqa: F811
    page = logged_in_page
    page.set_viewport_size({"width": width, "height": 844 if width == 390 else 900})
    overflowing = {}
    for name, url in PAGES.items():
        page.goto(url)
        page.wait_for_load_state("networkidle")
        shot(page, f"{name}-{width}")
        if (extra := page.evaluate(OVERFLOW)) > 0:
            overflowing[url] = extra
    assert overflowing == {}, f"these pages scroll sideways at {width} px (by px)"
    # The samples table scrolls inside its wrapper instead.
    page.goto(PAGES["samples"])
    page.wait_for_selector("[data-results]")
    if width == 390:
        assert page.evaluate("() => { const w = document.querySelector('.table-wrap');"
                             " return w.scrollWidth > w.clientWidth && getComputedStyle(w).overflowX === 'auto'; }")
    else:  # full width: the results card is wider than the old 1200 px column
        assert page.evaluate("() => document.querySelector('#results').getBoundingClientRect().width") > 1250
    assert page.console_errors == []
