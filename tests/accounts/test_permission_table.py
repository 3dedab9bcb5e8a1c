"""Who may do what (issue 26): every page and API endpoint with an effect, against every kind of caller.

Callers: nobody signed in, a signed-in user with no role, each role alone (analyst, model manager, kb editor),
staff without a role, a superuser, a read-only API token (its user holds every role) and an inactive user
(holding every role, with a session and a token). The table says who is refused (403, a redirect to the login
page, 401 on the API) as well as who gets through.

Each case stays cheap: a caller who gets through is told so by a status the permission check alone cannot give
(400 for a malformed search, 404 for a model or knowledge base that does not exist, a redirect back from a
form with nothing in it) rather than by running a search, a model or an embedding. Where the effect is cheap
(cancelling a queued fallback, creating or revoking a token), the table checks it happened or did not.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from apps.accounts.models import ApiToken
from apps.accounts.services import api_token_create, user_roles_grant

pytestmark = pytest.mark.django_db

CALLERS = ("anonymous", "no_role", "analyst", "model_manager", "kb_editor", "staff", "superuser", "read_only_token",
           "inactive")
SIGNED_IN = ("no_role", "analyst", "model_manager", "kb_editor", "staff", "superuser")  # a live session
ANALYSTS = {"analyst", "superuser"}
MODEL_MANAGERS = {"model_manager", "superuser"}
KB_EDITORS = {"kb_editor", "superuser"}
STAFF = {"staff", "superuser"}
GROUPS = {"analyst": ("analyst",), "model_manager": ("model manager",), "kb_editor": ("kb editor",)}
LOGIN = "login"  # a redirect to /accounts/login/
ADMIN_LOGIN = "admin login"  # a redirect to /admin/login/
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


@dataclass
class World:
    """The objects the cases act on: a queued fallback and a token of someone else (`owner`), the caller's own
    token, the caller's bearer header for the API."""

    owner: object
    fallback: object
    owner_token: ApiToken
    own_token: ApiToken | None
    caller: object | None


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    url: Callable[[World], str]
    api: bool
    allowed: frozenset[str]  # the callers who get through
    expected: dict[str, int | str]  # caller -> status, LOGIN or ADMIN_LOGIN
    data: dict | None = None
    effect: Callable[[World, bool], None] | None = None  # asserts the effect happened (allowed) or not


def _url(url) -> Callable[[World], str]:
    return url if callable(url) else (lambda world: url)


def page(name, method, url, *, allowed, ok, data=None, refused=403, anonymous=LOGIN, effect=None, **overrides) -> Case:
    """A page: the session decides; a bearer token is no session (login redirect), nor is an inactive user's."""
    expected = {caller: (ok if caller in allowed else refused) for caller in SIGNED_IN}
    expected.update(anonymous=anonymous, read_only_token=anonymous, inactive=anonymous, **overrides)
    return Case(name, method, _url(url), False, frozenset(allowed), expected, data, effect)


def api(name, method, url, *, allowed, ok, data=None, effect=None) -> Case:
    """An API endpoint: 401 without a live user. `allowed` names read_only_token where its user (every role, not
    staff) may GET it; the token may do nothing else."""
    expected = {caller: (ok if caller in allowed else 403) for caller in SIGNED_IN}
    expected.update(anonymous=401, inactive=401,
                    read_only_token=ok if method == "GET" and "read_only_token" in allowed else 403)
    return Case(name, method, _url(url), True, frozenset(allowed), expected, data, effect)


EVERYONE = set(SIGNED_IN) | {"read_only_token"}


def _cancelled(world: World, allowed: bool) -> None:
    world.fallback.refresh_from_db()
    assert (world.fallback.state == "cancelled") == allowed, world.fallback.state


def _token_created(world: World, allowed: bool) -> None:
    made = ApiToken.objects.filter(name="from-the-table").exists()
    assert made == allowed


def _own_token_revoked(world: World, allowed: bool) -> None:
    token = world.own_token or world.owner_token
    token.refresh_from_db()
    assert (token.revoked_at is not None) == allowed


def _owner_token_kept(world: World, allowed: bool) -> None:
    world.owner_token.refresh_from_db()
    assert world.owner_token.revoked_at is None


ENTITY = {"id": "x_entity", "name": "X"}
MENTION = {"text": "A sentence about X.", "start": 12, "end": 13}

CASES = [
    # Search: the page, its export, its facets and the API (and so starting fallbacks) need the analyst role.
    page("search page", "get", "/samples/?text__contains=x&limit=abc", allowed=ANALYSTS, ok=400),
    page("search export", "get", "/samples/?text__contains=x&limit=abc&format=csv", allowed=ANALYSTS, ok=400),
    page("search facets", "get", "/samples/facets/?limit=abc", allowed=ANALYSTS, ok=200),
    page("search row page", "get", "/samples/nosuchtable/1/", allowed=ANALYSTS, ok=404),
    page("search row json", "get", "/samples/nosuchtable/1.json", allowed=ANALYSTS, ok=404),
    page("long search stored", "post", "/samples/", allowed=ANALYSTS, ok=302,
         data={"col": ["text"], "op": ["contains"], "val": ["x" * 1000]}),
    api("search api", "GET", "/api/search?text__contains=x&limit=abc", allowed=ANALYSTS | {"read_only_token"},
        ok=400),
    page("score search results", "get", "/models/score-search/?model=no-such-model", allowed=ANALYSTS, ok=404),
    # A fallback: its creator (`owner` here) and staff see and stop it; nobody else, whatever their roles.
    page("fallback page", "get", lambda w: f"/fallbacks/{w.fallback.pk}/", allowed=STAFF, ok=200),
    api("fallback api", "GET", lambda w: f"/api/fallbacks/{w.fallback.pk}", allowed=STAFF, ok=200),
    page("fallback cancel", "post", lambda w: f"/fallbacks/{w.fallback.pk}/cancel/", allowed=STAFF, ok=302,
         effect=_cancelled),
    api("fallback cancel api", "POST", lambda w: f"/api/fallbacks/{w.fallback.pk}/cancel", allowed=STAFF, ok=200,
        effect=_cancelled),
    # Models: registering and moving aliases need the model manager role; predicting needs none.
    page("model register", "post", "/models/register/", allowed=MODEL_MANAGERS, ok=302, data={}),
    page("model alias move", "post", "/models/no-such-model/alias/", allowed=MODEL_MANAGERS, ok=302, data={}),
    api("model predict api", "POST", "/api/models/no-such-model/predict", allowed=set(SIGNED_IN), ok=404,
        data={"inputs": ["x"]}),
    # Batch scoring (CSV files scored by a model) is the analyst's.
    page("batch page", "get", "/models/no-such-model/batch/", allowed=ANALYSTS, ok=404),
    page("batch upload", "post", "/models/no-such-model/batch/", allowed=ANALYSTS, ok=404, data={}),
    page("batch preview", "post", "/models/no-such-model/batch/preview/", allowed=ANALYSTS, ok=404, data={}),
    page("batch job", "get", "/models/batch/999999/", allowed=ANALYSTS, ok=404),
    page("batch download", "get", "/models/batch/999999/download/", allowed=ANALYSTS, ok=404),
    # The knowledge base: reading and linking need no role, every edit the kb editor's.
    page("kb add entity", "post", "/linking/kb/no-such-kb/", allowed=KB_EDITORS, ok=404, data=ENTITY),
    page("kb delete entity", "post", "/linking/kb/no-such-kb/entities/x/delete/", allowed=KB_EDITORS, ok=404),
    page("kb add mention", "post", "/linking/kb/no-such-kb/entities/x/mentions/", allowed=KB_EDITORS, ok=404,
         data={"sentence": "A [X] here."}),
    page("kb add alias", "post", "/linking/kb/no-such-kb/entities/x/aliases/", allowed=KB_EDITORS, ok=404,
         data={"alias": "Ex"}),
    page("kb correct a mention", "post", "/linking/kb/no-such-kb/correct/", allowed=KB_EDITORS, ok=404,
         data={"text": "X is here.", "start": 0, "end": 1, "key": "x"}),
    page("kb entities page", "get", "/linking/kb/no-such-kb/", allowed=set(SIGNED_IN), ok=404),
    api("kb add entity api", "POST", "/api/kb/no-such-kb/entities", allowed=KB_EDITORS, ok=404, data=ENTITY),
    api("kb delete entity api", "DELETE", "/api/kb/no-such-kb/entities/x", allowed=KB_EDITORS, ok=404),
    api("kb add mention api", "POST", "/api/kb/no-such-kb/entities/x/mentions", allowed=KB_EDITORS, ok=404,
        data=MENTION),
    api("kb entities api", "GET", "/api/kb/no-such-kb/entities", allowed=EVERYONE,
        ok=404),
    api("link api", "POST", "/api/link", allowed=set(SIGNED_IN), ok=404, data={"text": "X", "model": "no-such-kb"}),
    # Tokens: everyone signed in makes and revokes their own; nobody revokes someone else's.
    page("token create", "post", "/accounts/tokens/", allowed=set(SIGNED_IN), ok=200, data={"name": "from-the-table"},
         effect=_token_created),
    page("token revoke own", "post", lambda w: f"/accounts/tokens/{(w.own_token or w.owner_token).pk}/revoke",
         allowed=set(SIGNED_IN), ok=302, effect=_own_token_revoked),
    page("token revoke another's", "post", lambda w: f"/accounts/tokens/{w.owner_token.pk}/revoke", allowed=set(),
         ok=302, refused=404, effect=_owner_token_kept),
    api("who am i", "GET", "/api/me", allowed=EVERYONE, ok=200),
    # The dashboard: everyone's own; everyone's audit and spend for staff only (checked below).
    page("dashboard", "get", "/dashboard/", allowed=set(SIGNED_IN), ok=200),
    # The admin: staff only (others signed in go to its login page), and a staff user without model
    # permissions gets 403 on a model's page.
    page("admin tokens", "get", "/admin/accounts/apitoken/", allowed={"superuser"}, ok=200, refused=ADMIN_LOGIN,
         staff=403),
]


@pytest.fixture
def world_for(django_user_model, client):
    from apps.warehouse.models import Fallback

    def build(caller_kind: str) -> World:
        owner = django_user_model.objects.create_user(username="owner", is_staff=False)
        user_roles_grant(user=owner)
        fallback = Fallback.objects.create(user=owner, table="samples", query={}, fingerprint="f" * 64, limit=10,
                                           backend="local", state="queued", inflight_key="f" * 64)
        owner_token, _ = api_token_create(user=owner, name="owner's")
        caller, own_token, headers = None, None, {}
        if caller_kind == "read_only_token":
            robot = django_user_model.objects.create_user(username="robot")
            user_roles_grant(user=robot)
            _, raw = api_token_create(user=robot, name="ro", read_only=True)
            headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
        elif caller_kind != "anonymous":
            if caller_kind == "superuser":
                caller = django_user_model.objects.create_superuser(username="root", password=None)
            else:
                caller = django_user_model.objects.create_user(username=caller_kind, is_staff=caller_kind == "staff")
            if caller_kind == "inactive":
                user_roles_grant(user=caller)
            elif caller_kind in GROUPS:
                user_roles_grant(user=caller, group_names=GROUPS[caller_kind])
            own_token, raw = api_token_create(user=caller, name="own")
            client.force_login(caller, backend=MODEL_BACKEND)
            if caller_kind == "inactive":
                caller.is_active = False
                caller.save(update_fields=["is_active"])
                headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
        client.defaults.update(headers)
        return World(owner=owner, fallback=fallback, owner_token=owner_token, own_token=own_token, caller=caller)

    return build


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=[c.name.replace(" ", "-") for c in CASES])
def test_who_may_do_what(client, world_for, case, caller):
    world = world_for(caller)
    url = case.url(world)
    if case.api:
        response = client.generic(case.method, url, data=_json(case.data), content_type="application/json")
    else:
        response = getattr(client, case.method)(url, case.data or {})
    expected = case.expected[caller]
    if expected in (LOGIN, ADMIN_LOGIN):
        prefix = "/accounts/login/" if expected == LOGIN else "/admin/login/"
        assert response.status_code == 302 and response["Location"].startswith(prefix), \
            (response.status_code, response.get("Location"))
    else:
        assert response.status_code == expected, response.content[:300]
        assert not response.get("Location", "").startswith(("/accounts/login/", "/admin/login/"))
    if expected == 403 and case.api:
        detail = response.json()["detail"]
        assert ("read-only" in detail) if caller == "read_only_token" and case.method != "GET" else detail
    if case.effect is not None:
        case.effect(world, caller in case.allowed)
    if case.name == "dashboard" and expected == 200:
        assert response.context["sees_everyone"] == (caller in STAFF)


def _json(data: dict | None) -> str:
    import json

    return json.dumps(data) if data is not None else ""
