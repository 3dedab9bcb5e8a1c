"""Celery tasks: thin wrappers around one service each."""
import logging

from celery import shared_task

from .services import RefreshBusy, subset_refresh

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300)
def subset_refresh_task(table: str | None = None, fraction: float | None = None) -> int | None:
    """The periodic refresh (beat entry `subsets-refresh`). A refresh already running is not an error."""
    try:
        return subset_refresh(table=table, fraction=fraction, trigger="beat").pk
    except RefreshBusy as exc:
        logger.info("subset refresh skipped: %s", exc)
        return None
