"""`make run` and servers show the app's own 404 and 500 pages, never Django's debug pages (the 404 one lists
every URL pattern, the 500 one the settings and a traceback): settings.local has DEBUG off unless DJANGO_DEBUG=1."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path

ROOT = Path(__file__).resolve().parents[2]


@login_not_required
def _boom(request):
    raise RuntimeError("a view that fails")


@login_not_required
def _fine(request):
    return HttpResponse("fine")


urlpatterns = [path("boom/", _boom), path("fine/", _fine)]


@pytest.mark.django_db
def test_a_missing_page_is_the_friendly_404_without_the_urlconf(client, user, settings):
    settings.DEBUG = False
    client.force_login(user)
    response = client.get("/no-such-page/<script>x</script>")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html and "Back to the start page" in html
    assert "<code>/no-such-page/%3Cscript%3Ex%3C/script%3E</code>" in html and "<script>x" not in html
    assert "URLconf" not in html and "apps.samplescope.urls" not in html and "admin/" not in html
    assert 'aria-label="Main"' in html  # the app's own layout, navigation included


@pytest.mark.django_db
def test_a_missing_page_is_the_friendly_404_for_an_anonymous_visitor_too(client, settings):
    settings.DEBUG = False
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_a_failing_view_is_the_friendly_500_without_a_traceback(client):
    client.raise_request_exception = False
    assert client.get("/fine/").status_code == 200
    response = client.get("/boom/")
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong" in html
    assert "RuntimeError" not in html and "a view that fails" not in html and "Traceback" not in html


def test_the_500_page_renders_with_no_request_context_and_no_database():
    """django.views.defaults.server_error renders it with an empty Context: no request, no context processors."""
    from django.template import Context, loader

    html = loader.get_template("500.html").template.render(Context())
    assert "Something went wrong" in html
    assert "{%" not in loader.get_template("500.html").template.source.replace("<!--", "")  # no tags to fail


def _local_debug(**env_extra) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_DEBUG"}
    env.update(DJANGO_SETTINGS_MODULE="apps.samplescope.settings.local", **env_extra)
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_make_run_settings_default_debug_off():
    assert _local_debug() == "False"


def test_make_run_settings_turn_debug_on_with_django_debug_1():
    assert _local_debug(DJANGO_DEBUG="1") == "True"


def test_make_run_static_storage_gives_a_name_missing_from_the_manifest_its_plain_url_with_debug_off(
        settings, tmp_path):
    """A file added since collectstatic, with DEBUG off (make run's default): its plain URL, not a 500."""
    from apps.samplescope.staticfiles import HashedCompressedManifestStaticFilesStorage

    settings.DEBUG = False
    storage = HashedCompressedManifestStaticFilesStorage(location=tmp_path, base_url="/static/")
    assert storage.url("vendor/added-since.js") == "/static/vendor/added-since.js"


@pytest.mark.django_db
def test_make_run_serves_static_files_with_debug_off(client, user, settings, tmp_path):
    """settings.local with its default DEBUG off: WhiteNoise serves the collected files (Django's own static view
    only runs with DEBUG on), pages link them, and a missing one is the friendly 404."""
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.core.management import call_command
    from django.test import Client

    from apps.samplescope.settings import local

    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = local.STORAGES
    settings.WHITENOISE_USE_FINDERS = local.WHITENOISE_USE_FINDERS
    settings.DEBUG = False  # local's default (test_make_run_settings_default_debug_off)
    call_command("collectstatic", "--noinput", verbosity=0)
    client = Client()  # a new handler: WhiteNoise reads its settings when the middleware starts
    client.force_login(user)
    page = client.get("/dashboard/")
    assert page.status_code == 200
    css = staticfiles_storage.url("css/app.css")
    assert css in page.content.decode()
    response = client.get(css)
    assert response.status_code == 200 and b"{" in b"".join(response.streaming_content)
    missing = client.get("/static/css/no-such-file.css")
    assert missing.status_code == 404 and "Page not found" in missing.content.decode()
