from __future__ import annotations

import json
import re
import secrets
from dataclasses import replace
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpResponse, JsonResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django_htmx.http import push_url

from apps.accounts.roles import SEARCH, role_required
from apps.audit.services import audit_record
from apps.core.csv import csv_writer
from apps.core.ratelimit import rate_limit
from apps.search.context import SearchStore, search_context_build, search_store_open
from apps.search.errors import SearchError, SearchValidationError, SubsetMissing, TableNotFound
from apps.search.query import MAX_SEED, MAX_VALUE_LENGTH, Filter, SearchQuery, columns_chosen, query_from_params
from apps.search.selectors import facet_values_known, search_facets, subset_row_count

from .forms import column_choices, filter_rows, form_submitted, form_to_params, operator_choices
from .origin import request_may_start_fallback
from .pipeline import SOURCE_COLUMN, SearchAnswer, answer_present, fallback_id_from, search_answer
from .selectors import SavedSearchUnknown, search_recent_list
from .services import saved_search_open, saved_search_store

LONG_TEXT = 120  # characters shown before a cell folds into <details>
EXPORT_FORMATS = ("csv", "json")


def _parse(params, *, max_limit: int, store: SearchStore) -> SearchQuery:
    return query_from_params(
        params=params, default_table=store.default_table(), default_limit=settings.SEARCH_DEFAULT_LIMIT,
        max_limit=max_limit, skip_blank=True, strict=False,
    )


SNIPPET_BEFORE = 40  # characters shown before the first match in a long cell's snippet


REGEX_MARK_MAX_TEXT = 20_000  # characters of a value a regex highlight looks at
REGEX_MARK_MAX_MATCHES = 200
# A quantified group holding a quantifier ("(a+)+", "(\w*)*"): Python's backtracking `re` can take
# exponential time on it (DuckDB's RE2 cannot), so such a pattern is not highlighted.
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[+*}][^()]*\)\s*[+*{?]")


def _highlights(answer: SearchAnswer) -> dict[str, list[tuple[str, object]]]:
    """column -> (operator, value) for every filter whose matches can be shown in the cell: highlighting
    follows the operator (a startswith marks only the start, a regex its matches, eq the whole value)."""
    marks: dict[str, list[tuple[str, object]]] = {}
    for flt in answer.query.filters:
        if not flt.value:
            continue
        if flt.op in ("contains", "icontains", "startswith", "endswith", "eq"):
            marks.setdefault(flt.column, []).append((flt.op, flt.value))
        elif flt.op == "in":
            marks.setdefault(flt.column, []).append((flt.op, {v.strip() for v in flt.value.split(",")}))
        elif flt.op == "regex" and not _NESTED_QUANTIFIER.search(flt.value):
            try:
                marks.setdefault(flt.column, []).append((flt.op, re.compile(flt.value)))
            except re.error:  # RE2 syntax Python does not read: the rows still show, unmarked
                pass
    return marks


def _match_spans(text: str, op: str, value) -> list[tuple[int, int]]:
    if op == "contains" or (op == "icontains" and len(text.casefold()) != len(text)):
        # (case folding that changes lengths, e.g. "ß": match exactly rather than mark the wrong letters)
        spans, start = [], text.find(value)
        while start != -1 and value:
            spans.append((start, start + len(value)))
            start = text.find(value, start + len(value))
        return spans
    if op == "icontains":
        return _match_spans(text.casefold(), "contains", value.casefold())
    if op == "startswith":
        return [(0, len(value))] if text.startswith(value) else []
    if op == "endswith":
        return [(len(text) - len(value), len(text))] if text.endswith(value) else []
    if op == "eq":
        return [(0, len(text))] if text == value else []
    if op == "in":
        return [(0, len(text))] if text in value else []
    if op == "regex":
        spans = []
        for match in value.finditer(text[:REGEX_MARK_MAX_TEXT]):
            if match.end() > match.start():
                spans.append(match.span())
            if len(spans) >= REGEX_MARK_MAX_MATCHES:
                break
        return spans
    return []


def _marked(text: str, rules: list[tuple[str, object]]) -> list[tuple[str, bool]]:
    """`text` cut into (part, is_match) pieces; the template escapes each part and wraps matches in <mark>."""
    spans = [span for op, value in rules for span in _match_spans(text, op, value)]
    parts, cursor = [], 0
    for start, end in sorted(spans):
        if start < cursor:
            start = cursor
        if start >= end:
            continue
        parts += [(text[cursor:start], False)] if start > cursor else []
        parts.append((text[start:end], True))
        cursor = end
    if cursor < len(text):
        parts.append((text[cursor:], False))
    return parts


def _snippet(parts: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """The pieces around the first match, about LONG_TEXT characters, with … where text was cut."""
    offset, first = 0, None
    for text, is_match in parts:
        if is_match:
            first = offset
            break
        offset += len(text)
    start = max(0, (first or 0) - SNIPPET_BEFORE)
    end = start + LONG_TEXT
    out, offset = [], 0
    for text, is_match in parts:
        piece = text[max(0, start - offset):max(0, end - offset)]
        if piece:
            out.append((piece, is_match))
        offset += len(text)
    if start > 0:
        out.insert(0, ("…", False))
    if end < offset:
        out.append(("…", False))
    return out


_URL_BREAK = re.compile(r"(?<=[/.?&=#_-])(?=[^/.?&=#_-])")  # after a run of separators, before the next word


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://")) and " " not in text


def _url_parts(parts: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """A URL's pieces cut after its slashes, dots, ?, & and = so the template can put <wbr> there: it then
    wraps between words, not one letter per line."""
    return [(piece, hit) for text, hit in parts for piece in _URL_BREAK.split(text) if piece]


WORDY = 12  # characters from which a short value with spaces (a title) gets a wider cell, not a word a line


def _cells(answer: SearchAnswer, shown: list[str] | None = None) -> tuple[list[str], list[dict]]:
    """The table on screen: every row's cells (matches marked, long text as a snippet around the first
    match), and where the row came from."""
    marks = _highlights(answer)
    columns = _screen_order(answer, shown)
    rows = []
    for row in answer.rows:
        cells = []
        for column in columns:
            value = row.values.get(column)
            text = "" if value is None else str(value)
            parts = _marked(text, marks[column]) if column in marks else [(text, False)]
            long = len(text) > LONG_TEXT
            url = _is_url(text)
            snippet = _snippet(parts) if long else parts
            if url:
                parts, snippet = _url_parts(parts), _url_parts(snippet)
            cells.append({"value": value, "text": text, "parts": parts, "long": long, "url": url,
                          "snippet": snippet, "wordy": not long and not url and len(text) >= WORDY and " " in text,
                          "num": isinstance(value, (int, float)) and not isinstance(value, bool)})
        rows.append({"source": row.source.value, "cells": cells,
                     "url": _row_url(answer.spec.name, row.values.get(answer.spec.key))})
    return columns, rows


def _row_url(table: str, key) -> str:
    """The row page of a key; "" for a key no URL path segment can carry (empty, or with a slash)."""
    try:
        return reverse("samples:row", args=[table, str(key)]) if key not in (None, "") else ""
    except NoReverseMatch:
        return ""


def _screen_order(answer: SearchAnswer, shown: list[str] | None = None) -> list[str]:
    """The key, then the table's main text column (where the matches are), then the rest in table order,
    so a narrow screen that scrolls the table sideways shows the matched snippet first. (The template puts
    the source column right after the key.) `shown`: the columns `_col` / `_nocol` chose."""
    text = answer.spec.text_column
    columns = [c for c in answer.columns if shown is None or c in shown]
    if text in columns and columns.index(text) > 1:
        columns.remove(text)
        columns.insert(1, text)
    return columns


LONG_QUERYSTRING = 1800  # longer forms are POSTed by search.js, stored (SavedSearch) and shown as `?_q=<key>`
VIEW_PARAMS = ("_col", "_nocol", "_facet")  # what to show; the same rows


def _view_params(params) -> list[tuple[str, str]]:
    return [(name, value) for name in VIEW_PARAMS for value in params.getlist(name) if value.strip()]


def _querystring(params: list[tuple[str, str]]) -> str:
    """The parameters as a query string. Never stored here: only a POST creates a SavedSearch, so a GET (a
    crawler, a prefetch, a link) never writes; a page shown at `?_q=<key>` links its other pages through the key
    (`_page_link`)."""
    return urlencode(params)


def _page_link(params: list[tuple[str, str]], short: str) -> str:
    """A link to another page of the same search: `short` (`_q=<key>`) and the page's `_next` when the search
    is stored and its own query string would be long, else the query string."""
    encoded = urlencode(params)
    if not short or len(encoded) <= LONG_QUERYSTRING:
        return encoded
    return "&".join([short] + [urlencode([pair]) for pair in params if pair[0] == "_next"])


def _saved_params(request) -> QueryDict:
    """The parameters of `?_q=<key>` (services.saved_search_open); Http404 for a key nobody stored."""
    try:
        return saved_search_open(params=request.GET)
    except SavedSearchUnknown as exc:
        raise Http404(str(exc)) from exc


# Searching (and so starting fallbacks) needs the "analyst" role (apps/accounts/roles.py): else 403.
analyst_required = role_required(SEARCH, what="Searching samples")


@login_required
@analyst_required
@rate_limit("search")  # the page, its htmx results and the export alike
def search_page(request):
    """The search page; for htmx requests only its results; with ?format=csv|json an export.

    A form too long for a web address is POSTed (search.js): its search is stored (SavedSearch) and shown
    at the short `?_q=<key>`, which anyone may open again."""
    params = request.GET
    short = ""
    if request.method == "POST":
        canonical = form_to_params(request.POST)
        short = urlencode([("_q", saved_search_store(params=canonical))])
        if not request.htmx:
            return redirect(f"{reverse('samples:page')}?{short}")
        params = QueryDict(urlencode(canonical))
    elif params.get("_q"):  # a stored search: its links stay short too
        params = _saved_params(request)
        short = urlencode([("_q", request.GET["_q"])])
    elif form_submitted(params):
        canonical = form_to_params(params)
        if not request.htmx:
            return redirect(f"{reverse('samples:page')}?{_querystring(canonical)}")
        params = QueryDict(urlencode(canonical))
    export_format = params.get("format", "")
    if export_format:
        return _export(request, params, export_format)

    errors: dict[str, list[str]] = {}
    problem = ""
    answer = None
    spec = None
    query = None
    fallback_id = fallback_id_from(params)
    may_start_fallback = request_may_start_fallback(request)
    store = search_store_open()  # CURRENT read once: this request's subset file and its table specs
    try:
        query = _parse(params, max_limit=settings.SEARCH_MAX_LIMIT, store=store)
        spec = store.spec(query.table)
        # Asked again with ?fallback=<id> when that fallback finished: merge it, log nothing new.
        answer = search_answer(user=request.user, context=search_context_build(query=query, store=store, spec=spec),
                               fallback_id=fallback_id, log=fallback_id is None,
                               allow_fallback=may_start_fallback, confirmed=params.get("confirm") == "1")
    except SearchValidationError as exc:
        errors = exc.errors
    except TableNotFound as exc:
        errors = exc.errors
    except SubsetMissing as exc:
        problem = str(exc)
    if spec is None:
        try:
            spec = store.spec(params.get("table") or None)
        except SearchError:
            spec = None
    columns_shown = None
    if spec is not None:
        try:
            columns_shown = columns_chosen(params=params, spec=spec)
        except SearchValidationError as exc:
            errors = {**errors, **exc.errors}
            answer = None
    view = _view_params(params)
    full_params = query.to_params() + view if query is not None and not errors else list(_pairs(params))
    full_querystring = urlencode(full_params)
    querystring = short or _querystring(full_params)  # a POSTed search is shown at its stored key
    shown = answer_present(answer=answer, may_start_fallback=may_start_fallback) if answer is not None else None
    # Export and re-render URLs name the fallback whose rows are on screen, so they show the same rows.
    rows_querystring = querystring + (f"&fallback={shown.fallback_id}" if shown and shown.fallback_id else "")
    columns, rows = _cells(answer, columns_shown) if answer is not None else ([], [])
    page_url = reverse("samples:page")
    context = {
        "headers": _headers(columns, query, view) if answer is not None else [],
        "sort_param": query.order.param if query is not None and query.order is not None else None,
        "seed": query.seed if query is not None else None,
        "view_params": view,
        "random_url": (f"{page_url}?{_querystring(_with_seed(query, view, secrets.randbelow(MAX_SEED)))}"
                       if query is not None else ""),
        "next_url": (f"{page_url}?{_page_link(_limit_last(shown.next_params, view), short)}"
                     if shown is not None and shown.next_params else ""),
        "first_page_url": (f"{page_url}?{_page_link(_limit_last(shown.first_page_params, view), short)}"
                           if shown is not None and shown.first_page_params else ""),
        "notice": shown.notice if shown else "",
        "shown": shown,
        "spec": spec,
        "tables": list(store.specs),
        "column_choices": column_choices(spec) if spec else [],
        "operator_choices": operator_choices(spec) if spec else [],
        "filter_rows": filter_rows(params, errors, known_columns=spec.searchable if spec else ()),
        "limit": params.get("limit") or settings.SEARCH_DEFAULT_LIMIT,
        "max_limit": settings.SEARCH_MAX_LIMIT,
        "max_value_length": MAX_VALUE_LENGTH,
        "errors": errors,
        "general_errors": {k: v for k, v in errors.items() if "__" not in k},
        "problem": problem,
        "answer": answer,
        "columns": columns,
        "rows": rows,
        "querystring": querystring,
        "full_querystring": full_querystring,
        "rows_querystring": rows_querystring,
        # The API answers what the page shows: the same rows and columns, and the match count (`_count=1`); a
        # stored long search by its key, which the API reads too.
        "api_url": f"{reverse('api:search')}?{querystring}&_count=1",
        "extra_facets": [v for k, v in view if k == "_facet"],
        "subset_rows": subset_row_count(spec=spec, store=store) if answer is not None else None,
        "timeout_s": settings.SEARCH_TIMEOUT_MS / 1000,
        "recent_searches": search_recent_list(user=request.user) if not request.htmx else [],
        "known_values": _known_values(spec, store),
    }
    status = 400 if errors and not request.htmx else 200
    if request.htmx and not request.htmx.history_restore_request:
        response = render(request, "samples/page.html#results", context, status=status)
        if fallback_id is not None:  # the results reloading themselves: not a new place in history
            return response
        return push_url(response, f"{reverse('samples:page')}?{querystring}")
    return render(request, "samples/page.html", context, status=status)


def _limit_last(params: list[tuple[str, str]], view: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return params[:-1] + view + params[-1:]


def _with_seed(query: SearchQuery, view: list[tuple[str, str]], seed: int) -> list[tuple[str, str]]:
    """The same search as a random sample of the given seed (any column sort or page dropped)."""
    return _limit_last(replace(query, order=None, after=None, seed=seed).to_params(), view)


def _headers(columns: list[str], query: SearchQuery, view: list[tuple[str, str]] = ()) -> list[dict]:
    """Column headers, each a link that sorts by it: ascending first, then descending, then unsorted."""
    base = [p for p in replace(query, seed=None).to_params(page=False) if p[0] not in ("_sort", "_sort_desc")]
    base = _limit_last(base, list(view))
    headers = []
    for column in columns:
        current = query.order.column == column and ("desc" if query.order.desc else "asc") if query.order else ""
        if current == "asc":
            sort = [("_sort_desc", column)]
        elif current == "desc":
            sort = []
        else:
            sort = [("_sort", column)]
        params = base[:-1] + sort + base[-1:]  # limit stays last
        headers.append({"name": column, "sorted": current or "",
                        "url": f"{reverse('samples:page')}?{_querystring(params)}"})
    return headers



def _known_values(spec, store: SearchStore) -> dict[str, tuple[str, ...]]:
    """Suggestions for the value box of low-cardinality columns (a <datalist> per column), from the request's
    subset file."""
    if spec is None or store.snapshot is None:
        return {}
    try:
        return facet_values_known(spec=spec, store=store)
    except SearchError:
        return {}


def _pairs(params):
    for name, values in params.lists():
        for value in values:
            yield name, value


FACET_TOP, FACET_MORE = 10, 50


@login_required
@analyst_required
@rate_limit("search")
def search_facets_view(request):
    """Facets, loaded by htmx after the results so they never delay them: for each facet column, its
    values among every matching subset row, each a link that adds `column = value` to the search."""
    context = {"facets": [], "facets_timed_out": False, "facet_error": "", "facet_offers": []}
    expanded = request.GET.get("_facet_more", "")
    source = _saved_params(request) if request.GET.get("_q") else request.GET
    params = [(k, v) for k, v in _pairs(source) if k != "_facet_more"]
    try:
        store = search_store_open()
        facet_params = QueryDict(urlencode(params))
        query = _parse(facet_params, max_limit=settings.SEARCH_MAX_LIMIT, store=store)
        spec = store.spec(query.table)
        extra = facet_columns_chosen(params=facet_params, spec=spec)
        facets, context["facets_timed_out"] = search_facets(
            context=search_context_build(query=query, store=store), timeout_ms=settings.SEARCH_FACET_TIMEOUT_MS,
            top=FACET_MORE if expanded else FACET_TOP, columns=spec.facets + tuple(extra))
    except SearchError as exc:
        context["facet_error"] = str(exc)
    else:
        view = _view_params(QueryDict(urlencode(params)))
        base = _limit_last(query.to_params(page=False), view)  # a new filter starts again from the first page
        context["facet_offers"] = [
            {"column": column, "url": f"{reverse('samples:page')}?{_querystring(_limit_last(base, [('_facet', column)]))}"}
            for column in spec.selected if column not in spec.facets + tuple(extra) and column not in (
                spec.key, spec.text_column)]
        chosen = {(f.column, f.value) for f in query.filters if f.op == "eq"}
        context["facets"] = [{
            "column": facet.column,
            "more_url": (f"{reverse('samples:facets')}?{_querystring(base + [('_facet_more', facet.column)])}"
                         if facet.more and facet.column != expanded else ""),
            "values": [_facet_value(facet.column, value, count, base, chosen)
                       for value, count in (facet.values if facet.column == expanded or not expanded
                                            else facet.values[:FACET_TOP])],
        } for facet in facets]
    return render(request, "samples/page.html#facets", context)


FACET_REFUSED = "is the key or the free-text column: every value differs"


def facet_columns_chosen(*, params, spec) -> list[str]:
    """`_facet=<column>` (Datasette's name): a facet on another column than the table's own facets: any
    column the search returns but the key and the text column. Raises SearchValidationError."""
    chosen, errors = [], {}
    for column in params.getlist("_facet"):
        column = column.strip()
        if not column or column in spec.facets or column in chosen:
            continue
        if column not in spec.selected:
            errors.setdefault("_facet", []).append(
                f"Unknown column {column!r}: facet by one of {', '.join(spec.selected)}.")
        elif column in (spec.key, spec.text_column):
            errors.setdefault("_facet", []).append(f"No facet on {column!r}: it {FACET_REFUSED}.")
        else:
            chosen.append(column)
    if errors:
        raise SearchValidationError(errors)
    return chosen


def _facet_value(column: str, value, count: int, base: list[tuple[str, str]], chosen: set) -> dict:
    """One facet value: its count and the search with (or, once chosen, without) `column = value`."""
    pair = (f"{column}__isnull", "true") if value == "(empty)" else (f"{column}__eq", str(value))
    selected = (column, str(value)) in chosen
    params = [p for p in base if p != pair] if selected else base[:-1] + [pair] + base[-1:]  # limit stays last
    return {"value": value, "count": count, "selected": selected,
            "url": f"{reverse('samples:page')}?{_querystring(params)}"}


class _Echo:
    def write(self, value):
        return value


def _export(request, params, export_format: str):
    """The rows on screen (same pipeline, same `fallback`), as CSV or JSON, with their source column."""
    if export_format not in EXPORT_FORMATS:
        return HttpResponse(f"Unknown format {export_format!r}; use csv or json.", status=400, content_type="text/plain")
    try:
        store = search_store_open()
        query = _parse(params, max_limit=10**9, store=store)
        query = replace(query, limit=min(query.limit, settings.SEARCH_EXPORT_MAX_ROWS))
        columns_shown = columns_chosen(params=params, spec=store.spec(query.table))
        answer = search_answer(user=request.user, context=search_context_build(query=query, store=store),
                               allow_fallback=False, fallback_id=fallback_id_from(params), log=False)
    except SearchError as exc:
        return HttpResponse(json.dumps({"detail": str(exc), "errors": exc.errors}), status=exc.status,
                            content_type="application/json")
    if answer.timed_out:
        return HttpResponse(f"The export query ran past {settings.SEARCH_TIMEOUT_MS / 1000:g}s and was stopped; "
                            "narrow the filters.", status=503, content_type="text/plain")
    shown = answer_present(answer=answer, may_start_fallback=False)
    audit_record(user=request.user, action="export", target=query.describe(), outcome=export_format,
                 detail={"rows": shown.counts, "fallback_id": shown.fallback_id, "plan": shown.plan})
    columns = columns_shown + [SOURCE_COLUMN]  # `_col` / `_nocol` choose them, as on the page
    rows = [{c: row.get(c) for c in columns} for row in answer.as_dicts()]
    filename = f"{answer.spec.name}-{query.fingerprint()[:10]}.{export_format}"
    if export_format == "csv":
        writer = csv_writer(_Echo())  # cells that would start a formula are defused (apps/core/csv.py)
        body = (writer.writerow([row.get(c) for c in columns]) for row in [dict(zip(columns, columns))] + rows)
        content_type = "text/csv; charset=utf-8"
    else:
        body = _json_rows(rows)
        content_type = "application/json"
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Export-Max-Rows"] = str(settings.SEARCH_EXPORT_MAX_ROWS)
    return response


def _json_rows(rows):
    yield "["
    first = True
    for row in rows:
        yield ("\n" if first else ",\n") + json.dumps(row, cls=DjangoJSONEncoder, ensure_ascii=False)
        first = False
    yield "\n]\n"


@login_required
@analyst_required
@rate_limit("search")
def row_page(request, table: str, key: str, as_json: bool = False):
    """One row (Datasette's row page): every column the table shows, with where the row came from (the
    subset, else the rows learned from earlier fallbacks: the pipeline, never a new fallback); `.json` gives
    it as JSON. 404 for a key no local row has."""
    try:
        store = search_store_open()
        spec = store.spec(table)
        query = SearchQuery(table=spec.name, filters=(Filter(spec.key, "eq", key),), limit=1)
        answer = search_answer(user=request.user, context=search_context_build(query=query, store=store),
                               allow_fallback=False, log=False, count=False)
    except (SearchValidationError, TableNotFound):
        raise Http404(f"No row {key!r} in {table!r}.") from None
    if not answer.rows:
        raise Http404(f"No local row {key!r} in {table!r}.")
    row = answer.rows[0]
    if as_json:
        return JsonResponse({"table": spec.name, "key": spec.key, "row": row.as_dict(), "source": row.source.value},
                            json_dumps_params={"ensure_ascii": False, "default": str})
    return render(request, "samples/row.html", {
        "spec": spec, "key": key, "source": row.source.value,
        "cells": [{"column": c, "value": row.values.get(c), "type": spec.columns.get(c, "")} for c in spec.selected],
        "json_url": reverse("samples:row-json", args=[spec.name, key]),
        "search_url": f"{reverse('samples:page')}?{urlencode([('table', spec.name), (spec.key + '__eq', key)])}",
    })
