"""“This is the one I meant”: the correction is stored in the context the linker read, the text is linked
again, and when it still resolves elsewhere the page says why and pinning makes it stick."""
import pytest

from apps.linking.models import Mention
from apps.linking.services import mention_correct, text_link

pytestmark = pytest.mark.django_db

def known(result):
    return [m for m in result.mentions if not m.unknown]


TEXT = "The Eiffel Tower lit up over Paris while tourists crowded the boulevards."


def test_a_correction_changes_the_answer(kb):
    start = TEXT.index("Paris")
    before = text_link(user=None, kb=kb, text=TEXT, audit=False)
    assert [m.text for m in before.mentions if m.unknown] == ["Eiffel Tower"]  # a name the KB does not know
    assert known(before)[0].entity.key == "paris_france"
    outcome = mention_correct(user=None, kb=kb, text=TEXT, start=start, end=start + 5, key="paris_trojan")
    stored = Mention.objects.filter(entity__key="paris_trojan").latest("pk")
    assert stored.text == outcome.mention.context.text and stored.surface == "Paris" and not stored.pinned
    # one stored mention does not outweigh the k nearest and the description: said why, and a pin is offered
    assert not outcome.fixed and outcome.mention.entity.key == "paris_france"
    assert outcome.can_pin and any(r.startswith("Paris scored") for r in outcome.reasons)
    assert any("its closest stored mention won: “The Eiffel Tower" in r for r in outcome.reasons)
    assert any("Paris (mythology) has cosine 1.000" in r for r in outcome.reasons)
    outcome = mention_correct(user=None, kb=kb, text=TEXT, start=start, end=start + 5, key="paris_trojan", pin=True)
    assert outcome.fixed and outcome.mention.entity.key == "paris_trojan" and outcome.mention.pinned_by
    after = text_link(user=None, kb=kb, text=TEXT, audit=False)
    assert known(after)[0].entity.key == "paris_trojan"
    # other texts are unaffected
    other = text_link(user=None, kb=kb, text="She took the train to Paris to see the Louvre.", audit=False)
    assert known(other)[0].entity.key == "paris_france"


def test_unfixable_without_the_alias_says_so_and_adds_it(kb):
    text = "Sun engineers shipped the first Java compiler, and Oak was renamed Java."
    start = text.index("Oak")
    from apps.linking.services import LinkingError

    with pytest.raises(LinkingError, match="not an alias"):
        mention_correct(user=None, kb=kb, text=text, start=start, end=start + 3, key="java_language")
    outcome = mention_correct(user=None, kb=kb, text=text, start=start, end=start + 3, key="java_language",
                              add_alias=True)
    assert outcome.fixed and outcome.mention.text == "Oak"
