"""Issue 22: inputs that gave server errors now get a clear 4xx: numbers outside their column's type on every
search surface (422 from the one validation place), lone UTF-16 surrogates and NUL in JSON bodies (400), bodies
over the upload limit (413), and an unexpected API error is a JSON 500 with an id, never a traceback."""
import base64
import json
import logging

import pytest

from apps.search.errors import SearchValidationError
from apps.search.query import SearchQuery, Filter, query_validate
from apps.search.tables import TableSpec
from tests.search.conftest import demo_subset  # noqa: F401

pytestmark = pytest.mark.django_db

HUGE = str(2**127)


def _spec() -> TableSpec:
    return TableSpec(name="t", key="id", columns={"id": "BIGINT", "tiny": "TINYINT", "u": "UBIGINT", "f": "FLOAT",
                                                   "d": "DOUBLE", "h": "HUGEINT"},
                     searchable={c: ("eq", "gt", "in") for c in ("id", "tiny", "u", "f", "d", "h")},
                     shown=("id",))


@pytest.mark.parametrize("column,op,value,ok", [
    ("id", "eq", str(2**63 - 1), True), ("id", "eq", str(2**63), False), ("id", "gt", str(-2**63), True),
    ("id", "gt", str(-2**63 - 1), False), ("id", "in", f"1,{HUGE}", False), ("tiny", "eq", "127", True),
    ("tiny", "eq", "128", False), ("tiny", "gt", "-129", False), ("u", "eq", "-1", False),
    ("u", "eq", str(2**64 - 1), True), ("h", "eq", str(2**127 - 1), True), ("h", "eq", HUGE, False),
    ("f", "gt", "3e38", True), ("f", "gt", "1e39", False), ("d", "gt", "1e308", True), ("d", "gt", "1e400", False),
])
def test_a_number_must_fit_its_columns_type(column, op, value, ok):
    query = SearchQuery(table="t", filters=(Filter(column, op, value),), limit=10)
    if ok:
        assert query_validate(query=query, spec=_spec())
    else:
        with pytest.raises(SearchValidationError) as caught:
            query_validate(query=query, spec=_spec())
        message = caught.value.errors[f"{column}__{op}"][0]
        assert "out of range" in message or "not a finite number" in message


def _token(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize("params", [
    {"length__gt": HUGE}, {"id__in": f"1,{HUGE}"}, {"id__lte": str(-2**127 - 1)}, {"length__eq": str(2**63)},
    {"_next": _token([2**127])}, {"crawled_at__gt": "0001-01-01T00:00:00+01:00"},
])
def test_out_of_range_filters_are_refused_on_every_search_surface(client, user, demo_subset, params):
    client.raise_request_exception = False
    client.force_login(user)
    api = client.get("/api/search", params)
    assert api.status_code == 422 and "out of range" in api.json()["detail"] or "does not fit" in api.json()["detail"]
    export = client.get("/samples/", {**params, "format": "csv"})
    assert export.status_code == 422
    page = client.get("/samples/", params)
    assert page.status_code == 400  # the page's form errors, shown by the field
    partial = client.get("/samples/", params, HTTP_HX_REQUEST="true")
    facets = client.get("/samples/facets/", params, HTTP_HX_REQUEST="true")
    score = client.get("/models/score-search/", {"model": "none", **params})
    for response in (page, partial, facets):
        assert response.status_code < 500 and ("out of range" in response.content.decode()
                                               or "does not fit" in response.content.decode())
    assert score.status_code < 500
    # and an ordinary search still answers
    assert client.get("/api/search", {"length__gt": "10"}).status_code == 200


@pytest.mark.parametrize("url,body", [
    ("/api/models/m/predict", '{"inputs": ["ok", "\\ud800"]}'),
    ("/api/link", '{"text": "Paris \\udfff"}'),
    ("/api/kb/any/entities", '{"id": "x", "name": "\\ud83d", "aliases": ["a"]}'),
    ("/api/kb/any/entities/x/mentions", '{"text": "Java\\ud800", "start": 0, "end": 4}'),
    ("/api/kb/any/entities", '{"id": "x", "name": "X", "\\ud800": 1}'),
])
def test_json_bodies_with_lone_surrogates_are_a_400(api_client, url, body):
    response = api_client.post(url, body, content_type="application/json")
    assert response.status_code == 400 and "lone UTF-16 surrogate" in response.json()["detail"]


def test_json_bodies_with_nul_are_a_400_and_a_surrogate_pair_is_text(api_client):
    response = api_client.post("/api/link", '{"text": "Paris\\u0000"}', content_type="application/json")
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    response = api_client.post("/api/link", '{"text": "Paris \\ud83d\\ude00"}', content_type="application/json")
    assert response.status_code == 404  # an emoji as a pair is fine: it got as far as looking for a KB


def test_nul_in_a_search_value_is_a_400(api_client):
    response = api_client.get("/api/search", {"text__contains": "a\x00b"})
    assert response.status_code == 400 and "NUL" in response.json()["detail"]


def test_a_body_over_the_upload_limit_is_a_413_with_a_json_message(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    body = json.dumps({"text": "x" * (1024 * 1024 + 1)})
    response = api_client.post("/api/link", body, content_type="application/json")
    assert response.status_code == 413 and "over the 1 MB limit" in response.json()["detail"]
    small = api_client.post("/api/link", json.dumps({"text": "Paris"}), content_type="application/json")
    assert small.status_code == 404  # under the limit it reaches the endpoint (no KB here)


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_api_error_is_a_json_500_with_an_id_and_no_traceback(api_client, settings, monkeypatch,
                                                                            caplog, debug):
    from apps.modelhub import api as modelhub_api

    def boom():
        raise RuntimeError("secret internals")

    settings.DEBUG = debug
    monkeypatch.setattr(modelhub_api, "model_listing", boom)
    api_client.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="apps.samplescope.api"):
        response = api_client.get("/api/models")
    assert response.status_code == 500 and response["Content-Type"].startswith("application/json")
    data = response.json()
    assert data["detail"] == "Internal error" and len(data["id"]) == 12
    assert "secret" not in response.content.decode() and "Traceback" not in response.content.decode()
    logged = [r for r in caplog.records if data["id"] in r.getMessage()]
    assert logged and "secret internals" in str(logged[0].exc_info[1])
    # expected errors keep their own statuses
    assert api_client.get("/api/fallbacks/123456").status_code == 404
