"""Issue 13: editing the serving KB needs the kb editor role, on the pages and through the API."""
import pytest
from django.urls import reverse

from apps.accounts.services import api_token_create, user_roles_grant
from apps.linking.models import Alias, Entity, Mention

from .conftest import TEXAS_SENTENCE, paris_texas_record

pytestmark = pytest.mark.django_db


def test_kb_edits_on_the_pages_are_403_without_the_kb_editor_role(client, plain_user, kb):
    client.force_login(plain_user)
    entities, mentions, aliases = Entity.objects.count(), Mention.objects.count(), Alias.objects.count()
    label = kb.label
    kb_url = reverse("linking:kb", kwargs={"model": label})
    page = client.get(kb_url)
    assert page.status_code == 200 and 'id="add-entity"' not in page.content.decode()  # reading is fine
    entity_page = client.get(reverse("linking:entity", kwargs={"model": label, "key": "java_island"})).content
    assert b"entity-delete" not in entity_page and b"/delete/" not in entity_page
    posts = [
        (kb_url, {"id": "x", "name": "X", "type": "other", "mentions": "A [X] here."}),
        (reverse("linking:entity-delete", kwargs={"model": label, "key": "java_island"}), {}),
        (reverse("linking:mention-add", kwargs={"model": label, "key": "java_island"}),
         {"sentence": "Ferries link Bali to eastern [Java] across a narrow strait."}),
        (reverse("linking:alias-add", kwargs={"model": label, "key": "java_island"}), {"alias": "Jawa"}),
        (reverse("linking:correct", kwargs={"model": label}),
         {"text": "Java is big.", "start": 0, "end": 4, "key": "java_island"}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    assert (Entity.objects.count(), Mention.objects.count(), Alias.objects.count()) == (entities, mentions, aliases)

    user_roles_grant(user=plain_user, group_names=("kb editor",))
    assert client.post(posts[1][0]).status_code == 302
    assert not Entity.objects.filter(key="java_island").exists()


def test_kb_edits_through_the_api_are_403_without_the_kb_editor_role(client, plain_user, kb):
    _, raw = api_token_create(user=plain_user, name="tests")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    base = f"/api/kb/{kb.label}/entities"
    assert client.get(base, **auth).status_code == 200
    response = client.post(base, paris_texas_record(), content_type="application/json", **auth)
    assert response.status_code == 403 and "kb editor" in response.json()["detail"]
    assert client.delete(f"{base}/java_island", **auth).status_code == 403
    response = client.post(f"{base}/java_island/mentions", {"text": TEXAS_SENTENCE, "start": 0, "end": 5},
                           content_type="application/json", **auth)
    assert response.status_code == 403
    assert Entity.objects.filter(key="java_island").exists() and not Entity.objects.filter(key="paris_texas").exists()
    # The link endpoint itself needs no role.
    assert client.post("/api/link", {"text": "Java"}, content_type="application/json", **auth).status_code == 200

    user_roles_grant(user=plain_user, group_names=("kb editor",))
    assert client.delete(f"{base}/java_island", **auth).status_code == 204
