"""Builds the panel's view of a fallback for the page that asked (its request record, if any)."""
from __future__ import annotations

from .handles import FallbackHandle
from .models import Fallback
from .selectors import fallback_can_stop, fallback_request_get


def request_id_from(data) -> int | None:
    raw = (data.get("request") or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None  # "²" is a digit to isdigit


def panel_handle(*, fallback: Fallback, request_id: int | None, user) -> FallbackHandle:
    """The panel as `user` sees it: a joiner's button only leaves the fallback, and a search that left it
    stops waiting for it."""
    request = fallback_request_get(request_id=request_id, fallback=fallback) if request_id else None
    mine = request is not None and request.user_id == getattr(user, "pk", None)
    return FallbackHandle(fallback=fallback, request_id=request.pk if request else None,
                          from_cache=bool(request and request.kind == "cache"),
                          may_stop=fallback_can_stop(fallback=fallback, user=user),
                          left=bool(mine and request.left_at))
