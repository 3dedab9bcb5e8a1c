"""One context per mention: mentions of one sentence that could name the same entity do not share a vector."""
import pytest

from apps.linking.detection import AliasMatcher, mention_context, mention_contexts
from apps.linking.services import EntityInput, entity_create, mention_from_bracketed, text_link

ALIASES = [("Michael Jordan", 1), ("Jordan", 1), ("Jordan", 2), ("The Beatles", 3), ("Apple", 4), ("Apple", 5)]


def test_rivals_are_taken_out_of_each_others_context():
    text = "Michael Jordan visited Jordan to see the ancient city of Petra."
    spans = AliasMatcher.build(ALIASES).find(text)
    assert [s.text for s in spans] == ["Michael Jordan", "Jordan"]
    player, country = mention_contexts(text, spans, rival_window=0)
    assert country == "visited Jordan to see the ancient city of Petra."
    assert player == "Michael Jordan visited to see the ancient city of Petra."
    assert player != country
    _, narrow = mention_contexts(text, spans, rival_window=2)
    assert narrow == "visited Jordan to see"


def test_unrelated_mentions_and_single_mentions_keep_the_sentence():
    text = "The Beatles' label Apple fought in court. Apple sells phones."
    spans = AliasMatcher.build(ALIASES).find(text)
    contexts = mention_contexts(text, spans)
    # no rival in its sentence: exactly the context stored mentions are embedded with
    assert contexts == [mention_context(text, s.start, s.end) for s in spans]


JORDANS = [
    EntityInput(key="michael_jordan", name="Michael Jordan", type="person", aliases=["Michael Jordan", "Jordan"],
                description="American basketball player who won six NBA titles with the Chicago Bulls.",
                mentions=[mention_from_bracketed(s) for s in [
                    "[Michael Jordan] scored 63 points against the Celtics in a playoff game.",
                    "The Bulls won six championships with [Jordan] as their star shooting guard.",
                    "Nike sells millions of basketball shoes named after [Michael Jordan] every year.",
                ]]),
    EntityInput(key="jordan_country", name="Jordan", type="place", aliases=["Jordan"],
                description="Arab kingdom in Western Asia, east of the Jordan River, with Amman as its capital.",
                mentions=[mention_from_bracketed(s) for s in [
                    "Tourists in [Jordan] visit the rock-cut city of Petra and float in the Dead Sea.",
                    "King Abdullah II has ruled [Jordan] from the capital Amman since 1999.",
                    "Refugees crossed the desert border into [Jordan] from Syria.",
                ]]),
]


@pytest.mark.django_db
def test_michael_jordan_visited_jordan_links_two_entities(kb):
    for item in JORDANS:
        entity_create(user=None, kb=kb, data=item)
    # With one shared sentence vector both went to the player (similarity 0.583 for both).
    result = text_link(user=None, kb=kb, text="Michael Jordan visited Jordan.", audit=False)
    assert [(m.text, m.entity.key if m.entity else None) for m in result.mentions] == [
        ("Michael Jordan", "michael_jordan"), ("Jordan", "jordan_country")]
    assert result.mentions[0].similarity != result.mentions[1].similarity
