"""Only searches opened from the app itself may start paid warehouse work.

A search is a GET, so a page on another site could make a signed-in browser open one (a link, an
<img>, a top-level navigation: SameSite=Lax cookies go along) and start a billed fallback. Browsers
say where a request came from in `Sec-Fetch-Site`; requests without it (scripts, old browsers) are
left alone, as they are not a cross-site browser request."""
from __future__ import annotations

FALLBACK_ALLOWED_FETCH_SITES = {"same-origin", "none"}  # "none": typed in the address bar, a bookmark
CROSS_SITE_NOTICE = ("This search was opened from another site, so the warehouse was not queried: "
                     "open this search from the app to query the warehouse.")


def request_may_spend(request) -> bool:
    """False for a read-only API token (apps/samplescope/api.py puts it on `request.api_token`): it only
    reads, so it never starts a billed warehouse query."""
    token = getattr(request, "api_token", None)
    return token is None or not token.read_only


def request_may_start_fallback(request) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    return site is None or site.strip().lower() in FALLBACK_ALLOWED_FETCH_SITES


def answer_notice(*, answer, may_start_fallback: bool) -> str:
    """What to tell the user about the warehouse: why this request did not query it, else the answer's notice."""
    blocked = (not may_start_fallback and answer.fallback is None and answer.has_warehouse and not answer.complete
               and len(answer.rows) < answer.query.limit)
    return CROSS_SITE_NOTICE if blocked else answer.notice
