"""Replay a workload through the search pipeline, exactly as users' searches run.

Each query goes through `apps.samples.pipeline.search_answer` (subset, then learned rows, then the
warehouse fallback). The fallback's Celery task runs eagerly in this process (no queue time), on the
local backend, so when `search_answer` returns a new fallback has already finished and its rows have
been learned, as a worker would have done. The report counts what the returned answers say: rows
per source, fallbacks created, joined or reused, and their cost.

Everything the replay writes (search log, fallbacks, audit events) belongs to a dedicated user and
is deleted afterwards; the learned rows go to a private temporary store (`replay_environment`).
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.test.utils import override_settings

from apps.audit.models import AuditEvent
from apps.samplescope.celery import app as celery_app
from apps.search.models import SearchLog
from apps.search.query import SearchQuery
from apps.search.tables import table_spec_get
from apps.warehouse.backends.base import backend_get, scan_cost_usd
from apps.warehouse.models import Fallback

from ..pipeline import RowSource, search_answer

REPLAY_USERNAME = "bench-replay"


@dataclass
class ReplayReport:
    queries: int = 0
    local: int = 0  # answered without a new warehouse query: enough local rows, or known complete
    subset_enough: int = 0  # the subset alone had the limit
    answered_by_learned: int = 0
    answered_by_complete_answer: int = 0
    fallbacks_created: int = 0
    fallbacks_joined_or_cached: int = 0
    fallbacks_failed: int = 0
    rows: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in RowSource})
    cost_usd: Decimal = Decimal(0)
    cost_usd_without_learning: Decimal = Decimal(0)  # what a fallback for every subset miss would cost
    local_ms: list[float] = field(default_factory=list)
    fallback_ms: list[float] = field(default_factory=list)
    created_by_kind: dict[str, int] = field(default_factory=dict)
    answers: dict[str, list[tuple]] = field(default_factory=dict)  # fingerprint -> the last answer's (key, source)
    seconds: float = 0.0

    @property
    def fallbacks_per_1000(self) -> float:
        return round(1000 * self.fallbacks_created / max(self.queries, 1), 2)


@contextmanager
def replay_environment(*, learning: bool = True, max_learned_rows: int | None = None) -> Iterator[object]:
    """Settings for a replay: a private learned store, the local warehouse backend with no padding and
    no budget in the way (it costs nothing real), tasks run in this process. Yields the replay user."""
    user, _ = get_user_model().objects.get_or_create(username=REPLAY_USERNAME, defaults={"is_active": False})
    eager, propagates = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    with tempfile.TemporaryDirectory(prefix="bench-learned-") as learned_dir, override_settings(
            SUBSET_LEARNED_DIR=Path(learned_dir), SUBSET_LEARNING_ENABLED=learning,
            SUBSET_LEARNED_MAX_ROWS=max_learned_rows or settings.SUBSET_LEARNED_MAX_ROWS,
            WAREHOUSE_BACKEND="local", WAREHOUSE_LOCAL_MIN_LATENCY_MS=0, FALLBACK_DAILY_BUDGET_USD=10**9,
            FALLBACK_TEAM_DAILY_BUDGET_USD=10**9):
        celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = True, False
        try:
            yield user
        finally:
            celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = eager, propagates
            Fallback.objects.filter(user=user).delete()
            SearchLog.objects.filter(user=user).delete()
            AuditEvent.objects.filter(user=user).delete()


def workload_replay(*, workload: list[dict], user, stdout=None, progress_every: int = 250) -> ReplayReport:
    """Replay `workload` (SearchQuery dicts, with an optional "kind") through `search_answer`."""
    backend = backend_get("local")
    report = ReplayReport()
    started = time.perf_counter()
    for index, item in enumerate(workload, 1):
        query = SearchQuery.from_dict(item)
        answer = search_answer(user=user, query=query, count=False)
        report.queries += 1
        report.local_ms.append(answer.elapsed_ms)
        handle = answer.fallback
        if handle is not None and handle.created:
            # The task ran eagerly: ask again naming the fallback, as the page does when it hears it finished.
            answer = search_answer(user=user, query=query, fallback_id=handle.id, log=False, count=False)
        counts = answer.counts
        for source, n in counts.items():
            report.rows[source] += n
        report.answers[query.fingerprint()] = [(row.values.get(answer.spec.key), row.source.value) for row in answer.rows]
        subset_enough = counts[RowSource.SUBSET] >= query.limit
        report.subset_enough += subset_enough
        if not subset_enough:
            estimate = backend.estimate_bytes(query=query, spec=answer.spec)
            report.cost_usd_without_learning += scan_cost_usd(bytes_scanned=estimate)
        if handle is not None and handle.created:
            handle.fallback.refresh_from_db()
            report.fallbacks_created += 1
            report.fallback_ms.append(float(handle.fallback.elapsed_ms))  # created -> finished, as the row says
            report.cost_usd += handle.fallback.cost_usd
            report.fallbacks_failed += handle.fallback.state != Fallback.State.SUCCEEDED
            kind = item.get("kind", "?")
            report.created_by_kind[kind] = report.created_by_kind.get(kind, 0) + 1
        else:
            report.local += 1
            if handle is not None:
                report.fallbacks_joined_or_cached += 1
            elif not subset_enough:
                if answer.complete and len(answer.rows) < query.limit:
                    report.answered_by_complete_answer += 1
                else:
                    report.answered_by_learned += 1
        if stdout is not None and (index % progress_every == 0 or index == len(workload)):
            elapsed = time.perf_counter() - started
            stdout.write(f"  {index}/{len(workload)} queries, {report.local / index:.2%} without a new fallback, "
                         f"{report.fallbacks_created} fallbacks, {elapsed:.0f}s ({index / max(elapsed, 1e-9):.1f} q/s)\n")
    report.seconds = time.perf_counter() - started
    return report


def replay_table_check() -> None:
    """The workload is written for the demo table: fail early (TableNotFound, SubsetMissing) without it."""
    table_spec_get(name="samples")
