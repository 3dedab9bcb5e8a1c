"""Issue 13: roles as Django groups and permissions; read-only API tokens; who sees whose audit and spend."""
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from apps.accounts.models import ApiToken
from apps.accounts.services import api_token_create
from apps.audit.services import audit_record

pytestmark = pytest.mark.django_db


def test_the_data_migration_created_the_role_groups_with_their_permissions():
    perms = {g.name: sorted(p.codename for p in g.permissions.all()) for g in Group.objects.all()}
    assert perms["analyst"] == ["search_samples"]
    assert perms["model manager"] == ["manage_models"]
    assert perms["kb editor"] == ["edit_kb"]


def test_search_page_and_api_are_403_without_the_analyst_role(client, plain_user):
    client.force_login(plain_user)
    assert client.get("/samples/", {"text__contains": "x"}).status_code == 403
    assert client.get("/samples/", {"text__contains": "x", "format": "csv"}).status_code == 403
    response = client.get("/api/search", {"text__contains": "x"})
    assert response.status_code == 403 and "analyst" in response.json()["detail"]


def test_a_read_only_token_may_only_get(client, user):
    _, raw = api_token_create(user=user, name="ro", read_only=True)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    assert client.get("/api/me", **auth).status_code == 200
    for method in ("post", "delete", "put", "patch"):
        response = getattr(client, method)("/api/models/anything/predict", {"inputs": ["x"]},
                                           content_type="application/json", **auth)
        assert response.status_code in (403, 405), method
    response = client.post("/api/models/anything/predict", {"inputs": ["x"]}, content_type="application/json", **auth)
    assert response.status_code == 403 and "read-only" in response.json()["detail"]
    assert client.delete("/api/kb/any/entities/x", **auth).status_code == 403
    # The same user's read-write token gets past authentication (404: no such model).
    _, rw = api_token_create(user=user, name="rw")
    response = client.post("/api/models/anything/predict", {"inputs": ["x"]}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {rw}")
    assert response.status_code == 404


def test_create_api_token_read_only_flag(capsys):
    call_command("create_api_token", "robot", "--read-only", stdout=io.StringIO(), stderr=io.StringIO())
    assert ApiToken.objects.get(user__username="robot").read_only
    call_command("create_api_token", "robot2", stdout=io.StringIO(), stderr=io.StringIO())
    assert not ApiToken.objects.get(user__username="robot2").read_only


def test_only_staff_see_everyones_audit_events_and_spend(client, plain_user, user, staff_user):
    from apps.warehouse.models import Fallback

    audit_record(user=user, action="search", target="secret-of-analyst", cost_usd=Decimal("1.5"))
    audit_record(user=plain_user, action="search", target="mine-own-search", cost_usd=Decimal("0.25"))
    Fallback.objects.create(user=user, user_name=user.username, table="samples", query={}, fingerprint="f" * 64,
                            limit=10, backend="local", state="succeeded", cost_usd=Decimal("3"))

    client.force_login(plain_user)
    response = client.get("/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "secret-of-analyst" not in html and "mine-own-search" in html
    assert [r["username"] for r in response.context["audit_spend"]] == ["nobody"]
    assert response.context["spend"] == []
    assert {a.event.user for a in response.context["activity"]} == {plain_user}

    client.force_login(staff_user)
    response = client.get("/dashboard/")
    html = response.content.decode()
    assert "secret-of-analyst" in html and "mine-own-search" in html
    assert {r["username"] for r in response.context["audit_spend"]} == {"analyst", "nobody"}
    assert [r["username"] for r in response.context["spend"]] == ["analyst"]


def test_the_demo_user_holds_every_role(settings):
    from django.contrib.auth import get_user_model

    from apps.accounts.demo import ensure_demo_user

    ensure_demo_user(stdout=io.StringIO())
    demo = get_user_model().objects.get(username=settings.DEMO_USERNAME)
    assert {g.name for g in demo.groups.all()} == {"analyst", "model manager", "kb editor"}
    assert demo.has_perms(["accounts.search_samples", "accounts.manage_models", "accounts.edit_kb"])


def test_scoring_search_results_is_403_without_the_analyst_role(client, plain_user):
    client.force_login(plain_user)
    assert client.get("/models/score-search/", {"model": "x", "text__contains": "a"}).status_code == 403


def test_user_has_role_agrees_with_has_perm_in_one_query(plain_user, django_assert_num_queries):
    """user_has_role answers as Django's has_perm would — a permission of the user's own or of a group,
    none for an inactive user, all for a superuser — with one query, kept on the user object."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from apps.accounts.roles import EDIT_KB, MANAGE_MODELS, SEARCH, user_has_role
    from apps.accounts.services import user_roles_grant

    own = Permission.objects.get(codename="edit_kb")
    plain_user.user_permissions.add(own)  # directly, not through a role group
    user_roles_grant(user=plain_user, group_names=("analyst",))
    user = get_user_model().objects.get(pk=plain_user.pk)
    with django_assert_num_queries(1):
        answers = {p: user_has_role(user=user, permission=p) for p in (SEARCH, MANAGE_MODELS, EDIT_KB)}
    assert answers == {SEARCH: True, MANAGE_MODELS: False, EDIT_KB: True}
    assert answers == {p: get_user_model().objects.get(pk=user.pk).has_perm(p) for p in answers}
    user.is_active = False
    assert not user_has_role(user=user, permission=SEARCH)
    boss = get_user_model()(username="root", is_superuser=True, is_active=True)
    assert user_has_role(user=boss, permission=MANAGE_MODELS)


def test_staff_without_a_role_hold_no_role(client, django_user_model):
    """Staff see everyone's audit and spend, but is_staff grants no role: only superusers hold every one.
    user_has_role (the API, the KB page's POST, the model list's register form) and has_perm (the pages'
    role_required) both refuse a staff user who is in no role group."""
    from apps.accounts.roles import EDIT_KB, MANAGE_MODELS, SEARCH, user_has_role

    staff = django_user_model.objects.create_user(username="staffonly", is_staff=True)
    assert not any(user_has_role(user=staff, permission=p) for p in (SEARCH, MANAGE_MODELS, EDIT_KB))
    assert not staff.has_perms([SEARCH]) and not staff.has_perms([MANAGE_MODELS]) and not staff.has_perms([EDIT_KB])
    _, raw = api_token_create(user=staff, name="staff")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    response = client.get("/api/search", {"text__contains": "x"}, **auth)
    assert response.status_code == 403 and "analyst" in response.json()["detail"]
    response = client.post("/api/kb/any/entities", {"id": "x", "name": "X"}, content_type="application/json", **auth)
    assert response.status_code == 403 and "kb editor" in response.json()["detail"]
    assert client.delete("/api/kb/any/entities/x", **auth).status_code == 403
    client.force_login(staff)
    assert client.post("/linking/kb/any/", {"id": "x", "name": "X"}).status_code == 403
    assert client.get("/samples/", {"text__contains": "x"}).status_code == 403
    assert client.post("/models/register/", {"uri": "x"}).status_code == 403
    assert client.get("/models/").context["register_form"] is None
    assert client.get("/api/me").json() == {"username": "staffonly", "is_staff": True}

    superuser = django_user_model.objects.create_superuser(username="root", password=None)
    assert all(user_has_role(user=superuser, permission=p) for p in (SEARCH, MANAGE_MODELS, EDIT_KB))
