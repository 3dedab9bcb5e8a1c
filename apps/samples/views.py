from __future__ import annotations

import json
import re
from dataclasses import replace
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django_htmx.http import push_url

from apps.accounts.roles import SEARCH, role_required
from apps.audit.services import audit_record
from apps.core.csv import csv_writer
from apps.core.ratelimit import rate_limit
from apps.search.context import SearchStore, search_context_build, search_store_open
from apps.search.errors import SearchError, SearchValidationError, SubsetMissing, TableNotFound
from apps.search.operators import operator_get
from apps.search.query import SearchQuery, query_from_params
from apps.search.selectors import facet_values_known, search_facets, subset_row_count

from .forms import column_choices, filter_rows, form_submitted, form_to_params, operator_choices
from .origin import request_may_start_fallback
from .pipeline import SOURCE_COLUMN, SearchAnswer, answer_present, fallback_id_from, search_answer
from .selectors import search_recent_list

LONG_TEXT = 120  # characters shown before a cell folds into <details>
EXPORT_FORMATS = ("csv", "json")


def _parse(params, *, max_limit: int, store: SearchStore) -> SearchQuery:
    return query_from_params(
        params=params, default_table=store.default_table(), default_limit=settings.SEARCH_DEFAULT_LIMIT,
        max_limit=max_limit, skip_blank=True, strict=False,
    )


SNIPPET_BEFORE = 40  # characters shown before the first match in a long cell's snippet


def _needles(answer: SearchAnswer) -> dict[str, list[tuple[str, bool]]]:
    """column -> (text to mark, ignore case) for every substring filter of the search."""
    needles: dict[str, list[tuple[str, bool]]] = {}
    for flt in answer.query.filters:
        if operator_get(flt.op).substring and flt.value:
            needles.setdefault(flt.column, []).append((flt.value, flt.op == "icontains"))
    return needles


def _marked(text: str, needles: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """`text` cut into (part, is_match) pieces; the template escapes each part and wraps matches in <mark>."""
    spans: list[tuple[int, int]] = []
    folded = text.casefold() if any(ignore for _, ignore in needles) else text
    for needle, ignore in needles:
        haystack, wanted = (folded, needle.casefold()) if ignore else (text, needle)
        if ignore and len(folded) != len(text):  # case folding changed lengths: match exactly instead
            haystack, wanted = text, needle
        start = haystack.find(wanted)
        while start != -1 and wanted:
            spans.append((start, start + len(wanted)))
            start = haystack.find(wanted, start + len(wanted))
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


def _cells(answer: SearchAnswer) -> tuple[list[str], list[dict]]:
    """The table on screen: every row's cells (matches marked, long text as a snippet around the first
    match), and where the row came from."""
    needles = _needles(answer)
    columns = _screen_order(answer)
    rows = []
    for row in answer.rows:
        cells = []
        for column in columns:
            value = row.values.get(column)
            text = "" if value is None else str(value)
            parts = _marked(text, needles[column]) if column in needles else [(text, False)]
            long = len(text) > LONG_TEXT
            url = _is_url(text)
            snippet = _snippet(parts) if long else parts
            if url:
                parts, snippet = _url_parts(parts), _url_parts(snippet)
            cells.append({"value": value, "text": text, "parts": parts, "long": long, "url": url,
                          "snippet": snippet,
                          "num": isinstance(value, (int, float)) and not isinstance(value, bool)})
        rows.append({"source": row.source.value, "cells": cells})
    return columns, rows


def _screen_order(answer: SearchAnswer) -> list[str]:
    """The key, then the table's main text column (where the matches are), then the rest in table order,
    so a narrow screen that scrolls the table sideways shows the matched snippet first."""
    text = answer.spec.text_column
    columns = list(answer.columns)
    if text in columns and columns.index(text) > 1:
        columns.remove(text)
        columns.insert(1, text)
    return columns


# Searching (and so starting fallbacks) needs the "analyst" role (apps/accounts/roles.py): else 403.
analyst_required = role_required(SEARCH, what="Searching samples")


@login_required
@analyst_required
@rate_limit("search")  # the page, its htmx results and the export alike
def search_page(request):
    """The search page; for htmx requests only its results; with ?format=csv|json an export."""
    params = request.GET
    if form_submitted(params):
        canonical = form_to_params(params)
        if not request.htmx:
            return redirect(f"{reverse('samples:page')}?{urlencode(canonical)}")
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
    querystring = urlencode(query.to_params()) if query is not None and not errors else urlencode(list(_pairs(params)))
    shown = answer_present(answer=answer, may_start_fallback=may_start_fallback) if answer is not None else None
    # Export and re-render URLs name the fallback whose rows are on screen, so they show the same rows.
    rows_querystring = querystring + (f"&fallback={shown.fallback_id}" if shown and shown.fallback_id else "")
    columns, rows = _cells(answer) if answer is not None else ([], [])
    page_path = reverse("samples:page")
    context = {
        "headers": _headers(columns, query) if answer is not None else [],
        "sort_param": query.order.param if query is not None and query.order is not None else None,
        "next_url": shown.next_url(page_path) if shown else "",
        "first_page_url": shown.first_page_url(page_path) if shown else "",
        "notice": shown.notice if shown else "",
        "shown": shown,
        "spec": spec,
        "tables": list(store.specs),
        "column_choices": column_choices(spec) if spec else [],
        "operator_choices": operator_choices(spec) if spec else [],
        "filter_rows": filter_rows(params, errors, known_columns=spec.searchable if spec else ()),
        "limit": params.get("limit") or settings.SEARCH_DEFAULT_LIMIT,
        "max_limit": settings.SEARCH_MAX_LIMIT,
        "errors": errors,
        "general_errors": {k: v for k, v in errors.items() if "__" not in k},
        "problem": problem,
        "answer": answer,
        "columns": columns,
        "rows": rows,
        "querystring": querystring,
        "rows_querystring": rows_querystring,
        "api_url": f"{reverse('api:search')}?{querystring}",
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


def _headers(columns: list[str], query: SearchQuery) -> list[dict]:
    """Column headers, each a link that sorts by it: ascending first, then descending, then unsorted."""
    base = [p for p in query.to_params(page=False) if p[0] not in ("_sort", "_sort_desc")]
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
                        "url": f"{reverse('samples:page')}?{urlencode(params)}"})
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
    context = {"facets": [], "facets_timed_out": False, "facet_error": ""}
    expanded = request.GET.get("_facet_more", "")
    params = [(k, v) for k, v in _pairs(request.GET) if k != "_facet_more"]
    try:
        store = search_store_open()
        query = _parse(QueryDict(urlencode(params)), max_limit=settings.SEARCH_MAX_LIMIT, store=store)
        facets, context["facets_timed_out"] = search_facets(
            context=search_context_build(query=query, store=store), timeout_ms=settings.SEARCH_FACET_TIMEOUT_MS,
            top=FACET_MORE if expanded else FACET_TOP)
    except SearchError as exc:
        context["facet_error"] = str(exc)
    else:
        base = query.to_params(page=False)  # a new filter starts again from the first page
        chosen = {(f.column, f.value) for f in query.filters if f.op == "eq"}
        context["facets"] = [{
            "column": facet.column,
            "more_url": (f"{reverse('samples:facets')}?{urlencode(base + [('_facet_more', facet.column)])}"
                         if facet.more and facet.column != expanded else ""),
            "values": [_facet_value(facet.column, value, count, base, chosen)
                       for value, count in (facet.values if facet.column == expanded or not expanded
                                            else facet.values[:FACET_TOP])],
        } for facet in facets]
    return render(request, "samples/page.html#facets", context)


def _facet_value(column: str, value, count: int, base: list[tuple[str, str]], chosen: set) -> dict:
    """One facet value: its count and the search with (or, once chosen, without) `column = value`."""
    pair = (f"{column}__isnull", "true") if value == "(empty)" else (f"{column}__eq", str(value))
    selected = (column, str(value)) in chosen
    params = [p for p in base if p != pair] if selected else base[:-1] + [pair] + base[-1:]  # limit stays last
    return {"value": value, "count": count, "selected": selected,
            "url": f"{reverse('samples:page')}?{urlencode(params)}"}


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
    columns = answer.columns + [SOURCE_COLUMN]
    rows = answer.as_dicts()
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
