"""Issue 13: a real Celery worker SIGKILLed while it scores a batch job. Nothing in the dead process can mark
the job; the sweeper (what beat runs every BATCH_SWEEP_EVERY_SECONDS) must end it, visibly, and a later
redelivery of the unacknowledged task must not bring it back to "running"."""
from __future__ import annotations

import csv
import io
import time

import pytest

from apps.modelhub.models import BatchJob
from apps.modelhub.services import (
    BATCH_SIZE,
    _batch_output_paths,
    batch_job_create,
    batch_job_run,
    batch_job_sweep,
)
from tests.conftest import wait_until
from tests.warehouse.conftest import QueueWorker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUEUE = "batch-kill"


def _csv(texts: list[str], rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "body"])
    for i in range(rows):  # distinct texts: none is answered from the prediction cache
        writer.writerow([i, f"{texts[i % len(texts)]} (review {i})"])
    return out.getvalue().encode()


def _job(job_id: int) -> BatchJob:
    return BatchJob.objects.get(pk=job_id)


@pytest.fixture
def doomed_worker(redis_server, settings, tmp_path):
    """A worker of its own on a private queue, so killing it leaves the session's worker alone."""
    settings.BATCH_TASK_QUEUE = QUEUE
    worker = QueueWorker(redis_server.url, tmp_path / "batch-worker.log", queue=QUEUE, name="batch")
    worker.start()
    yield worker
    worker.stop()


def test_a_worker_killed_mid_batch_leaves_a_failed_job_not_a_running_one(user, demo_models, demo_build,
                                                                         doomed_worker):
    # MiniLM scores tens of texts a second on 2 cores: 4,000 rows run for well over a minute, so the kill lands
    # mid-job, after the first heartbeat (one per BATCH_SIZE rows) and long before the last row.
    rows = 4000
    job = batch_job_create(user=user, model_version=demo_models["minilm-topic@1"], filename="reviews.csv",
                           data=_csv(demo_build.data.test_texts, rows), text_column="body")

    def scoring():
        current = _job(job.pk)
        return current if current.state == "running" and current.processed >= BATCH_SIZE else None

    running = wait_until(scoring, timeout=120, interval=0.1,
                         what=f"the job to report progress (worker log: {doomed_worker.log_path})")
    assert running.heartbeat_at is not None and running.processed < rows
    partial = _batch_output_paths(job=running)[1]
    assert partial.exists()  # the worker's half-written output
    doomed_worker.kill()  # SIGKILL, main process and pool child: no cleanup, no ack
    time.sleep(1.5)
    stuck = _job(job.pk)
    assert stuck.state == "running" and stuck.finished_at is None  # all the row can tell: still "running"

    counts = batch_job_sweep(stale_after_seconds=1, queued_max_seconds=3600)  # what beat runs every minute

    assert counts == {"failed_running": 1, "failed_queued": 0}
    ended = _job(job.pk)
    assert ended.state == "failed" and ended.is_done and ended.finished_at is not None
    assert ended.error_message == "Its worker stopped: no progress for over 1 s. Upload the file again."
    assert ended.output_path == "" and 0 < ended.processed < rows
    assert not partial.exists(), "the dead worker's half-written output is removed"
    # Redis hands the unacknowledged task to a worker again later (acks_late): it leaves the ended job alone.
    again = batch_job_run(job_id=job.pk)
    assert (again.state, again.error_message, again.processed) == ("failed", ended.error_message, ended.processed)
    assert batch_job_sweep(stale_after_seconds=1, queued_max_seconds=3600) == {"failed_running": 0, "failed_queued": 0}
