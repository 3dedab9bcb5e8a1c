"""The model pages' charts: each page loads a plotly bundle that can draw them (bars on the demo and
compare pages: the small basic bundle), and score-search's confusion matrix is a table that needs none."""
import pytest
from django.urls import reverse

from tests.chart_bundles import chart_page_bundle

EXAMPLE = "The team won the match and the league title"


@pytest.mark.django_db
def test_model_pages_load_a_bundle_that_draws_their_charts(client, user, demo_models, samples_subset, fresh_caches):
    client.force_login(user)
    detail = client.get(reverse("modelhub:detail", args=["tfidf-logreg"]), {"text": EXAMPLE}).content.decode()
    assert chart_page_bundle(detail) == "vendor/plotly-basic-3.7.0.min.js"
    compare = client.get(reverse("modelhub:compare", args=["tfidf-logreg"]),
                         {"a": "tfidf-logreg@1", "b": "tfidf-logreg@2", "text": EXAMPLE}).content.decode()
    assert compare.count('data-chart="compare-chart-') == 2
    assert chart_page_bundle(compare) == "vendor/plotly-basic-3.7.0.min.js"
    scored = client.get(reverse("modelhub:score-search"),
                        {"model": "tfidf-logreg", "lang__eq": "en", "limit": "50"}).content.decode()
    assert "plotly" not in scored and 'id="confusion-matrix"' in scored


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_score_search_shows_its_confusion_matrix_as_a_shaded_table(logged_in_page, demo_models, samples_subset):
    page = logged_in_page
    page.goto(reverse("modelhub:score-search") + "?model=tfidf-logreg&lang__eq=en&limit=50")
    table = page.locator("#confusion-matrix")
    counts = [int(text) for text in table.locator("td.cell").all_inner_texts()]
    assert sum(counts) == int(page.locator("#agreement").inner_text().split(" over ")[1].split()[0])
    # shaded by count: the largest cell is the darkest (color-mix of the CSS), an empty one the lightest
    shades = table.locator("td.cell").evaluate_all("cells => cells.map(c => getComputedStyle(c).backgroundColor)")
    darkest, lightest = shades[counts.index(max(counts))], shades[counts.index(min(counts))]
    assert darkest == "color(srgb 0.121569 0.309804 0.658824)"  # #1f4fa8
    assert min(counts) > 0 or lightest == "color(srgb 0.956863 0.968627 0.992157)"  # #f4f7fd
    assert page.console_errors == []
