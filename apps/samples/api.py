"""GET /api/search: the sample search as JSON (documented in the OpenAPI schema at /api/docs).

Errors (apps.search.errors.SearchError) are turned into responses by the one handler in
apps/samplescope/api.py: 400 malformed parameters, 422 filters the table cannot take, 503 no subset.
"""
from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from ninja import Router, Schema
from ninja.responses import Response

from apps.accounts.roles import SEARCH, api_role_require
from apps.core.ratelimit import rate_limit_hit
from apps.search.context import search_context_build, search_store_open
from apps.search.operators import OPERATORS
from apps.search.query import columns_chosen, query_from_params

from .origin import request_may_spend, request_may_start_fallback
from .pipeline import SOURCE_COLUMN, answer_present, fallback_id_from, search_answer
from .services import saved_search_open

router = Router(tags=["search"])


class SearchOut(Schema):
    rows: list[dict]
    columns: list[str]
    counts: dict[str, int]
    local_count: int
    source: str
    complete: bool
    has_warehouse: bool
    summary: str
    notice: str
    unknown_values: dict[str, str]
    fallback: dict | None
    elapsed_ms: float
    timed_out: bool
    table: str
    limit: int
    search_log_id: int | None
    sort: str | None
    next: str | None
    subset_match_count: int | None
    subset_match_count_exact: bool
    plan: dict
    full_dataset: dict | None = None  # the full data's vocabulary: estimate, upper_bound, total_rows, built_at, proof, all_here
    suggestions: list[dict] = []  # "did you mean": known words / values near missing ones, with the corrected query


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
    url_name="search",
    summary="Search samples",
    description=(
        "Answers from the local DuckDB subset (time-limited), then rows learned from earlier warehouse "
        "fallbacks, and returns up to `limit` rows, each with a `_source` column (`subset`, `learned` or "
        "`warehouse`); `counts` gives rows per source. `complete` is true when the full dataset is known to "
        "have no more matching rows. When rows are still short and the table has a warehouse, `fallback` "
        "describes the warehouse query (`{id, state, url}`): poll its `url`, and when it has succeeded ask "
        "again with `&fallback=<id>` to get the merged rows. `_sort=<column>` / `_sort_desc=<column>` sort the rows "
        "(rows merged from several sources are sorted together); `next` is the URL of the next page of subset rows "
        "(null on the last page; later pages never ask the warehouse). `subset_match_count` (with `_count=1`, or when the first page held every match; else null) counts the subset rows "
        "that match, over all pages: exact when `subset_match_count_exact`, else a lower bound (the count ran past its "
        "time limit). `plan` says how it was answered, as Datasette shows its SQL: for the `subset` and, when they were asked, the "
        "`learned` rows, `{kind, reason, candidates, read}`: `kind` is `index` (candidate rows from the word index, "
        "`read` of them verified), `scan` (DuckDB scanned the table) or `empty` (the index proved no row matches). "
        "Tables without a warehouse say so in `notice`. A value of a low-cardinality column that the subset has "
        "never seen (a typo, usually) is listed in `unknown_values` and starts no fallback unless `confirm=1`. "
        "`full_dataset` says what the full data's vocabulary (built with each refresh) knows: about how many of its rows "
        "match (`estimate`), at most how many (`upper_bound`), and `proof` when none can, or `all_here` when every "
        "matching row is in the subset (`all_here_reason`: its rows are as many as the full data may hold, or every row "
        "holding a rare word of a needle is here): then `complete` is true and no fallback starts unless `confirm=1`. `suggestions` lists known words or values near ones the full data "
        "lacks (\"did you mean\"), each with the corrected `query`. "
        + _FILTER_DOC
    ),
    openapi_extra={
        "parameters": [
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}},
            {"name": "table", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "table name (default: the default table)"},
            {"name": "confirm", "in": "query", "required": False, "schema": {"type": "integer", "enum": [1]},
             "description": "query the warehouse even for a value the subset has never seen (`unknown_values`)"},
            {"name": "_sort", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "sort by this column (one of `columns`), ascending, then by the key"},
            {"name": "_sort_desc", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "sort by this column, descending, then by the key"},
            {"name": "_col", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "show only these columns (repeat it, or a comma list); the key is always kept"},
            {"name": "_nocol", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "show every column but these"},
            {"name": "_seed", "in": "query", "required": False, "schema": {"type": "integer"},
             "description": "with `_sort=random`: a random sample, the same rows for the same seed (no `next`)"},
            {"name": "_next", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "the next page of subset rows: pass the token from `next` (or just follow `next`)"},
            {"name": "_q", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "the key of a long search stored by the page (`/samples/?_q=<key>`); unknown: 404"},
            {"name": "fallback", "in": "query", "required": False, "schema": {"type": "integer"},
             "description": "merge the rows of this finished fallback of the same query"},
            {"name": "filters", "in": "query", "required": False, "style": "form", "explode": True,
             "schema": {"type": "object", "additionalProperties": {"type": "string"}},
             "description": "any number of `<column>__<operator>=<value>` parameters", "example": {"text__contains": "goal"}},
        ]
    },
)
def search(request):
    api_role_require(request=request, permission=SEARCH, what="Searching")
    rate_limit_hit(user=request.user, scope="search")
    params = saved_search_open(params=request.GET)  # `?_q=<key>`: the stored long search, as on the page
    store = search_store_open()  # CURRENT read once: this request's subset file and its table specs
    query = query_from_params(
        params=params, default_table=store.default_table(), default_limit=settings.SEARCH_DEFAULT_LIMIT,
        max_limit=settings.SEARCH_MAX_LIMIT, strict=True,
    )
    columns_shown = columns_chosen(params=params, spec=store.spec(query.table))  # `_col` / `_nocol`
    may_start_fallback = request_may_start_fallback(request)
    answer = search_answer(user=request.user, context=search_context_build(query=query, store=store),
                           allow_fallback=may_start_fallback, fallback_id=fallback_id_from(params),
                           confirmed=params.get("confirm") == "1", count=params.get("_count") == "1",
                           may_spend=request_may_spend(request))
    shown = answer_present(answer=answer, may_start_fallback=may_start_fallback)
    next_url = shown.next_url(reverse("api:search"))
    # Already SearchOut's shape (tests/samples/test_request_path.py validates answers against it): rendered as it is,
    # not validated field by field again (~1 ms for 100 rows, on every call).
    return Response({
        "rows": [{c: row[c] for c in [*columns_shown, SOURCE_COLUMN]} for row in answer.as_dicts()],
        "columns": columns_shown,
        "counts": shown.counts,
        "local_count": shown.local_count,
        "source": shown.source,
        "complete": answer.complete,
        "has_warehouse": answer.has_warehouse,
        "summary": shown.summary,
        "notice": shown.notice,
        "unknown_values": answer.unknown_values,
        "fallback": answer.fallback.as_api() if answer.fallback is not None else None,
        "elapsed_ms": answer.elapsed_ms,
        "timed_out": answer.timed_out,
        "table": answer.spec.name,
        "limit": query.limit,
        "search_log_id": answer.log_id,
        "sort": shown.sort,
        "next": request.build_absolute_uri(next_url) if next_url else None,
        "subset_match_count": shown.match_count,
        "subset_match_count_exact": shown.match_count_exact,
        "plan": shown.plan,
        "full_dataset": answer.vocabulary.as_dict() if answer.vocabulary is not None else None,
        "suggestions": [s.as_dict() for s in answer.vocabulary.suggestions] if answer.vocabulary is not None else [],
    })

