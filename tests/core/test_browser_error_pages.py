"""Issue 25, item 10 in a real Chromium at 1366 and 390 px: a missing page and a failing view show the app's own
pages (no URLconf, no traceback), inside the app's layout, readable without sideways scrolling, with a way back."""
import pytest
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from playwright.sync_api import expect

WIDTHS = [1366, 390]


@login_not_required
def _boom(request):
    raise RuntimeError("a view that fails")


urlpatterns = [path("boom/", _boom), path("", include("apps.samplescope.urls"))]


def _sized(page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900 if width == 1366 else 844})


def _no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_missing_page_is_the_apps_own_at_both_widths(logged_in_page, width):
    page = logged_in_page
    _sized(page, width)
    response = page.goto("/no-such-page/with/a/rather/long/path/that/might/push/the/layout/sideways")
    assert response.status == 404
    expect(page.locator("h1")).to_contain_text("Page not found")
    assert "URLconf" not in page.content()
    _no_sideways_scroll(page)
    page.get_by_role("link", name="Back to the start page").click()
    page.wait_for_url(lambda url: "no-such-page" not in url)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_failing_view_is_the_apps_own_500_at_both_widths(page, settings, width):
    settings.ROOT_URLCONF = __name__
    settings.DEBUG = False
    _sized(page, width)
    response = page.goto("/boom/")
    assert response.status == 500
    expect(page.locator("body")).to_contain_text("Something went wrong")
    html = page.content()
    assert "RuntimeError" not in html and "Traceback" not in html and "a view that fails" not in html
    _no_sideways_scroll(page)
