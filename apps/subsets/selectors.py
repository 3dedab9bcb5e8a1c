"""Reads: learned rows for a local search, and the state of the subset and the learned store."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone

import duckdb
from django.conf import settings

from apps.search.errors import SubsetMissing
from apps.search.store import subset_paths, table_snapshot
from apps.warehouse.learned import learned_stats

from .models import SubsetRefresh

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreStatus:
    file_name: str = ""
    file_bytes: int = 0
    modified_at: datetime | None = None
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    @property
    def age_seconds(self) -> float | None:
        if self.modified_at is None:
            return None
        return (datetime.now(dt_timezone.utc) - self.modified_at).total_seconds()


def subset_status_get() -> StoreStatus:
    """The subset as served: each table's rows, its files' names, their total size and the newest one's time."""
    paths = subset_paths()
    if not paths:
        return StoreStatus()
    tables = {}
    for table, path in paths.items():
        try:
            cursor = table_snapshot(table=table).conn.cursor()
            try:
                tables[table] = cursor.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            finally:
                cursor.close()
        except (duckdb.Error, OSError, SubsetMissing):
            pass
    files = list(dict.fromkeys(paths.values()))
    if len(files) == 1:
        return _status(files[0], tables)
    parts = [_status(path, {}) for path in files]
    stamps = [part.modified_at for part in parts if part.modified_at is not None]
    return StoreStatus(file_name=", ".join(part.file_name for part in parts),
                       file_bytes=sum(part.file_bytes for part in parts),
                       modified_at=max(stamps) if stamps else None, tables=tables)


def _status(path, tables) -> StoreStatus:
    try:
        stat = path.stat()
    except OSError:
        return StoreStatus(file_name=path.name, tables=tables)
    return StoreStatus(file_name=path.name, file_bytes=stat.st_size,
                       modified_at=datetime.fromtimestamp(stat.st_mtime, tz=dt_timezone.utc), tables=tables)


@dataclass(frozen=True)
class LearnedStatus(StoreStatus):
    answers: int = 0
    complete_answers: int = 0
    max_rows: int = 0


def learned_status_get() -> LearnedStatus:
    stats = learned_stats()
    return LearnedStatus(file_name=stats.get("file_name", ""), file_bytes=stats.get("file_bytes", 0),
                         modified_at=stats.get("modified_at"), tables=stats.get("tables", {}),
                         answers=stats.get("answers", 0), complete_answers=stats.get("complete_answers", 0),
                         max_rows=settings.SUBSET_LEARNED_MAX_ROWS)


def refresh_last() -> SubsetRefresh | None:
    return SubsetRefresh.objects.order_by("-started_at", "-pk").first()


def refresh_last_succeeded() -> SubsetRefresh | None:
    return SubsetRefresh.objects.filter(state=SubsetRefresh.State.SUCCEEDED).order_by("-finished_at", "-pk").first()


def refresh_list(*, limit: int = 10):
    return SubsetRefresh.objects.order_by("-started_at", "-pk")[:limit]
