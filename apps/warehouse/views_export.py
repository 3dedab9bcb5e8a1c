"""Pages for exports: start one from a search (POST), its status page with a polled panel, cancel, the download
of what it wrote, and the streamed CSV of every local match. Thin: the services and selectors decide."""
from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from apps.accounts.roles import SEARCH, role_required
from apps.audit.services import audit_record
from apps.core.csv import csv_writer
from apps.core.ratelimit import rate_limit
from apps.search.errors import SearchError
from apps.search.query import SearchQuery, query_from_params
from apps.search.tables import default_table_name, table_spec_get

from .backends.export_sql import export_columns
from .export_selectors import export_expired, export_file_chunks, local_matches_stream
from .export_services import ExportNotPossible, export_cancel, export_estimate, export_request
from .models import Export
from .selectors import export_can_view, export_list, fallback_budget_left

analyst_required = role_required(SEARCH, what="Exporting search results")
SOURCE_COLUMN = "_source"


def _search_from(params) -> SearchQuery:
    return query_from_params(params=params, default_table=default_table_name(),
                             default_limit=settings.SEARCH_DEFAULT_LIMIT, max_limit=10**9, skip_blank=True,
                             strict=False)


@login_required
@analyst_required
@require_GET
def export_new(request):
    """The search page's "Export every matching row" link: what would be exported, what it would cost and what is
    left of today's budget, and the button that starts it (nothing is spent before that POST)."""
    try:
        query = _search_from(request.GET)
        spec = table_spec_get(name=query.table)
        if not spec.has_warehouse(settings.WAREHOUSE_BACKEND):
            raise ExportNotPossible(f"Table {spec.name!r} has no warehouse: there is nothing more to export than "
                                    "the local rows.")
        estimate, cost = export_estimate(query=query, spec=spec)
    except (SearchError, ExportNotPossible) as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    search = urlencode(query.to_params(page=False))
    return render(request, "warehouse/export_new.html", {
        "query_text": query.describe().split(": ", 1)[-1].rsplit(" LIMIT ", 1)[0], "table": spec.name,
        "search": search, "estimate": estimate, "cost": cost, "budget": fallback_budget_left(user=request.user),
        "backend": settings.WAREHOUSE_BACKEND, "columns": export_columns(spec=spec),
    })


@login_required
@analyst_required
@require_POST
def export_start_view(request):
    """The search page's "Export every matching row" button: the search's parameters come in `search`."""
    try:
        query = _search_from(QueryDict(request.POST.get("search", "")))
        export = export_request(user=request.user, query=query, spec=table_spec_get(name=query.table))
    except (SearchError, ExportNotPossible) as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    if export.state == Export.State.REFUSED:
        messages.error(request, export.error)
    return redirect("warehouse:export-detail", export_id=export.pk)


@login_required
@analyst_required
def export_list_page(request):
    return render(request, "warehouse/exports.html", {"exports": export_list(user=request.user),
                                                      "budget": fallback_budget_left(user=request.user)})


def _viewable(request, export_id: int) -> Export:
    export = get_object_or_404(Export.objects.select_related("user"), pk=export_id)
    if not export_can_view(export=export, user=request.user):
        raise PermissionDenied("Only its creator and staff see an export.")
    return export


@login_required
@analyst_required
@never_cache
def export_detail(request, export_id: int):
    """The status page; for htmx, just the panel (polled until the export finishes; 286 then)."""
    export = _viewable(request, export_id)
    if request.htmx:
        response = render(request, "warehouse/export_detail.html#panel", {"export": export})
        return response if export.is_active else HttpResponseStopPolling(response.content)
    return render(request, "warehouse/export_detail.html", {"export": export})


@login_required
@analyst_required
@require_POST
def export_cancel_view(request, export_id: int):
    export = export_cancel(export=_viewable(request, export_id), user=request.user)
    if request.htmx:
        return render(request, "warehouse/export_detail.html#panel", {"export": export})
    return redirect("warehouse:export-detail", export_id=export.pk)


@login_required
@analyst_required
@require_GET
def export_download(request, export_id: int):
    """What the export wrote, as CSV, streamed a chunk at a time (never read into memory): its creator or staff."""
    export = _viewable(request, export_id)
    if export_expired(export=export):
        return HttpResponse(f"Export #{export.pk} has expired: its file was deleted (exports are kept "
                            f"{settings.EXPORT_KEEP_DAYS} days). Export the search again.",
                            status=410, content_type="text/plain; charset=utf-8")
    if export.state != Export.State.SUCCEEDED:
        return HttpResponse(f"Export #{export.pk} is {export.get_state_display().lower()}: there is nothing to download.",
                            status=409, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(export_file_chunks(export=export), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{export.table}-export-{export.pk}.csv"'
    if export.backend != "athena" and export.file_bytes is not None:
        response["Content-Length"] = str(export.file_bytes)
    return response


@login_required
@analyst_required
@rate_limit("search")
@require_GET
def local_matches_csv(request):
    """Every local row matching a search (the subset, then learned rows), as CSV with a `_source` column, streamed
    from DuckDB in batches: no page limit, unlike the search page's export (SEARCH_EXPORT_MAX_ROWS)."""
    try:
        query = _search_from(request.GET)
        spec = table_spec_get(name=query.table)
        batches = local_matches_stream(query=query, spec=spec)
        first = next(batches, None)  # validation and a missing subset fail here, before the 200
    except SearchError as exc:
        return HttpResponse(str(exc), status=getattr(exc, "status", 400), content_type="text/plain; charset=utf-8")
    columns = list(export_columns(spec=spec))
    audit_record(user=request.user, action="export", target=query.describe().rsplit(" LIMIT ", 1)[0][:255],
                 outcome="csv", detail={"kind": "local_all", "table": spec.name})

    def lines():
        writer = csv_writer(_Echo())  # cells that would start a formula are defused (apps/core/csv.py)
        yield writer.writerow(columns + [SOURCE_COLUMN])
        batch = first
        while batch is not None:
            yield "".join(writer.writerow(list(row) + [batch.source]) for row in batch.rows)
            batch = next(batches, None)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{spec.name}-local-{query.fingerprint()[:10]}.csv"'
    return response


class _Echo:
    def write(self, value):
        return value

