"""The dashboard's charts as plotly-style specs ({"data", "layout"}), built from its selectors and drawn on
the server as SVG by svg.py (the page loads no chart library)."""
from __future__ import annotations

from .selectors import ExportDay, FallbackDay, SearchDay

GIB = 1024**3
LOCAL = "#2f855a"
FALLBACK = "#c05621"


def _days(items) -> list[str]:
    return [d.day.isoformat() for d in items]


def _layout(title: str, **extra) -> dict:
    layout = {"title": {"text": title, "font": {"size": 14}}, "height": 280, "legend": {"orientation": "h", "y": -0.2},
              "xaxis": {"type": "date", "tickformat": "%b %d"}, "margin": {"t": 36, "r": 50, "b": 60, "l": 55}}
    layout.update(extra)
    return layout


def answered_chart(days: list[SearchDay]) -> dict:
    x = _days(days)
    share = [round(100 * d.local_share, 2) if d.local_share is not None else None for d in days]
    return {
        "data": [
            {"type": "bar", "name": "answered locally", "x": x, "y": [d.local for d in days],
             "marker": {"color": LOCAL}},
            {"type": "bar", "name": "needed a fallback", "x": x, "y": [d.fallback for d in days],
             "marker": {"color": FALLBACK}},
            {"type": "scatter", "mode": "lines+markers", "name": "% local", "x": x, "y": share, "yaxis": "y2",
             "line": {"color": "#2b6cb0"}, "connectgaps": False},
        ],
        "layout": _layout("Searches answered locally vs. needing a fallback", barmode="stack",
                          yaxis={"title": {"text": "searches"}, "rangemode": "tozero"},
                          yaxis2={"title": {"text": "% local"}, "overlaying": "y", "side": "right",
                                  "range": [0, 100.5]}),
    }


def _p50_p95_chart(*, title: str, unit: str, x: list, p50: list, p95: list) -> dict:
    return {
        "data": [
            {"type": "scatter", "mode": "lines+markers", "name": "p50", "x": x, "y": p50},
            {"type": "scatter", "mode": "lines+markers", "name": "p95", "x": x, "y": p95},
        ],
        "layout": _layout(title, yaxis={"title": {"text": unit}, "rangemode": "tozero"}),
    }


def local_latency_chart(days: list[SearchDay]) -> dict:
    return _p50_p95_chart(title="Local search latency (ms)", unit="ms", x=_days(days),
                          p50=[d.local_p50_ms for d in days], p95=[d.local_p95_ms for d in days])


def fallback_latency_chart(days: list[FallbackDay]) -> dict:
    return _p50_p95_chart(title="Fallback latency, queued to done (s)", unit="s", x=_days(days),
                          p50=[d.p50_s for d in days], p95=[d.p95_s for d in days])


def spend_chart(days: list[FallbackDay], exports: list[ExportDay] = ()) -> dict:
    """Bytes and USD per day of fallbacks + exports (`exports`: the same days, export_daily)."""
    x = _days(days)
    by_day = {d.day: d for d in exports}
    scanned = [d.bytes_scanned + (by_day[d.day].bytes_scanned if d.day in by_day else 0) for d in days]
    cost = [d.cost_usd + (by_day[d.day].cost_usd if d.day in by_day else 0) for d in days]
    return {
        "data": [
            {"type": "bar", "name": "GiB scanned", "x": x, "y": [round(b / GIB, 4) for b in scanned],
             "marker": {"color": "#805ad5"}},
            {"type": "scatter", "mode": "lines+markers", "name": "USD", "x": x,
             "y": [float(c) for c in cost], "yaxis": "y2", "line": {"color": FALLBACK}},
        ],
        "layout": _layout("Warehouse bytes scanned and USD per day (fallbacks + exports)",
                          yaxis={"title": {"text": "GiB"}, "rangemode": "tozero"},
                          yaxis2={"title": {"text": "USD"}, "overlaying": "y", "side": "right", "rangemode": "tozero"}),
    }


def spend_by_user_chart(rows: list[dict]) -> dict:
    users = [r["username"] for r in rows]
    return {
        "data": [{"type": "bar", "orientation": "h", "name": "USD", "y": users,
                  "x": [float(r["cost_usd"]) for r in rows], "marker": {"color": FALLBACK},
                  "hovertemplate": "%{y}: $%{x:.4f}<extra></extra>"}],
        "layout": {"title": {"text": "USD per user", "font": {"size": 14}}, "height": 80 + 28 * max(len(users), 3),
                   "margin": {"t": 36, "r": 20, "b": 40, "l": 110}, "yaxis": {"autorange": "reversed"},
                   "xaxis": {"title": {"text": "USD"}, "rangemode": "tozero"}},
    }
