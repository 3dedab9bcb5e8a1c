"""Health checks for /healthz and the status banner: each returns (ok, reason) and never raises."""
from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import connection


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    reason: str = ""
    elapsed_ms: float = 0.0


def check_database() -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return True, ""


def check_redis() -> tuple[bool, str]:
    timeout = settings.HEALTH_CHECK_TIMEOUT
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()
    return True, ""


def check_worker() -> tuple[bool, str]:
    from apps.samplescope.celery import app

    replies = app.control.ping(timeout=settings.HEALTH_CHECK_TIMEOUT)
    if not replies:
        return False, f"no Celery worker answered a ping within {settings.HEALTH_CHECK_TIMEOUT:g}s"
    return True, f"{len(replies)} worker(s)"


def check_subset() -> tuple[bool, str]:
    from apps.search.store import subset_status

    return subset_status()


CHECKS = {
    "database": check_database,
    "redis": check_redis,
    "worker": check_worker,
    "duckdb": check_subset,
}


def run_checks(names: list[str] | None = None) -> list[CheckResult]:
    results = []
    for name in names or list(CHECKS):
        started = time.perf_counter()
        try:
            ok, reason = CHECKS[name]()
        except Exception as exc:  # a check reports failure; it never takes the page down
            ok, reason = False, f"{type(exc).__name__}: {exc}"[:300]
        results.append(CheckResult(name, ok, reason, round((time.perf_counter() - started) * 1000, 1)))
    return results
