import hashlib

import pytest
from django.core.management import call_command

from apps.accounts.models import ApiToken
from apps.accounts.selectors import api_token_active_get
from apps.accounts.services import api_token_create, api_token_revoke


@pytest.mark.django_db
def test_token_is_stored_hashed_and_authenticates(client, user):
    token, raw = api_token_create(user=user, name="laptop")
    assert raw.startswith("ssk_") and len(raw) > 40
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert not ApiToken.objects.filter(token_hash=raw).exists()
    assert raw[len(token.prefix):] not in ApiToken.objects.values_list("prefix", flat=True)[0]

    response = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json() == {"username": "analyst", "is_staff": False}
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.django_db
def test_the_tokens_user_is_the_whole_user(user):
    """The token is read with the fields a request needs; the user's others are still there when read."""
    _, raw = api_token_create(user=user, read_only=True)
    token = api_token_active_get(raw_token=raw)
    assert token.user.pk == user.pk and token.user.username == "analyst"
    assert token.read_only is True and token.user.is_active is True and token.user.is_staff is False
    assert token.user.date_joined == user.date_joined and token.user.password == user.password
    assert api_token_active_get(raw_token=raw + "x") is None
    assert api_token_active_get(raw_token="") is None


@pytest.mark.django_db
def test_revoked_token_is_refused(client, user):
    token, raw = api_token_create(user=user)
    api_token_revoke(token=token)
    assert client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


@pytest.mark.django_db
def test_inactive_user_token_is_refused(client, user):
    _, raw = api_token_create(user=user)
    user.is_active = False
    user.save()
    assert client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


@pytest.mark.django_db
def test_session_login_also_works_for_the_api(client, user):
    client.force_login(user)
    assert client.get("/api/me").json()["username"] == "analyst"


@pytest.mark.django_db
def test_create_api_token_command_creates_user_and_prints_token_last(client, capsys, django_user_model):
    call_command("create_api_token", "robot", "--name", "ci")
    out = capsys.readouterr().out.strip().splitlines()
    raw = out[-1]
    assert django_user_model.objects.filter(username="robot").exists()
    assert client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {raw}").json()["username"] == "robot"

    prefix = ApiToken.objects.get(user__username="robot").prefix
    call_command("revoke_api_token", prefix)
    assert client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


@pytest.mark.django_db
def test_tokens_page_creates_shows_once_and_revokes(client, user):
    client.force_login(user)
    page = client.post("/accounts/tokens/", {"name": "notebook"}).content.decode()
    token = ApiToken.objects.get(user=user)
    assert "shown once" in page and token.prefix in page
    response = client.post(f"/accounts/tokens/{token.pk}/revoke")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


@pytest.mark.django_db
def test_cannot_revoke_someone_elses_token(client, user, staff_user):
    token, _ = api_token_create(user=staff_user)
    client.force_login(user)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke").status_code == 404
