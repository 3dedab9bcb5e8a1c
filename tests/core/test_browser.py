import pytest


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_login_page_then_navigation(page, user):
    page.goto("/dashboard/")
    assert "/accounts/login/" in page.url  # login required
    page.fill("input[name=username]", "analyst")
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text().startswith("Your username and password didn't match")

    page.fill("input[name=username]", "analyst")
    page.fill("input[name=password]", "analyst-password-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard/")
    nav = page.get_by_role("navigation", name="Main")
    for label in ("Samples", "Models", "Entity linking", "Dashboard"):
        assert nav.get_by_role("link", name=label).is_visible()
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_url("**/dashboard/")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    assert not [e for e in page.console_errors if "Content Security Policy" in e], page.console_errors


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_htmx_and_plotly_are_served_locally(page, logged_in_page, live_server):
    for path in ("/static/vendor/htmx-2.0.11.min.js", "/static/vendor/plotly-basic-3.7.0.min.js", "/static/js/app.js"):
        response = logged_in_page.request.get(live_server.url + path)
        assert response.status == 200, path
    logged_in_page.goto("/")
    assert logged_in_page.evaluate("typeof window.htmx") == "object"
