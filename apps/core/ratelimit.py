"""Per-user rate limits on the expensive endpoints: a fixed one-minute window counted in Redis.

The one mechanism for pages, htmx partials, exports and the API alike:
`rate_limit_hit(user=..., scope="predict")` counts one request and raises `RateLimited` once the user went over
settings.RATE_LIMIT_<SCOPE>_PER_MINUTE (a limit of 0 turns the scope off). Pages count with the `@rate_limit(scope)`
view decorator; API endpoints call rate_limit_hit. RateLimited becomes a 429 with Retry-After (the seconds left
in the window) in one place per surface: `RateLimitMiddleware` for pages (a page, or for htmx a notice swapped
into the target) and the API's exception handler (apps/samplescope/api.py) for JSON.

Scopes: "search" (the search page, its htmx results, export, facets; GET /api/search), "score" (score-search:
a search whose every row a model scores, so its own low limit), "predict" (model demo and compare; the predict
API), "link" (the linking page and corrections; the link API and KB edits that embed text), "batch" (batch
preview and upload). The counters live in Redis (settings.RATE_LIMIT_REDIS_URL, the broker's
Redis by default), so the limit holds across every web process and thread. When Redis cannot be reached,
requests are not refused for it: each process counts in its local cache instead (the limit then holds per
process), logs it, and tries Redis again after REDIS_RETRY_SECONDS.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import wraps

import redis
from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
SCOPES = ("predict", "link", "search", "score", "batch")
KEY_PREFIX = "samplescope:ratelimit:"
REDIS_RETRY_SECONDS = 10.0  # after a Redis error, count locally this long before trying Redis again
_clients: dict[str, redis.Redis] = {}
_redis_state = {"down_until": 0.0}
_lock = threading.Lock()


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
    count = _count(f"{KEY_PREFIX}{scope}:{user.pk}:{window}")
    if count > limit:
        retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
        raise RateLimited(scope=scope, limit=limit, retry_after=retry_after)


def _client() -> redis.Redis | None:
    url = getattr(settings, "RATE_LIMIT_REDIS_URL", "")
    if not url or time.monotonic() < _redis_state["down_until"]:
        return None
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=0.25, socket_timeout=0.5)
        return _clients[url]


def _count(key: str) -> int:
    """This request's number in its window: shared in Redis, else in this process's cache."""
    client = _client()
    if client is not None:
        try:
            pipe = client.pipeline()
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS + 5)
            return int(pipe.execute()[0])
        except redis.RedisError as exc:
            _redis_state["down_until"] = time.monotonic() + REDIS_RETRY_SECONDS
            logger.warning("Rate limits: Redis is unreachable (%s); counting per process for %.0f s.",
                           exc, REDIS_RETRY_SECONDS)
    cache.add(key, 0, timeout=WINDOW_SECONDS + 5)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=WINDOW_SECONDS + 5)
        return 1


def rate_limits_reset() -> None:
    """Forget every counter (tests; an admin after changing limits): Redis keys and the local fallback."""
    cache.clear()
    _redis_state["down_until"] = 0.0
    client = _client()
    if client is not None:
        try:
            keys = list(client.scan_iter(match=KEY_PREFIX + "*", count=1000))
            if keys:
                client.delete(*keys)
        except redis.RedisError:
            pass  # nothing to forget there; the next count notices and says so


def rate_limit(scope: str, *, when: Callable | None = None):
    """View decorator: count one `scope` request for the signed-in user (only when `when(request)` is true, if
    given) before the view runs; over the limit it raises RateLimited, which RateLimitMiddleware answers.
    Put it below @login_required and the role checks, so refused requests are not counted."""
    if scope not in SCOPES:
        raise ValueError(f"Unknown rate-limit scope {scope!r}; use one of {SCOPES}.")

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if when is None or when(request):
                rate_limit_hit(user=request.user, scope=scope)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


_SCOPE_WORDS = {"search": "searches", "score": "score-search runs", "predict": "predictions",
                "link": "linking requests", "batch": "batch uploads and previews"}


def rate_limited_response(request, exc: RateLimited) -> HttpResponse:
    """For pages: 429 with Retry-After. htmx requests get a small notice that htmx swaps into the request's
    target (static/js/app.js lets 429 swap; HX-Reswap keeps the target element); other requests a page."""
    context = {"what": _SCOPE_WORDS.get(exc.scope, "requests"), "limit": exc.limit,
               "retry_after": exc.retry_after, "message": str(exc)}
    htmx = getattr(request, "htmx", None)
    template = "core/_rate_limited.html" if htmx else "core/rate_limited.html"
    response = HttpResponse(render_to_string(template, context, request=request), status=429)
    response["Retry-After"] = str(exc.retry_after)
    if htmx:
        response["HX-Reswap"] = "innerHTML"
    return response


class RateLimitMiddleware:
    """The one place that turns RateLimited from a page view into HTTP (the API has its own handler)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, RateLimited):
            return rate_limited_response(request, exception)
        return None
