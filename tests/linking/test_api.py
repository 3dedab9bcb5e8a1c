import pytest

from apps.audit.models import AuditEvent
from apps.linking.models import Entity, Mention

from .conftest import TEXAS_SENTENCE, paris_texas_record


def post(client, url, body):
    return client.post(url, body, content_type="application/json")


def test_link_needs_auth(client, kb):
    assert post(client, "/api/link", {"text": "Paris"}).status_code == 401


def test_link(api_client, kb):
    text = "Programmers love Java, and she ordered a Java book on Amazon."
    response = post(api_client, "/api/link", {"text": text})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "test-kb@1" and body["latency_ms"] > 0
    assert [(m["text"], m["entity_id"]) for m in body["mentions"]][0] == ("Java", "java_language")
    first = body["mentions"][0]
    assert text[first["start"] : first["end"]] == "Java"
    assert set(first) == {"start", "end", "text", "entity_id", "entity_name", "type", "score", "candidates", "unknown",
                          "nil_reason", "near_tie"}
    assert first["type"] == "other" and first["entity_name"] == "Java (programming language)"
    assert {c["entity_id"] for c in first["candidates"]} == {"java_language", "java_island"}
    assert post(api_client, "/api/link", {"text": text, "model": "test-kb@1"}).status_code == 200


@pytest.mark.parametrize(
    "body,status,message",
    [
        ({"text": ""}, 400, "empty"),
        ({"text": "x" * 6000}, 400, "limit"),
        ({"text": "Paris", "model": "nope"}, 404, "no entity-linking model"),
    ],
)
def test_link_bad_input(api_client, kb, body, status, message):
    response = post(api_client, "/api/link", body)
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_link_missing_field_is_422(api_client, kb):
    assert post(api_client, "/api/link", {"txt": "Paris"}).status_code == 422


def test_entities_list_and_search(api_client, kb):
    body = api_client.get("/api/kb/test-kb/entities").json()
    assert body["count"] == 8 and body["model"] == "test-kb@1"
    body = api_client.get("/api/kb/test-kb/entities", {"q": "java"}).json()
    assert {e["id"] for e in body["entities"]} == {"java_island", "java_language"}
    assert body["entities"][0]["mention_count"] == 3
    assert api_client.get("/api/kb/nope/entities").status_code == 404


def test_create_delete_entity_changes_the_next_link(api_client, kb):
    def texas_answer():
        mentions = post(api_client, "/api/link", {"text": TEXAS_SENTENCE}).json()["mentions"]
        return next(m for m in mentions if m["text"] == "Paris")["entity_id"]

    assert texas_answer() != "paris_texas"
    response = post(api_client, "/api/kb/test-kb/entities", paris_texas_record())
    assert response.status_code == 201, response.content
    assert response.json()["mention_count"] == 4
    assert texas_answer() == "paris_texas"
    assert api_client.delete("/api/kb/test-kb/entities/paris_texas").status_code == 204
    assert texas_answer() != "paris_texas"
    assert api_client.delete("/api/kb/test-kb/entities/paris_texas").status_code == 404
    ops = list(AuditEvent.objects.filter(action="kb_edit").values_list("detail__op", flat=True))
    assert sorted(ops) == ["entity_create", "entity_delete", "import"]


def test_create_entity_errors(api_client, kb):
    record = paris_texas_record()
    record["aliases"] = ["Paris", "PARIS", "Paris, Texas", "P"]  # case variants are fine; "P" is too short
    response = post(api_client, "/api/kb/test-kb/entities", record)
    assert response.status_code == 400 and "too short" in response.json()["detail"]
    assert not Entity.objects.filter(key="paris_texas").exists()


def test_add_mention(api_client, kb):
    url = "/api/kb/test-kb/entities/java_island/mentions"
    text = "Ferries link Bali to eastern Java across a narrow strait."
    response = post(api_client, url, {"text": text, "start": 29, "end": 33})
    assert response.status_code == 201 and response.json()["entity_id"] == "java_island"
    assert Mention.objects.filter(entity__key="java_island").count() == 4
    response = post(api_client, url, {"text": text, "start": 29, "end": 300})
    assert response.status_code == 400 and "outside the sentence" in response.json()["detail"]
    response = post(api_client, "/api/kb/test-kb/entities/nope/mentions", {"text": text, "start": 29, "end": 33})
    assert response.status_code == 404
    assert Mention.objects.filter(entity__key="java_island").count() == 4


def test_case_variants_of_an_alias_are_merged_not_refused(api_client, kb):
    from apps.linking.models import Alias

    response = api_client.post(
        f"/api/kb/{kb.label}/entities",
        data={"id": "python_language", "name": "Python", "type": "other", "aliases": ["python", "Python", "PYTHON"],
              "description": "Programming language."},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["aliases"] == ["python"]
    assert list(Alias.objects.filter(entity__key="python_language").values_list("text", flat=True)) == ["python"]
    # capitalised variants only: the first is kept (they match the same surfaces)
    response = api_client.post(
        f"/api/kb/{kb.label}/entities",
        data={"id": "monty_python", "name": "Monty Python", "aliases": ["Monty Python", "MONTY PYTHON", "the Pythons"]},
        content_type="application/json",
    )
    assert response.status_code == 201 and response.json()["aliases"] == ["Monty Python", "the Pythons"]


def test_unknown_names_come_back_as_nil_mentions(api_client, kb):
    text = "Angela Merkel met Emmanuel Macron in Berlin to discuss Airbus."
    body = post(api_client, "/api/link", {"text": text}).json()
    assert [(m["text"], m["entity_id"], m["unknown"]) for m in body["mentions"]] == [
        ("Angela Merkel", None, True), ("Emmanuel Macron", None, True), ("Berlin", None, True), ("Airbus", None, True)]
    assert body["mentions"][0]["nil_reason"] == "a name that no alias in the KB covers"
