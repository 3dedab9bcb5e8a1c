from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser

from .models import AuditEvent


def audit_record(
    *,
    user: AbstractBaseUser | None,
    action: str,
    target: str = "",
    outcome: str = "ok",
    cost_usd: Decimal | float | None = None,
    detail: dict | None = None,
) -> AuditEvent:
    if action not in AuditEvent.Action.values:
        raise ValueError(f"Unknown audit action {action!r}")
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    return AuditEvent.objects.create(
        user=user,
        # kept as it is now: renaming or deleting the user later does not rewrite who did this
        actor_name=user.get_username() if user is not None else "",
        action=action,
        target=target[:255],
        outcome=outcome[:32],
        cost_usd=None if cost_usd is None else Decimal(str(cost_usd)),
        detail=detail or {},
    )
