"""Writes of the samples page."""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from urllib.parse import urlencode

from django.conf import settings
from django.http import QueryDict
from django.utils import timezone

from apps.warehouse.services import logs_prune

from .models import SavedSearch
from .selectors import OVERLAY_PARAMS, SavedSearchUnknown, saved_search_get

SAVED_KEY_LENGTH = 20
SAVED_TOUCH_EVERY = timedelta(days=1)  # opening `?_q=<key>` refreshes last_used_at at most this often


def saved_search_store(*, params: list[tuple[str, str]]) -> str:
    """Store a search's parameters (idempotent: the same parameters get the same key) and return the key for
    `/samples/?_q=<key>`."""
    pairs = [[str(name), str(value)] for name, value in params]
    key = hashlib.sha256(json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()
    key = key[:SAVED_KEY_LENGTH]
    saved, created = SavedSearch.objects.get_or_create(key=key, defaults={"params": pairs})
    if not created:
        saved_search_touch(saved=saved)
    return key


def saved_search_touch(*, saved: SavedSearch) -> bool:
    """Mark a stored search as used (it is kept SAVED_SEARCH_KEEP_DAYS after its last use): one UPDATE at most
    once a day per search, none otherwise. True when it wrote."""
    now = timezone.now()
    if saved.last_used_at is not None and now - saved.last_used_at < SAVED_TOUCH_EVERY:
        return False
    SavedSearch.objects.filter(key=saved.key).update(last_used_at=now)
    saved.last_used_at = now
    return True


def saved_search_open(*, params: QueryDict) -> QueryDict:
    """The parameters a request means: with `_q=<key>`, the stored search's, then this URL's overlay parameters
    (OVERLAY_PARAMS), the search marked used (saved_search_touch); without, `params` as they are. The page, its
    facets and exports, `/api/search` and score-search all read `_q` through this. Raises SavedSearchUnknown (404)
    for a key nobody stored."""
    if not params.get("_q"):
        return params
    saved = saved_search_get(key=params["_q"])
    if saved is None:
        raise SavedSearchUnknown()
    saved_search_touch(saved=saved)
    extra = [(name, value) for name, values in params.lists() if name in OVERLAY_PARAMS for value in values]
    return QueryDict(urlencode([(name, value) for name, value in saved.params] + extra))


def saved_searches_prune(*, older_than_days: int) -> int:
    """Retention (`manage.py prune_logs`): delete stored searches nobody opened or POSTed for `older_than_days`;
    their `?_q=` links then answer 404 ("search again from the form"). The number deleted."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = SavedSearch.objects.filter(last_used_at__lt=cutoff).delete()
    return deleted


def retention_prune(*, older_than_days: int | None = None) -> dict[str, int]:
    """Retention (`manage.py prune_logs`, beat `warehouse-prune-logs`): the warehouse's (search logs, old
    fallbacks' row copies, old export files: apps.warehouse.services.logs_prune), then stored searches unused for
    SAVED_SEARCH_KEEP_DAYS. Here, above both layers, so the warehouse never imports the samples page."""
    counts = logs_prune(older_than_days=older_than_days)
    counts["saved_searches_deleted"] = saved_searches_prune(older_than_days=settings.SAVED_SEARCH_KEEP_DAYS)
    return counts
