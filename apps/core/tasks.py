import os
import socket

from celery import shared_task
from django.db import connection


@shared_task(name="core.worker_roundtrip", soft_time_limit=10, time_limit=20)
def worker_roundtrip(token: str) -> dict:
    """Proves a worker can take a task from Redis, reach the database and send a result back
    (used by `/healthz?deep=1` and the integration tests)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        db_ok = cursor.fetchone()[0] == 1
    return {"token": token, "hostname": socket.gethostname(), "pid": os.getpid(), "db_ok": db_ok}
