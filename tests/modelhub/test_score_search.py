from collections import Counter

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_score_search_results_with_agreement_and_confusion(client, user, demo_models, samples_subset, fresh_caches):
    client.force_login(user)
    response = client.get(reverse("modelhub:score-search"),
                          {"model": "tfidf-logreg", "lang__eq": "en", "limit": "50"})
    assert response.status_code == 200
    scored = response.context["scored"]
    assert scored.label_column == "label" and scored.text_column == "text"
    assert 0 < len(scored.rows) <= 50 and scored.compared == len(scored.rows)
    assert all(item["prediction"].label in demo_models["tfidf-logreg@1"].labels for item in scored.rows)
    assert all(item["row"]["lang"] == "en" for item in scored.rows)
    assert 0.5 < scored.agreement <= 1
    html = response.content.decode()
    assert 'id="confusion-matrix"' in html and 'id="agreement"' in html
    matrix = scored.confusion
    assert sum(row["total"] for row in matrix.rows) == scored.compared
    assert sum(cell["count"] for row in matrix.rows for cell in row["cells"] if cell["correct"]) == round(
        scored.agreement * scored.compared)
    truth = Counter(str(item["truth"]) for item in scored.rows)
    assert {row["label"]: row["total"] for row in matrix.rows if row["total"]} == dict(truth)
    assert max(cell["shade"] for row in matrix.rows for cell in row["cells"]) == 1
    assert "plotly" not in html  # a table: the page loads no chart library
    assert "lang__eq=en" in response.context["search_url"]


def test_score_search_bad_input(client, user, demo_models, samples_subset):
    client.force_login(user)
    unknown = client.get(reverse("modelhub:score-search"), {"model": "nope"})
    assert unknown.status_code == 404 and "Unknown model" in unknown.content.decode()
    bad_filter = client.get(reverse("modelhub:score-search"), {"model": "tfidf-logreg", "nosuch__eq": "x"})
    assert bad_filter.status_code == 200 and 'role="alert"' in bad_filter.content.decode()


def test_the_samples_page_links_to_scoring_its_results(client, user, demo_models, samples_subset, settings):
    client.force_login(user)
    page = client.get(reverse("samples:page"), {"lang__eq": "en", "limit": "20"}).content.decode()
    link = page.split("data-score-link")[0].rsplit('<a href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert link.startswith(reverse("modelhub:score-search") + "?") and "lang__eq=en" in link
    scored = client.get(link).context["scored"]
    assert len(scored.rows) == 20 and all(item["row"]["lang"] == "en" for item in scored.rows)


def test_scoring_a_short_search_never_starts_a_fallback(client, user, demo_models, samples_subset):
    from apps.warehouse.models import Fallback

    client.force_login(user)
    response = client.get(reverse("modelhub:score-search"),
                          {"model": "tfidf-logreg", "text__contains": "xqnothingzv", "limit": "10"})
    assert response.status_code == 200 and response.context["scored"].rows == []
    assert not Fallback.objects.exists()


def test_score_search_expands_a_stored_long_search(client, user, demo_models, samples_subset):
    from apps.samples.services import saved_search_store

    client.force_login(user)
    key = saved_search_store(params=[("lang__eq", "en"), ("text__not_contains", "q" * 1000), ("limit", "12")])
    response = client.get(reverse("modelhub:score-search"), {"model": "tfidf-logreg", "_q": key})
    assert response.status_code == 200
    scored = response.context["scored"]
    assert len(scored.rows) == 12 and all(item["row"]["lang"] == "en" for item in scored.rows)
    assert response.context["search_url"].endswith(f"?_q={key}")  # its links keep the short key
    assert f"_q={key}" in response.context["csv_url"]
    export = client.get(response.context["csv_url"])
    assert export.status_code == 200 and len(export.content.decode().strip().splitlines()) == 13


def test_score_search_with_an_unknown_stored_search_is_a_404(client, user, demo_models, samples_subset):
    client.force_login(user)
    response = client.get(reverse("modelhub:score-search"), {"model": "tfidf-logreg", "_q": "0123456789abcdef0123"})
    assert response.status_code == 404 and "This saved search is unknown" in response.content.decode()
