"""Celery tasks: thin wrappers that take ids and call one service."""
from celery import shared_task
from django.conf import settings

from .backends.base import WarehouseTransientError
from .export_services import export_execute, export_sweep
from .learned import learned_segments_merge
from .services import fallback_execute, fallback_sweep, logs_prune


@shared_task(
    bind=True,
    acks_late=True,  # a worker that dies mid-run leaves the message to be redelivered
    reject_on_worker_lost=True,
    ignore_result=True,  # state lives in the Fallback row; no result backend round trip
    soft_time_limit=settings.FALLBACK_SOFT_TIME_LIMIT,
    time_limit=settings.FALLBACK_TIME_LIMIT,
    autoretry_for=(WarehouseTransientError,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=3,
)
def fallback_run_task(self, fallback_id: int) -> None:
    limits = self.request.timelimit or (None, None)
    fallback_execute(fallback_id=fallback_id, retries_left=self.max_retries - self.request.retries,
                     soft_time_limit=limits[1] or self.soft_time_limit)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=120, time_limit=150)
def fallback_sweep_task() -> dict:
    return {**fallback_sweep(), "exports_failed": export_sweep()}


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=600, time_limit=660)
def logs_prune_task() -> dict:
    return logs_prune()


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=600, time_limit=660)
def learned_segments_merge_task() -> dict:
    return learned_segments_merge()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,  # state lives in the Export row
    soft_time_limit=settings.EXPORT_SOFT_TIME_LIMIT,
    time_limit=settings.EXPORT_TIME_LIMIT,
)
def export_run_task(self, export_id: int) -> None:
    limits = self.request.timelimit or (None, None)
    export_execute(export_id=export_id, soft_time_limit=limits[1] or self.soft_time_limit)
