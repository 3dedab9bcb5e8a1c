"""Issue 13: batch jobs with Redis down fail fast and visibly; a sweeper fails jobs whose worker died;
the largest accepted upload fits the task's time limits."""
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from apps.modelhub.models import BatchJob, ModelVersion
from apps.modelhub.services import BatchInputError, batch_job_create, batch_job_sweep

pytestmark = pytest.mark.django_db

CSV = b"id,body\n1,a long enough review text to score\n2,another long review text here\n"


@pytest.fixture
def model_version(db):
    # The job is only queued here, never scored: no model files needed.
    return ModelVersion.objects.create(name="batch-clf", version="1", kind="classifier", uri="/nowhere",
                                       checksums={}, card={})


@pytest.fixture
def broker_down():
    """Point Celery (broker and result backend) at a port where nothing listens, as when Redis is down."""
    from tests.conftest import _point_app_at, free_port

    previous = django_settings.CELERY_BROKER_URL
    _point_app_at(f"redis://127.0.0.1:{free_port()}/0")
    yield
    _point_app_at(previous)


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: the enqueue runs inside the request
def test_an_upload_with_redis_down_fails_fast_says_so_and_marks_the_job_failed(client, user, model_version,
                                                                              broker_down):
    client.force_login(user)
    upload = SimpleUploadedFile("reviews.csv", CSV, content_type="text/csv")
    started = time.monotonic()
    response = client.post(reverse("modelhub:batch", args=["batch-clf"]),
                           {"file": upload, "text_column": "body", "version": "1"})
    elapsed = time.monotonic() - started
    assert elapsed < 2, f"took {elapsed:.1f}s"
    assert response.status_code == 503
    assert "job queue is unavailable" in response.content.decode()
    job = BatchJob.objects.get()
    assert job.state == BatchJob.State.FAILED and "Redis" in job.error_message and job.finished_at
    assert not Path(job.input_path).exists()  # the upload of a job that ended is not kept


def test_the_service_alone_fails_the_job_when_redis_is_down(user, model_version, broker_down,
                                                            django_capture_on_commit_callbacks):
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        job = batch_job_create(user=user, model_version=model_version, filename="x.csv", data=CSV,
                               text_column="body")
    assert time.monotonic() - started < 2
    job.refresh_from_db()
    assert job.state == BatchJob.State.FAILED


def test_the_sweeper_fails_jobs_whose_worker_died_and_leaves_live_ones(user, model_version, tmp_path):
    now = timezone.now()
    common = dict(model_version=model_version, user=user, original_name="x.csv", text_column="body",
                  input_path="/nowhere.csv", total=10)
    uploads = {name: tmp_path / f"{name}-input.csv" for name in ("dead", "never_taken", "alive")}
    for path in uploads.values():
        path.write_bytes(CSV)
    dead = BatchJob.objects.create(state="running", started_at=now - timedelta(hours=1),
                                   heartbeat_at=now - timedelta(seconds=601), processed=256,
                                   **{**common, "input_path": str(uploads["dead"])})
    dead_no_beat = BatchJob.objects.create(state="running", started_at=now - timedelta(hours=1), **common)
    alive = BatchJob.objects.create(state="running", started_at=now - timedelta(hours=1),
                                    heartbeat_at=now - timedelta(seconds=30),
                                    **{**common, "input_path": str(uploads["alive"])})
    never_taken = BatchJob.objects.create(state="queued", **{**common, "input_path": str(uploads["never_taken"])})
    BatchJob.objects.filter(pk=never_taken.pk).update(created_at=now - timedelta(hours=3))
    waiting = BatchJob.objects.create(state="queued", **common)
    done = BatchJob.objects.create(state="succeeded", started_at=now - timedelta(days=1), **common)

    assert batch_job_sweep(stale_after_seconds=600) == {"failed_running": 2, "failed_queued": 1}
    states = dict(BatchJob.objects.values_list("pk", "state"))
    assert states[dead.pk] == states[dead_no_beat.pk] == states[never_taken.pk] == "failed"
    assert (states[alive.pk], states[waiting.pk], states[done.pk]) == ("running", "queued", "succeeded")
    assert "no progress" in BatchJob.objects.get(pk=dead.pk).error_message
    # The uploads of the jobs that ended are deleted; a live job keeps its own.
    assert [name for name, path in uploads.items() if path.exists()] == ["alive"]
    assert batch_job_sweep(stale_after_seconds=600) == {"failed_running": 0, "failed_queued": 0}


def test_beat_runs_the_sweeper_and_the_task_limits_fit_the_largest_upload():
    from apps.modelhub.tasks import batch_job_score, batch_job_sweep_task
    from apps.samplescope.celery import app

    entry = django_settings.CELERY_BEAT_SCHEDULE["modelhub-sweep-batches"]
    assert entry["task"] == batch_job_sweep_task.name and entry["task"] in app.tasks
    assert batch_job_score.ignore_result  # no result channel to wait on when Redis is down
    # 20 texts/s is the slowest model (MiniLM on 2 cores): the largest accepted job fits the soft limit.
    assert django_settings.BATCH_MAX_ROWS / 20 < batch_job_score.soft_time_limit < batch_job_score.time_limit
    assert django_settings.BATCH_STALE_AFTER_SECONDS < django_settings.BATCH_SOFT_TIME_LIMIT


def test_more_rows_than_the_limit_are_refused(user, model_version, settings):
    settings.BATCH_MAX_ROWS = 1
    with pytest.raises(BatchInputError, match="limit is 1 per job"):
        batch_job_create(user=user, model_version=model_version, filename="x.csv", data=CSV, text_column="body")
    assert not BatchJob.objects.exists()
