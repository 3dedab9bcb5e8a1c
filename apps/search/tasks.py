"""Celery tasks: thin wrappers around one service each."""
import logging

from celery import shared_task

from .services import subset_index_verify

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=3600, time_limit=3600 + 300)
def index_verify_task() -> dict:
    """The background verification of the subset's word index (beat entry `search-verify-index`): every
    byte of every file against its checksum; a damaged table is marked, so every process scans it."""
    found = subset_index_verify()
    damaged = {table: problem for table, problem in found.items() if problem}
    if damaged:
        logger.warning("word index verification: %s", damaged)
    return {table: list(problem) if problem else None for table, problem in found.items()}
