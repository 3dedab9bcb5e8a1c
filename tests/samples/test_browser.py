"""The search page in a real Chromium: add two filters, see results and facets, export CSV."""
from __future__ import annotations

import csv
import io
from urllib.parse import parse_qsl, urlsplit

import pytest


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_add_two_filters_see_results_and_export_csv(logged_in_page, demo_subset):
    page = logged_in_page
    expected = demo_subset.count("contains(text, 'match') AND contains(url, 'sports')")
    assert expected > 0

    page.goto("/samples/")
    page.wait_for_selector("[data-results]")  # first page of rows, no filters
    rows = page.locator("[data-filter-row]")
    assert rows.count() == 2
    page.click("[data-add-row]")  # the script adds a third row ...
    assert rows.count() == 3
    rows.nth(2).locator("[data-remove-row]").click()  # ... and removes it again
    assert rows.count() == 2

    first, second = rows.nth(0), rows.nth(1)
    first.locator("[data-column-picker]").select_option("text")
    first.locator("[data-op-picker]").select_option("contains")
    first.locator("input[name=val]").fill("match")
    second.locator("[data-column-picker]").select_option("url")
    # a numeric-only operator is not offered for a text column
    assert second.locator("[data-op-picker] option[value=gt]").count() == 0 or \
        second.locator("[data-op-picker] option[value=gt]").is_disabled()
    second.locator("[data-op-picker]").select_option("contains")
    second.locator("input[name=val]").fill("sports")
    page.fill("input[name=limit]", "1000")
    page.click("form.search-form button[type=submit]")

    summary = page.locator("[data-result-summary]")
    summary.filter(has_text=f"{expected} row").wait_for()
    page.wait_for_function("() => location.search.includes('text__contains=match')")
    assert parse_qsl(urlsplit(page.url).query) == [
        ("table", "samples"), ("text__contains", "match"), ("url__contains", "sports"), ("limit", "1000")]
    assert page.locator("[data-results] tbody tr").count() == expected
    page.locator("#facets [data-facet=label] a").first.wait_for()  # the facets came after the results

    with page.expect_download() as download_info:
        page.click("[data-export=csv]")
    text = open(download_info.value.path(), encoding="utf-8").read()
    exported = list(csv.reader(io.StringIO(text)))
    # The subset's rows, plus the warehouse's if the fallback this search started has finished meanwhile
    # (when a session worker runs it): the export names that fallback, as the page will once it reloads.
    assert exported[0][0] == "id" and exported[0][-1] == "_source"
    assert sum(row[-1] == "subset" for row in exported[1:]) == expected
    url_column = exported[0].index("url")
    assert all("sports" in row[url_column] for row in exported[1:])

    # A facet value is a link that adds its filter.
    label = page.locator("#facets [data-facet=label] a").first
    value = label.get_attribute("data-facet-value")
    label.click()
    page.wait_for_function(f"() => location.search.includes('label__eq={value}')")
    summary.filter(has_text="row").wait_for()
    column = [th.inner_text() for th in page.locator("[data-results] thead th").all()].index("label") + 1
    assert {td.inner_text() for td in page.locator(f"[data-results] tbody tr td:nth-child({column})").all()} == {value}
    assert page.locator("input[name=val]").nth(2).input_value() == value  # the form shows the new filter

    # Back and Forward rebuild the form from the URL.
    page.go_back()
    page.wait_for_function("() => !location.search.includes('label__eq')")
    page.wait_for_function("() => document.querySelectorAll('input[name=val]')[0].value === 'match'")
    values = [page.locator("input[name=val]").nth(i).input_value() for i in range(3)]
    assert values == ["match", "sports", ""]
    page.go_forward()
    page.wait_for_function(f"() => document.querySelectorAll('input[name=val]')[2].value === '{value}'")

    page.go_back()
    page.go_back()  # back to the unfiltered page: the URL history works
    page.wait_for_function("() => !location.search.includes('text__contains')")
    page.wait_for_function("() => document.querySelectorAll('input[name=val]')[0].value === ''")
    assert page.console_errors == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_matches_are_marked_and_markup_in_the_data_stays_text(logged_in_page, demo_subset, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from django.core.management import call_command

    pq.write_table(pa.table({"k": [1, 2], "body": ["<script>window.pwned = 1</script> wool sock", "plain wool"]}),
                   tmp_path / "xss.parquet")
    call_command("import_subset", str(tmp_path / "xss.parquet"), table="xss", key="k", stdout=io.StringIO())
    page = logged_in_page
    page.goto("/samples/?table=xss&body__contains=wool&limit=10")
    marks = page.locator("[data-results] mark")
    assert marks.count() == 2 and {m.inner_text() for m in marks.all()} == {"wool"}
    cell = page.locator("[data-results] tbody tr").first.locator("td").nth(2)  # key, source, body
    assert cell.inner_text().startswith("<script>window.pwned = 1</script>")  # shown as text ...
    assert page.evaluate("() => window.pwned") is None  # ... never run
    page.locator("details.api-link:not([data-plan]) summary").click()
    curl = page.locator("[data-api-curl]").inner_text()
    assert curl.startswith('curl -H "Authorization: Bearer $SAMPLESCOPE_TOKEN"')
    assert "/api/search?table=xss&body__contains=wool&limit=10" in curl
    assert page.console_errors == []
