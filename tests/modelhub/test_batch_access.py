"""Issue 22: batch scoring needed no role and shared the default Celery worker's 2 slots with warehouse fallbacks
(two 700-row jobs delayed an analyst's fallback to 52 s). Now it is for the analyst role, and its tasks go to a
queue of their own that only the batch worker serves."""
import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.accounts.roles import ANALYST, KB_EDITOR, MODEL_MANAGER
from apps.accounts.services import user_roles_grant
from apps.modelhub.models import BatchJob
from apps.modelhub.services import batch_job_create, batch_job_enqueue, batch_job_run
from apps.samplescope.celery import app

ROOT = Path(__file__).resolve().parents[2]
CSV = b"id,body\n1,The striker scored twice and the club won the league title\n2,Shares fell at the bank\n"


def test_scoring_tasks_go_to_the_batch_queue_and_fallbacks_do_not():
    from apps.modelhub.tasks import batch_job_score, batch_job_sweep_task
    from apps.warehouse.tasks import fallback_run_task

    assert django_settings.BATCH_TASK_QUEUE == "batch"
    assert django_settings.WAREHOUSE_TASK_QUEUE == app.conf.task_default_queue == "celery"
    router = app.amqp.router
    assert router.route({}, batch_job_score.name)["queue"].name == "batch"  # also for a plain .delay()
    assert router.route({}, fallback_run_task.name)["queue"].name == "celery"
    assert router.route({}, batch_job_sweep_task.name)["queue"].name == "celery"  # the sweeper is not a job


@pytest.mark.django_db
def test_the_upload_enqueues_its_job_on_the_batch_queue(user, monkeypatch):
    from apps.modelhub.models import ModelVersion
    from apps.modelhub.tasks import batch_job_score

    sent = []
    monkeypatch.setattr(batch_job_score, "apply_async", lambda *args, **kwargs: sent.append(kwargs))
    mv = ModelVersion.objects.create(name="q-clf", version="1", kind="classifier", uri="/nowhere", checksums={},
                                     card={})
    job = BatchJob.objects.create(model_version=mv, user=user, original_name="a.csv", text_column="body",
                                  input_path="/nowhere/a.csv", total=1)
    assert batch_job_enqueue(job=job)
    assert [kwargs["queue"] for kwargs in sent] == ["batch"]


def _procfile() -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())


def _queues(command: str) -> str:
    return re.search(r"-Q (\S+)", command).group(1)


def test_make_run_starts_a_batch_worker_and_the_fallback_worker_skips_its_queue():
    procfile = _procfile()
    assert _queues(procfile["worker"]) == "celery"  # fallbacks, sweepers, the health round trip
    assert _queues(procfile["batch-worker"]) == "${BATCH_TASK_QUEUE:-batch}"
    assert "celery -A apps.samplescope worker" in procfile["batch-worker"]
    # Two workers on one host need two node names (else Celery warns and control replies are mixed up).
    assert "-n worker@%h" in procfile["worker"] and "-n batch@%h" in procfile["batch-worker"]


# --- Who may batch-score -------------------------------------------------------------------------------------

def _pages(job: BatchJob) -> list[tuple[str, str, dict]]:
    name = job.model_version.name
    upload = SimpleUploadedFile("a.csv", CSV, content_type="text/csv")
    preview = SimpleUploadedFile("a.csv", CSV, content_type="text/csv")
    return [
        ("get", reverse("modelhub:batch", args=[name]), {}),
        ("post", reverse("modelhub:batch", args=[name]), {"file": upload, "text_column": "body"}),
        ("post", reverse("modelhub:batch-preview", args=[name]), {"file": preview}),
        ("get", reverse("modelhub:batch-detail", args=[job.id]), {}),
        ("get", reverse("modelhub:batch-download", args=[job.id]), {}),
    ]


@pytest.fixture
def scored_job(demo_models, django_user_model, fresh_caches):
    """A finished job of an analyst's, with its scored CSV on disk."""
    owner = django_user_model.objects.create_user(username="owner", password="owner-password-1")
    user_roles_grant(user=owner, group_names=(ANALYST,))
    job = batch_job_create(user=owner, model_version=demo_models["tfidf-logreg@1"], filename="a.csv", data=CSV,
                           text_column="body")
    job = batch_job_run(job_id=job.id)
    assert job.state == BatchJob.State.SUCCEEDED
    return job


@pytest.mark.django_db
def test_no_role_gets_403_on_every_batch_page(client, plain_user, scored_job):
    # Even the job's owner, once the role is taken away: the job page and its download too.
    for person in (plain_user, scored_job.user):
        person.groups.clear()
        client.force_login(person)
        for method, url, data in _pages(scored_job):
            assert getattr(client, method)(url, data).status_code == 403, (person.username, method, url)
    assert BatchJob.objects.count() == 1  # the refused upload queued nothing
    # The model page does not offer what would be refused.
    assert reverse("modelhub:batch", args=["tfidf-logreg"]) not in client.get(
        reverse("modelhub:detail", args=["tfidf-logreg"])).content.decode()


@pytest.mark.django_db
def test_model_manager_or_kb_editor_alone_is_not_enough(client, django_user_model, scored_job):
    other = django_user_model.objects.create_user(username="manager", password="manager-password-1")
    user_roles_grant(user=other, group_names=(MODEL_MANAGER, KB_EDITOR))
    client.force_login(other)
    for method, url, data in _pages(scored_job):
        assert getattr(client, method)(url, data).status_code == 403, (method, url)


@pytest.mark.django_db
def test_the_analyst_role_may_batch_score(client, scored_job):
    client.force_login(scored_job.user)  # holds the analyst role only
    statuses = [getattr(client, method)(url, data).status_code for method, url, data in _pages(scored_job)]
    assert statuses == [200, 302, 200, 200, 200]  # the upload redirects to its new job's page
    assert BatchJob.objects.count() == 2
    page = client.get(reverse("modelhub:detail", args=["tfidf-logreg"])).content.decode()
    assert reverse("modelhub:batch", args=["tfidf-logreg"]) in page
    download = client.get(reverse("modelhub:batch-download", args=[scored_job.id]))
    assert b"".join(download.streaming_content).decode().splitlines()[0].endswith("predicted_label,predicted_score,prediction_note")
