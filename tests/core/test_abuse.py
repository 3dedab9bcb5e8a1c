"""Issue 13: bad or abusive inputs get a clear 4xx, never a server error. Each case: what is sent and the
status it must get (the report's table comes from this list)."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.linking.conftest import kb, kb_lines  # noqa: F401 - fixtures for the linking cases

pytestmark = pytest.mark.django_db

J = "application/json"

CASES = [
    # (id, method, url, body (dict → JSON, str → raw JSON text), expected status)
    ("predict-input-over-20000-chars", "post", "/api/models/m/predict", {"inputs": ["x" * 20_001]}, 422),
    ("predict-1001-inputs", "post", "/api/models/m/predict", {"inputs": ["x"] * 1001}, 400),
    ("predict-inputs-not-a-list", "post", "/api/models/m/predict", {"inputs": "x"}, 422),
    ("predict-inputs-of-numbers", "post", "/api/models/m/predict", {"inputs": [1, {"a": 2}]}, 422),
    ("predict-broken-json", "post", "/api/models/m/predict", '{"inputs": [', 400),
    ("predict-unknown-model", "post", "/api/models/m/predict", {"inputs": ["x"]}, 404),
    ("predict-model-name-traversal", "post", "/api/models/..%2F..%2Fetc/predict", {"inputs": ["x"]}, 404),
    ("link-6000-chars", "post", "/api/link", {"text": "Paris " * 1000}, 400),
    ("link-empty", "post", "/api/link", {"text": ""}, 400),
    ("link-text-not-a-string", "post", "/api/link", {"text": ["a"]}, 422),
    ("kb-entity-201-mentions", "post", "/api/kb/any/entities",
     {"id": "x", "name": "X", "mentions": [{"text": "A [X].", "start": 3, "end": 4}] * 201}, 400),
    ("kb-entity-101-aliases", "post", "/api/kb/any/entities", {"id": "x", "name": "X", "aliases": ["a"] * 101}, 400),
    ("kb-unknown", "post", "/api/kb/nope/entities", {"id": "x", "name": "X"}, 404),
    ("kb-mention-huge-offsets", "post", "/api/kb/test-kb/entities/java_island/mentions",
     {"text": "abc", "start": 10**30, "end": -1}, 400),
    ("kb-mention-sentence-over-limit", "post", "/api/kb/test-kb/entities/java_island/mentions",
     {"text": "Java " * 2000, "start": 0, "end": 4}, 400),
    ("fallback-id-overflow", "get", "/api/fallbacks/99999999999999999999999", None, 404),
    ("fallback-id-not-a-number", "get", "/api/fallbacks/abc", None, 422),
    ("fallback-cancel-missing", "post", "/api/fallbacks/123456/cancel", None, 404),
]


@pytest.mark.parametrize("case_id,method,url,body,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_api_input_gets_a_clear_4xx(api_client, request, case_id, method, url, body, expected):
    if url.startswith(("/api/link", "/api/kb/test-kb")):
        request.getfixturevalue("kb")  # the linking tests' small KB ("test-kb")
    kwargs = {}
    if body is not None:
        kwargs = {"data": body if isinstance(body, str) else json.dumps(body), "content_type": J}
    response = getattr(api_client, method)(url, **kwargs)
    assert response.status_code == expected, (case_id, response.status_code, response.content[:300])
    if response["Content-Type"].startswith("application/json"):
        assert response.json().get("detail"), case_id  # says why


def test_bad_tokens_and_read_only_tokens(client, user):
    from apps.accounts.services import api_token_create

    for header in ("Bearer ", "Bearer ssk_" + "A" * 5000, "Basic dXNlcjpwYXNz", "Bearer ' OR 1=1 --"):
        assert client.get("/api/me", HTTP_AUTHORIZATION=header).status_code == 401, header
    _, raw = api_token_create(user=user, name="ro", read_only=True)
    response = client.post("/api/link", {"text": "Paris"}, content_type=J, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403


def test_bad_pages_inputs(client, user, plain_user, settings):
    client.force_login(user)
    # a batch upload that is not UTF-8, one too big, one without rows: the form says why (no model: 404 first)
    for data in (b"\xff\xfe\x00bad", b"", b"text\n"):
        upload = SimpleUploadedFile("x.csv", data, content_type="text/csv")
        assert client.post("/models/nope/batch/", {"file": upload}).status_code == 404
    # the dashboard with nonsense dates
    assert client.get("/dashboard/", {"from": "99999-99-99", "to": "'; DROP TABLE x"}).status_code == 200
    # another user's fallback
    assert client.get("/fallbacks/99999999999999999999/").status_code == 404
    client.force_login(plain_user)
    assert client.post("/models/register/", {"uri": "/etc"}).status_code == 403
