import csv
import io

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse
from django.utils.html import escape

from apps.modelhub.models import BatchJob, PredictionFlag

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def test_list_page(logged_in, demo_models):
    response = logged_in.get(reverse("modelhub:list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "tfidf-logreg" in html and "minilm-topic" in html and "candidate → v2" in html
    assert str(demo_models["tfidf-logreg@1"].metrics["accuracy"]) in html


def test_pages_need_login(client, demo_models):
    response = client.get(reverse("modelhub:detail", args=["tfidf-logreg"]))
    assert response.status_code == 302 and "/accounts/login" in response["Location"]


def test_detail_predicts_without_js(logged_in, demo_models, fresh_caches):
    url = reverse("modelhub:detail", args=["tfidf-logreg"])
    page = logged_in.get(url).content.decode()
    assert escape(demo_models["tfidf-logreg@1"].description) in page and "held-out accuracy" in page
    response = logged_in.post(url, {"text": "stocks market earnings profit", "version": "2"}, follow=True)
    assert response.redirect_chain[0][1] == 302 and "?_in=" in response.redirect_chain[0][0]  # Post/Redirect/Get
    html = response.content.decode()
    assert response.status_code == 200 and 'id="predicted-label">business<' in html
    assert 'data-chart="prediction-chart"' in html and 'id="prediction-chart"' in html and " ms" in html
    assert "v2 ·" in html


def test_detail_htmx_example_returns_partial(logged_in, demo_models, fresh_caches):
    example = demo_models["tfidf-logreg@1"].examples[0]
    response = logged_in.post(reverse("modelhub:detail", args=["minilm-topic"]), {"example": example, "text": ""},
                              HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert 'id="predicted-label"' in html and "Flag this prediction" in html
    assert example[:30] in html  # the example is put in the text box


@pytest.mark.parametrize(("text", "message"), [("   ", "it is empty"), ("x" * 20_001, "at most 20000")])
def test_detail_bad_text(logged_in, demo_models, text, message):
    response = logged_in.post(reverse("modelhub:detail", args=["tfidf-logreg"]), {"text": text})
    assert response.status_code == 200 and message in response.content.decode()
    assert "predicted-label" not in response.content.decode()


def test_truncation_is_shown(logged_in, demo_models, fresh_caches):
    response = logged_in.post(reverse("modelhub:detail", args=["minilm-topic"]), {"text": "doctor vaccine " * 300},
                              follow=True)
    assert "limit (128 tokens): only the start was scored" in response.content.decode()


def test_unknown_model_or_version_is_404(logged_in, demo_models):
    assert logged_in.get(reverse("modelhub:detail", args=["nope"])).status_code == 404
    response = logged_in.post(reverse("modelhub:detail", args=["tfidf-logreg"]), {"text": "hi", "version": "9"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()


def test_compare_two_versions(logged_in, demo_models, fresh_caches):
    url = reverse("modelhub:compare", args=["tfidf-logreg"])
    response = logged_in.get(url, {"a": "1", "b": "2", "text": "the team won the match and the league"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-chart="compare-chart-a"' in html and 'data-chart="compare-chart-b"' in html
    assert "v1:" in html and "v2:" in html and 'id="agreement"' in html


def test_compare_several_lines_across_two_classifiers(logged_in, demo_models, fresh_caches):
    url = reverse("modelhub:compare", args=["tfidf-logreg"])
    text = "stocks market earnings profit\n\nthe team won the match and the league\ndoctors hospital patients"
    response = logged_in.get(url, {"a": "tfidf-logreg@1", "b": "minilm-topic@1", "text": text})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('<td class="cell-long">') == 3 and "compare-chart-a" not in html  # a table, no charts
    a, b = demo_models["tfidf-logreg@1"].metrics, demo_models["minilm-topic@1"].metrics
    assert f'<td class="num">{a["accuracy"]}</td><td class="num">{b["accuracy"]}</td>' in html
    assert "They disagree on" in html


def test_compare_puts_disagreements_first(user, demo_models, fresh_caches):
    from apps.modelhub.services import texts_compare

    texts = ["stocks market earnings profit", "the team won the match", "doctors hospital patients vaccine",
             "an election vote in parliament", "new phone software chip"]
    result = texts_compare(user=user, a=demo_models["tfidf-logreg@1"], b=demo_models["minilm-topic@1"], texts=texts)
    flags = [r.agree for r in result.rows]
    assert flags == sorted(flags) and result.disagreements == flags.count(False)
    assert sorted(r.text for r in result.rows) == sorted(texts)


def test_flag_store_list_and_export(logged_in, demo_models, user):
    response = logged_in.post(reverse("modelhub:flag", args=["tfidf-logreg"]), {
        "version": "1", "input_text": "a text about doctors", "predicted_label": "sports",
        "correct_label": "health", "comment": "obviously health",
    }, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "flagged for review" in response.content.decode()
    flag = PredictionFlag.objects.get()
    assert (flag.model_version.version, flag.correct_label, flag.user) == ("1", "health", user)
    bad = logged_in.post(reverse("modelhub:flag", args=["tfidf-logreg"]), {
        "version": "1", "input_text": "x", "predicted_label": "sports", "correct_label": "not-a-label"})
    assert bad.status_code == 302 and PredictionFlag.objects.count() == 1
    listing = logged_in.get(reverse("modelhub:flags", args=["tfidf-logreg"])).content.decode()
    assert "a text about doctors" in listing and "obviously health" in listing
    export = logged_in.get(reverse("modelhub:flags", args=["tfidf-logreg"]), {"format": "csv"})
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert rows[0]["correct_label"] == "health" and rows[0]["user"] == "analyst"


def _upload(client, content: bytes, column="text", name="rows.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(reverse("modelhub:batch", args=["tfidf-logreg"]), {
        "file": SimpleUploadedFile(name, content, content_type="text/csv"), "text_column": column, "version": "1",
    })


def test_batch_upload_errors(logged_in, demo_models):
    not_utf8 = _upload(logged_in, "text\ncafé crème\n".encode("latin-1"))
    assert "not UTF-8" in not_utf8.content.decode()
    missing = _upload(logged_in, b"body,id\nhello,1\n")
    assert "has no column &#x27;text&#x27;. Its columns: body, id" in missing.content.decode()
    empty = _upload(logged_in, b"text\n")
    assert "no rows to score" in empty.content.decode()
    with override_settings(BATCH_UPLOAD_MAX_BYTES=100):
        too_big = _upload(logged_in, b"text\n" + b"word " * 100 + b"\n")
    assert "the limit is 0.0 MB" in too_big.content.decode()
    assert BatchJob.objects.count() == 0


def test_list_models_only_shows_own_batch_jobs(logged_in, demo_models, staff_user, client):
    from apps.modelhub.services import batch_job_create

    job = batch_job_create(user=staff_user, model_version=demo_models["tfidf-logreg@1"], filename="x.csv",
                           data=b"text\nhello\n", text_column="text")
    assert logged_in.get(reverse("modelhub:batch-detail", args=[job.id])).status_code == 404


def test_model_manager_register_and_alias_pages(client, staff_user, plain_user, demo_models):
    client.force_login(plain_user)
    assert client.post(reverse("modelhub:alias", args=["tfidf-logreg"]), {"alias": "production", "version": "2"}).status_code == 403
    from apps.modelhub.selectors import model_version_get

    assert model_version_get(name="tfidf-logreg").version == "1"  # no model manager role: 403
    client.force_login(staff_user)
    client.post(reverse("modelhub:alias", args=["tfidf-logreg"]), {"alias": "production", "version": "2"})
    assert model_version_get(name="tfidf-logreg").version == "2"
    response = client.post(reverse("modelhub:register"), {"uri": f"{settings.MODEL_STORE_URI}/no/such", "aliases": ""},
                           follow=True)
    assert "Not registered: No readable card.json" in response.content.decode()
    response = client.post(reverse("modelhub:register"), {"uri": "/no/such/folder", "aliases": ""}, follow=True)
    assert "Not registered: Only the model store is read" in response.content.decode()


def test_hand_written_examples_are_shown_and_checked(logged_in, demo_models, fresh_caches):
    from apps.modelhub.demo import labelled_examples_load

    labelled = labelled_examples_load()
    assert len(labelled) == 30 and {e["label"] for e in labelled} == set(demo_models["tfidf-logreg@1"].labels)
    mv = demo_models["tfidf-logreg@1"]
    assert mv.labelled_examples == labelled and mv.metrics["readable_check"]["n"] == 30
    url = reverse("modelhub:detail", args=["tfidf-logreg"])
    html = logged_in.get(url).content.decode()
    assert escape(labelled[0]["text"]) in html and '<span class="badge">sports</span>' in html
    html = logged_in.get(url, {"check": "1"}).content.decode()
    assert 'id="check-rows"' in html and html.count("<td>sports</td>") >= 3
    # readable sentences are easy for the demo classifier
    assert mv.metrics["readable_check"]["accuracy"] >= 0.8
