import re

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.linking.models import Entity, Mention


def login(client, user):
    client.force_login(user)
    return client


def test_page_needs_login(client, kb):
    response = client.get(reverse("linking:page"))
    assert response.status_code == 302 and "/accounts/login" in response["Location"]


def test_page_without_any_kb(client, user, db):
    response = login(client, user).get(reverse("linking:page"))
    assert response.status_code == 200 and b"setup_demo" in response.content


def test_page_highlights_mentions_by_type(client, user, kb):
    text = "Programmers love Java, and Apple unveiled a phone."
    html = login(client, user).get(reverse("linking:page"), {"text": text}).content.decode()
    assert 'class="ent ent-other" id="mention-0" data-entity="java_language"' in html
    assert 'class="ent ent-organization" id="mention-1" data-entity="apple_inc"' in html
    assert 'id="latency"' in html and "Latest evaluation" in html


def test_mention_details_without_js_and_with_htmx(client, user, kb):
    client = login(client, user)
    params = {"text": "Achilles died from the arrow Paris shot at Troy.", "m": "1"}  # 0 is Achilles, not in the KB
    html = client.get(reverse("linking:page"), params).content.decode()
    assert 'id="candidates"' in html and "This is the one I meant" in html
    assert re.search(r'data-entity="paris_trojan">', html)
    assert "<mark>Paris</mark>" in html  # the stored mentions that decided it
    partial = client.get(reverse("linking:page"), params, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="mention-detail")
    body = partial.content.decode()
    assert 'id="candidates"' in body and "<html" not in body and 'id="evaluation"' not in body


def test_bad_text_shows_an_error(client, user, kb, settings):
    client = login(client, user)
    html = client.get(reverse("linking:page"), {"text": "x" * 6000}).content.decode()
    assert "too long" in html
    assert client.get(reverse("linking:page"), {"text": "Paris", "model": "nope"}).status_code == 200


def test_this_is_the_one_i_meant(client, user, kb):
    client = login(client, user)
    text = "I landed late. Paris was cold and grey but the Louvre was open."
    start = text.index("Paris")
    url = reverse("linking:mention-add", kwargs={"model": kb.label, "key": "paris_france"})
    response = client.post(url, {"text": text, "start": start, "end": start + 5, "next": "/linking/?text=x"})
    assert response.status_code == 302 and response["Location"] == "/linking/?text=x"
    stored = Mention.objects.filter(entity__key="paris_france").latest("pk")
    assert stored.text == "Paris was cold and grey but the Louvre was open." and stored.surface == "Paris"
    assert AuditEvent.objects.filter(action="kb_edit", user=user, detail__op="mention_add").exists()
    response = client.post(url, {"text": text, "start": 0, "end": 500}, follow=True)
    assert "outside the sentence" in response.content.decode()


def test_kb_editor_search_add_and_delete(client, user, kb):
    client = login(client, user)
    url = reverse("linking:kb", kwargs={"model": kb.label})
    html = client.get(url, {"q": "java"}).content.decode()
    assert "java_island" in html and "paris_france" not in html
    response = client.post(
        url,
        {
            "id": "jaguar_car",
            "name": "Jaguar Cars",
            "type": "organization",
            "aliases": "Jaguar, Jaguar Cars",
            "description": "British car maker.",
            "url": "",
            "mentions": (
                "The new electric [Jaguar] saloon goes on sale in Coventry.\nA [Jaguar Cars] dealer opened downtown."
            ),
        },
    )
    assert response.status_code == 302
    entity = Entity.objects.get(kb=kb, key="jaguar_car")
    assert entity.mentions.count() == 2 and entity.aliases.count() == 2
    html = client.get(response["Location"]).content.decode()
    assert "Jaguar Cars" in html and "<mark>Jaguar</mark>" in html
    response = client.post(url, {"id": "jaguar_car", "name": "Again", "type": "other", "mentions": ""})
    assert response.status_code == 400 and "already exists" in response.content.decode()
    response = client.post(url, {"id": "x", "name": "X", "type": "other", "mentions": "no brackets here"})
    assert response.status_code == 400 and "brackets" in response.content.decode()
    delete = reverse("linking:entity-delete", kwargs={"model": kb.label, "key": "jaguar_car"})
    assert client.post(delete).status_code == 302
    assert not Entity.objects.filter(key="jaguar_car").exists()
    assert client.post(delete).status_code == 404
    missing = reverse("linking:entity", kwargs={"model": kb.label, "key": "nope"})
    assert client.get(missing).status_code == 404


def test_entity_page_adds_mentions_and_aliases(client, user, kb):
    client = login(client, user)
    url = reverse("linking:mention-add", kwargs={"model": kb.label, "key": "java_island"})
    client.post(url, {"sentence": "Ferries link Bali to eastern [Java] across a narrow strait."})
    assert Mention.objects.filter(entity__key="java_island").count() == 4
    response = client.post(url, {"sentence": "Ferries link Bali to eastern [Jawa]."}, follow=True)
    assert "not an alias" in response.content.decode()
    alias_url = reverse("linking:alias-add", kwargs={"model": kb.label, "key": "java_island"})
    client.post(alias_url, {"alias": "Jawa"})
    response = client.post(alias_url, {"alias": "jawa"}, follow=True)
    assert "case variant of “Jawa”" not in response.content.decode()  # lower case is wider: it replaces "Jawa"
    assert "The alias “jawa” is in place" in response.content.decode()


def test_page_with_only_a_model_shows_no_error(client, user, kb):
    html = login(client, user).get(reverse("linking:page"), {"model": kb.label}).content.decode()
    assert 'role="alert"' not in html


def test_linking_page_shows_api_snippets_with_the_text(client, user):
    from apps.linking.services import kb_get_or_create

    kb_get_or_create(name="snippet-kb", serving=True)
    client.force_login(user)
    html = client.get(reverse("linking:page"), {"text": "Paris is big"}).content.decode()
    assert "http://testserver/api/link" in html and "&quot;text&quot;: &quot;Paris is big&quot;" in html


@pytest.mark.parametrize("target", ["//evil.example", "//evil.example/linking/", "/\\evil.example",
                                    "https://evil.example/", "http:evil.example", " //evil.example",
                                    "javascript:alert(1)"])
def test_next_after_adding_a_mention_never_leaves_the_site(client, user, kb, target):
    client = login(client, user)
    url = reverse("linking:mention-add", kwargs={"model": kb.label, "key": "java_island"})
    response = client.post(url, {"sentence": "Ferries link Bali to eastern [Java] daily.", "next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("linking:entity", kwargs={"model": kb.label, "key": "java_island"})


def test_next_after_adding_a_mention_may_point_inside_the_site(client, user, kb):
    client = login(client, user)
    url = reverse("linking:mention-add", kwargs={"model": kb.label, "key": "java_island"})
    response = client.post(url, {"sentence": "Ferries link Bali to eastern [Java] daily.",
                                 "next": "/linking/?text=Java"})
    assert response.status_code == 302 and response["Location"] == "/linking/?text=Java"


def test_results_reload_from_the_url_and_history_restores_get_the_whole_page(client, user, kb):
    """Issue 25: /linking/?text=… fills the form and the results from the URL; htmx's history restore (Back past
    its cache) asks with HX-Request too and must get the whole page, not the results partial."""
    client = login(client, user)
    text = "Programmers love Java because of its huge library of frameworks."
    full = client.get(reverse("linking:page"), {"text": text}).content.decode()
    assert f"{text}</textarea>" in full and f'data-text="{text}"' in full
    restore = client.get(reverse("linking:page"), {"text": text}, HTTP_HX_REQUEST="true",
                         HTTP_HX_HISTORY_RESTORE_REQUEST="true", HTTP_HX_TARGET="link-results")
    body = restore.content.decode()
    assert "<html" in body and f"{text}</textarea>" in body and 'data-entity="java_language"' in body
    partial = client.get(reverse("linking:page"), {"text": text}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="link-results")
    assert "<html" not in partial.content.decode() and 'data-entity="java_language"' in partial.content.decode()
    assert "HX-Request" in partial["Vary"] and "HX-History-Restore-Request" in partial["Vary"]
