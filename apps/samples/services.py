"""Writes of the samples page."""
from __future__ import annotations

import hashlib
import json

from .models import SavedSearch

SAVED_KEY_LENGTH = 20


def saved_search_store(*, params: list[tuple[str, str]]) -> str:
    """Store a search's parameters (idempotent: the same parameters get the same key) and return the key for
    `/samples/?_q=<key>`."""
    pairs = [[str(name), str(value)] for name, value in params]
    key = hashlib.sha256(json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()
    key = key[:SAVED_KEY_LENGTH]
    SavedSearch.objects.get_or_create(key=key, defaults={"params": pairs})
    return key
