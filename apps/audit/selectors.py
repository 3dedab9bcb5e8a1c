from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Count, QuerySet, Sum

from .models import AuditEvent


def audit_event_list(*, since: datetime | None = None, action: str | None = None, user=None) -> QuerySet[AuditEvent]:
    """Events, newest first; only `user`'s when given (non-staff see only their own)."""
    events = AuditEvent.objects.select_related("user")
    if user is not None:
        events = events.filter(user=user)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if action:
        events = events.filter(action=action)
    return events


def audit_spend_by_user(*, since: datetime, user=None) -> list[dict]:
    """[{username, events, cost_usd}] for events with a cost since `since`, biggest spender first; only `user`'s
    rows when given. Grouped by the name stored with each event (a renamed user's older events keep the old
    name; a deleted user's keep theirs), "(system)" for events without a user."""
    events = AuditEvent.objects.filter(created_at__gte=since)
    if user is not None:
        events = events.filter(user=user)
    rows = (
        events
        .values("actor_name")
        .annotate(events=Count("id"), cost_usd=Sum("cost_usd"))
        .order_by("-cost_usd", "actor_name")
    )
    return [
        {"username": r["actor_name"] or "(system)", "events": r["events"], "cost_usd": r["cost_usd"] or Decimal(0)}
        for r in rows
    ]
