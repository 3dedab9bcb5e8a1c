"""The dashboard's server-drawn charts (apps/dashboard/svg.py): axes, stacking, gaps, escaping."""
from __future__ import annotations

import re

from apps.dashboard import charts, svg


def _numbers(pattern: str, html: str) -> list[float]:
    return [float(v) for v in re.findall(pattern, html)]


def test_nice_ticks_cover_the_highest_value_in_round_steps():
    assert svg.nice_ticks(7) == [0, 2, 4, 6, 8]
    assert svg.nice_ticks(100) == [0, 25, 50, 75, 100]
    assert svg.nice_ticks(0.013) == [0, 0.005, 0.01, 0.015]
    assert svg.nice_ticks(0) == [0, 1]  # an empty period still gets an axis
    assert svg.nice_ticks(1234)[-1] >= 1234


def test_stacked_bars_sit_on_each_other_and_lines_break_at_missing_values():
    spec = {"data": [
        {"type": "bar", "name": "local", "x": ["2026-11-28", "2026-11-29", "2026-11-30"], "y": [3, 5, 2]},
        {"type": "bar", "name": "fallback", "x": ["2026-11-28", "2026-11-29", "2026-11-30"], "y": [1, 2, 0]},
        {"type": "scatter", "name": "share", "x": ["2026-11-28", "2026-11-29", "2026-11-30"], "y": [50, None, 70],
         "yaxis": "y2"}],
        "layout": {"title": {"text": "Answered"}, "barmode": "stack", "yaxis2": {"range": [0, 100.5]}}}
    html = svg.chart_svg(spec)
    bars = re.findall(r'<rect class="bar" x="([\d.]+)" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"', html)
    (x1, y1, h1), (x2, y2, h2) = bars[:2]  # Nov 28: local 3, then fallback 1 on top of it
    assert x1 == x2 and abs(float(y2) + float(h2) - float(y1)) < 0.2 and abs(float(h1) / float(h2) - 3) < 0.05
    assert "<title>Nov 28: fallback 1</title>" in html and "<title>Nov 29: local 5</title>" in html
    # the share has a gap on Nov 29: two points, no line joining them across the gap
    assert html.count('class="point"') == 2 and 'class="line"' not in html
    assert html.count("<li>") == 3  # a legend entry per series


def test_a_fixed_axis_range_keeps_its_top():
    spec = {"data": [{"type": "scatter", "name": "% local", "x": ["2026-11-29"], "y": [100.5], "yaxis": "y2"},
                     {"type": "bar", "name": "n", "x": ["2026-11-29"], "y": [4]}],
            "layout": {"yaxis2": {"range": [0, 100.5]}}}
    html = svg.chart_svg(spec)
    point_y = _numbers(r'class="point" cx="[\d.]+" cy="([\d.]+)"', html)[0]
    bar_y = _numbers(r'class="bar" x="[\d.]+" y="([\d.]+)"', html)[0]
    assert abs(point_y - bar_y) < 0.2  # 100.5 of 100.5 and 4 of the left axis' 4: both reach the top
    assert ">150<" not in html and ">100<" in html


def test_user_names_are_escaped_and_amounts_shown_in_dollars():
    html = svg.chart_svg(charts.spend_by_user_chart([{"username": "<script>alert(1)</script>", "cost_usd": 0.01},
                                                     {"username": "bob", "cost_usd": 0.5}]))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<title>bob: $0.5000</title>" in html
    widths = _numbers(r'<rect class="bar" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', html)
    assert abs(widths[1] / widths[0] - 50) < 1


def test_no_data_says_so():
    assert "No data in this period" in svg.chart_svg(charts.spend_by_user_chart([]))
    assert "No data in this period" in svg.chart_svg({"data": [], "layout": {"title": {"text": "x"}}})
