"""Batch scoring through the real Redis and Celery worker fixtures."""
import csv
import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.modelhub.models import BatchJob
from tests.conftest import wait_until


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_csv_is_scored_in_batches_by_the_worker(client, user, demo_models, demo_build, redis_server, batch_worker):
    client.force_login(user)
    texts = demo_build.data.test_texts[:600]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "body", "note"])
    for i, text in enumerate(texts):
        writer.writerow([i, text, "x"])
    writer.writerow([600, "   ", "blank"])
    upload = SimpleUploadedFile("reviews.csv", out.getvalue().encode(), content_type="text/csv")
    response = client.post(reverse("modelhub:batch", args=["tfidf-logreg"]),
                           {"file": upload, "text_column": "body", "version": "2"})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = BatchJob.objects.get()
    assert response["Location"] == reverse("modelhub:batch-detail", args=[job.id])
    assert (job.total, job.text_column, job.model_version.version) == (601, "body", "2")

    page = client.get(response["Location"]).content.decode()
    assert 'hx-trigger="every 1s"' in page and "<progress" in page

    def finished():
        poll = client.get(response["Location"], HTTP_HX_REQUEST="true")
        return poll if poll.status_code == 286 else None

    final = wait_until(finished, timeout=90, interval=0.5, what=f"the batch job (worker log: {batch_worker.log_path})")
    assert "succeeded" in final.content.decode() and "Download the scored CSV" in final.content.decode()
    job.refresh_from_db()
    assert (job.state, job.processed, job.total) == ("succeeded", 601, 601)
    assert not Path(job.input_path).exists()  # scored: the upload is not kept (the scored CSV has its columns)

    download = client.get(reverse("modelhub:batch-download", args=[job.id]))
    assert download.status_code == 200 and "reviews-scored.csv" in download["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert len(rows) == 601 and list(rows[0]) == ["id", "body", "note", "predicted_label", "predicted_score", "prediction_note"]
    labels = set(demo_models["tfidf-logreg@2"].labels)
    assert all(r["predicted_label"] in labels for r in rows[:600])
    assert rows[-1]["predicted_label"] == "" and rows[-1]["prediction_note"] == "empty text"
    agreement = sum(r["predicted_label"] == y for r, y in zip(rows, demo_build.data.test_labels)) / 600
    assert agreement > 0.6
