"""Builds the panel's view of a fallback: the handle plus merged rows once it has succeeded."""
from __future__ import annotations

from .handles import FallbackHandle, warehouse_rows
from .models import Fallback
from .selectors import fallback_request_get


def request_id_from(data) -> int | None:
    raw = (data.get("request") or "").strip()
    return int(raw) if raw.isdigit() else None


def _spec_for(table: str):
    from apps.search.tables import TableNotFound, table_spec_get

    try:
        return table_spec_get(name=table)
    except (TableNotFound, FileNotFoundError):
        return None


def panel_handle(*, fallback: Fallback, request_id: int | None) -> FallbackHandle:
    """The handle, with the search's local rows merged in (local first, deduplicated, up to limit)."""
    from apps.search.query import rows_merge

    request = fallback_request_get(request_id=request_id, fallback=fallback) if request_id else None
    handle = FallbackHandle(fallback=fallback, request_id=request.pk if request else None,
                            from_cache=bool(request and request.kind == "cache"))
    if fallback.state != Fallback.State.SUCCEEDED:
        return handle
    spec = _spec_for(fallback.table)
    remote = warehouse_rows(fallback)
    local = list(request.local_rows) if request else []
    sample = (local or remote or [{}])[0]
    key = spec.key if spec else next(iter(sample), "id")
    handle.merged_rows = rows_merge(local=local, remote=remote, key=key, limit=fallback.limit)
    handle.columns = list(spec.selected) if spec else [c for c in sample if c != "_source"]
    handle.local_count = len(local)
    return handle
