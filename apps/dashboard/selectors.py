"""Reads for the dashboard: the search log, the fallback and export records and the subset's refresh runs, per
day. Warehouse spend is fallbacks + exports (both billed against the same budget: apps.warehouse.selectors)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, Max, Sum
from django.utils import timezone

from apps.core.stats import percentile
from apps.search.models import SearchLog
from apps.search.query import SearchQuery
from apps.warehouse.models import Export, Fallback


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date  # inclusive

    @property
    def since(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.start, time.min))

    @property
    def until(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.end + timedelta(days=1), time.min))

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def _day(moment: datetime) -> date:
    return timezone.localtime(moment).date()


@dataclass(frozen=True)
class SearchDay:
    day: date
    searches: int
    local: int
    fallback: int
    local_p50_ms: float | None
    local_p95_ms: float | None

    @property
    def local_share(self) -> float | None:
        return self.local / self.searches if self.searches else None


def search_daily(*, period: DateRange, user=None) -> list[SearchDay]:
    """Per day: searches, how many the local store answered, and local query latency p50/p95; only `user`'s
    searches when given."""
    latencies: dict[date, list[float]] = defaultdict(list)
    needed: dict[date, int] = defaultdict(int)
    logs = SearchLog.objects.all() if user is None else SearchLog.objects.filter(user=user)
    for created_at, elapsed_ms, needed_fallback in logs.filter(
            created_at__gte=period.since, created_at__lt=period.until).values_list(
            "created_at", "elapsed_ms", "needed_fallback").iterator(chunk_size=5000):
        day = _day(created_at)
        latencies[day].append(elapsed_ms)
        needed[day] += bool(needed_fallback)
    return [SearchDay(day=d, searches=len(latencies[d]), local=len(latencies[d]) - needed[d], fallback=needed[d],
                      local_p50_ms=percentile(latencies[d], 0.5), local_p95_ms=percentile(latencies[d], 0.95))
            for d in period.days]


@dataclass(frozen=True)
class FallbackDay:
    day: date
    fallbacks: int
    succeeded: int
    p50_s: float | None
    p95_s: float | None
    bytes_scanned: int
    cost_usd: Decimal


def fallback_daily(*, period: DateRange, user=None) -> list[FallbackDay]:
    """Per day: warehouse queries sent, their latency (created → finished) p50/p95, bytes and USD; only the
    fallbacks `user` started when given."""
    fallbacks = Fallback.objects.all() if user is None else Fallback.objects.filter(user=user)
    rows = fallbacks.filter(created_at__gte=period.since, created_at__lt=period.until).exclude(
        state=Fallback.State.REFUSED).values_list("created_at", "finished_at", "state", "bytes_scanned", "cost_usd")
    seconds: dict[date, list[float]] = defaultdict(list)
    count: dict[date, int] = defaultdict(int)
    ok: dict[date, int] = defaultdict(int)
    scanned: dict[date, int] = defaultdict(int)
    cost: dict[date, Decimal] = defaultdict(Decimal)
    for created_at, finished_at, state, bytes_scanned, cost_usd in rows.iterator(chunk_size=5000):
        day = _day(created_at)
        count[day] += 1
        scanned[day] += bytes_scanned or 0
        cost[day] += cost_usd or Decimal(0)
        if state == Fallback.State.SUCCEEDED:
            ok[day] += 1
            if finished_at:
                seconds[day].append((finished_at - created_at).total_seconds())
    return [FallbackDay(day=d, fallbacks=count[d], succeeded=ok[d], p50_s=percentile(seconds[d], 0.5),
                        p95_s=percentile(seconds[d], 0.95), bytes_scanned=scanned[d], cost_usd=cost[d])
            for d in period.days]


@dataclass(frozen=True)
class ExportDay:
    day: date
    exports: int
    bytes_scanned: int
    cost_usd: Decimal


def export_daily(*, period: DateRange, user=None) -> list[ExportDay]:
    """Per day: exports of every matching row sent to the warehouse, their bytes and USD (refused ones cost
    nothing and are left out, as refused fallbacks); only the exports `user` started when given."""
    exports = Export.objects.all() if user is None else Export.objects.filter(user=user)
    rows = exports.filter(created_at__gte=period.since, created_at__lt=period.until).exclude(
        state=Export.State.REFUSED).values_list("created_at", "bytes_scanned", "cost_usd")
    count: dict[date, int] = defaultdict(int)
    scanned: dict[date, int] = defaultdict(int)
    cost: dict[date, Decimal] = defaultdict(Decimal)
    for created_at, bytes_scanned, cost_usd in rows.iterator(chunk_size=5000):
        day = _day(created_at)
        count[day] += 1
        scanned[day] += bytes_scanned or 0
        cost[day] += cost_usd or Decimal(0)
    return [ExportDay(day=d, exports=count[d], bytes_scanned=scanned[d], cost_usd=cost[d]) for d in period.days]


def warehouse_spend_by_user(*, period: DateRange, user=None) -> list[dict]:
    """[{username, fallbacks, exports, bytes_scanned, cost_usd}] of fallbacks + exports, biggest spender first;
    only `user`'s row when given."""
    merged: dict[str, dict] = {}
    for model, counted in ((Fallback, "fallbacks"), (Export, "exports")):
        records = model.objects.all() if user is None else model.objects.filter(user=user)
        rows = (records.filter(created_at__gte=period.since, created_at__lt=period.until)
                .exclude(state=model.State.REFUSED).values("user_name")
                .annotate(n=Count("id"), bytes_scanned=Sum("bytes_scanned"), cost_usd=Sum("cost_usd")))
        # By the name stored at creation (as audit events keep theirs): a renamed or deleted account keeps its spend.
        for r in rows:
            name = r["user_name"] or "(system)"
            row = merged.setdefault(name, {"username": name, "fallbacks": 0, "exports": 0, "bytes_scanned": 0,
                                           "cost_usd": Decimal(0)})
            row[counted] += r["n"]
            row["bytes_scanned"] += r["bytes_scanned"] or 0
            row["cost_usd"] += r["cost_usd"] or Decimal(0)
    return sorted(merged.values(), key=lambda row: (-row["cost_usd"], row["username"]))


@dataclass(frozen=True)
class FrequentMiss:
    description: str
    params: list[tuple[str, str]]
    searches: int
    last_at: datetime

    @property
    def query_string(self) -> str:
        from django.utils.http import urlencode

        return urlencode(self.params)


def frequent_fallback_queries(*, period: DateRange, limit: int = 15, user=None) -> list[FrequentMiss]:
    """The searches that most often needed the warehouse: candidates for the subset; only `user`'s searches
    when given."""
    logs = SearchLog.objects.all() if user is None else SearchLog.objects.filter(user=user)
    groups = list(logs.filter(created_at__gte=period.since, created_at__lt=period.until,
                                           needed_fallback=True)
                  .values("fingerprint").annotate(searches=Count("id"), last_at=Max("created_at"), last_id=Max("id"))
                  .order_by("-searches", "-last_at")[:limit])
    queries = dict(logs.filter(pk__in=[g["last_id"] for g in groups]).values_list("id", "query"))
    result = []
    for group in groups:
        try:
            query = SearchQuery.from_dict(queries[group["last_id"]])
            description, params = query.describe(), query.to_params()
        except (KeyError, TypeError, ValueError):
            description, params = group["fingerprint"][:16], []
        result.append(FrequentMiss(description=description, params=params, searches=group["searches"],
                                   last_at=group["last_at"]))
    return result


def totals(*, searches: list[SearchDay], fallbacks: list[FallbackDay], exports: list[ExportDay] = ()) -> dict:
    """The period's figures; bytes and USD are the warehouse's whole spend: fallbacks + exports."""
    count = sum(d.searches for d in searches)
    local = sum(d.local for d in searches)
    fallback_cost = sum((d.cost_usd for d in fallbacks), Decimal(0))
    export_cost = sum((d.cost_usd for d in exports), Decimal(0))
    return {
        "searches": count,
        "local": local,
        "local_share": (local / count) if count else None,
        "local_percent": round(100 * local / count, 2) if count else None,
        "fallbacks": sum(d.fallbacks for d in fallbacks),
        "exports": sum(d.exports for d in exports),
        "bytes_scanned": sum(d.bytes_scanned for d in fallbacks) + sum(d.bytes_scanned for d in exports),
        "fallback_cost_usd": fallback_cost,
        "export_cost_usd": export_cost,
        "cost_usd": fallback_cost + export_cost,
    }


@dataclass(frozen=True)
class Activity:
    event: object  # apps.audit.models.AuditEvent
    search_params: list[tuple[str, str]] | None  # the search it ran, to run it again; None for other events
    fallback_id: int | None = None

    @property
    def query_string(self) -> str:
        from django.utils.http import urlencode

        return urlencode(self.search_params or [])


def activity_list(*, events) -> list[Activity]:
    """Audit events with the search each one ran (a search, a fallback): the dashboard links them to it."""
    events = list(events)
    log_ids = {e.detail.get("search_log_id") for e in events
               if e.action == "search" and isinstance(e.detail, dict) and e.detail.get("search_log_id")}
    queries = dict(SearchLog.objects.filter(pk__in=log_ids).values_list("id", "query")) if log_ids else {}
    result = []
    for event in events:
        detail = event.detail if isinstance(event.detail, dict) else {}
        data = queries.get(detail.get("search_log_id")) if event.action == "search" else \
            detail.get("query") if event.action == "fallback" else None
        params = None
        if isinstance(data, dict):
            try:
                params = SearchQuery.from_dict(data).to_params()
            except (KeyError, TypeError, ValueError):
                params = None
        fallback_id = detail.get("fallback_id") if event.action == "fallback" else None
        result.append(Activity(event=event, search_params=params,
                               fallback_id=fallback_id if isinstance(fallback_id, int) else None))
    return result
