"""GET /api/search: the sample search as JSON (documented in the OpenAPI schema at /api/docs)."""
from __future__ import annotations

from django.conf import settings
from ninja import Router, Schema, Status

from .query import SearchValidationError, query_from_params
from .services import search_run
from .tables import OPERATORS, TableNotFound, default_table_name

router = Router(tags=["search"])


class SearchOut(Schema):
    rows: list[dict]
    local_count: int
    source: str
    fallback: dict | None
    elapsed_ms: float
    timed_out: bool
    table: str
    limit: int
    columns: list[str]
    search_log_id: int | None


class SearchErrorOut(Schema):
    detail: str
    errors: dict[str, list[str]] = {}


_FILTER_DOC = (
    "Filters are query parameters named `<column>__<operator>=<value>`, all of which must match, e.g. "
    "`?text__contains=foo&url__contains=bar&limit=10`. Operators: " + ", ".join(f"`{op}`" for op in OPERATORS)
    + ". Substring operators match the value literally (`%` and `_` are plain characters); `in` takes "
    "comma-separated values; `isnull` takes true/false; dates are ISO (YYYY-MM-DD). Which columns accept which "
    "operators depends on the table (see the search page)."
)


@router.get(
    "/search",
    response={200: SearchOut, 400: SearchErrorOut, 422: SearchErrorOut, 503: SearchErrorOut},
    summary="Search samples in the local subset",
    description=(
        "Runs the filters on the local DuckDB subset (time-limited) and returns up to `limit` rows. "
        "When the subset has fewer rows than asked and a warehouse fallback is configured, `fallback` "
        "describes it (`{id, state, url}`); poll its `url`. " + _FILTER_DOC
        + " Errors: 400 for malformed parameters, 422 for filters the table cannot take, 503 without a subset."
    ),
    openapi_extra={
        "parameters": [
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}},
            {"name": "table", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "table name (default: the default table)"},
            {"name": "filters", "in": "query", "required": False, "style": "form", "explode": True,
             "schema": {"type": "object", "additionalProperties": {"type": "string"}},
             "description": "any number of `<column>__<operator>=<value>` parameters", "example": {"text__contains": "goal"}},
        ]
    },
)
def search(request):
    try:
        query = query_from_params(
            params=request.GET, default_table=default_table_name(), default_limit=settings.SEARCH_DEFAULT_LIMIT,
            max_limit=settings.SEARCH_MAX_LIMIT, strict=True,
        )
    except SearchValidationError as exc:
        return Status(400, {"detail": "Malformed search parameters.", "errors": exc.errors})
    try:
        result = search_run(user=request.user, query=query)
    except SearchValidationError as exc:
        return Status(422, {"detail": "These filters do not fit the table.", "errors": exc.errors})
    except TableNotFound as exc:
        return Status(422, {"detail": str(exc), "errors": {"table": [str(exc)]}})
    except FileNotFoundError as exc:
        return Status(503, {"detail": str(exc), "errors": {}})
    return Status(200, {
        "rows": result.rows,
        "local_count": result.local_count,
        "source": result.source,
        "fallback": result.fallback.as_api() if result.fallback is not None else None,
        "elapsed_ms": result.elapsed_ms,
        "timed_out": result.timed_out,
        "table": result.spec.name,
        "limit": query.limit,
        "columns": result.columns,
        "search_log_id": result.log_id,
    })
