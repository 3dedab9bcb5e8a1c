from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from .models import Fallback
from .selectors import fallback_budget_left, fallback_can_view, fallback_list
from .services import fallback_cancel
from .views_support import panel_handle, request_id_from


@login_required
def fallback_list_page(request):
    return render(request, "warehouse/list.html", {
        "fallbacks": fallback_list(user=request.user),
        "budget": fallback_budget_left(user=request.user),
        "backend": settings.WAREHOUSE_BACKEND,
    })


@login_required
@never_cache
def fallback_detail(request, fallback_id: int):
    """The status page; for htmx, just the panel (polled until the fallback finishes)."""
    fallback = get_object_or_404(Fallback.objects.select_related("user"), pk=fallback_id)
    if not fallback_can_view(fallback=fallback, user=request.user):
        raise PermissionDenied("Only its creator, the people whose searches joined it, and staff see a fallback.")
    handle = panel_handle(fallback=fallback, request_id=request_id_from(request.GET), user=request.user)
    if request.htmx:
        return _panel_response(request, handle)
    return render(request, "warehouse/detail.html", {"fallback": handle})


@login_required
@require_POST
def fallback_cancel_view(request, fallback_id: int):
    fallback = get_object_or_404(Fallback, pk=fallback_id)
    fallback_cancel(fallback=fallback, user=request.user)  # stops it, (a joiner) leaves it, or PermissionDenied
    request_id = request_id_from(request.POST)
    if request.htmx:
        return _panel_response(request, panel_handle(fallback=fallback, request_id=request_id, user=request.user))
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                   require_https=request.is_secure()):
        return HttpResponseRedirect(target)  # a path, never a view name for redirect() to reverse
    handle = panel_handle(fallback=fallback, request_id=request_id, user=request.user)
    return redirect(handle.poll_url)


def _panel_response(request, handle):
    response = render(request, "warehouse/detail.html#panel", {"fallback": handle})
    if handle.is_active:
        return response
    if handle.has_left:  # this page stopped waiting; the fallback did not finish: nothing to merge
        return HttpResponseStopPolling(response.content)
    # Finished: htmx swaps this last panel in and stops polling (status 286); the search page hears
    # `fallback-finished` and reloads its results with the merged rows.
    stopped = HttpResponseStopPolling(response.content)
    return trigger_client_event(stopped, "fallback-finished", {"id": handle.id, "state": handle.state})
