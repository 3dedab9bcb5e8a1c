from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from .backends.base import scan_cost_usd
from .models import Export, Fallback, FallbackRequest


def fallback_get(*, fallback_id: int) -> Fallback:
    return Fallback.objects.select_related("user").get(pk=fallback_id)


def fallback_for_query(*, fallback_id: int, fingerprint: str) -> Fallback | None:
    """The fallback a page names (`?fallback=<id>`), only if it ran this very query."""
    return Fallback.objects.select_related("user").filter(pk=fallback_id, fingerprint=fingerprint).first()


def fallback_list(*, user, limit: int = 50) -> QuerySet[Fallback]:
    return (Fallback.objects.filter(Q(user=user) | Q(requests__user=user)).distinct().select_related("user")
            .order_by("-created_at")[:limit])


def fallback_can_stop(*, fallback: Fallback, user) -> bool:
    """Its creator or staff: stopping ends the query for everyone whose search joined it, and the creator
    is the one billed. Someone who only joined it may leave it (`fallback_has_joined`), not stop it."""
    if not (user and user.is_authenticated):
        return False
    return bool(user.is_staff or (fallback.user_id is not None and fallback.user_id == user.pk))


def fallback_has_joined(*, fallback: Fallback, user) -> bool:
    """`user`'s search joined this fallback (or reused it from the cache)."""
    if not (user and user.is_authenticated):
        return False
    return fallback.requests.filter(user=user).exists()


def fallback_can_view(*, fallback: Fallback, user) -> bool:
    """Its query and rows: its creator, anyone whose search joined it, and staff."""
    return fallback_can_stop(fallback=fallback, user=user) or fallback_has_joined(fallback=fallback, user=user)


def fallback_inflight_for(*, fingerprint: str) -> Fallback | None:
    return Fallback.objects.filter(inflight_key=fingerprint).first()


def fallback_reusable_for(*, fingerprint: str) -> tuple[Fallback | None, Fallback | None]:
    """(cached, in flight) for this fingerprint, in one query (every search short of rows asks): the newest
    succeeded fallback if it finished within FALLBACK_CACHE_MAX_AGE_SECONDS, and the one in flight."""
    max_age = timedelta(seconds=settings.FALLBACK_CACHE_MAX_AGE_SECONDS)  # 0: none is recent enough
    wanted = Q(inflight_key=fingerprint) | Q(fingerprint=fingerprint, state=Fallback.State.SUCCEEDED,
                                              finished_at__gte=timezone.now() - max_age)
    found = list(Fallback.objects.filter(wanted)
                 .order_by(F("inflight_key").desc(nulls_last=True), F("finished_at").desc(nulls_last=True))[:2])
    inflight = found[0] if found and found[0].inflight_key == fingerprint else None
    rest = [fallback for fallback in found if fallback is not inflight]
    return (rest[0] if rest and rest[0].state == Fallback.State.SUCCEEDED else None), inflight


def day_start(now: datetime | None = None) -> datetime:
    local = timezone.localtime(now or timezone.now())
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _spent_usd(fallbacks: QuerySet) -> Decimal:
    """Finished ones at what they cost; those in flight at what they reserved (their estimated cost), or at
    what they have scanned so far when that is already more (an estimate from a predecessor can be low)."""
    finished = fallbacks.exclude(state__in=Fallback.ACTIVE_STATES).aggregate(total=Sum("cost_usd"))["total"]
    in_flight = Decimal(0)
    for reserved, scanned in fallbacks.filter(state__in=Fallback.ACTIVE_STATES).values_list(
            "estimated_cost_usd", "bytes_scanned"):
        in_flight += max(reserved, scan_cost_usd(bytes_scanned=scanned) if scanned else Decimal(0))
    return (finished or Decimal(0)) + in_flight


def fallback_spent_today_usd(*, user, exclude_id: int | None = None,
                             exclude_export_id: int | None = None) -> Decimal:
    """Today's warehouse spend of `user`: what finished fallbacks and exports cost plus the reservations of those
    in flight. `exclude_id` leaves one fallback out (`exclude_export_id`: one export)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return Decimal(0)
    today = {"user": user, "created_at__gte": day_start()}
    return (_spent_usd(Fallback.objects.filter(**today).exclude(pk=exclude_id))
            + _spent_usd(Export.objects.filter(**today).exclude(pk=exclude_export_id)))


def fallback_team_spent_today_usd(*, exclude_id: int | None = None, exclude_export_id: int | None = None) -> Decimal:
    """Today's warehouse spend (fallbacks and exports) of everyone together (the team-wide cap)."""
    return (_spent_usd(Fallback.objects.filter(created_at__gte=day_start()).exclude(pk=exclude_id))
            + _spent_usd(Export.objects.filter(created_at__gte=day_start()).exclude(pk=exclude_export_id)))


@dataclass(frozen=True)
class BudgetLeft:
    user_budget: Decimal
    user_spent: Decimal
    team_budget: Decimal
    team_spent: Decimal

    @property
    def user_left(self) -> Decimal:
        return max(Decimal(0), self.user_budget - self.user_spent)

    @property
    def team_left(self) -> Decimal:
        return max(Decimal(0), self.team_budget - self.team_spent)

    @property
    def left(self) -> Decimal:
        """What one more query of this user may cost today: the smaller of the two caps' remainders."""
        return min(self.user_left, self.team_left)


def fallback_budget_left(*, user) -> BudgetLeft:
    """Today's spend and what is left of the per-user (`FALLBACK_DAILY_BUDGET_USD`) and team-wide
    (`FALLBACK_TEAM_DAILY_BUDGET_USD`) daily caps."""
    return BudgetLeft(
        user_budget=Decimal(str(settings.FALLBACK_DAILY_BUDGET_USD)),
        user_spent=fallback_spent_today_usd(user=user),
        team_budget=Decimal(str(settings.FALLBACK_TEAM_DAILY_BUDGET_USD)),
        team_spent=fallback_team_spent_today_usd(),
    )


def fallback_previous_bytes(*, table: str, backend: str, filter_columns: set[str]) -> int | None:
    """Bytes scanned by the latest succeeded query on the same table filtering the same columns.

    Athena cannot estimate before running; a query filtering the same columns reads the same
    column chunks, so its bytes are a guess (never more than a guess: a LIMIT can stop a scan early).
    A result Athena reused records 0 bytes: it says nothing of what the query costs, so it is skipped.
    """
    wanted = sorted(filter_columns)
    recent = Fallback.objects.filter(
        table=table, backend=backend, state=Fallback.State.SUCCEEDED, bytes_scanned__gt=0
    ).order_by("-finished_at")[:200]
    for fallback in recent:
        columns = sorted({f.get("column") for f in fallback.query.get("filters", [])})
        if columns == wanted:
            return fallback.bytes_scanned
    return None


def fallback_request_get(*, request_id: int, fallback: Fallback) -> FallbackRequest | None:
    return FallbackRequest.objects.filter(pk=request_id, fallback=fallback).first()


def fallback_stale_list(*, stale_after_seconds: int) -> QuerySet[Fallback]:
    cutoff = timezone.now() - timedelta(seconds=stale_after_seconds)
    # heartbeat_at is set when a fallback is queued and on every tick of the run that owns it.
    return Fallback.objects.filter(state__in=Fallback.ACTIVE_STATES, heartbeat_at__lt=cutoff)


def fallback_in_flight_count(*, user) -> int:
    """How many of `user`'s warehouse queries (fallbacks and exports) are queued or running now."""
    return (Fallback.objects.filter(user=user, state__in=Fallback.ACTIVE_STATES).count()
            + Export.objects.filter(user=user, state__in=Export.ACTIVE_STATES).count())


# --- exports -----------------------------------------------------------------------------------

def export_get(*, export_id: int) -> Export:
    return Export.objects.select_related("user").get(pk=export_id)


def export_can_view(*, export: Export, user) -> bool:
    """An export's rows are its creator's (who paid for them) and staff's; nobody else's."""
    if not (user and user.is_authenticated):
        return False
    return bool(user.is_staff or (export.user_id is not None and export.user_id == user.pk))


def export_list(*, user, limit: int = 20) -> QuerySet[Export]:
    return Export.objects.filter(user=user).order_by("-created_at")[:limit]


def export_stale_list(*, stale_after_seconds: int) -> QuerySet[Export]:
    cutoff = timezone.now() - timedelta(seconds=stale_after_seconds)
    return Export.objects.filter(state__in=Export.ACTIVE_STATES, heartbeat_at__lt=cutoff)
