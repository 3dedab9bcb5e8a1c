from django.contrib.auth.decorators import login_not_required, login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from .health import CHECKS, DEEP_CHECKS, run_checks


@login_required
def home(request):
    return render(request, "core/home.html")


@login_not_required  # load balancers and monitors call it without a session
@never_cache
def healthz(request):
    names = list(CHECKS) + (list(DEEP_CHECKS) if request.GET.get("deep") else [])
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

