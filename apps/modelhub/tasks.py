from celery import shared_task

from .services import batch_job_run


@shared_task(name="modelhub.batch_job_score", acks_late=True)
def batch_job_score(job_id: int) -> dict:
    """Scores one uploaded CSV; safe to run twice (a finished job is left as it is)."""
    job = batch_job_run(job_id=job_id)
    return {"job_id": job.id, "state": job.state, "processed": job.processed}
