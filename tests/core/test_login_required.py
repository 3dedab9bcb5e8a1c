"""Every page redirects an anonymous visitor to the login page; every API call without a
token gets 401. The URLs are read from the resolver, so new views are covered automatically."""
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

# Public on purpose: the login page itself, and the health check that monitors call.
PUBLIC = {"login", "logout", "healthz"}
SAMPLE_ARGS = {"int": "1", "str": "x", "slug": "x", "path": "x", "uuid": str(uuid.uuid4())}


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _concrete(route: str) -> str:
    import re

    route = route.lstrip("^").rstrip("$").replace("\\Z", "")

    def sub(match):
        converter = match.group(1) or "str"
        return SAMPLE_ARGS.get(converter, "1")

    return "/" + re.sub(r"<(?:(\w+):)?\w+>", sub, route)


def _all_routes():
    routes = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if pattern.name in PUBLIC or route.startswith("admin/") or "(?P<" in route:
            continue
        routes.append((_concrete(route), pattern.name))
    return routes


ROUTES = _all_routes()
DOCS = {"openapi-json", "openapi-view"}  # the API's docs are pages for people: login redirect


def _is_api(url: str, name: str) -> bool:
    return url.startswith("/api/") and name not in DOCS


PAGE_ROUTES = [r for r in ROUTES if not _is_api(*r)]
API_ROUTES = sorted({url for url, name in ROUTES if _is_api(url, name) and url != "/api/"})


def test_the_app_has_pages_and_api_routes():
    assert len(PAGE_ROUTES) >= 5
    assert "/api/me" in API_ROUTES


@pytest.mark.django_db
@pytest.mark.parametrize("url,name", PAGE_ROUTES)
def test_anonymous_page_redirects_to_login(client, url, name):
    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code == 302, f"{method.__name__.upper()} {url} ({name}) answered {response.status_code}"
        # Staff-only pages (staff_member_required) send people to the admin's login instead.
        assert response["Location"].startswith(("/accounts/login/", "/admin/login/")), response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", API_ROUTES)
def test_api_without_token_is_401(client, url):
    statuses = {client.generic(method, url).status_code for method in ("GET", "POST", "DELETE")}
    # 405 where the route does not take that method; never a 2xx, never a redirect.
    assert 401 in statuses and statuses <= {401, 405}, f"{url}: {statuses}"


@pytest.mark.django_db
def test_api_with_a_wrong_token_is_401(client):
    response = client.get("/api/me", HTTP_AUTHORIZATION="Bearer ssk_not-a-real-token")
    assert response.status_code == 401


@pytest.mark.django_db
def test_admin_needs_staff_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_api_docs_need_login(client):
    assert client.get("/api/docs").status_code == 302
