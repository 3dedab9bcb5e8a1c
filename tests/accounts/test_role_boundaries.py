"""Roles at their edges: staff see more but hold no role (no search, no spending) unless granted one; a superuser
holds every role without any group; a deactivated user's token holds none."""
from __future__ import annotations

import pytest

from apps.accounts.services import api_token_create

pytestmark = pytest.mark.django_db


def test_staff_without_a_role_may_not_search(client, django_user_model):
    staff = django_user_model.objects.create_user(username="staff-only", password="staff-password-1", is_staff=True)
    client.force_login(staff)
    assert client.get("/samples/", {"text__contains": "x"}).status_code == 403
    response = client.get("/api/search", {"text__contains": "x"})
    assert response.status_code == 403 and "analyst" in response.json()["detail"]


def test_a_superuser_outside_every_group_holds_every_role(django_user_model):
    from apps.accounts.roles import EDIT_KB, MANAGE_MODELS, SEARCH, user_has_role

    root = django_user_model.objects.create_superuser(username="root", password="root-password-1")
    assert not root.groups.exists()
    assert all(user_has_role(user=root, permission=p) for p in (SEARCH, MANAGE_MODELS, EDIT_KB))


def test_a_deactivated_users_roles_are_gone_with_their_session_and_token(client, user):
    from apps.accounts.roles import SEARCH, user_has_role

    _, raw = api_token_create(user=user, name="t")
    user.is_active = False
    user.save()
    assert not user_has_role(user=user, permission=SEARCH)
    assert client.get("/api/search", {"text__contains": "x"}, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
