from django.contrib.auth.decorators import login_not_required, login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from .health import CHECKS, DEEP_CHECKS, run_checks


@login_required
def home(request):
    return render(request, "core/home.html")


LOOPBACK_ADDRESSES = {"127.0.0.1", "::1"}


def _may_see_health_details(request) -> bool:
    """Staff, or a request made on this machine (a container health check, an operator's curl). A request
    that came through the reverse proxy also arrives from loopback, but carries X-Forwarded-For."""
    if getattr(request.user, "is_staff", False):
        return True
    return request.META.get("REMOTE_ADDR") in LOOPBACK_ADDRESSES and "HTTP_X_FORWARDED_FOR" not in request.META


@login_not_required  # load balancers and monitors call it without a session
@never_cache
def healthz(request):
    """Liveness for everyone: `{"status": "ok"}` while this process answers (no checks, nothing about
    the machine). `?details=1` runs the checks (database, Redis, a worker, the subset) and `?deep=1` adds a
    task round-trip: only for staff or from localhost; for anyone else the parameters are ignored."""
    deep = bool(request.GET.get("deep"))
    if not ((deep or request.GET.get("details")) and _may_see_health_details(request)):
        return JsonResponse({"status": "ok"})
    names = list(CHECKS) + (list(DEEP_CHECKS) if deep else [])
    results = run_checks(names)
    healthy = all(r.ok for r in results)
    body = {
        "status": "ok" if healthy else "failing",
        "checks": {r.name: {"ok": r.ok, "reason": r.reason, "elapsed_ms": r.elapsed_ms} for r in results},
    }
    return JsonResponse(body, status=200 if healthy else 503)


@login_required
@never_cache
def status_banner(request):
    """Loaded by htmx after the page renders, so a down Redis or worker never delays a page."""
    failing = [r for r in run_checks(["redis", "worker"]) if not r.ok]
    return render(request, "core/status_banner.html", {"failing": failing})

