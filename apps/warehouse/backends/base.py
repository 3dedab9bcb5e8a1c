"""What every warehouse backend offers, and the price arithmetic they share.

A backend takes a SearchQuery plus its TableSpec, compiles it with the search app's compiler
in its own dialect, runs it and returns a WarehouseResult. While it runs it calls
`control.tick(...)` now and then: that reports progress (query id, bytes so far) and returns
the reason to stop ("cancelled", "timed_out") or None.
"""
from __future__ import annotations

import datetime as dt
import decimal
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings

MEGABYTE = 1024**2
TERABYTE = 1024**4
# Athena bills bytes scanned rounded up to the next megabyte, with a 10 MB minimum per query.
MINIMUM_BILLED_BYTES = 10 * MEGABYTE


def scan_cost_usd(*, bytes_scanned: int | None, price_per_tb_usd: float | None = None) -> Decimal:
    """Athena's price for a query that scanned `bytes_scanned` bytes.

    max(bytes, 10 MB), rounded up to whole MB, times the price per TB. MB and TB are binary
    (2^20 and 2^40 bytes), as AWS bills data volumes. None or 0 bytes is still billed the minimum:
    callers decide when a query is free (failed queries, reused results).
    """
    price = Decimal(str(settings.ATHENA_PRICE_PER_TB_USD if price_per_tb_usd is None else price_per_tb_usd))
    billed_mb = math.ceil(max(int(bytes_scanned or 0), MINIMUM_BILLED_BYTES) / MEGABYTE)
    return (Decimal(billed_mb) * price / Decimal(TERABYTE // MEGABYTE)).quantize(Decimal("1e-10"))


class WarehouseTransientError(Exception):
    """The warehouse could not be reached or throttled us past our retries: worth retrying the task."""


class WarehouseQueryError(Exception):
    """The query itself is wrong for this backend (bad table, missing data): retrying will not help."""


class RunControl(Protocol):
    def tick(
        self, *, engine_query_id: str | None = None, bytes_scanned: int | None = None, progress: float | None = None,
        force: bool = False,
    ) -> str | None:
        """Record progress (at most every half second unless `force`: a run about to end abruptly says what
        it scanned); return "cancelled" or "timed_out" when the run must stop, else None."""


class NullControl:
    """For benchmarks and shell use: never stops, records nothing."""

    def tick(self, **_: Any) -> str | None:
        return None


@dataclass
class WarehouseResult:
    state: str  # "succeeded", "failed", "cancelled" or "timed_out" (the Fallback.State values)
    rows: list[dict] = field(default_factory=list)
    bytes_scanned: int | None = None
    bytes_are_estimate: bool = False
    cost_usd: Decimal = Decimal(0)
    engine_query_id: str = ""
    elapsed_ms: int = 0
    error: str = ""
    reused_result: bool = False


@dataclass
class ExportResult(WarehouseResult):
    """An export's ending: where its rows were written, how many (None: the engine does not say) and how big."""

    location: str = ""
    row_count: int | None = None
    file_bytes: int | None = None


class WarehouseBackend(ABC):
    name: str = ""
    bytes_are_estimate: bool = False

    @abstractmethod
    def estimate_bytes(self, *, query, spec) -> int | None:
        """Bytes the query would scan, known before sending it; None when the backend cannot tell."""

    @abstractmethod
    def run(self, *, query, spec, request_token: str, control: RunControl,
            resume_engine_query_id: str = "", simulated_latency_ms: int = 0) -> WarehouseResult:
        """Run the query to the end (or until control says stop); never returns more than query.limit rows."""

    def full_scan_bytes(self, *, query, spec) -> int | None:
        """What a full scan of the columns the query reads would scan, from what this backend knows of the
        table's size; None when it knows nothing. The budget never reserves less (services._estimate_bytes)."""
        return None

    def export(self, *, query, spec, request_token: str, control: RunControl, location: str,
               simulated_latency_ms: int = 0) -> ExportResult:
        """Write every row of the full table that matches the search to `location` (one query)."""
        raise NotImplementedError(f"the {self.name} backend cannot export")

    def stop(self, *, engine_query_id: str) -> None:
        """Best effort: stop a query left running by a dead worker."""


def json_safe(value: Any) -> Any:
    """Row values as JSON can store them (rows go into a JSONField and through Celery)."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return value


def backend_get(name: str | None = None) -> WarehouseBackend:
    name = name or settings.WAREHOUSE_BACKEND
    if name == "local":
        from .local import LocalBackend

        return LocalBackend()
    if name == "athena":
        from .athena import AthenaBackend

        return AthenaBackend()
    raise ValueError(f"Unknown WAREHOUSE_BACKEND {name!r}: use 'local' or 'athena'")


def query_columns(*, query, spec) -> set[str]:
    """Columns a compiled search reads: shown columns, the key and every filtered column."""
    return set(spec.shown) | {spec.key} | {f.column for f in query.filters}
