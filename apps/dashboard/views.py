from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from apps.accounts.roles import user_sees_everyone
from apps.audit.selectors import audit_event_list, audit_spend_by_user
from apps.subsets.selectors import learned_status_get, refresh_last, refresh_list, subset_status_get

from . import charts
from .forms import DateRangeForm
from .selectors import (
    activity_list,
    export_daily,
    fallback_daily,
    frequent_fallback_queries,
    search_daily,
    totals,
    warehouse_spend_by_user,
)
from .svg import chart_svg


@login_required
def dashboard(request):
    form = DateRangeForm(request.GET or None)
    period = form.cleaned_data["range"] if form.is_bound and form.is_valid() else DateRangeForm.default_range()
    if not form.is_bound:
        form = DateRangeForm(initial={"from": period.start, "to": period.end})
    # Staff see everyone's searches, fallbacks, spend and audit events; everyone else, whatever their role,
    # only their own: every user-derived figure on the page goes through `only`.
    only = None if user_sees_everyone(user=request.user) else request.user
    searches = search_daily(period=period, user=only)
    fallbacks = fallback_daily(period=period, user=only)
    exports = export_daily(period=period, user=only)
    spend = warehouse_spend_by_user(period=period, user=only)
    chart_specs = {
        "answered": charts.answered_chart(searches),
        "local_latency": charts.local_latency_chart(searches),
        "fallback_latency": charts.fallback_latency_chart(fallbacks),
        "spend": charts.spend_chart(fallbacks, exports),
        "spend_by_user": charts.spend_by_user_chart(spend),
    }
    context = {
        "form": form,
        "period": period,
        "totals": totals(searches=searches, fallbacks=fallbacks, exports=exports),
        "charts": chart_specs,
        "chart_figures": [chart_svg(spec) for spec in chart_specs.values()],
        "spend": spend,
        "sees_everyone": only is None,
        "frequent": frequent_fallback_queries(period=period, user=only),
        "subset": subset_status_get(),
        "learned": learned_status_get(),
        "last_refresh": refresh_last(),
        "refreshes": refresh_list(limit=5),
        "audit_spend": audit_spend_by_user(since=period.since, user=only),
        "activity": activity_list(events=audit_event_list(since=period.since, user=only).filter(
            created_at__lt=period.until)[:50]),
    }
    return render(request, "dashboard/page.html", context)
