"""Per-user rate limits on the expensive endpoints: a fixed one-minute window counted in Django's cache.

`rate_limit_hit(user=..., scope="predict")` counts one request and raises `RateLimited` (→ 429 with
Retry-After: the seconds left in the window) once the user went over settings.RATE_LIMIT_<SCOPE>_PER_MINUTE.
A limit of 0 turns the scope off. With several web processes the cache must be shared (Redis, memcached)
for the limit to hold across them; the local-memory default counts per process.
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse

WINDOW_SECONDS = 60
SCOPES = ("predict", "link", "search", "batch")


class RateLimited(Exception):
    def __init__(self, *, scope: str, limit: int, retry_after: int):
        self.scope, self.limit, self.retry_after = scope, limit, retry_after
        super().__init__(
            f"Too many {scope} requests: the limit is {limit} per minute. Try again in {retry_after} s."
        )


def rate_limit_for(scope: str) -> int:
    return int(getattr(settings, f"RATE_LIMIT_{scope.upper()}_PER_MINUTE"))


def rate_limit_hit(*, user, scope: str, now: float | None = None) -> None:
    """Count one `scope` request for `user`; RateLimited when over the limit in this minute."""
    limit = rate_limit_for(scope)
    if limit <= 0 or user is None or not user.is_authenticated:
        return
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    key = f"ratelimit:{scope}:{user.pk}:{window}"
    cache.add(key, 0, timeout=WINDOW_SECONDS + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=WINDOW_SECONDS + 5)
        count = 1
    if count > limit:
        retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
        raise RateLimited(scope=scope, limit=limit, retry_after=retry_after)


def rate_limited_response(exc: RateLimited) -> HttpResponse:
    """For pages: a plain 429 with Retry-After."""
    response = HttpResponse(str(exc), status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(exc.retry_after)
    return response
