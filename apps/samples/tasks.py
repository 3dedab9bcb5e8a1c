from celery import shared_task

from .services import retention_prune


@shared_task(ignore_result=True, soft_time_limit=600, time_limit=660)
def retention_prune_task() -> dict:
    """Beat's daily retention (`warehouse-prune-logs`): what `manage.py prune_logs` does."""
    return retention_prune()
