"""Issue 25, model pages: long inputs go by POST and are stored; results live at a short URL (`?_in=<key>`) that
reloads and shares; score-search exports the rows it shows."""
import csv
import io
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from apps.modelhub.models import SharedInput

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def _two_hundred_texts() -> list[str]:
    subjects = ["The striker scored", "Shares fell", "Doctors at the hospital", "The new phone", "Voters chose"]
    return [f"{subjects[i % 5]} on day {i} of the season" for i in range(200)]


def test_demo_post_without_js_redirects_to_a_short_url_that_reloads(logged_in, demo_models, fresh_caches):
    url = reverse("modelhub:detail", args=["tfidf-logreg"])
    text = "stocks market earnings profit " * 300  # ~9,000 characters: far past a 4,094-byte request line
    response = logged_in.post(url, {"text": text, "version": "2"})
    assert response.status_code == 302
    location = response["Location"]
    assert len(location) < 120 and parse_qs(urlsplit(location).query) == {
        "_in": [SharedInput.objects.get().key], "version": ["2"]}
    page = logged_in.get(location)  # the reload (or a colleague opening the shared link)
    html = page.content.decode()
    assert page.status_code == 200 and 'id="predicted-label">business<' in html and "v2 ·" in html
    assert text[:200] in html  # the text box holds the text again
    # the same text is stored once and gets the same URL
    assert logged_in.post(url, {"text": text, "version": "2"})["Location"] == location
    assert SharedInput.objects.count() == 1


def test_demo_htmx_post_returns_the_partial_and_the_url_to_push(logged_in, demo_models, fresh_caches):
    url = reverse("modelhub:detail", args=["tfidf-logreg"])
    response = logged_in.post(url, {"text": "Doctors at the hospital gave the vaccine"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and 'id="predicted-label">health<' in html
    pushed = response["HX-Push-Url"]
    assert pushed.startswith(url + "?_in=") and "version=1" in pushed
    assert "HX-Request" in response["Vary"]
    # Back to a page htmx no longer has in its cache: it asks with HX-History-Restore-Request and needs the page
    restored = logged_in.get(pushed, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in restored.content.decode() and 'id="predicted-label">health<' in restored.content.decode()
    # an invalid text is not pushed: no results, nothing stored
    empty = logged_in.post(url, {"text": "   "}, **HTMX)
    assert "HX-Push-Url" not in empty and "it is empty" in empty.content.decode()
    assert SharedInput.objects.count() == 1


def test_compare_two_hundred_texts_by_post_and_their_url(logged_in, demo_models, fresh_caches):
    url = reverse("modelhub:compare", args=["tfidf-logreg"])
    texts = _two_hundred_texts()
    response = logged_in.post(url, {"a": "tfidf-logreg@1", "b": "tfidf-logreg@2", "text": "\n".join(texts)}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and html.count('<td class="cell-long">') == 200
    pushed = response["HX-Push-Url"]
    assert len(pushed) < 150 and "a=tfidf-logreg%401" in pushed and "b=tfidf-logreg%402" in pushed
    reloaded = logged_in.get(pushed)
    assert reloaded.content.decode().count('<td class="cell-long">') == 200
    assert reloaded.context["comparison"].rows and len(reloaded.context["comparison"].rows) == 200
    assert reloaded.context["form"].initial["text"] == "\n".join(texts)  # the box holds the 200 lines
    # 201 lines are refused with the reason, and not pushed
    too_many = logged_in.post(url, {"a": "tfidf-logreg@1", "b": "tfidf-logreg@2",
                                    "text": "\n".join(texts + ["one more"])}, **HTMX)
    assert "At most 200 texts" in too_many.content.decode() and "HX-Push-Url" not in too_many


def test_compare_without_js_redirects(logged_in, demo_models, fresh_caches):
    url = reverse("modelhub:compare", args=["tfidf-logreg"])
    response = logged_in.post(url, {"a": "tfidf-logreg@1", "b": "minilm-topic@1", "text": "a\nb"})
    assert response.status_code == 302 and "_in=" in response["Location"] and "minilm-topic%401" in response["Location"]
    html = logged_in.get(response["Location"]).content.decode()
    assert html.count('<td class="cell-long">') == 2 and "minilm-topic v1" in html


@pytest.mark.parametrize("key", ["0" * 24, "nothex", "../../etc", "a" * 25, "x\x00y"])
def test_unknown_or_malformed_stored_input_is_404(logged_in, demo_models, key):
    for name in ("modelhub:detail", "modelhub:compare"):
        response = logged_in.get(reverse(name, args=["tfidf-logreg"]), {"_in": key})
        assert response.status_code == 404


def test_a_stored_key_is_looked_up_only_when_it_has_the_key_shape(logged_in, demo_models):
    SharedInput.objects.create(key="not-a-key", text="stocks market")  # (only a broken shape check would find it)
    response = logged_in.get(reverse("modelhub:detail", args=["tfidf-logreg"]), {"_in": "not-a-key"})
    assert response.status_code == 404


def test_stored_inputs_need_login(client, demo_models):
    from apps.modelhub.services import shared_input_save

    key = shared_input_save(text="private text").key
    response = client.get(reverse("modelhub:detail", args=["tfidf-logreg"]), {"_in": key})
    assert response.status_code == 302 and "/accounts/login" in response["Location"]


def test_only_scoring_requests_count_against_the_predict_limit(logged_in, demo_models, fresh_caches, settings):
    settings.RATE_LIMIT_PREDICT_PER_MINUTE = 2
    url = reverse("modelhub:detail", args=["tfidf-logreg"])
    # a POST without JS only stores and redirects: it scores nothing, so it does not count
    for _ in range(3):
        assert logged_in.post(url, {"text": "hello there"}).status_code == 302
    location = logged_in.post(url, {"text": "hello there"})["Location"]
    assert logged_in.get(location).status_code == 200
    assert logged_in.get(location).status_code == 200
    assert logged_in.get(location).status_code == 429  # the GETs that score count


def test_score_search_exports_the_rows_on_screen(logged_in, user, demo_models, samples_subset, fresh_caches):
    url = reverse("modelhub:score-search")
    params = {"model": "tfidf-logreg", "lang__eq": "en", "limit": "30"}
    page = logged_in.get(url, params)
    scored = page.context["scored"]
    html = page.content.decode()
    link = html.split('id="score-export"')[0].rsplit('<a href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert "format=csv" in link and "lang__eq=en" in link and "model=tfidf-logreg" in link
    export = logged_in.get(link)
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    assert "attachment" in export["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(export.content.decode())))
    header, body = rows[0], rows[1:]
    assert header == [*scored.columns, "text", "label", "prediction", "probability", "agrees"]
    assert len(body) == len(scored.rows) == 30
    for line, item in zip(body, scored.rows):
        assert line[0] == str(item["cells"][0]) and line[len(scored.columns)] == item["text"]
        assert line[-3] == item["prediction"].label
        assert float(line[-2]) == pytest.approx(item["prediction"].top(1)[0][1], abs=1e-6)
        assert line[-1] == ("yes" if item["agrees"] else "no")


def test_score_search_export_is_refused_like_the_page(client, plain_user, demo_models, samples_subset):
    client.force_login(plain_user)  # no analyst role: scoring a search is data work
    response = client.get(reverse("modelhub:score-search"), {"model": "tfidf-logreg", "format": "csv"})
    assert response.status_code == 403


def test_score_search_csv_defuses_formulas(user, demo_models):
    from apps.modelhub.runtime import Prediction
    from apps.modelhub.services import ScoredSearch, scored_search_csv

    prediction = Prediction(label="sports", scores={"sports": 0.9, "health": 0.1}, truncated=False)
    scored = ScoredSearch(table="t", text_column="text", label_column=None, columns=["id"], rows=[
        {"cells": [1], "text": "=HYPERLINK(\"x\")", "prediction": prediction, "truth": None, "agrees": None},
        {"cells": [2], "text": "", "prediction": None, "truth": None, "agrees": None}],
        batch=None, agreement=None, compared=0, confusion=None, query_description="")
    rows = list(csv.reader(io.StringIO(scored_search_csv(scored=scored))))
    assert rows == [["id", "text", "prediction", "probability", "agrees"],
                    ["1", "'=HYPERLINK(\"x\")", "sports", "0.900000", ""], ["2", "", "", "", ""]]


@pytest.mark.django_db
def test_stored_texts_older_than_the_retention_are_pruned_and_the_rest_kept(settings):
    from datetime import timedelta

    from django.utils import timezone

    from apps.modelhub.models import SharedInput
    from apps.modelhub.services import shared_input_save
    from apps.modelhub.tasks import shared_inputs_prune_task

    old, recent = shared_input_save(text="an old text"), shared_input_save(text="a recent text")
    SharedInput.objects.filter(key=old.key).update(created_at=timezone.now() - timedelta(days=31))
    SharedInput.objects.filter(key=recent.key).update(created_at=timezone.now() - timedelta(days=29))
    settings.LOG_RETENTION_DAYS = 30
    assert shared_inputs_prune_task() == 1
    assert list(SharedInput.objects.values_list("key", flat=True)) == [recent.key]
    assert "modelhub-prune-shared-inputs" in settings.CELERY_BEAT_SCHEDULE
