"""Issue 22: a table of hostile inputs thrown at every search, model and linking endpoint, page and API: none may
answer with a server error (5xx). Huge and tiny integers, 1e400, NaN, infinities, lone UTF-16 surrogates, NUL
bytes, a 1,000,001-character string, bad UTF-8 in query strings, deep nesting, wrong JSON types, a body over the
upload limit. The test prints how many requests it sent (inputs × slots × endpoints)."""
from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.linking.conftest import kb, kb_lines  # noqa: F401 - the linking tests' small KB ("test-kb")
from tests.modelhub.conftest import demo_build, demo_data_dir, demo_models  # noqa: F401
from tests.search.conftest import demo_subset  # noqa: F401

pytestmark = pytest.mark.django_db

HUGE = 2**127
# Values for text slots (query strings, forms, JSON strings) and number slots alike.
TEXT_VALUES = [
    str(HUGE), str(-HUGE - 1), str(2**63), str(-2**63 - 1), "1e400", "-1e400", "NaN", "inf", "-Infinity", "1e-400",
    "\ud800", "a\udfffb", "a\x00b", "\x00", "x" * 1_000_001, "²", "١٢٣", "0x10", "1_000", "", " ", "'; DROP TABLE x --",
    "%_\\", "(((((a*)*)*)*)*$", "[", "\u202e\u0301", "\U0001F600", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00", "-0", "true", "null",
]
# Extra raw query strings: bad UTF-8, percent-encoded surrogates, broken escapes.
RAW_QUERIES = ["{slot}=%ff%fe", "{slot}=%ed%a0%80", "{slot}=%", "{slot}=%zz", "{slot}=\xff\xfe", "{slot}"]
# JSON values for any JSON slot (wrong types included).
JSON_VALUES = [HUGE, -HUGE - 1, 1e308, float("nan"), float("inf"), float("-inf"), None, True, [], {}, [[["x"]]],
               {"a": "\ud800"}, "\ud800", "a\x00b", "x" * 1_000_001, 0, -1, 2**63, str(HUGE)]
# Whole JSON bodies, whatever the endpoint.
DEEP = "[" * 100_000 + "]" * 100_000
RAW_BODIES = ['{"inputs": [', DEEP, '{"text": ' + DEEP + "}", "null", "[]", '"text"', "\xff\xfe", '{"text": "\\ud800"}',
              '{"inputs": ["\\udc00"]}', '{"a": "\\u0000"}', b'{"text": "' + b"a" * (21 * 1024 * 1024) + b'"}']

SEARCH_SLOTS = ["length__gt", "length__eq", "id__in", "id__lte", "crawled_at__gt", "text__contains", "text__regex",
                "domain__in", "label__eq", "text__isnull", "limit", "_next", "_sort", "table", "fallback", "confirm",
                "_count", "unknown__contains", "text__nope"]
# The page surfaces share the API's parsing and validation: a slot of each kind there.
PAGE_SLOTS = ["length__gt", "id__in", "crawled_at__gt", "text__contains", "text__regex", "limit", "_next", "fallback"]


class Tally:
    def __init__(self, client):
        self.client, self.sent, self.errors = client, 0, []

    def check(self, what: str, response):
        self.sent += 1
        if response.status_code >= 500:
            self.errors.append((what, response.status_code, response.content[:200]))

    def get(self, url: str, params=None, raw: str | None = None, **extra):
        if raw is not None:
            extra["QUERY_STRING"] = raw
        response = self.client.get(url, _wire(params), **extra)
        self.check(f"GET {url} {raw if raw is not None else _short(params)}", response)

    def post(self, url: str, data, **extra):
        self.check(f"POST {url} {_short(data)}", self.client.post(url, _wire(data), **extra))

    def post_json(self, url: str, body):
        raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
        self.check(f"POST {url} {_short(raw)}", self.client.post(url, raw, content_type="application/json"))


def _wire(data):
    """Values as a browser would send them: a lone surrogate cannot be encoded as UTF-8, so it travels as the
    bytes it would be (ED A0 80 for U+D800: invalid UTF-8)."""
    if not isinstance(data, dict):
        return data
    return {k: v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v for k, v in data.items()}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "…"


def _query_endpoints(t: Tally):
    """GET endpoints that read a search (or a model/linking text) from the query string."""
    base = {"text__contains": "the"}
    for url, extra, slots in [
        ("/api/search", {}, SEARCH_SLOTS),
        ("/samples/", {}, SEARCH_SLOTS),
        ("/samples/", {"HTTP_HX_REQUEST": "true"}, PAGE_SLOTS),
        ("/samples/?format=csv", {}, PAGE_SLOTS),
        ("/samples/facets/", {"HTTP_HX_REQUEST": "true"}, PAGE_SLOTS + ["_facet_more"]),
        ("/models/score-search/?model=tfidf-logreg", {}, PAGE_SLOTS + ["model", "version"]),
        ("/models/tfidf-logreg/", {}, ["text", "example", "version", "check"]),
        ("/models/tfidf-logreg/compare/", {}, ["text", "a", "b", "example"]),
        ("/linking/", {}, ["text", "model", "m", "meant"]),
        ("/linking/", {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "mention-detail"}, ["text", "m", "meant"]),
        ("/api/kb/test-kb/entities", {}, ["q", "limit"]),
        ("/linking/kb/test-kb/", {}, ["q", "id", "name", "mentions"]),
    ]:
        path, _, fixed = url.partition("?")
        fixed_params = dict(p.split("=") for p in fixed.split("&")) if fixed else {}
        for slot in slots:
            for value in TEXT_VALUES:
                params = {**fixed_params, "text": "Paris", **base, slot: value} if path.startswith("/linking") \
                    else {**fixed_params, **base, slot: value}
                t.get(path, params, **extra)
            for raw in RAW_QUERIES:
                t.get(path, raw=(fixed + "&" if fixed else "") + raw.format(slot=slot), **extra)


def _form_endpoints(t: Tally):
    """Pages that take a POSTed form."""
    for value in TEXT_VALUES:
        t.post("/models/tfidf-logreg/", {"text": value}, HTTP_HX_REQUEST="true")
        t.post("/models/tfidf-logreg/", {"text": "fine", "version": value})
        for slot in ("text", "key", "start", "end"):
            data = {"text": "Paris is big.", "key": "paris", "start": "0", "end": "5", slot: value}
            t.post("/linking/kb/test-kb/correct/", data)
        t.post("/linking/kb/test-kb/entities/java_island/mentions/", {"sentence": value, "mention": value})
        t.post("/linking/kb/test-kb/entities/java_island/aliases/", {"alias": value})
        t.post("/models/tfidf-logreg/batch/preview/", {"text_column": value, "file": SimpleUploadedFile(
            "x.csv", ("text\n" + value + "\n").encode("utf-8", "surrogatepass"), content_type="text/csv")})
        t.post("/models/tfidf-logreg/batch/", {"text_column": value, "version": value, "file": SimpleUploadedFile(
            "x.csv", ("text,n\n" + value + ",1\n").encode("utf-8", "surrogatepass"), content_type="text/csv")})
        t.get("/fallbacks/1/", {"request": value})
        t.post("/fallbacks/1/cancel/", {"request": value, "next": value})


def _json_endpoints(t: Tally):
    """API endpoints that take a JSON body: every value in every slot, then whole bad bodies."""
    endpoints = [
        ("/api/models/tfidf-logreg/predict", {"inputs": ["a fine text"], "version": None}, ["inputs", "version"]),
        ("/api/models/minilm-topic/predict", {"inputs": ["a fine text"]}, ["inputs"]),
        ("/api/link", {"text": "Paris is big.", "model": None}, ["text", "model"]),
        ("/api/kb/test-kb/entities", {"id": "hostile", "name": "Hostile", "aliases": ["Hostile"], "mentions": []},
         ["id", "name", "type", "aliases", "description", "url", "mentions"]),
        ("/api/kb/test-kb/entities/java_island/mentions", {"text": "Java is an island.", "start": 0, "end": 4},
         ["text", "start", "end"]),
    ]
    for url, body, slots in endpoints:
        for slot in slots:
            for value in JSON_VALUES:
                t.post_json(url, {**body, slot: value})
                t.post_json(url, {**body, slot: [value]})
        for raw in RAW_BODIES:
            t.post_json(url, raw)


def test_hostile_inputs_never_get_a_server_error(client, user, settings, demo_subset, demo_models, kb):
    for scope in ("SEARCH", "SCORE", "PREDICT", "LINK", "BATCH"):  # this test is about inputs, not limits
        setattr(settings, f"RATE_LIMIT_{scope}_PER_MINUTE", 0)
    client.raise_request_exception = False  # a server error is a 500 here, counted, not an exception
    client.force_login(user)
    tally = Tally(client)
    _query_endpoints(tally)
    _form_endpoints(tally)
    client.defaults["HTTP_AUTHORIZATION"] = ""  # the API with the session, as the app's own pages call it
    _json_endpoints(tally)
    print(f"\nhostile inputs: {tally.sent} requests, {len(tally.errors)} server errors")
    assert tally.sent > 3000
    assert tally.errors == [], "\n".join(map(str, tally.errors[:40])) + f"\n… {len(tally.errors)} in all"
