"""Issue 25, item 4: a KB delete asks first (a page, no JS needed) and can be undone from the KB's history."""
import numpy as np
import pytest
from django.urls import reverse

from apps.accounts.services import user_roles_grant
from apps.audit.models import AuditEvent
from apps.linking.linker import kb_state, link
from apps.linking.models import Alias, Entity, EntityDeletion, KnowledgeBase, Mention
from apps.linking.services import LinkingError, entity_delete, entity_restore

pytestmark = pytest.mark.django_db


def _as_it_is(kb, key):
    entity = Entity.objects.get(kb=kb, key=key)
    return (
        (entity.name, entity.type, entity.description, entity.url, bytes(entity.aggregate), bytes(entity.profile)),
        sorted(Alias.objects.filter(entity=entity).values_list("text", "norm")),
        sorted((m.text, m.start, m.end, m.pinned, bytes(m.embedding)) for m in Mention.objects.filter(entity=entity)),
    )


def test_get_asks_and_only_post_deletes(client, user, kb):
    client.force_login(user)
    url = reverse("linking:entity-delete", kwargs={"model": kb.label, "key": "java_island"})
    entity_url = reverse("linking:entity", kwargs={"model": kb.label, "key": "java_island"})
    entity_page = client.get(entity_url).content.decode()
    assert f'href="{url}"' in entity_page  # the entity page links to the question, it does not delete
    page = client.get(url)
    assert page.status_code == 200
    assert "Delete Java and its 3 mentions?" in page.content.decode()
    assert Entity.objects.filter(kb=kb, key="java_island").exists()  # asking deleted nothing
    response = client.post(url)
    assert response.status_code == 302 and response["Location"].endswith("#history")
    assert not Entity.objects.filter(kb=kb, key="java_island").exists()
    assert client.get(url).status_code == 404


def test_undo_restores_the_entity_and_its_mentions_as_they_were(client, user, kb):
    client.force_login(user)
    Mention.objects.filter(entity__key="java_island").order_by("pk").update(pinned=False)
    Mention.objects.filter(pk=Mention.objects.filter(entity__key="java_island").first().pk).update(pinned=True)
    before = _as_it_is(kb, "java_island")
    text = "Volcanoes and rice fields cover the island of Java in Indonesia."
    linked_before = link(state=kb_state(kb), text=text).mentions[0]
    client.post(reverse("linking:entity-delete", kwargs={"model": kb.label, "key": "java_island"}))
    after_delete = link(state=kb_state(kb), text=text).mentions[0].entity
    assert after_delete is None or after_delete.key != "java_island"
    deletion = EntityDeletion.objects.get(kb=kb, key="java_island")
    revision_after_delete = KnowledgeBase.objects.get(pk=kb.pk).revision
    history = client.get(reverse("linking:kb", kwargs={"model": kb.label})).content.decode()
    restore = reverse("linking:entity-restore", kwargs={"model": kb.label, "deletion_id": deletion.pk})
    assert 'id="history"' in history and restore in history and "Undo: restore Java" in history

    response = client.post(restore)
    assert response.status_code == 302
    assert _as_it_is(kb, "java_island") == before
    kb.refresh_from_db()
    assert kb.revision == revision_after_delete + 1  # the revision moves forward, it is not rolled back
    linked = link(state=kb_state(kb), text=text).mentions[0]
    assert linked.entity.key == "java_island" and linked.score == pytest.approx(linked_before.score, abs=1e-6)
    event = AuditEvent.objects.filter(action="kb_edit").order_by("-pk").first()
    assert event.detail["op"] == "entity_restore" and event.detail["deletion"] == deletion.pk
    assert event.target == f"{kb.label}/java_island"
    deletion.refresh_from_db()
    assert deletion.restored_revision == kb.revision
    assert "restored at revision" in client.get(reverse("linking:kb", kwargs={"model": kb.label})).content.decode()
    # once only
    assert client.post(restore, follow=True).status_code == 200
    assert Entity.objects.filter(kb=kb, key="java_island").count() == 1


def test_restore_refuses_when_the_key_was_taken_again(kb, user):
    deletion = entity_delete(user=user, kb=kb, key="java_island")
    Entity.objects.create(kb=kb, key="java_island", name="Another Java")
    with pytest.raises(LinkingError, match="exists again"):
        entity_restore(user=user, kb=kb, deletion_id=deletion.pk)
    assert Entity.objects.get(kb=kb, key="java_island").name == "Another Java"


def test_asking_deleting_and_undoing_need_the_kb_editor_role(client, plain_user, user, kb):
    deletion = entity_delete(user=user, kb=kb, key="apple_fruit")
    client.force_login(plain_user)
    ask = reverse("linking:entity-delete", kwargs={"model": kb.label, "key": "java_island"})
    restore = reverse("linking:entity-restore", kwargs={"model": kb.label, "deletion_id": deletion.pk})
    assert client.get(ask).status_code == 403
    assert client.post(ask).status_code == 403
    assert client.post(restore).status_code == 403
    history = client.get(reverse("linking:kb", kwargs={"model": kb.label})).content.decode()
    assert "apple_fruit" in history and restore not in history  # readers see the history, not the button
    assert Entity.objects.filter(kb=kb, key="java_island").exists()
    assert not Entity.objects.filter(kb=kb, key="apple_fruit").exists()
    user_roles_grant(user=plain_user, group_names=("kb editor",))
    assert client.post(restore).status_code == 302
    assert Entity.objects.filter(kb=kb, key="apple_fruit").exists()
    assert np.frombuffer(bytes(Entity.objects.get(kb=kb, key="apple_fruit").profile), dtype=np.float32).shape == (384,)
