import numpy as np
import pytest

from apps.audit.models import AuditEvent
from apps.linking.linker import LinkerParams, kb_state, link
from apps.linking.models import Entity, KnowledgeBase, Mention
from apps.linking.services import (
    EntityInput,
    MentionInput,
    alias_add,
    entity_create,
    entity_delete,
    entity_input_from_json,
    mention_add,
    mention_delete,
    mention_from_bracketed,
    text_link,
)

from .conftest import TEXAS_SENTENCE, paris_texas_record


def linked(kb, text, **params):
    result = link(state=kb_state(kb), text=text, params=LinkerParams.from_settings(**params))
    return [(m.text, m.entity.key if m.entity else None) for m in result.mentions]


def test_context_picks_the_right_candidate(kb):
    assert linked(kb, "Programmers love Java because of its huge library of frameworks.") == [("Java", "java_language")]
    assert linked(kb, "Volcanoes and rice fields cover the island of Java in Indonesia.") == [("Java", "java_island")]
    assert linked(kb, "Achilles died from the arrow Paris shot during the siege of Troy.") == [
        ("Paris", "paris_trojan")
    ]
    assert linked(kb, "We walked along the Seine in Paris after visiting the Louvre.") == [("Paris", "paris_france")]
    assert linked(kb, "Amazon delivered my parcel and charged my credit card.") == [("Amazon", "amazon_company")]


def test_candidates_are_ranked_with_scores_and_evidence(kb):
    result = link(state=kb_state(kb), text="Deforestation threatens dolphins living in the Amazon River basin.")
    (mention,) = result.mentions
    assert mention.entity.key == "amazon_river"
    keys = [c.entity.key for c in mention.candidates]
    assert keys[0] == "amazon_river"
    scores = [c.score for c in mention.candidates]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < c.prior <= 1 for c in mention.candidates)
    stored = set(Mention.objects.filter(entity__key="amazon_river").values_list("pk", flat=True))
    assert {mid for mid, _ in mention.candidates[0].evidence} <= stored


def test_prior_only_baseline_ignores_context(kb):
    text = "Programmers love Java because of its huge library of frameworks."
    result = link(state=kb_state(kb), text=text, params=LinkerParams.from_settings(scorer="prior"))
    (mention,) = result.mentions
    assert mention.similarity is None
    assert mention.entity is not None and mention.score == max(c.prior for c in mention.candidates)


def test_nil_below_threshold_and_without_candidates(kb):
    text = "We walked along the Seine in Paris after visiting the Louvre."
    assert linked(kb, text, nil_threshold=0.99) == [("Paris", None)]
    # a hand-marked span that is no alias: NIL, no candidates
    state = kb_state(kb)
    result = link(state=state, text="Lyon is nice.", spans=[(0, 4)])
    assert result.mentions[0].entity is None and result.mentions[0].candidates == []


def test_add_and_delete_entity_change_the_next_answer_without_restart(kb):
    before = link(state=kb_state(kb), text=TEXAS_SENTENCE).mentions[0]
    assert before.entity is None or before.entity.key != "paris_texas"
    revision = kb.revision
    entity_create(user=None, kb=kb, data=entity_input_from_json(paris_texas_record()))
    kb.refresh_from_db()
    assert kb.revision == revision + 1
    after = link(state=kb_state(kb), text=TEXAS_SENTENCE).mentions[0]
    assert after.entity.key == "paris_texas"
    entity_delete(user=None, kb=kb, key="paris_texas")
    again = link(state=kb_state(kb), text=TEXAS_SENTENCE).mentions[0]
    assert "paris_texas" not in [c.entity.key for c in again.candidates]


def test_an_edit_by_another_process_is_seen(kb):
    """Another web process only shares the database: a bumped revision makes this one rebuild."""
    state = kb_state(kb)
    entity = Entity.objects.get(kb=kb, key="java_island")
    Mention.objects.filter(entity=entity).delete()
    assert kb_state(kb) is state  # nothing told us yet
    KnowledgeBase.objects.filter(pk=kb.pk).update(revision=kb.revision + 1)
    rebuilt = kb_state(kb)
    assert rebuilt is not state and rebuilt.entities[entity.pk].mention_count == 0


def answers(kb, text):
    """What the next link request answers: (surface, entity key or None, {candidate key: score})."""
    result = text_link(user=None, kb=kb, text=text, audit=False)
    return [(m.text, m.entity.key if m.entity else None, {c.entity.key: c.score for c in m.candidates})
            for m in result.mentions]


FIRE_TEXT = "Amazon is burning and nobody seems to care."
RAINFOREST_FIRE_MENTIONS = [
    "The [Amazon] is burning and nobody seems to care about the rainforest.",
    "Why is the [Amazon] burning? Ranchers clear the rainforest with fire.",
    "Forest fires are burning across the [Amazon] basin again this dry season.",
    "Smoke from fires burning in the [Amazon] rainforest drifted over Manaus, and few seemed to care.",
]


def test_add_mention_moves_the_answer(kb):
    """Teaching the river's fire context through mention_add: the next request (same process, its KB
    state already built) links the burning Amazon to the river instead of the company."""
    ((surface, entity, before),) = answers(kb, FIRE_TEXT)
    assert (surface, entity) == ("Amazon", "amazon_company")
    revision = KnowledgeBase.objects.get(pk=kb.pk).revision
    for sentence in RAINFOREST_FIRE_MENTIONS:
        mention_add(user=None, kb=kb, key="amazon_river", mention=mention_from_bracketed(sentence))
    assert KnowledgeBase.objects.get(pk=kb.pk).revision == revision + len(RAINFOREST_FIRE_MENTIONS)
    assert Mention.objects.filter(entity__key="amazon_river").count() == 3 + len(RAINFOREST_FIRE_MENTIONS)
    assert AuditEvent.objects.filter(action="kb_edit", detail__op="mention_add").count() == 4

    ((surface, entity, after),) = answers(kb, FIRE_TEXT)
    assert (surface, entity) == ("Amazon", "amazon_river")
    assert after["amazon_river"] > before["amazon_river"] and after["amazon_river"] > after["amazon_company"]
    assert after["amazon_company"] == pytest.approx(before["amazon_company"], abs=1e-6)  # only the river changed


def test_add_alias_is_detected_by_the_next_request(kb):
    text = "Lutetia was founded by the Parisii on an island in the Seine."

    def known(found):  # names an alias covers (unknown capitalised names come back too, with no candidates)
        return [item for item in found if item[2]]

    assert known(answers(kb, text)) == []  # no alias "Lutetia" yet: no known name detected
    alias_add(user=None, kb=kb, key="paris_france", alias="Lutetia")
    ((surface, entity, candidates),) = known(answers(kb, text))
    assert (surface, entity) == ("Lutetia", "paris_france") and list(candidates) == ["paris_france"]
    assert AuditEvent.objects.filter(action="kb_edit", detail__op="alias_add").count() == 1


def test_aggregate_embedding_is_kept_in_step(kb):
    entity = Entity.objects.get(kb=kb, key="java_island")

    def stored_sum():
        return np.sum([np.frombuffer(bytes(m.embedding), dtype=np.float32) for m in entity.mentions.all()], axis=0)

    np.testing.assert_allclose(Entity.objects.get(pk=entity.pk).aggregate_vector(), stored_sum(), atol=1e-5)
    created = mention_add(
        user=None,
        kb=kb,
        key="java_island",
        mention=MentionInput("Ferries link Bali to eastern Java across a narrow strait.", 29, 33),
    )
    np.testing.assert_allclose(Entity.objects.get(pk=entity.pk).aggregate_vector(), stored_sum(), atol=1e-5)
    mention_delete(user=None, kb=kb, mention_id=created.pk)
    np.testing.assert_allclose(Entity.objects.get(pk=entity.pk).aggregate_vector(), stored_sum(), atol=1e-5)


def test_popular_alias_shortlist_gives_the_same_answer(kb):
    text = "Achilles died from the arrow Paris shot during the siege of Troy."
    exact = linked(kb, text, use_aggregates=False)
    shortlisted = linked(kb, text, use_aggregates=True, aggregate_cutoff=0, shortlist=1)
    assert exact == shortlisted == [("Paris", "paris_trojan")]


def test_text_link_is_audited(kb, user):
    text_link(user=user, kb=kb, text="Apple unveiled a phone.")
    event = AuditEvent.objects.get(action="link")
    assert event.user == user and event.detail["mentions"] == 1


@pytest.mark.parametrize("index_kind", ["numpy", "qdrant"])
def test_both_vector_indexes_agree(kb, index_kind, settings):
    settings.LINKING_QDRANT_PATH = ":memory:"
    state = kb_state(kb, index_kind=index_kind)
    assert state.index.kind == index_kind
    reference = kb_state(kb, index_kind="numpy")
    query = np.frombuffer(bytes(Mention.objects.filter(entity__key="paris_trojan").first().embedding), dtype=np.float32)
    entities = [e.pk for e in Entity.objects.filter(kb=kb, key__startswith="paris")]
    got = state.index.top_per_entity(query, entities=entities, k=2)
    want = reference.index.top_per_entity(query, entities=entities, k=2)
    assert set(got) == set(want)
    for entity in want:
        assert [m for m, _ in got[entity]] == [m for m, _ in want[entity]]
        np.testing.assert_allclose([s for _, s in got[entity]], [s for _, s in want[entity]], atol=1e-4)


def test_entity_input_type_error_is_clear():
    from apps.linking.services import LinkingError

    with pytest.raises(LinkingError) as missing_id:
        entity_input_from_json({"name": "x"}, line=3)
    assert str(missing_id.value) == "line 3: needs id, name and mentions [{text, start, end}] ('id')"
    with pytest.raises(LinkingError) as bad_start:
        entity_input_from_json({"id": "x", "name": "X", "mentions": [{"text": "X.", "start": "one", "end": 1}]},
                               line=7)
    assert str(bad_start.value).startswith("line 7: needs id, name and mentions")
    assert "'one'" in str(bad_start.value)  # says which value was wrong
    with pytest.raises(LinkingError, match="^line 9: aliases must be a list$"):
        entity_input_from_json({"id": "x", "name": "X", "aliases": "X"}, line=9)
    with pytest.raises(LinkingError, match="^line 2: expected a JSON object$"):
        entity_input_from_json(["x"], line=2)
    parsed = entity_input_from_json({"id": "x", "name": "X", "mentions": [{"text": "X.", "start": "0", "end": 1}]})
    assert parsed == EntityInput(key="x", name="X", type="other", mentions=[MentionInput("X.", 0, 1)])
