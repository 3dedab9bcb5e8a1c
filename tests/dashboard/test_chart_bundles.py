"""The vendored plotly.js bundles (static/vendor/bundles.json): each is the file it says, registers
the trace types it lists, and is loaded by some page (the model pages); the dashboard draws SVG itself."""
from __future__ import annotations

import hashlib
import re

import pytest

from tests.chart_bundles import BUNDLES, ROOT, VENDOR


def test_every_listed_bundle_is_vendored_with_its_checksum_and_version():
    for name, bundle in BUNDLES.items():
        path = ROOT / "static" / name
        assert path.is_file(), name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == bundle["sha256"], name
        version = bundle["npm"].rsplit("@", 1)[1]
        assert f"v{version}" in path.read_bytes()[:200].decode(), f"{name} is not plotly.js {version}"
        assert f"{bundle['npm'].split('@')[0]}@{version}" in (VENDOR / "README.txt").read_text(), \
            f"static/vendor/README.txt does not name {bundle['npm']}"


def test_no_vendored_script_is_left_unused():
    templates = "\n".join(p.read_text() for p in (ROOT / "templates").rglob("*.html"))
    used = set(re.findall(r"static '(vendor/[^']+)'", templates))
    vendored = {f"vendor/{p.name}" for p in VENDOR.glob("*.js")}
    assert vendored == used, f"unused: {sorted(vendored - used)}, missing: {sorted(used - vendored)}"


@pytest.mark.django_db
def test_the_dashboard_draws_its_charts_without_a_chart_library(client, user):
    client.force_login(user)
    html = client.get("/dashboard/").content.decode()
    assert "plotly" not in html and "data-chart=" not in html and html.count('<figure class="svg-chart">') == 5


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_each_bundle_registers_the_trace_types_bundles_json_lists(page, live_server):
    from django.templatetags.static import static

    for name, bundle in BUNDLES.items():
        page.goto("/accounts/login/")  # any page of ours: the CSP lets it load our static scripts
        page.add_script_tag(url=static(name))
        registered = page.evaluate("() => [Plotly.version, Object.keys(Plotly.PlotSchema.get().traces).sort()]")
        assert registered == [bundle["npm"].rsplit("@", 1)[1], sorted(bundle["traces"])], name
    assert page.console_errors == []


@pytest.mark.django_db
def test_make_run_serves_plotly_compressed_under_a_hashed_name_cached_for_years(client, user, settings, tmp_path):
    """settings.local (DEBUG on, files collected): pages link hashed names, which WhiteNoise sends gzipped
    and immutable; Django's own manifest storage would link the plain names, sent with max-age=0."""
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.core.management import call_command
    from django.test import Client

    from apps.samplescope.settings import local

    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = local.STORAGES
    settings.WHITENOISE_USE_FINDERS = local.WHITENOISE_USE_FINDERS
    call_command("collectstatic", "--noinput", verbosity=0)
    settings.DEBUG = True
    client = Client()  # a new handler: WhiteNoise reads its settings when the middleware starts
    client.force_login(user)
    html = client.get("/dashboard/").content.decode()
    assert re.search(r'src="/static/vendor/htmx-2\.0\.11\.min\.[0-9a-f]{12}\.js"', html), "pages link plain names"
    src = staticfiles_storage.url("vendor/plotly-basic-3.7.0.min.js")  # as the model pages link it
    assert re.fullmatch(r"/static/vendor/plotly-basic-3\.7\.0\.min\.[0-9a-f]{12}\.js", src), src
    response = client.get(src, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert response.status_code == 200
    assert response["Content-Encoding"] in ("gzip", "br")
    assert "immutable" in response["Cache-Control"] and "max-age=315360000" in response["Cache-Control"]
    assert int(response["Content-Length"]) < 500_000
    response.close()
    assert staticfiles_storage.url("vendor/added-since.js") == "/static/vendor/added-since.js"  # not an error page
