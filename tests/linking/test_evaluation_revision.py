"""Issue 25: the linking page shows the KB revision each evaluation was computed on and the KB's current one, and
flags an evaluation as stale once the KB has been edited since (every edit bumps the revision)."""
import json
import re

import pytest
from django.urls import reverse

from apps.linking.evaluation import linker_evaluate
from apps.linking.models import KnowledgeBase
from apps.linking.services import alias_add


@pytest.fixture
def heldout(tmp_path):
    path = tmp_path / "heldout.jsonl"
    text = "The Eiffel Tower stands in Paris."
    path.write_text(json.dumps({"text": text, "mentions": [{"start": 27, "end": 32, "entity_id": "paris_france"}]}))
    return path


def _evaluation(client, user) -> str:
    client.force_login(user)
    html = client.get(reverse("linking:page")).content.decode()
    return html.split('id="evaluation"')[1].split("</section>")[0]


def test_a_fresh_evaluation_shows_its_revision_and_is_not_stale(client, user, kb, heldout):
    linker_evaluate(kb=kb, path=heldout)
    kb.refresh_from_db()
    section = _evaluation(client, user)
    assert f'on KB revision <span class="eval-revision">{kb.revision}</span>' in section
    assert f'now at revision <strong class="kb-revision">{kb.revision}</strong>.' in section
    assert "eval-stale" not in section and "no longer hold" not in section


def test_after_an_edit_the_page_shows_both_revisions_and_flags_the_evaluation_stale(client, user, kb, heldout):
    linker_evaluate(kb=kb, path=heldout)
    evaluated = KnowledgeBase.objects.get(pk=kb.pk).revision
    for alias in ("Paname", "Lutetia"):
        alias_add(user=user, kb=kb, key="paris_france", alias=alias)
    current = KnowledgeBase.objects.get(pk=kb.pk).revision
    assert current == evaluated + 2
    section = _evaluation(client, user)
    assert re.findall(r'class="eval-revision">(\d+)<', section) == [str(evaluated)]
    assert f'now at revision <strong class="kb-revision">{current}</strong>; it has been edited' in section
    assert section.count("eval-stale") == 1 and "eval_linker" in section
