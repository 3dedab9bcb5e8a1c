import json

import pytest
from django.core.management import call_command

from apps.audit.models import AuditEvent
from apps.linking.models import Alias, Entity, KnowledgeBase, Mention
from apps.linking.selectors import kb_export_jsonl
from apps.linking.services import (
    EntityInput,
    LinkingError,
    MentionInput,
    NotFound,
    alias_add,
    entity_create,
    entity_delete,
    kb_get_or_create,
    kb_import_jsonl,
    mention_add,
    mention_from_bracketed,
    text_link,
)


def counts(kb):
    return (
        Entity.objects.filter(kb=kb).count(),
        Alias.objects.filter(kb=kb).count(),
        Mention.objects.filter(entity__kb=kb).count(),
        KnowledgeBase.objects.get(pk=kb.pk).revision,
    )


def test_bad_text(kb, settings):
    with pytest.raises(LinkingError, match="empty"):
        text_link(user=None, kb=kb, text="   ")
    settings.LINKING_MAX_TEXT_CHARS = 100
    with pytest.raises(LinkingError, match="limit is 100"):
        text_link(user=None, kb=kb, text="Paris " * 30)


def test_unknown_entity(kb):
    with pytest.raises(NotFound, match="no entity 'nope'"):
        mention_add(user=None, kb=kb, key="nope", mention=MentionInput("Paris is big.", 0, 5))
    with pytest.raises(NotFound):
        entity_delete(user=None, kb=kb, key="nope")


@pytest.mark.parametrize(
    "start,end,message",
    [
        (0, 99, "outside the sentence"),
        (-1, 3, "outside the sentence"),
        (5, 5, "outside the sentence"),
        (0, 4, "not an alias"),
        (5, 11, "starts or ends with a space"),
    ],
)
def test_span_errors_write_nothing(kb, start, end, message):
    before = counts(kb)
    with pytest.raises(LinkingError, match=message):
        mention_add(user=None, kb=kb, key="paris_france", mention=MentionInput("Lyon  Paris  is far.", start, end))
    assert counts(kb) == before


def test_duplicate_alias_and_duplicate_id(kb):
    before = counts(kb)
    with pytest.raises(LinkingError, match="already exists"):
        entity_create(user=None, kb=kb, data=EntityInput(key="paris_france", name="Paris"))
    # a case variant of an existing alias is merged, not refused: "PARIS" is already covered by "Paris"
    assert alias_add(user=None, kb=kb, key="paris_france", alias="PARIS").text == "Paris"
    with pytest.raises(LinkingError, match="too short"):
        alias_add(user=None, kb=kb, key="paris_france", alias="P")
    with pytest.raises(LinkingError, match="type"):
        entity_create(user=None, kb=kb, data=EntityInput(key="x", name="X", type="planet"))
    assert counts(kb) == before


def test_entity_create_is_audited_and_bumps_revision(kb, user):
    before = counts(kb)
    entity_create(
        user=user,
        kb=kb,
        data=EntityInput(
            key="jaguar_car",
            name="Jaguar Cars",
            aliases=["Jaguar"],
            type="organization",
            mentions=[mention_from_bracketed("The new electric [Jaguar] saloon goes on sale in Coventry.")],
        ),
    )
    assert counts(kb) == (before[0] + 1, before[1] + 1, before[2] + 1, before[3] + 1)
    event = AuditEvent.objects.get(action="kb_edit", target="test-kb@1/jaguar_car")
    assert event.user == user and event.detail["op"] == "entity_create"


def test_import_is_all_or_nothing(kb, kb_lines):
    before = counts(kb)
    good = json.dumps(
        {
            "id": "lyon",
            "name": "Lyon",
            "aliases": ["Lyon"],
            "type": "place",
            "mentions": [{"text": "Lyon is in France.", "start": 0, "end": 4}],
        }
    )
    bad_span = json.dumps({"id": "nice", "name": "Nice", "mentions": [{"text": "Nice.", "start": 0, "end": 40}]})
    with pytest.raises(LinkingError, match="line 2: .*outside the sentence"):
        kb_import_jsonl(user=None, kb=kb, lines=[good, bad_span])
    with pytest.raises(LinkingError, match="line 2: not JSON"):
        kb_import_jsonl(user=None, kb=kb, lines=[good, "{oops"])
    with pytest.raises(LinkingError, match="already exists"):
        kb_import_jsonl(user=None, kb=kb, lines=kb_lines[:1])
    assert counts(kb) == before


def test_export_import_round_trip(kb, tmp_path):
    exported = list(kb_export_jsonl(kb=kb))
    path = tmp_path / "kb.jsonl"
    call_command("export_kb", model="test-kb", out=str(path))
    assert path.read_text().splitlines() == exported
    call_command("import_kb", str(path), model="copy-kb")
    copy = KnowledgeBase.objects.get(name="copy-kb")
    assert list(kb_export_jsonl(kb=copy)) == exported
    original = {m.text: bytes(m.embedding) for m in Mention.objects.filter(entity__kb=kb)}
    copied = {m.text: bytes(m.embedding) for m in Mention.objects.filter(entity__kb=copy)}
    assert original.keys() == copied.keys()
    record = json.loads(exported[0])
    assert set(record) == {"id", "name", "aliases", "type", "description", "url", "mentions"}


def test_serving_kb_is_unique(db):
    a = kb_get_or_create(name="a", serving=True)
    b = kb_get_or_create(name="b", serving=True)
    a.refresh_from_db()
    assert b.is_serving and not a.is_serving


def test_alias_add_merges_case_variants_towards_the_wider_one(kb):
    from apps.linking.linker import kb_state
    from apps.linking.services import ALIAS_CASE_RULE, alias_widest

    assert alias_widest(["Python", "python"]) == "python" and alias_widest(["Python", "PYTHON"]) == "Python"
    assert "lower case" in ALIAS_CASE_RULE
    entity = entity_create(user=None, kb=kb, data=EntityInput(key="java_coffee", name="Java (coffee)",
                                                              aliases=["Java coffee"]))
    revision = kb.revision
    merged = alias_add(user=None, kb=kb, key="java_coffee", alias="java coffee")
    assert merged.text == "java coffee" and list(entity.aliases.values_list("text", flat=True)) == ["java coffee"]
    kb.refresh_from_db()
    assert kb.revision == revision + 1
    # the lower-case alias now matches a lower-case surface too
    assert kb_state(kb).matcher.find("a cup of java coffee")[0].entity_ids
