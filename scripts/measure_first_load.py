#!/usr/bin/env python
"""First load of the chart pages in a real Chromium, cold cache: how long until the HTML is parsed
(DOMContentLoaded), until the load event, until every chart is drawn, and how many bytes came over.

Starts no server: point it at one that is already running (`make run`, or gunicorn as in the
Procfile with the same settings), with a login. Every run opens a new browser context, so nothing
is cached (HTTP cache, cookies other than the session one); the median of --runs runs is reported.

    .venv/bin/python scripts/measure_first_load.py --base-url http://127.0.0.1:8000 \
        --username demo --password samplescope-demo --runs 5 > first-load.json

`--cookie sessionid=...` instead of a username and password reuses a session. Pages default to the
dashboard, a model's demo page with a prediction (bar chart), the compare page (two bar charts)
and the score-search page (its confusion matrix is an HTML table: no plotly); --page PATH (repeatable) measures others.

"Charts drawn" is the first animation frame at which every [data-chart] element holds Plotly's
svg.main-svg, measured in the page (performance.now(), like the navigation timings). Today app.js
draws in its DOMContentLoaded handler, so the three end close together; were drawing moved later,
the load event would no longer cover it, hence both are reported. Each run then reloads the page in
the same context ("warm"), which shows what the cache headers save.

Several servers (--base-url before=URL --base-url after=URL) are measured run by run in turn, so a
busy machine weighs on each alike. Needs the demo models (tfidf-logreg v1 and v2) for the default pages.

Uses Debian's Chromium (/usr/bin/chromium), never a downloaded one.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.parse

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
EXAMPLE = "The team won the match and the league title"
DEFAULT_PAGES = {
    "dashboard": "/dashboard/",
    "model detail": "/models/tfidf-logreg/?" + urllib.parse.urlencode({"text": EXAMPLE}),
    "compare": "/models/tfidf-logreg/compare/?" + urllib.parse.urlencode(
        {"a": "tfidf-logreg@1", "b": "tfidf-logreg@2", "text": EXAMPLE}),
    "score search (confusion table)": "/models/score-search/?" + urllib.parse.urlencode({"model": "tfidf-logreg"}),
}

# Injected before any page script (not subject to the page's CSP): records when every chart is drawn.
WATCH_CHARTS = """
(() => {
  window.__chartsDrawnAt = null;
  const check = () => {
    const charts = document.querySelectorAll("[data-chart]");
    if (charts.length && Array.from(charts).every(c => c.querySelector("svg.main-svg"))) {
      window.__chartsDrawnAt = performance.now();
      return;
    }
    requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})();
"""

COLLECT = """
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource");
  const paint = Object.fromEntries(performance.getEntriesByType("paint").map(p => [p.name, p.startTime]));
  return {
    dom_content_loaded_start_ms: nav.domContentLoadedEventStart,
    dom_content_loaded_ms: nav.domContentLoadedEventEnd,
    load_ms: nav.loadEventEnd,
    charts_drawn_ms: window.__chartsDrawnAt,
    first_contentful_paint_ms: paint["first-contentful-paint"] ?? null,
    html_response_end_ms: nav.responseEnd,
    charts: document.querySelectorAll("[data-chart]").length,
    transferred_bytes: nav.transferSize + resources.reduce((s, r) => s + r.transferSize, 0),
    plotly_response_end_ms: Math.max(0, ...resources.filter(r => /plotly/.test(r.name)).map(r => r.responseEnd)),
    resources: [{name: nav.name, transfer: nav.transferSize, encoded: nav.encodedBodySize,
                 decoded: nav.decodedBodySize, response_end_ms: Math.round(nav.responseEnd)}].concat(resources.map(r => ({
      name: r.name, transfer: r.transferSize, encoded: r.encodedBodySize, decoded: r.decodedBodySize,
      response_end_ms: Math.round(r.responseEnd)}))),
  };
}
"""


def login_cookies(browser, base_url: str, username: str, password: str) -> list[dict]:
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)
    cookies = [c for c in context.cookies() if c["name"] == "sessionid"]
    context.close()
    if not cookies:
        sys.exit("login failed: no sessionid cookie")
    return cookies


def _load(page, path: str, timeout_ms: int, errors: list[str]) -> dict:
    response = page.goto(path, wait_until="load", timeout=timeout_ms)
    if response is None or response.status != 200 or "/accounts/login" in page.url:
        raise SystemExit(f"{path}: status {response and response.status}, at {page.url}")
    if page.locator("[data-chart]").count():
        # The page's CSP forbids eval, which wait_for_function needs: poll what the init script records.
        deadline = time.monotonic() + timeout_ms / 1000
        while page.evaluate("() => window.__chartsDrawnAt") is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"{path}: charts not drawn within {timeout_ms} ms; errors: {errors}")
            page.wait_for_timeout(20)
    return page.evaluate(COLLECT)


def measure_once(browser, base_url: str, path: str, cookies: list[dict], timeout_ms: int) -> dict:
    """A cold load in a new context (empty cache), then the same page again in that context (warm)."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.add_cookies(cookies)
    context.add_init_script(WATCH_CHARTS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    scripts: list[dict] = []

    def on_response(response):
        if response.request.resource_type == "script" and len(scripts) < 10:
            headers = response.all_headers()
            scripts.append({"url": response.url, "status": response.status,
                            "content-encoding": headers.get("content-encoding"),
                            "cache-control": headers.get("cache-control"),
                            "accept-encoding sent": response.request.all_headers().get("accept-encoding")})

    page.on("response", on_response)
    result = _load(page, path, timeout_ms, errors)
    page.remove_listener("response", on_response)
    warm = _load(page, path, timeout_ms, errors)
    result["warm"] = {k: warm[k] for k in ("dom_content_loaded_ms", "load_ms", "charts_drawn_ms", "transferred_bytes")}
    result["scripts"] = scripts
    result["errors"] = errors
    context.close()
    return result


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


KEYS = ("dom_content_loaded_ms", "load_ms", "charts_drawn_ms", "first_contentful_paint_ms", "html_response_end_ms",
        "plotly_response_end_ms", "dom_content_loaded_start_ms", "transferred_bytes")


def summary(path: str, runs: list[dict]) -> dict:
    first = runs[0]
    return {
        "path": path,
        "charts": first["charts"],
        "median": {key: median([r[key] for r in runs]) for key in KEYS},
        "median_warm_reload": {key: median([r["warm"][key] for r in runs]) for key in runs[0]["warm"]},
        "runs": [{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()
                  if k not in ("resources", "scripts", "errors", "warm")} for r in runs],
        "resources": first["resources"],
        "scripts": first["scripts"],
        "errors": sorted({e for r in runs for e in r["errors"]}),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, action="append", metavar="[NAME=]URL",
                        help="the server; repeat it (NAME=URL) to measure several, runs interleaved")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--cookie", help="sessionid=VALUE, instead of --username/--password (one server only)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--page", action="append", metavar="PATH", help="a path to measure (repeatable)")
    parser.add_argument("--timeout-ms", type=int, default=30_000)
    parser.add_argument("--label", default="", help="free text copied into the JSON")
    args = parser.parse_args(argv)
    pages = {p: p for p in args.page} if args.page else DEFAULT_PAGES
    servers = {}
    for item in args.base_url:
        name, sep, url = item.partition("=")
        servers[name if sep else item] = url if sep else item
    if args.cookie and len(servers) > 1:
        parser.error("--cookie works with one --base-url only")

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        cookies = {}
        for name, url in servers.items():
            if args.cookie:
                cookie_name, _, value = args.cookie.partition("=")
                host = urllib.parse.urlparse(url).hostname
                cookies[name] = [{"name": cookie_name, "value": value, "domain": host, "path": "/"}]
            else:
                if not (args.username and args.password):
                    parser.error("give --cookie or --username and --password")
                cookies[name] = login_cookies(browser, url, args.username, args.password)
        report = {"label": args.label, "runs": args.runs, "chromium": browser.version,
                  "servers": {name: {"base_url": url, "pages": {}} for name, url in servers.items()}}
        for title, path in pages.items():
            runs = {name: [] for name in servers}
            for _ in range(args.runs):
                for name, url in servers.items():  # interleaved, so every server sees the same load
                    runs[name].append(measure_once(browser, url, path, cookies[name], args.timeout_ms))
            for name in servers:
                report["servers"][name]["pages"][title] = summary(path, runs[name])
        browser.close()
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
