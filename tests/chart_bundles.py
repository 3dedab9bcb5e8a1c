"""Which plotly.js bundle a chart page loads, and whether it draws every chart on that page.

static/vendor/bundles.json lists each vendored plotly bundle's trace types (as the bundle itself
reports them: tests/dashboard/test_chart_bundles.py checks that in Chromium). A page that loads the
basic bundle but embeds a heatmap would draw nothing and log an error, so the tests of every chart
page call chart_page_bundle() on its HTML."""
from __future__ import annotations

import json
import re
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "static" / "vendor"
BUNDLES: dict[str, dict] = json.loads((VENDOR / "bundles.json").read_text())


def page_scripts(html: str) -> list[str]:
    """The static names of the page's <script src> elements."""
    names = []
    for src in re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', html):
        assert src.startswith(settings.STATIC_URL), f"{src}: only our own static files may be scripts"
        names.append(src.split(settings.STATIC_URL, 1)[1])
    return names


def page_trace_types(html: str) -> set[str]:
    """The trace types of every chart the page embeds (plotly's default type is scatter)."""
    ids = re.findall(r'data-chart="([^"]+)"', html)
    assert ids, "the page has no chart"
    types = set()
    for chart_id in ids:
        match = re.search(rf'<script id="{re.escape(chart_id)}" type="application/json">(.*?)</script>', html, re.DOTALL)
        assert match, f"no JSON for chart {chart_id}"
        spec = json.loads(match.group(1))
        assert spec.get("data"), f"chart {chart_id} has no traces"
        types |= {trace.get("type", "scatter") for trace in spec["data"]}
    return types


def chart_page_bundle(html: str) -> str:
    """Asserts that every script the page loads is a static file that exists, that it loads exactly one
    plotly bundle, and that this bundle supports every trace type of the page's charts. Returns the bundle."""
    scripts = page_scripts(html)
    for name in scripts:
        assert finders.find(name), f"{name}: the page loads a static file that does not exist"
    bundles = [name for name in scripts if name in BUNDLES]
    assert len(bundles) == 1, f"expected one plotly bundle (one of {sorted(BUNDLES)}), got {scripts}"
    bundle = bundles[0]
    missing = page_trace_types(html) - set(BUNDLES[bundle]["traces"])
    assert not missing, f"{bundle} cannot draw {sorted(missing)} traces"
    return bundle
