"""One search context per request, the plan in every answer, and a lean request path (issue 23, items 4-5).

The SQL a search costs is pinned exactly (CaptureQueriesContext), so a query added to the path fails here; the
filters are validated once, CURRENT is read once, and a swap of the subset between two reads of one request
cannot mix files."""
from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.search.models import SearchLog

pytestmark = pytest.mark.django_db

FOUND = "/api/search?text__contains=match&limit=5"  # the subset fills the page: no learned rows, no warehouse


def _tables(queries) -> list[tuple[str, str]]:
    """(statement kind, first table) of each captured query."""
    found = []
    for query in queries:
        sql = query["sql"]
        kind = sql.split(None, 1)[0].upper()
        table = re.search(r'(?:FROM|INTO|UPDATE)\s+"(\w+)"', sql)
        found.append((kind, table.group(1) if table else ""))
    return found


def test_a_token_search_costs_four_queries_and_inserts_without_selecting_first(api_client, demo_subset):
    assert api_client.get(FOUND).status_code == 200  # the token's first use this minute writes last_used_at
    with CaptureQueriesContext(connection) as ctx:
        response = api_client.get(FOUND)
    assert response.status_code == 200 and len(response.json()["rows"]) == 5
    assert _tables(ctx.captured_queries) == [
        ("SELECT", "accounts_apitoken"),  # the token and its user, in one query
        ("SELECT", "auth_permission"),  # the role check, once
        ("SAVEPOINT", ""),  # one transaction (in production BEGIN IMMEDIATE: one write lock) for ...
        ("INSERT", "search_searchlog"),  # ... the log ...
        ("INSERT", "audit_auditevent"),  # ... and the audit event: one INSERT each, nothing read before them
        ("RELEASE", ""),
    ]


def test_a_page_search_costs_a_fixed_number_of_queries(client, user, demo_subset):
    client.force_login(user)
    url = "/samples/?text__contains=match&limit=5"
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    assert _tables(ctx.captured_queries) == [
        ("SELECT", "django_session"),
        ("SELECT", "auth_user"),
        ("SELECT", "auth_permission"),  # the role check, once per request
        ("SAVEPOINT", ""),
        ("INSERT", "search_searchlog"),
        ("INSERT", "audit_auditevent"),
        ("RELEASE", ""),
        ("SELECT", "search_searchlog"),  # "my recent searches" on the full page
        ("SELECT", "warehouse_fallbackrequest"),
    ]
    with CaptureQueriesContext(connection) as ctx:  # htmx asks for the results only: no recent searches
        assert client.get(url, HTTP_HX_REQUEST="true").status_code == 200
    assert [t for _, t in _tables(ctx.captured_queries)].count("auth_permission") == 1
    assert len(ctx.captured_queries) == 7


def test_a_user_without_the_role_is_refused_before_any_search_is_logged(client, plain_user, demo_subset):
    from apps.accounts.services import api_token_create

    _, raw = api_token_create(user=plain_user, name="no role")
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(FOUND, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403 and "analyst" in response.json()["detail"]
    assert not SearchLog.objects.exists() and not AuditEvent.objects.filter(action="search").exists()
    assert _tables(ctx.captured_queries) == [
        ("SELECT", "accounts_apitoken"),
        ("UPDATE", "accounts_apitoken"),  # its first use: last_used_at
        ("SELECT", "auth_permission"),  # refused here: nothing written after it
    ]


def test_last_used_at_is_written_at_most_once_a_minute(api_client, user, monkeypatch):
    from django.utils import timezone

    from apps.accounts.models import ApiToken

    now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now)

    def updates() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert api_client.get("/api/me").status_code == 200
        return sum(1 for kind, table in _tables(ctx.captured_queries) if kind == "UPDATE" and table == "accounts_apitoken")

    assert updates() == 1  # first use: written
    assert ApiToken.objects.get(user=user).last_used_at == now
    now += dt.timedelta(seconds=59)
    assert updates() == 0  # within the minute: not written again
    assert ApiToken.objects.get(user=user).last_used_at == now - dt.timedelta(seconds=59)
    now += dt.timedelta(seconds=2)  # over a minute since it was written
    assert updates() == 1
    assert ApiToken.objects.get(user=user).last_used_at == now


def _count_validations(monkeypatch) -> list:
    """Every call of query_validate, wherever it is called from."""
    import importlib

    import apps.search.query as query_module

    calls = []
    original = query_module.query_validate

    def counted(**kwargs):
        calls.append(kwargs["query"])
        return original(**kwargs)

    for name in ("apps.search.query", "apps.search.selectors", "apps.search.context"):
        module = importlib.import_module(name)
        if hasattr(module, "query_validate"):
            monkeypatch.setattr(module, "query_validate", counted)
    return calls


def _count_current_reads(monkeypatch) -> list:
    from apps.search.store import SwappedFiles

    reads = []
    original = SwappedFiles.current_path

    def counted(self):
        reads.append(self.prefix)
        return original(self)

    monkeypatch.setattr(SwappedFiles, "current_path", counted)
    return reads


def _learned_rows_for(needle: str, count: int, settings, tmp_path) -> None:
    """`count` rows holding `needle`, learned from a (pretend) fallback, with keys the subset does not hold."""
    from apps.search.store import subset_connection
    from apps.search.tables import table_spec_get
    from apps.warehouse.learned import learned_answer_add

    settings.SUBSET_LEARNING_ENABLED = True
    settings.SUBSET_LEARNED_DIR = str(tmp_path / "learned")
    spec = table_spec_get(name="samples")
    cursor = subset_connection().cursor()
    template = dict(zip([d[0] for d in cursor.execute("SELECT * FROM samples LIMIT 1").description],
                        cursor.fetchone()))
    cursor.close()
    rows = [{**template, "id": 10**9 + i, "text": f"learned {needle} row {i}"} for i in range(count)]
    from apps.search.query import Filter, SearchQuery

    learned_answer_add(spec=spec, query=SearchQuery("samples", (Filter("text", "contains", needle),), 50), rows=rows)


@pytest.mark.parametrize("where", ["api", "page", "export"])
def test_the_filters_are_validated_once_and_current_read_once_per_request(
        where, api_client, client, user, demo_subset, monkeypatch, settings, tmp_path):
    needle = "zebrafishlearned"  # in no subset row: the subset's index answers "empty", then the learned rows
    # Nor in the full data: its vocabulary would prove the search empty before the learned rows (a learned row
    # of a word the full data lacks only happens when the vocabulary is older than the answer).
    settings.SEARCH_VOCABULARY_ENABLED = False
    _learned_rows_for(needle, 3, settings, tmp_path)
    client.force_login(user)
    url = {"api": f"/api/search?text__contains={needle}&lang__in=en,de,fr,es,ru,zh,ja,ar,pt,it&limit=2&_count=1",
           "page": f"/samples/?text__contains={needle}&limit=2",
           "export": f"/samples/?text__contains={needle}&limit=2&format=json"}[where]
    (api_client if where == "api" else client).get(url)  # warm: the known values, the learned snapshot
    validations = _count_validations(monkeypatch)
    reads = _count_current_reads(monkeypatch)
    response = (api_client if where == "api" else client).get(url)
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if where == "export" else response.content
    marker = b'<tr data-source="learned">' if where == "page" else b'"_source": "learned"'
    assert body.count(marker) == 2  # the learned rows were searched too
    assert len(validations) == 1, validations
    assert reads.count("subset") == 1 and reads.count("learned") <= 1, reads


def test_the_plan_is_in_the_answer_the_api_the_log_and_the_page(api_client, client, user, demo_subset):
    body = api_client.get("/api/search?text__contains=zzqqxxnothere&limit=5").json()
    assert body["plan"]["subset"]["kind"] == "empty" and body["plan"]["subset"]["read"] == 0
    assert "no row holds" in body["plan"]["subset"]["reason"]
    assert SearchLog.objects.get(pk=body["search_log_id"]).plan == body["plan"]

    frequent = api_client.get("/api/search?text__contains=match&limit=5").json()
    assert frequent["plan"]["subset"]["kind"] == "scan" and frequent["plan"]["learned"] is None
    assert SearchLog.objects.get(pk=frequent["search_log_id"]).plan["subset"]["kind"] == "scan"

    client.force_login(user)
    html = client.get("/samples/?text__contains=zzqqxxnothere&limit=5").content.decode()
    assert "How this was answered" in html
    assert re.search(r"data-plan-text>subset by empty: no row holds", html)


def test_the_index_plan_reports_its_candidates_and_rows_read(demo_subset, monkeypatch):
    from apps.search import selectors
    from apps.search.context import search_context_build
    from apps.search.query import Filter, SearchQuery

    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)  # never "frequent": the index answers
    context = search_context_build(query=SearchQuery("samples", (Filter("text", "contains", "match"),), 3))
    outcome = selectors.subset_search(context=context, timeout_ms=5000)
    expected = demo_subset.count("contains(text, 'match')")
    assert outcome.plan.kind == "index" and outcome.plan.candidates >= expected > 3
    assert 3 <= outcome.plan.read <= selectors.FIRST_ROUND_ROWS and len(outcome.rows) == 3
    assert "candidates" in outcome.plan.describe() and "read" in outcome.plan.describe()


def _own_subset(settings, tmp_path, rows: list[tuple[int, str]]) -> None:
    from apps.search.services import subset_table_write

    settings.SEARCH_SUBSET_DIR = str(tmp_path / "subset")
    subset_table_write(name="swapped", arrow=pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows]}),
                       description={"key": "id", "shown": ["id", "text"]}, keep_other_tables=False)


def test_a_swap_between_two_reads_of_one_request_cannot_mix_files(demo_subset, settings, tmp_path):
    from apps.search.context import search_context_build, search_store_open
    from apps.search.query import Filter, SearchQuery
    from apps.search.selectors import search_facets, subset_match_count, subset_row_count, subset_search

    _own_subset(settings, tmp_path, [(1, "alpha one"), (2, "alpha two"), (3, "beta")])
    store = search_store_open()
    context = search_context_build(query=SearchQuery("swapped", (Filter("text", "contains", "alpha"),), 1), store=store)
    _own_subset(settings, tmp_path, [(7, "alpha seven")])  # the swap, in the middle of "the request"
    assert [row[0] for row in subset_search(context=context, timeout_ms=5000).rows] == [1]
    assert subset_match_count(context=context, timeout_ms=5000).count == 2  # the old file's, not the new one's 1
    assert subset_row_count(spec=context.spec, store=store) == 3
    assert search_facets(context=context, timeout_ms=5000) == ([], False)
    fresh = search_context_build(query=context.query)  # the next request reads the new file
    assert [row[0] for row in subset_search(context=fresh, timeout_ms=5000).rows] == [7]


def test_a_swap_in_the_middle_of_the_pipeline_keeps_its_count_on_the_first_file(demo_subset, settings, tmp_path,
                                                                                monkeypatch, user):
    import apps.samples.pipeline as pipeline
    from apps.search.query import Filter, SearchQuery

    _own_subset(settings, tmp_path, [(1, "alpha one"), (2, "alpha two"), (3, "alpha three")])
    original = pipeline.subset_search

    def search_then_swap(**kwargs):
        outcome = original(**kwargs)
        _own_subset(settings, tmp_path, [(7, "alpha seven")])
        return outcome

    monkeypatch.setattr(pipeline, "subset_search", search_then_swap)
    answer = pipeline.search_answer(user=user, query=SearchQuery("swapped", (Filter("text", "contains", "alpha"),), 2),
                                    log=False)
    assert [row.values["id"] for row in answer.rows] == [1, 2]
    assert (answer.match_count, answer.match_count_exact) == (3, True)  # counted in the file the rows came from


def test_one_presenter_gives_the_page_the_export_and_the_api_the_same_next_page_notice_and_counts(
        api_client, client, user, demo_subset):
    from urllib.parse import parse_qsl, urlsplit

    body = api_client.get("/api/search?text__contains=match&limit=3&_sort=id").json()
    client.force_login(user)
    html = client.get("/samples/?text__contains=match&limit=3&_sort=id").content.decode()
    page_next = re.search(r'href="(/samples/\?[^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert parse_qsl(urlsplit(body["next"]).query) == parse_qsl(urlsplit(page_next).query)
    assert body["counts"] == {"subset": 3, "learned": 0, "warehouse": 0} and body["local_count"] == 3
    export = client.get("/samples/?text__contains=match&limit=3&_sort=id&format=csv")
    assert export.status_code == 200
    event = AuditEvent.objects.filter(action="export").latest("id")
    assert event.detail["rows"] == body["counts"] and event.detail["plan"] == body["plan"]


@pytest.mark.parametrize("query", [
    "text__contains=match&limit=5",  # rows of every column type (dates too)
    "text__contains=match&limit=5&_count=1&_sort_desc=id&_col=id&_col=text",
    "text__contains=zzzqqq&limit=5",  # nothing local: the notice, no rows
])
def test_the_api_answer_is_exactly_search_outs_shape(api_client, demo_subset, query):
    """/api/search renders its answer without ninja re-validating it (apps/samples/api.py): this checks that
    what it sends is what SearchOut's validation would have sent, field for field."""
    from apps.samples.api import SearchOut

    response = api_client.get(f"/api/search?{query}")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    data = response.json()
    assert SearchOut.model_validate(data).model_dump(mode="json") == data
    assert set(data) == set(SearchOut.model_fields)


def test_a_search_writes_its_log_and_audit_under_the_lock(api_client, demo_subset, monkeypatch):
    from apps.samples import pipeline

    held = []
    real = pipeline.database_write_lock

    def watching(**kwargs):
        held.append("taken")
        return real(**kwargs)

    monkeypatch.setattr(pipeline, "database_write_lock", watching)
    assert api_client.get("/api/search?text__contains=match&limit=5").status_code == 200
    assert held == ["taken"]
