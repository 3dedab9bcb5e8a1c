from celery import shared_task
from django.conf import settings

from .services import batch_job_run, batch_job_sweep, shared_inputs_prune


@shared_task(
    name="modelhub.batch_job_score",
    acks_late=True,
    reject_on_worker_lost=True,
    # State lives in the BatchJob row: no result backend, so sending never waits on Redis for a result channel.
    ignore_result=True,
    soft_time_limit=settings.BATCH_SOFT_TIME_LIMIT,
    time_limit=settings.BATCH_TIME_LIMIT,
)
def batch_job_score(job_id: int) -> dict:
    """Scores one uploaded CSV; safe to run twice (a finished job is left as it is)."""
    job = batch_job_run(job_id=job_id)
    return {"job_id": job.id, "state": job.state, "processed": job.processed}


@shared_task(name="modelhub.batch_job_sweep", ignore_result=True, acks_late=True, soft_time_limit=120, time_limit=150)
def batch_job_sweep_task() -> dict:
    return batch_job_sweep()


@shared_task(name="modelhub.shared_inputs_prune", ignore_result=True, soft_time_limit=120, time_limit=150)
def shared_inputs_prune_task() -> int:
    return shared_inputs_prune(older_than_days=settings.LOG_RETENTION_DAYS)
