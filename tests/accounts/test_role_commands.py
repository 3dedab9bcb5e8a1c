"""Issue 25: roles from the command line (create_api_token --role, grant_role), and a 403 for a missing role that
names the role and the command that grants it, on pages and in the API."""
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.accounts.models import ApiToken

pytestmark = pytest.mark.django_db


def _token(*args) -> str:
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip().splitlines()[-1]


def _search(client, raw):
    return client.get("/api/search", {"text__contains": "x"}, HTTP_AUTHORIZATION=f"Bearer {raw}")


def _allowed(response) -> bool:
    """Past the role check: the search itself ran and refused the column (no demo table in these tests)."""
    return response.status_code == 422 and "Unknown column" in response.json()["detail"]


def _roles(username):
    return sorted(get_user_model().objects.get(username=username).groups.values_list("name", flat=True))


def test_create_api_token_without_a_role_gets_403_naming_the_grant_role_command(client):
    response = _search(client, _token("newbie"))
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "Searching needs the analyst role: an admin can grant it with `python manage.py grant_role <user> analyst`.")


def test_create_api_token_with_role_analyst_may_search(client):
    raw = _token("robot", "--role", "analyst")
    assert _roles("robot") == ["analyst"]
    assert _allowed(_search(client, raw))


def test_create_api_token_roles_repeatable_and_comma_lists(client):
    _token("multi", "--role", "analyst,kb-editor", "--role", "model_manager", "--role", "analyst")
    assert _roles("multi") == ["analyst", "kb editor", "model manager"]


def test_create_api_token_unknown_role_lists_the_valid_ones_and_creates_nothing():
    with pytest.raises(CommandError) as excinfo:
        _token("ghost", "--role", "analyst,admin")
    message = str(excinfo.value)
    assert "'admin'" in message and "'analyst'" in message and "'model manager'" in message and "'kb editor'" in message
    assert not get_user_model().objects.filter(username="ghost").exists()
    assert not ApiToken.objects.exists()


def test_grant_role_then_the_api_allows_and_revoke_takes_it_back(client):
    raw = _token("later")
    assert _search(client, raw).status_code == 403
    out = io.StringIO()
    call_command("grant_role", "later", "analyst", stdout=out)
    assert "Granted analyst" in out.getvalue()
    assert _allowed(_search(client, raw))
    call_command("grant_role", "later", "analyst", "--revoke", stdout=io.StringIO())
    assert _roles("later") == []
    assert _search(client, raw).status_code == 403


def test_grant_role_unknown_role_lists_the_valid_ones(plain_user):
    with pytest.raises(CommandError) as excinfo:
        call_command("grant_role", plain_user.username, "superhero", stdout=io.StringIO())
    assert "'superhero'" in str(excinfo.value)
    assert all(f"'{name}'" in str(excinfo.value) for name in ("analyst", "model manager", "kb editor"))
    assert _roles(plain_user.username) == []


def test_grant_role_unknown_user_is_an_error():
    with pytest.raises(CommandError, match="No user 'nobody-here'"):
        call_command("grant_role", "nobody-here", "analyst", stdout=io.StringIO())


def test_the_page_403_for_a_missing_role_names_the_role_and_the_command(client, plain_user):
    client.force_login(plain_user)
    response = client.get("/samples/", {"text__contains": "x"})
    assert response.status_code == 403
    html = response.content.decode()
    assert "Searching samples needs the analyst role" in html
    assert "python manage.py grant_role &lt;user&gt; analyst" in html


def test_the_403_for_a_role_with_a_space_quotes_it_for_the_shell_and_grant_role_takes_it_so():
    from apps.accounts.roles import EDIT_KB, role_missing_message

    message = role_missing_message(permission=EDIT_KB, what="Editing the knowledge base")
    assert message.endswith("`python manage.py grant_role <user> 'kb editor'`.")
    get_user_model().objects.create_user(username="editor")
    call_command("grant_role", "editor", "kb editor", stdout=io.StringIO())
    assert _roles("editor") == ["kb editor"]
