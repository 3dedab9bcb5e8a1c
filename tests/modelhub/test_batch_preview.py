"""Choosing the text column of an uploaded CSV, the preview, the numbers-only guard and the ETA."""
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from apps.modelhub.models import BatchJob
from apps.modelhub.services import BatchInputError, batch_csv_preview, batch_job_create

ID_BODY = (
    "id,body\n"
    "1,The striker scored twice and the club won the league title\n"
    "2,\"Shares fell 3%, said the bank's chief executive\"\n"
    "3,\n"
)


def test_the_longest_text_column_is_chosen_over_the_id():
    preview = batch_csv_preview(data=ID_BODY.encode())
    assert preview.text_column == "body" and preview.chosen_automatically
    assert preview.texts == ["The striker scored twice and the club won the league title",
                             "Shares fell 3%, said the bank's chief executive", ""]
    assert not preview.numeric_only
    ids = {c.name: c for c in preview.columns}["id"]
    assert ids.numeric_only and not ids.text_like


def test_content_beats_the_first_column_and_a_short_label_column():
    data = b"label,comment,score\nspam,You won a free cruise click here now,0.5\nham,Lunch at noon?,1\n"
    assert batch_csv_preview(data=data).text_column == "comment"


def test_a_cut_preview_drops_its_last_row_and_a_split_character():
    data = ("id,body\n1,first row\n2,second row é").encode()[:-1]  # "é" cut in half, last row cut
    preview = batch_csv_preview(data=data, partial=True)
    assert preview.texts == ["first row"]


def test_an_explicit_column_is_kept_and_an_unknown_one_refused():
    assert batch_csv_preview(data=ID_BODY.encode(), text_column="id").texts == ["1", "2", "3"]
    with pytest.raises(BatchInputError, match="no column 'text'"):
        batch_csv_preview(data=ID_BODY.encode(), text_column="text")


@pytest.mark.django_db
def test_numbers_only_column_is_refused_unless_confirmed(user, demo_models, monkeypatch):
    queued = []
    monkeypatch.setattr("apps.modelhub.tasks.batch_job_score.delay", queued.append)
    mv = demo_models["tfidf-logreg@1"]
    with pytest.raises(BatchInputError, match="only numbers"):
        batch_job_create(user=user, model_version=mv, filename="a.csv", data=ID_BODY.encode(), text_column="id")
    assert not BatchJob.objects.exists()
    job = batch_job_create(user=user, model_version=mv, filename="a.csv", data=ID_BODY.encode(), text_column="id",
                           allow_numeric=True)
    assert job.text_column == "id"
    # blank column: chosen like the preview chooses
    job = batch_job_create(user=user, model_version=mv, filename="a.csv", data=ID_BODY.encode())
    assert (job.text_column, job.total) == ("body", 3)


@pytest.mark.django_db
def test_preview_endpoint_renders_the_rows_to_score(client, user, demo_models):
    client.force_login(user)
    url = reverse("modelhub:batch-preview", args=["tfidf-logreg"])
    response = client.post(url, {"file": SimpleUploadedFile("a.csv", ID_BODY.encode()), "text_column": ""})
    html = response.content.decode()
    assert response.status_code == 200
    assert '<option value="body" selected>' in html and "The striker scored twice" in html
    assert "Chosen automatically" in html and "batch-numeric-warning" not in html
    response = client.post(url, {"file": SimpleUploadedFile("a.csv", ID_BODY.encode()), "text_column": "id"})
    assert 'id="batch-numeric-warning"' in response.content.decode()


@pytest.mark.django_db
def test_job_page_shows_an_eta(client, user, demo_models):
    client.force_login(user)
    job = BatchJob.objects.create(model_version=demo_models["tfidf-logreg@1"], user=user, original_name="a.csv",
                                  text_column="body", input_path="/nonexistent", total=1000, processed=250,
                                  state=BatchJob.State.RUNNING, started_at=timezone.now() - timedelta(seconds=10))
    assert 25 <= job.eta_seconds <= 32
    html = client.get(reverse("modelhub:batch-detail", args=[job.id])).content.decode()
    assert 'id="batch-eta"' in html and " s left at " in html and "rows/s" in html
