from __future__ import annotations

import csv
import json
from urllib.parse import urlencode

import duckdb
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from .forms import column_choices, filter_rows, form_submitted, form_to_params, operator_choices
from .query import SearchQuery, SearchValidationError, query_from_params
from .selectors import search_export_iter, search_facets, subset_row_count
from .services import search_run
from .tables import TableNotFound, default_table_name, table_spec_get, table_spec_list

LONG_TEXT = 120  # characters shown before a cell folds into <details>
EXPORT_FORMATS = ("csv", "json")


def _parse(params, *, max_limit: int) -> SearchQuery:
    return query_from_params(
        params=params, default_table=default_table_name(), default_limit=settings.SEARCH_DEFAULT_LIMIT,
        max_limit=max_limit, skip_blank=True, strict=False,
    )


def _cells(result) -> tuple[list[str], list[list[dict]]]:
    columns = list(result.columns)
    if any(row.get("_source", "local") != "local" for row in result.rows):
        columns.append("_source")
    rows = []
    for row in result.rows:
        cells = []
        for column in columns:
            value = row.get(column)
            text = "" if value is None else str(value)
            cells.append({"value": value, "text": text, "long": len(text) > LONG_TEXT, "short": text[:LONG_TEXT],
                          "num": isinstance(value, (int, float)) and not isinstance(value, bool)})
        rows.append(cells)
    return columns, rows


@login_required
def search_page(request):
    """The search page; for htmx requests only its results; with ?format=csv|json an export."""
    params = request.GET
    if form_submitted(params):
        canonical = form_to_params(params)
        if not request.htmx:
            return redirect(f"{reverse('search:page')}?{urlencode(canonical)}")
        params = QueryDict(urlencode(canonical))
    export_format = params.get("format", "")
    if export_format:
        return _export(request, params, export_format)

    errors: dict[str, list[str]] = {}
    problem = ""
    result = None
    spec = None
    query = None
    try:
        query = _parse(params, max_limit=settings.SEARCH_MAX_LIMIT)
        spec = table_spec_get(name=query.table)
        result = search_run(user=request.user, query=query)
    except SearchValidationError as exc:
        errors = exc.errors
    except TableNotFound as exc:
        errors = {"table": [str(exc)]}
    except FileNotFoundError as exc:
        problem = str(exc)
    if spec is None:
        try:
            spec = table_spec_get(name=params.get("table") or None)
        except (TableNotFound, FileNotFoundError):
            spec = None
    querystring = urlencode(query.to_params()) if query is not None and not errors else urlencode(list(_pairs(params)))
    columns, rows = _cells(result) if result is not None else ([], [])
    context = {
        "spec": spec,
        "tables": _safe_table_list(),
        "column_choices": column_choices(spec) if spec else [],
        "column_choices_json": [{"name": c["name"], "ops": c["ops"]} for c in column_choices(spec)] if spec else [],
        "operator_choices": operator_choices(spec) if spec else [],
        "filter_rows": filter_rows(params, errors, known_columns=spec.searchable if spec else ()),
        "limit": params.get("limit") or settings.SEARCH_DEFAULT_LIMIT,
        "max_limit": settings.SEARCH_MAX_LIMIT,
        "errors": errors,
        "general_errors": {k: v for k, v in errors.items() if "__" not in k},
        "problem": problem,
        "result": result,
        "columns": columns,
        "rows": rows,
        "querystring": querystring,
        "warehouse_rows": len(result.rows) - result.local_count if result is not None else 0,
        "subset_rows": subset_row_count(spec=spec) if result is not None else None,
        "timeout_s": settings.SEARCH_TIMEOUT_MS / 1000,
    }
    status = 400 if errors and not request.htmx else 200
    if request.htmx and not request.htmx.history_restore_request:
        response = render(request, "search/page.html#results", context, status=status)
        response["HX-Push-Url"] = f"{reverse('search:page')}?{querystring}"
        return response
    return render(request, "search/page.html", context, status=status)


def _pairs(params):
    for name, values in params.lists():
        for value in values:
            yield name, value


def _safe_table_list():
    try:
        return table_spec_list()
    except FileNotFoundError:
        return []


@login_required
def search_facets_view(request):
    """Facet charts, loaded by htmx after the results so they never delay them."""
    context = {"facets": [], "facets_timed_out": False, "facet_error": ""}
    try:
        query = _parse(request.GET, max_limit=settings.SEARCH_MAX_LIMIT)
        spec = table_spec_get(name=query.table)
        context["facets"], context["facets_timed_out"] = search_facets(
            query=query, spec=spec, timeout_ms=settings.SEARCH_FACET_TIMEOUT_MS)
    except (SearchValidationError, TableNotFound, FileNotFoundError) as exc:
        context["facet_error"] = str(exc)
    context["charts"] = [{"facet": f, "chart": f.chart(), "id": f"facet-{i}"} for i, f in enumerate(context["facets"])]
    return render(request, "search/page.html#facets", context)


class _Echo:
    def write(self, value):
        return value


def _export(request, params, export_format: str):
    if export_format not in EXPORT_FORMATS:
        return HttpResponse(f"Unknown format {export_format!r}; use csv or json.", status=400, content_type="text/plain")
    try:
        query = _parse(params, max_limit=10**9)
        query = SearchQuery(query.table, query.filters, min(query.limit, settings.SEARCH_EXPORT_MAX_ROWS))
        spec = table_spec_get(name=query.table)
        columns, rows = search_export_iter(query=query, spec=spec, timeout_ms=settings.SEARCH_TIMEOUT_MS)
    except SearchValidationError as exc:
        return HttpResponse(json.dumps({"errors": exc.errors}), status=422, content_type="application/json")
    except TableNotFound as exc:
        return HttpResponse(json.dumps({"errors": {"table": [str(exc)]}}), status=422, content_type="application/json")
    except FileNotFoundError as exc:
        return HttpResponse(str(exc), status=503, content_type="text/plain")
    except duckdb.InterruptException:
        return HttpResponse(f"The export query ran past {settings.SEARCH_TIMEOUT_MS / 1000:g}s and was stopped; "
                            "narrow the filters.", status=503, content_type="text/plain")
    filename = f"{spec.name}-{query.fingerprint()[:10]}.{export_format}"
    if export_format == "csv":
        writer = csv.writer(_Echo())
        body = (writer.writerow(r) for r in _with_header(columns, rows))
        content_type = "text/csv; charset=utf-8"
    else:
        body = _json_rows(columns, rows)
        content_type = "application/json"
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Export-Max-Rows"] = str(settings.SEARCH_EXPORT_MAX_ROWS)
    return response


def _with_header(columns, rows):
    yield columns
    yield from rows


def _json_rows(columns, rows):
    yield "["
    first = True
    for row in rows:
        yield ("\n" if first else ",\n") + json.dumps(dict(zip(columns, row)), cls=DjangoJSONEncoder, ensure_ascii=False)
        first = False
    yield "\n]\n"
