"""Fixtures for the warehouse tests: a small demo dataset (full Parquet + 5% subset) and Celery
workers of our own for the tests that kill a worker or need short time limits."""
from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass

import duckdb
import pytest

from tests.conftest import ROOT, CeleryWorker, wait_until, worker_env
from tests.subsets.conftest import built_dataset, dataset  # noqa: F401  (the learned-rows tests use them)

WAREHOUSE_ROWS = 40_000


@dataclass(frozen=True)
class WarehouseData:
    """The demo dataset as it is on disk *now* (read at each call, so a test never works from a stale
    picture of the subset)."""

    @property
    def subset_ids(self) -> frozenset[int]:
        from apps.search.store import subset_connection

        cursor = subset_connection().cursor()
        try:
            return frozenset(r[0] for r in cursor.execute("SELECT id FROM samples").fetchall())
        finally:
            cursor.close()

    @property
    def missing_ids(self) -> tuple[int, ...]:  # ids in the full data but not in the subset
        from apps.search.tables import table_spec_get

        conn = duckdb.connect()
        try:
            full_ids = [r[0] for r in conn.execute("SELECT id FROM read_parquet(?) ORDER BY id",
                                                   [table_spec_get(name="samples").full_data_glob]).fetchall()]
        finally:
            conn.close()
        subset = self.subset_ids
        return tuple(i for i in full_ids if i not in subset)

    def id_query(self, *, in_subset: int, missing: int, limit: int | None = None, offset: int = 0):
        """A query on `id in (...)` that the subset can only partly answer: exact expectations."""
        from apps.search.query import Filter, SearchQuery

        local = sorted(self.subset_ids)[offset:offset + in_subset]
        remote = list(self.missing_ids[offset:offset + missing])
        ids = local + remote
        return SearchQuery(table="samples", filters=(Filter("id", "in", ",".join(map(str, ids))),),
                           limit=limit or len(ids)), set(local), set(remote)


@pytest.fixture(scope="session")
def warehouse_data() -> WarehouseData:
    """The demo dataset (full Parquet + subset) under the session's DATA_DIR, which the Celery
    workers started by the tests share. Built small here unless another app's tests built it
    already; every expectation is read back from the data, so either works."""
    from apps.search.demo import demo_data_build, demo_data_present

    if not demo_data_present():
        demo_data_build(rows=WAREHOUSE_ROWS, subset_fraction=0.05, seed=11, stdout=io.StringIO())
    data = WarehouseData()
    assert len(data.subset_ids) >= 100 and len(data.missing_ids) >= 700, "the demo data is too small for these tests"
    return data


def fallback_for_search(*, user, query, local_rows=None, **kwargs):
    """Ask for a fallback the way the search pipeline does (apps.warehouse.services.fallback_request),
    passing the keys of the rows the search already had."""
    from apps.search.tables import table_spec_get
    from apps.warehouse.services import fallback_request

    spec = table_spec_get(name=query.table)
    return fallback_request(user=user, query=query, spec=spec,
                            local_keys=[row[spec.key] for row in local_rows or []], **kwargs)


def local_rows_for(query) -> list[dict]:
    """What the search service's local query returns for `query` (the subset only)."""
    from apps.search.query import compile_search
    from apps.search.store import subset_connection
    from apps.search.tables import table_spec_get

    compiled = compile_search(query=query, spec=table_spec_get(name=query.table))
    cursor = subset_connection().cursor()
    try:
        result = cursor.execute(compiled.sql, compiled.params)
        names = [d[0] for d in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]
    finally:
        cursor.close()


class QueueWorker(CeleryWorker):
    """A Celery worker of our own on a queue of its own, with extra environment (time limits)."""

    def __init__(self, redis_url, log_path, *, queue: str, env: dict[str, str] | None = None, name: str = "wh"):
        super().__init__(redis_url, log_path, name=f"{name}-{queue}")
        self.queue = queue
        self.extra_env = env or {}

    def start(self) -> None:
        from apps.samplescope.celery import app

        env = worker_env(self.redis_url)
        env.update(self.extra_env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "apps.samplescope", "worker", "--loglevel", "INFO",
             "--concurrency", "1", "--pool", "prefork", "--without-gossip", "--without-mingle",
             "-Q", self.queue, "-n", self.name],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        # Ping this worker only: the shared session worker may be answering too.
        wait_until(lambda: self.proc.poll() is None and self._answers(app), timeout=60, interval=0.5,
                   what=f"worker {self.name} to answer (log: {self.log_path})")

    def _answers(self, app) -> bool:
        replies = app.control.ping(timeout=0.5)
        return any(self.name.split("@")[0] in name for reply in replies for name in reply)


@pytest.fixture
def queue_worker_factory(redis_server, warehouse_data, tmp_path, settings):
    """Start workers on a private queue and send this test's fallbacks there."""
    workers: list[QueueWorker] = []

    def start(*, queue: str, env: dict[str, str] | None = None) -> QueueWorker:
        settings.WAREHOUSE_TASK_QUEUE = queue
        worker = QueueWorker(redis_server.url, tmp_path / f"worker-{len(workers)}.log", queue=queue, env=env,
                             name=f"wh{len(workers)}")
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def broker_down(settings):
    """Point Celery at a port where nothing listens, as when Redis is down; restore afterwards."""
    from tests.conftest import _point_app_at, free_port

    previous = settings.CELERY_BROKER_URL
    _point_app_at(f"redis://127.0.0.1:{free_port()}/0")
    yield
    _point_app_at(previous)
