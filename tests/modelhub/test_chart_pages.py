"""The model pages' charts: each page loads a plotly bundle that can draw them (bars on the demo and
compare pages: the small basic bundle; the score-search heatmap: cartesian), and in Chromium it does."""
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
    assert chart_page_bundle(scored) == "vendor/plotly-cartesian-3.7.0.min.js"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_score_search_draws_its_heatmap(logged_in_page, demo_models, samples_subset):
    page = logged_in_page
    page.goto(reverse("modelhub:score-search") + "?model=tfidf-logreg&lang__eq=en&limit=50")
    page.locator("[data-chart=confusion-chart] svg.main-svg").first.wait_for(state="attached")
    assert page.locator("[data-chart=confusion-chart] .heatmaplayer image").count() == 1
    assert page.console_errors == []
