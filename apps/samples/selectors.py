"""Reads for the samples page that span the layers below it."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from apps.search.errors import SearchError
from apps.search.models import SearchLog
from apps.search.query import SearchQuery


@dataclass(frozen=True)
class RecentSearch:
    text: str  # "text contains 'foo' AND lang = 'de'"
    querystring: str
    rows: int
    fallback_id: int | None
    created_at: object


def search_recent_list(*, user, limit: int = 8) -> list[RecentSearch]:
    """The user's latest distinct searches, newest first, each with the fallback it asked for (if any)."""
    if not getattr(user, "is_authenticated", False):
        return []
    seen: set[str] = set()
    recent: list[RecentSearch] = []
    logs = (SearchLog.objects.filter(user=user).order_by("-created_at")
            .prefetch_related("fallback_requests")[: limit * 5])
    for log in logs:
        if log.fingerprint in seen:
            continue
        seen.add(log.fingerprint)
        try:
            query = SearchQuery.from_dict(log.query)
        except (KeyError, TypeError, ValueError):
            continue
        requests = list(log.fallback_requests.all())
        recent.append(RecentSearch(
            text=query.describe().split(": ", 1)[-1], querystring=urlencode(query.to_params()),
            rows=sum((log.source_counts or {}).values()) or log.local_rows,
            fallback_id=requests[0].fallback_id if requests else None, created_at=log.created_at))
        if len(recent) >= limit:
            break
    return recent


# May follow `_q=<key>` in a URL, on top of the stored search (the page, its exports, /api/search, score-search).
OVERLAY_PARAMS = ("fallback", "format", "confirm", "_next", "_count")


class SavedSearchUnknown(SearchError):
    """`?_q=<key>` names no stored search (never stored, or pruned: SAVED_SEARCH_KEEP_DAYS)."""

    status = 404

    def __init__(self):
        super().__init__("This saved search is unknown: search again from the form.")


def saved_search_get(*, key: str):
    """The SavedSearch stored under `key` (saved_search_store), or None when no search has that key. Reads only:
    the view marks it used (services.saved_search_touch)."""
    from .models import SavedSearch

    return SavedSearch.objects.filter(key=str(key)[:32]).first()


def saved_search_params(*, key: str) -> list[tuple[str, str]] | None:
    """The parameters stored under `key` (saved_search_store), or None when no search has that key."""
    saved = saved_search_get(key=key)
    return [(name, value) for name, value in saved.params] if saved is not None else None
