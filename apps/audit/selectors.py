from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Count, QuerySet, Sum

from .models import AuditEvent


def audit_event_list(*, since: datetime | None = None, action: str | None = None) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.select_related("user")
    if since is not None:
        events = events.filter(created_at__gte=since)
    if action:
        events = events.filter(action=action)
    return events


def audit_spend_by_user(*, since: datetime) -> list[dict]:
    """[{username, events, cost_usd}] for events with a cost since `since`, biggest spender first."""
    rows = (
        AuditEvent.objects.filter(created_at__gte=since)
        .values("user__username")
        .annotate(events=Count("id"), cost_usd=Sum("cost_usd"))
        .order_by("-cost_usd", "user__username")
    )
    return [
        {"username": r["user__username"] or "(system)", "events": r["events"], "cost_usd": r["cost_usd"] or Decimal(0)}
        for r in rows
    ]
