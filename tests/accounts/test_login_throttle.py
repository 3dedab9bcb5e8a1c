"""The login throttle (django-axes, settings AXES_*): after LOGIN_FAILURE_LIMIT wrong passwords for one username
from one address that pair is refused, the right password included, until the cool-off or `axes_reset`; every
refused login is audited, without its password."""
import json

import pytest
from django.conf import settings
from django.core.management import call_command

from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

WRONG = "not-the-password-7"
LIMIT = 10  # settings.AXES_FAILURE_LIMIT (env LOGIN_FAILURE_LIMIT)


def _login(client, username, password, ip="10.1.1.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def _signed_in(client) -> bool:
    return client.get("/api/me").status_code == 200


def test_the_right_password_is_refused_after_too_many_wrong_ones(client, user, plain_user):
    for attempt in range(1, LIMIT):
        response = _login(client, "analyst", WRONG)
        assert response.status_code == 200 and "didn" in response.content.decode(), attempt  # the form again
    locked = _login(client, "analyst", WRONG)  # the 10th
    assert locked.status_code == 429
    for _ in range(50):  # 60 wrong passwords in all
        assert _login(client, "analyst", WRONG).status_code == 429

    refused = _login(client, "analyst", "analyst-password-1")
    assert refused.status_code == 429 and not _signed_in(client)
    html = refused.content.decode()
    assert 'id="locked-out"' in html and "Too many login attempts" in html and "15 minutes" in html
    assert "<!doctype html>" in html.lower()  # the site's page, not a bare string

    # The pair is locked, not the username nor the address: the same user elsewhere, another user here.
    assert _login(client, "analyst", "analyst-password-1", ip="10.2.2.2").status_code == 302 and _signed_in(client)
    client.logout()
    assert _login(client, "nobody", "nobody-password-1").status_code == 302 and _signed_in(client)
    assert settings.AXES_FAILURE_LIMIT == LIMIT


def test_axes_reset_unlocks_at_once(client, user):
    for _ in range(LIMIT):
        _login(client, "analyst", WRONG)
    assert _login(client, "analyst", "analyst-password-1").status_code == 429
    call_command("axes_reset_username", "analyst")
    assert _login(client, "analyst", "analyst-password-1").status_code == 302 and _signed_in(client)


def test_a_successful_login_resets_the_count(client, user):
    for _ in range(LIMIT - 1):
        _login(client, "analyst", WRONG)
    assert _login(client, "analyst", "analyst-password-1").status_code == 302
    client.logout()
    for _ in range(LIMIT - 1):  # would be 18 failures without the reset
        assert _login(client, "analyst", WRONG).status_code == 200
    assert _login(client, "analyst", "analyst-password-1").status_code == 302 and _signed_in(client)


def test_failed_logins_are_audited_without_the_password(client, user):
    _login(client, "analyst", WRONG)
    _login(client, "no-such-user", WRONG, ip="10.3.3.3")
    events = list(AuditEvent.objects.filter(action="login_failed").order_by("id"))
    assert [(e.target, e.outcome, e.detail["ip"], e.user) for e in events] == [
        ("analyst", "wrong_credentials", "10.1.1.1", None), ("no-such-user", "wrong_credentials", "10.3.3.3", None)]
    assert events[0].actor == "(anonymous)"

    for _ in range(LIMIT):
        _login(client, "analyst", WRONG)
    _login(client, "analyst", "analyst-password-1")
    outcomes = list(AuditEvent.objects.filter(action="login_failed", target="analyst").values_list("outcome",
                                                                                                  flat=True))
    assert outcomes.count("locked_out") >= 2  # the 10th failure and the refused right password
    assert AuditEvent.objects.filter(action="login_locked_out", target="analyst").exists()
    everything = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert WRONG not in everything and "analyst-password-1" not in everything

    # no successful login is audited as a failure
    client.logout()
    before = AuditEvent.objects.filter(action="login_failed").count()
    assert _login(client, "analyst", "analyst-password-1", ip="10.9.9.9").status_code == 302
    assert AuditEvent.objects.filter(action="login_failed").count() == before


def test_api_tokens_and_sessions_still_work_while_the_login_is_locked(client, user, api_token):
    for _ in range(LIMIT):
        _login(client, "analyst", WRONG)
    # a token is not a password: the throttle guards the login form only
    assert client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {api_token}").json()["username"] == "analyst"


def test_the_client_address_behind_the_proxy_is_the_one_the_proxy_appended(rf, settings):
    from apps.accounts.selectors import request_client_ip

    request = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7", REMOTE_ADDR="127.0.0.1")
    settings.TRUST_X_FORWARDED_FOR = False
    assert request_client_ip(request) == "127.0.0.1"
    settings.TRUST_X_FORWARDED_FOR = True
    assert request_client_ip(request) == "203.0.113.7"  # the first entry is whatever the client claimed
    assert request_client_ip(rf.get("/", REMOTE_ADDR="10.0.0.5")) == "10.0.0.5"
