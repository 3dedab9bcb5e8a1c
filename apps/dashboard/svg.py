"""The dashboard's charts drawn on the server as SVG, from the plotly-style specs of charts.py
({"data": traces, "layout": ...}), so the page loads no chart library: plotly took ~0.45 s to evaluate
and ~0.5 s to draw five charts on a 2-core machine, over the 1 s a first load may take.

What the specs use is what is drawn: bar traces (stacked with `barmode: "stack"`, side by side otherwise,
or horizontal with `orientation: "h"`, labelled with 4 decimals, in $ when the x axis is "USD") and line traces (`type: "scatter"`; a missing value breaks the
line), on the left axis or on a right one (`yaxis: "y2"`, its range from `layout.yaxis2.range` when
given). Every bar and point carries its value in a <title>, which browsers show on hover. Text is
escaped (user names are user input)."""
from __future__ import annotations

import math
from datetime import date

from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH = 480
PLOT_HEIGHT = 190
PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#805ad5", "#b83280")
MAX_X_LABELS = 8


def nice_ticks(high: float, count: int = 4) -> list[float]:
    """0, then round steps (1, 2, 2.5 or 5 × 10^k) up to the first at or above `high`."""
    if not high or high <= 0 or not math.isfinite(high):
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    return [round(i * step, 12) for i in range(math.ceil(high / step - 1e-9) + 1)]


def number_text(value: float) -> str:
    """A value as a tick or a tooltip shows it: whole numbers plainly, others with 4 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) >= 1 else f"{value:.4g}"


def _f(value: float) -> str:
    return f"{value:.1f}"


def _x_label(value) -> str:
    try:
        return date.fromisoformat(str(value)).strftime("%b %d")
    except ValueError:
        return str(value)


def _color(trace: dict, index: int) -> str:
    return (trace.get("marker") or {}).get("color") or (trace.get("line") or {}).get("color") or PALETTE[index % len(PALETTE)]


def _title(layout: dict) -> str:
    title = layout.get("title") or {}
    return title.get("text", "") if isinstance(title, dict) else str(title)


def _axis_title(layout: dict, name: str) -> str:
    title = (layout.get(name) or {}).get("title") or {}
    return title.get("text", "") if isinstance(title, dict) else str(title)


def chart_svg(spec: dict) -> SafeString:
    """The chart as a <figure>: caption, SVG, legend."""
    layout, traces = spec.get("layout") or {}, spec.get("data") or []
    horizontal = any(t.get("orientation") == "h" for t in traces)
    body = _horizontal(traces, layout) if horizontal else _vertical(traces, layout)
    legend = "" if horizontal or len(traces) < 2 else format_html(
        '<ul class="legend">{}</ul>',
        format_html_join("", '<li><span class="swatch" style="background:{}"></span>{}</li>',
                         ((_color(t, i), t.get("name", "")) for i, t in enumerate(traces))))
    title = _title(layout)
    return format_html('<figure class="svg-chart"><figcaption>{}</figcaption>{}{}</figure>', title, body, legend)


def _svg(height: int, title: str, parts: list[str]) -> SafeString:
    return mark_safe(  # every part is built with format_html (escaped)
        f'<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>')


def _empty(height: int, title: str) -> SafeString:
    return _svg(height, title, [format_html(
        '<text class="empty" x="{}" y="{}" text-anchor="middle">No data in this period</text>', WIDTH // 2, height // 2)])


def _vertical(traces: list[dict], layout: dict) -> SafeString:
    title = _title(layout)
    x = next((t.get("x") for t in traces if t.get("x")), []) or []
    if not x:
        return _empty(PLOT_HEIGHT + 30, title)
    left, top, bottom = 52, 14, PLOT_HEIGHT + 14
    has_y2 = any(t.get("yaxis") == "y2" for t in traces)
    right = WIDTH - (52 if has_y2 else 12)
    band = (right - left) / len(x)
    bars = [(i, t) for i, t in enumerate(traces) if t.get("type") == "bar"]
    lines = [(i, t) for i, t in enumerate(traces) if t.get("type") != "bar"]
    stacked = layout.get("barmode") == "stack"

    def values(trace):
        return [None if v is None else float(v) for v in trace.get("y") or []]

    def highest(on_y2: bool) -> float:
        found = [v for _, t in lines if (t.get("yaxis") == "y2") == on_y2 for v in values(t) if v is not None]
        if not on_y2 and bars:
            columns = [[values(t)[k] or 0.0 for _, t in bars] for k in range(len(x))]
            found += [sum(c) if stacked else max(c) for c in columns]
        return max(found, default=0.0)

    axes, tops = {}, {}
    for on_y2 in (False, True) if has_y2 else (False,):
        fixed = (layout.get("yaxis2" if on_y2 else "yaxis") or {}).get("range")
        if fixed:  # a fixed range (% local: 0-100.5): its top, ticks within it
            tops[on_y2] = float(fixed[1])
            axes[on_y2] = [t for t in nice_ticks(tops[on_y2]) if t <= tops[on_y2]]
        else:
            axes[on_y2] = nice_ticks(highest(on_y2))
            tops[on_y2] = axes[on_y2][-1]

    def y_of(value: float, on_y2: bool) -> float:
        top_value = tops[on_y2] or 1.0
        return bottom - (bottom - top) * min(value, top_value) / top_value

    parts = []
    for tick in axes[False]:  # grid and left ticks
        y = y_of(tick, False)
        parts.append(format_html('<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>', left, _f(right), _f(y), _f(y)))
        parts.append(format_html('<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>', left - 6, _f(y + 4),
                                 number_text(tick)))
    if has_y2:
        for tick in axes[True]:
            parts.append(format_html('<text class="tick" x="{}" y="{}">{}</text>', right + 6,
                                     _f(y_of(tick, True) + 4), number_text(tick)))
    parts.append(format_html('<text class="axis-title" x="{}" y="{}">{}</text>', 4, top - 4, _axis_title(layout, "yaxis")))
    if has_y2:
        parts.append(format_html('<text class="axis-title" x="{}" y="{}" text-anchor="end">{}</text>', WIDTH - 4, top - 4,
                                 _axis_title(layout, "yaxis2")))
    every = max(1, math.ceil(len(x) / MAX_X_LABELS))
    for k, value in enumerate(x):
        if k % every == 0:
            parts.append(format_html('<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>',
                                     _f(left + band * (k + 0.5)), bottom + 16, _x_label(value)))

    width = band * 0.7 / (1 if stacked or not bars else len(bars))
    bar_values = {i: values(trace) for i, trace in bars}
    for k, value in enumerate(x):
        base = 0.0
        for position, (i, trace) in enumerate(bars):
            v = bar_values[i][k] if k < len(bar_values[i]) else None
            if not v:
                continue
            low = base if stacked else 0.0
            high = low + v
            base = high if stacked else base
            x0 = left + band * k + band * 0.15 + (0 if stacked else position * width)
            y0, y1 = y_of(high, False), y_of(low, False)
            parts.append(format_html(
                '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {} {}</title></rect>',
                _f(x0), _f(y0), _f(width), _f(max(0.5, y1 - y0)), _color(trace, i), _x_label(value), trace.get("name", ""),
                number_text(v)))
    drawn_lines, drawn_points = [], []
    for i, trace in lines:
        on_y2 = trace.get("yaxis") == "y2"
        color = _color(trace, i)
        run: list[str] = []
        for k, v in enumerate(values(trace)[: len(x)]):
            if v is None:  # a gap: the line breaks (plotly's connectgaps: false)
                _line_end(run, drawn_lines, color)
                run = []
                continue
            cx, cy = left + band * (k + 0.5), y_of(v, on_y2)
            run.append(f"{cx:.1f},{cy:.1f}")
            drawn_points.append(format_html(
                '<circle class="point" cx="{}" cy="{}" r="3" fill="{}"><title>{}: {} {}</title></circle>',
                _f(cx), _f(cy), color, _x_label(x[k]), trace.get("name", ""), number_text(v)))
        _line_end(run, drawn_lines, color)
    parts += drawn_lines + drawn_points  # points over their lines
    return _svg(bottom + 24, title, parts)


def _line_end(run: list[str], drawn: list[str], color: str) -> None:
    if len(run) > 1:
        drawn.append(format_html('<polyline class="line" points="{}" stroke="{}"/>', " ".join(run), color))


def _horizontal(traces: list[dict], layout: dict) -> SafeString:
    title = _title(layout)
    trace = traces[0]
    labels, values = list(trace.get("y") or []), [float(v or 0) for v in trace.get("x") or []]
    if not labels:
        return _empty(60, title)
    row, left, right = 26, 110, WIDTH - 80
    unit = "$" if _axis_title(layout, "xaxis") == "USD" else ""
    ticks = nice_ticks(max(values, default=0.0))
    parts = []
    for k, (label, value) in enumerate(zip(labels, values)):
        y = 8 + row * k
        length = (right - left) * value / (ticks[-1] or 1.0)
        shown = str(label) if len(str(label)) <= 16 else str(label)[:15] + "…"
        parts.append(format_html('<text class="tick" x="{}" y="{}" text-anchor="end">{}<title>{}</title></text>',
                                 left - 6, y + 15, shown, label))
        parts.append(format_html(
            '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}{}</title></rect>',
            left, y + 3, _f(max(0.5, length)), row - 8, _color(trace, 0), label, unit, f"{value:.4f}"))
        parts.append(format_html('<text class="tick" x="{}" y="{}">{}{}</text>', _f(left + length + 6), y + 15,
                                 unit, f"{value:.4f}"))
    return _svg(16 + row * len(labels), title, parts)
