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

    replies = app.control.ping(timeout=settings.HEALTH_CHECK_TIMEOUT, limit=1)
    if not replies:
        return False, f"no Celery worker answered a ping within {settings.HEALTH_CHECK_TIMEOUT:g}s"
    return True, f"{len(replies)} worker(s)"


def check_worker_roundtrip() -> tuple[bool, str]:
    """A real task through Redis and back: slower than a ping, so only for /healthz?deep=1."""
    import uuid

    from .tasks import worker_roundtrip

    token = uuid.uuid4().hex
    result = worker_roundtrip.apply_async(args=[token]).get(timeout=settings.HEALTH_CHECK_TIMEOUT * 4)
    if result.get("token") != token or not result.get("db_ok"):
        return False, f"unexpected task result {result!r}"
    return True, f"task ran on {result['hostname']} pid {result['pid']}"


def check_subset() -> tuple[bool, str]:
    from apps.search.store import subset_status

    return subset_status()


def check_index() -> tuple[bool, str]:
    """The subset's word index, as this process sees it: a damaged table fails the check (its searches scan, so
    they stay right but slow, until `manage.py reindex_subset`); a stale one (another format or tokenizer) is
    named but passes (setup_demo and `reindex_subset --if-stale` rebuild it after an upgrade)."""
    from apps.search.selectors import subset_index_problems

    problems = subset_index_problems()
    if not problems:
        return True, "every table's index is sound"
    text = "; ".join(f"{table}: {state} ({reason})" for table, (state, reason) in sorted(problems.items()))
    damaged = any(state == "damaged" for state, _ in problems.values())
    return not damaged, f"{text}; its searches scan until `manage.py reindex_subset`"[:600]


def check_warehouse() -> tuple[bool, str]:
    """On the local backend, name every table whose `full_data_glob` matches no file: it has no warehouse (its
    short searches answer from the local copy only, TableSpec.has_warehouse). Passes: searches still work."""
    from apps.search.tables import full_data_glob_matches, table_spec_list

    if settings.WAREHOUSE_BACKEND == "athena":
        return True, "athena"
    missing = [f"{spec.name} ({spec.full_data_glob} matches no file)" for spec in table_spec_list()
               if spec.full_data_glob and not full_data_glob_matches(spec.full_data_glob)]
    if not missing:
        return True, "every table's full data is present"
    return True, ("no warehouse for " + "; ".join(missing) + ": their searches answer from the local copy only")[:600]


CHECKS = {
    "database": check_database,
    "redis": check_redis,
    "worker": check_worker,
    "duckdb": check_subset,
    "index": check_index,
    "warehouse": check_warehouse,
}
DEEP_CHECKS = {"task_roundtrip": check_worker_roundtrip}


def run_checks(names: list[str] | None = None) -> list[CheckResult]:
    results = []
    for name in names or list(CHECKS):
        started = time.perf_counter()
        try:
            ok, reason = (CHECKS.get(name) or DEEP_CHECKS[name])()
        except Exception as exc:  # a check reports failure; it never takes the page down
            ok, reason = False, f"{type(exc).__name__}: {exc}"[:300]
        results.append(CheckResult(name, ok, reason, round((time.perf_counter() - started) * 1000, 1)))
    return results
