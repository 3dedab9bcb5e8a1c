"""The one search pipeline: subset, a named fallback, learned rows, then the warehouse; what each
caller (page, export, API, benchmark) gets back is the same answer."""
from __future__ import annotations

import csv
import io
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from apps.audit.models import AuditEvent
from apps.samples.pipeline import NO_WAREHOUSE, RowSource, search_answer
from apps.search.errors import SearchValidationError, TableNotFound
from apps.search.models import SearchLog
from apps.search.query import Filter, SearchQuery
from apps.search.tables import table_spec_get
from apps.warehouse.learned import learned_answer_add
from apps.warehouse.models import Fallback, FallbackRequest
from apps.warehouse.services import fallback_execute

pytestmark = pytest.mark.django_db

SUBSET, LEARNED, WAREHOUSE = RowSource.SUBSET, RowSource.LEARNED, RowSource.WAREHOUSE


def counts(subset=0, learned=0, warehouse=0) -> dict[str, int]:
    return {"subset": subset, "learned": learned, "warehouse": warehouse}


def test_subset_rows_match_duckdb_and_are_logged(demo_subset, user):
    term = "match"
    expected = demo_subset.count("contains(text, ?) AND lang = 'en'", [term])
    assert expected > 5
    query = SearchQuery("samples", (Filter("text", "contains", term), Filter("lang", "eq", "en")), 5)
    answer = search_answer(user=user, query=query)
    assert answer.counts == counts(subset=5) and not answer.timed_out and answer.fallback is None
    assert all(term in row.values["text"] and row.values["lang"] == "en" for row in answer.rows)
    assert answer.columns[0] == "id" and answer.elapsed_ms > 0 and not answer.complete
    assert answer.summary() == "5 rows from the subset"
    log = SearchLog.objects.get(pk=answer.log_id)
    assert (log.user, log.table, log.limit, log.local_rows, log.needed_fallback, log.timed_out) == (
        user, "samples", 5, 5, False, False)
    assert log.source_counts == counts(subset=5)
    assert log.fingerprint == query.fingerprint() and SearchQuery.from_dict(log.query) == query
    assert AuditEvent.objects.filter(action="search", user=user, detail__search_log_id=log.id).exists()

    everything = search_answer(user=user, query=SearchQuery("samples", (Filter("text", "contains", term),), 1000))
    assert everything.counts[SUBSET] == min(1000, demo_subset.count("contains(text, ?)", [term]))


def test_bad_filters_raise_and_log_nothing(demo_subset, user):
    with pytest.raises(SearchValidationError) as info:
        search_answer(user=user, query=SearchQuery("samples", (Filter("length", "gt", "many"),), 10))
    assert "length__gt" in info.value.errors and info.value.status == 422
    with pytest.raises(TableNotFound):
        search_answer(user=user, query=SearchQuery("nope", (), 10))
    assert not SearchLog.objects.exists() and not Fallback.objects.exists()


def test_a_short_search_asks_the_warehouse_once_and_keeps_only_keys(warehouse_data, user,
                                                                      django_capture_on_commit_callbacks):
    query, local, _ = warehouse_data.id_query(in_subset=2, missing=3, offset=200)
    with django_capture_on_commit_callbacks() as callbacks:
        answer = search_answer(user=user, query=query)
    assert len(callbacks) == 1  # the task is sent once the search is committed
    assert answer.counts == counts(subset=2) and {r.values["id"] for r in answer.rows} == local
    assert answer.fallback.created and answer.fallback.state == "queued" and answer.waiting
    assert not answer.complete and answer.summary() == "2 rows from the subset; the warehouse is being asked for more"
    request = FallbackRequest.objects.get(pk=answer.fallback.request_id)
    assert request.search_log_id == answer.log_id and sorted(request.local_keys) == sorted(local)
    assert SearchLog.objects.get(pk=answer.log_id).needed_fallback

    # Scoring search results (and exporting) never starts one.
    quiet, _, _ = warehouse_data.id_query(in_subset=1, missing=2, offset=230)
    assert search_answer(user=user, query=quiet, allow_fallback=False).fallback is None
    assert Fallback.objects.count() == 1


def test_a_finished_fallback_merges_into_one_answer_and_completes_it(warehouse_data, user):
    query, local, remote = warehouse_data.id_query(in_subset=2, missing=3, limit=10, offset=240)
    first = search_answer(user=user, query=query)
    fallback_execute(fallback_id=first.fallback.id)

    merged = search_answer(user=user, query=query, fallback_id=first.fallback.id, log=False)
    assert [row.source for row in merged.rows] == [SUBSET, SUBSET, WAREHOUSE, WAREHOUSE, WAREHOUSE]
    assert {row.values["id"] for row in merged.rows} == local | remote
    assert merged.counts == counts(subset=2, warehouse=3) and merged.complete  # 5 < 10: nothing more exists
    assert merged.summary() == "5 rows: 2 from the subset, 3 from the warehouse; the full dataset has no more"
    assert merged.log_id is None and SearchLog.objects.count() == 1

    # A fallback that ran another query is not merged into this one.
    other, _, _ = warehouse_data.id_query(in_subset=1, missing=1, offset=260)
    assert search_answer(user=user, query=other, fallback_id=first.fallback.id, allow_fallback=False).counts == counts(subset=1)

    # The same search later: the cached result is merged at once, no new warehouse query.
    again = search_answer(user=user, query=query)
    assert again.counts == merged.counts and again.complete and again.fallback.from_cache
    assert Fallback.objects.filter(fingerprint=query.fingerprint()).count() == 1
    assert SearchLog.objects.get(pk=again.log_id).source_counts == counts(subset=2, warehouse=3)


def test_a_fallback_that_filled_the_limit_is_not_complete(warehouse_data, user):
    """A fallback that returned exactly `limit` rows may have stopped at the LIMIT: the full dataset could
    hold more, so the answer is not complete, whether the fallback is attached by id or reused from the
    cache. One row fewer than the limit is complete (the boundary of `row_count < limit`)."""
    query, local, remote = warehouse_data.id_query(in_subset=2, missing=3, offset=285)  # limit 5, 5 rows exist
    first = search_answer(user=user, query=query)
    assert first.counts == counts(subset=2) and not first.complete
    done = fallback_execute(fallback_id=first.fallback.id)
    assert done.row_count == query.limit == 5

    attached = search_answer(user=user, query=query, fallback_id=first.fallback.id, log=False)
    assert {row.values["id"] for row in attached.rows} == local | remote and not attached.complete
    assert attached.summary() == "5 rows: 2 from the subset, 3 from the warehouse"
    reused = search_answer(user=user, query=query)
    assert reused.fallback.from_cache and reused.counts == attached.counts and not reused.complete

    wider = SearchQuery(query.table, query.filters, query.limit + 1)  # the same 5 rows for limit 6: complete
    first = search_answer(user=user, query=wider)
    fallback_execute(fallback_id=first.fallback.id)
    assert search_answer(user=user, query=wider, fallback_id=first.fallback.id, log=False).complete
    assert search_answer(user=user, query=wider).complete


def test_learned_rows_answer_a_search_and_a_complete_answer_needs_no_warehouse(warehouse_data, user, settings, tmp_path):
    settings.SUBSET_LEARNING_ENABLED = True
    settings.SUBSET_LEARNED_DIR = tmp_path / "learned"
    query, local, remote = warehouse_data.id_query(in_subset=1, missing=2, limit=5, offset=270)
    spec = table_spec_get(name="samples")
    rows = _full_rows(spec, local | remote)
    learned_answer_add(spec=spec, query=query, rows=rows)  # 3 rows for limit 5: complete

    answer = search_answer(user=user, query=query)
    assert answer.counts == counts(subset=1, learned=2) and answer.complete and answer.fallback is None
    assert {row.values["id"] for row in answer.rows if row.source == LEARNED} == remote
    assert answer.summary() == "3 rows: 1 from the subset, 2 learned from earlier fallbacks; the full dataset has no more"
    assert not Fallback.objects.exists()


def _full_rows(spec, ids):
    conn = duckdb.connect()
    columns = ", ".join(f'"{c}"' for c in spec.columns)
    result = conn.execute(f"SELECT {columns} FROM read_parquet(?) WHERE id IN (SELECT unnest(?)) ORDER BY id",
                          [spec.full_data_glob, sorted(ids)])
    names = [d[0] for d in result.description]
    out = [dict(zip(names, row)) for row in result.fetchall()]
    conn.close()
    return out


def _notes_parquet(tmp_path):
    table = pa.table({"doc_id": [f"d-{i}" for i in range(50)],
                      "body": [("=HYPERLINK(\"x\") cotton" if i == 3 else f"note {i} wool") for i in range(50)]})
    pq.write_table(table, tmp_path / "notes.parquet")
    return tmp_path / "notes.parquet"


def test_a_table_without_a_warehouse_never_starts_a_fallback(demo_subset, tmp_path, user, api_client):
    source = _notes_parquet(tmp_path)
    call_command("import_subset", str(source), table="localnotes", key="doc_id", stdout=io.StringIO())
    assert not table_spec_get(name="localnotes").has_warehouse("local")
    query = SearchQuery("localnotes", (Filter("body", "contains", "wool"),), 100)
    answer = search_answer(user=user, query=query)
    assert answer.counts == counts(subset=49) and answer.fallback is None and answer.notice == NO_WAREHOUSE
    assert not answer.has_warehouse and answer.summary() == "49 rows from the subset; this table has no warehouse"
    assert not SearchLog.objects.get(pk=answer.log_id).needed_fallback  # not a "frequent fallback" on the dashboard
    body = api_client.get("/api/search", {"table": "localnotes", "body__contains": "wool", "limit": 100}).json()
    assert body["has_warehouse"] is False and body["notice"] == NO_WAREHOUSE and body["fallback"] is None
    assert not Fallback.objects.exists()

    # Named at import, the full table makes fallbacks possible.
    call_command("import_subset", str(source), table="fullnotes", key="doc_id", sample_fraction=0.5,
                 full_data_glob=str(source), stdout=io.StringIO())
    spec = table_spec_get(name="fullnotes")
    assert spec.has_warehouse("local") and not spec.has_warehouse("athena")
    answer = search_answer(user=user, query=SearchQuery("fullnotes", (Filter("body", "contains", "wool"),), 100))
    assert answer.fallback is not None and answer.fallback.created


def test_a_full_data_glob_that_matches_no_file_is_no_warehouse(demo_subset, tmp_path, user):
    from apps.search.tables import full_data_checks_forget

    source = _notes_parquet(tmp_path)
    full = tmp_path / "full"
    full.mkdir()
    call_command("import_subset", str(source), table="gonenotes", key="doc_id", sample_fraction=0.5,
                 full_data_glob=str(full / "*.parquet"), stdout=io.StringIO())
    query = SearchQuery("gonenotes", (Filter("body", "contains", "wool"),), 100)
    answer = search_answer(user=user, query=query)
    assert not answer.has_warehouse and answer.fallback is None and answer.notice == NO_WAREHOUSE
    assert answer.summary().endswith("this table has no warehouse") and not Fallback.objects.exists()
    assert answer.vocabulary is None  # imported all the same, without a vocabulary of data that is not there

    (full / "notes.parquet").write_bytes(source.read_bytes())  # the full data arrives
    assert not table_spec_get(name="gonenotes").has_warehouse("local")  # remembered for a while per process
    full_data_checks_forget()
    answer = search_answer(user=user, query=query)
    assert answer.has_warehouse and answer.fallback is not None and answer.fallback.created  # a glob that matches


def test_api_reports_counts_and_complete_and_merges_a_named_fallback(api_client, warehouse_data):
    query, local, remote = warehouse_data.id_query(in_subset=2, missing=2, limit=9, offset=300)
    params = {"id__in": query.filters[0].value, "limit": 9}
    body = api_client.get("/api/search", params).json()
    assert body["counts"] == counts(subset=2) and body["complete"] is False and body["has_warehouse"] is True
    assert body["fallback"]["state"] == "queued" and {r["_source"] for r in body["rows"]} == {"subset"}
    fallback_execute(fallback_id=body["fallback"]["id"])
    done = api_client.get("/api/search", {**params, "fallback": body["fallback"]["id"]}).json()
    assert done["counts"] == counts(subset=2, warehouse=2) and done["complete"] is True
    assert [(r["id"] in local, r["_source"]) for r in done["rows"]] == [(True, "subset")] * 2 + [(False, "warehouse")] * 2
    assert done["summary"] == "4 rows: 2 from the subset, 2 from the warehouse; the full dataset has no more"


def test_export_has_exactly_the_rows_on_screen(client, user, warehouse_data):
    client.force_login(user)
    query, local, remote = warehouse_data.id_query(in_subset=3, missing=2, offset=320)
    url = f"/samples/?id__in={query.filters[0].value}&limit={query.limit}"
    first = search_answer(user=user, query=query)
    fallback_execute(fallback_id=first.fallback.id)
    page = client.get(f"{url}&fallback={first.fallback.id}", headers={"HX-Request": "true"}).content.decode()
    assert page.count('<tr data-source="subset">') == 3 and page.count('<tr data-source="warehouse">') == 2
    assert f"fallback={first.fallback.id}&amp;format=csv" in page  # the export link names the merged fallback

    raw = client.get(f"{url}&fallback={first.fallback.id}&format=csv")
    table = list(csv.reader(io.StringIO(b"".join(raw.streaming_content).decode())))
    assert table[0][0] == "id" and table[0][-1] == "_source"
    assert [(int(r[0]), r[-1]) for r in table[1:]] == [(r.values["id"], r.source.value) for r in
                                                       search_answer(user=user, query=query, fallback_id=first.fallback.id,
                                                                     log=False).rows]
    data = json.loads(b"".join(client.get(f"{url}&fallback={first.fallback.id}&format=json").streaming_content))
    assert [(r["id"], r["_source"]) for r in data] == [(int(r[0]), r[-1]) for r in table[1:]]
    assert AuditEvent.objects.filter(action="export", user=user).count() == 2


def test_csv_export_defuses_formulas(client, user, demo_subset, tmp_path):
    call_command("import_subset", str(_notes_parquet(tmp_path)), table="formulas", key="doc_id", stdout=io.StringIO())
    client.force_login(user)
    raw = client.get("/samples/?table=formulas&body__contains=cotton&format=csv")
    table = list(csv.reader(io.StringIO(b"".join(raw.streaming_content).decode())))
    assert table[1][1] == "'=HYPERLINK(\"x\") cotton"


def test_the_timeout_path_keeps_the_page_working(demo_subset, user, settings, client, tmp_path):
    path = tmp_path / "slow.parquet"
    with duckdb.connect() as conn:
        conn.execute(f"COPY (SELECT i AS id, repeat('lorem ipsum dolor ', 12) || i AS body FROM range(800000) t(i)) "
                     f"TO '{path}' (FORMAT parquet)")
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    call_command("import_subset", str(path), table="slowtable", key="id", stdout=io.StringIO())
    query = SearchQuery("slowtable", (Filter("body", "regex", "x+y+z+[0-9]{9}"),), 10)
    answer = search_answer(user=user, query=query, timeout_ms=10)
    assert answer.timed_out and answer.rows == [] and answer.fallback is None  # no warehouse for this table
    assert SearchLog.objects.get(pk=answer.log_id).timed_out
    settings.SEARCH_TIMEOUT_MS = 10
    client.force_login(user)
    response = client.get("/samples/", {"table": "slowtable", "body__regex": "x+y+z+[0-9]{9}"})
    assert response.status_code == 200
    assert "time limit and was stopped" in response.content.decode()


@pytest.mark.django_db(transaction=True)  # the replay commits, so its fallbacks run (eagerly) at once
def test_the_benchmark_replay_gets_the_answer_the_page_shows(warehouse_data, client, user):
    from apps.samples.bench.replay import replay_environment, workload_replay

    queries = [warehouse_data.id_query(in_subset=2, missing=2, offset=400)[0],
               SearchQuery("samples", (Filter("text", "contains", "the"),), 4)]  # the subset has plenty
    client.force_login(user)
    with replay_environment(learning=False) as bench_user:
        report = workload_replay(workload=[q.to_dict() for q in queries], user=bench_user)
        assert report.fallbacks_created == 1 and report.local == 1
        assert report.rows == counts(subset=6, warehouse=2)
        for query in queries:
            params = {f.param: f.value for f in query.filters} | {"limit": query.limit}
            page = client.get("/samples/", {**params, "format": "json"})
            shown = [(r["id"], r["_source"]) for r in json.loads(b"".join(page.streaming_content))]
            api = client.get("/api/search", params).json()
            assert [(r["id"], r["_source"]) for r in api["rows"]] == report.answers[query.fingerprint()]
            assert shown == [(k, s) for k, s in report.answers[query.fingerprint()] if s == "subset"]


def test_an_unknown_value_asks_before_a_paid_search(demo_subset, user, api_client, settings):
    settings.SEARCH_VOCABULARY_ENABLED = False  # the subset's own check; with the vocabulary, a proof answers first
    typo = SearchQuery("samples", (Filter("label", "eq", "cooking"),), 10)
    answer = search_answer(user=user, query=typo)
    assert answer.fallback is None and answer.unknown_values == {"label": "cooking"}
    assert answer.notice == "'cooking' is not a known label: search the warehouse anyway?"
    assert not Fallback.objects.exists()
    body = api_client.get("/api/search", {"label__eq": "cooking"}).json()
    assert body["unknown_values"] == {"label": "cooking"} and body["fallback"] is None
    # A known value, or a confirmed unknown one, goes to the warehouse as usual.
    confirmed = api_client.get("/api/search", {"label__eq": "cooking", "confirm": "1"}).json()
    assert confirmed["fallback"]["state"] == "queued" and confirmed["unknown_values"] == {}
    known = sorted(v for (v,) in demo_subset.query("SELECT DISTINCT label FROM samples"))[0]
    rare = SearchQuery("samples", (Filter("label", "in", f"{known},cookery"), Filter("text", "contains", "xqzzv")), 10)
    assert search_answer(user=user, query=rare).unknown_values == {"label": "cookery"}


# --- Sorting, paging, the match count -------------------------------------------------------------

def test_a_sorted_search_merged_with_the_warehouse_is_sorted_across_sources(warehouse_data, user):
    from dataclasses import replace

    from apps.search.query import Order

    plain, local, remote = warehouse_data.id_query(in_subset=3, missing=4, limit=10, offset=300)
    query = replace(plain, order=Order("length", desc=True))
    first = search_answer(user=user, query=query)
    assert first.fallback is not None and [r.source for r in first.rows] == [SUBSET] * 3
    lengths = [r.values["length"] for r in first.rows]
    assert lengths == sorted(lengths, reverse=True) and "sorted by length descending" in first.summary()
    fallback_execute(fallback_id=first.fallback.id)

    merged = search_answer(user=user, query=query, fallback_id=first.fallback.id, log=False)
    assert {r.values["id"] for r in merged.rows} == local | remote and merged.merged_sort
    got = [(r.values["length"], r.values["id"]) for r in merged.rows]
    assert got == sorted(got, key=lambda p: (-p[0], p[1]))  # ORDER BY length DESC, id across sources
    assert {r.source for r in merged.rows} == {SUBSET, WAREHOUSE}
    assert merged.summary().endswith("sorted by length descending across all sources")
    # The warehouse was asked with the same ORDER BY as the subset.
    assert SearchQuery.from_dict(Fallback.objects.get(pk=first.fallback.id).query).order == Order("length", True)


def test_pages_of_the_subset_follow_next_tokens_and_never_ask_the_warehouse(demo_subset, user):
    from dataclasses import replace

    from apps.search.query import Order, query_from_params

    base = SearchQuery("samples", (Filter("text", "contains", "match"),), 7, order=Order("length"))
    total = demo_subset.count("contains(text, 'match')")
    want = [r[0] for r in demo_subset.query(
        "SELECT id FROM samples WHERE contains(text, 'match') ORDER BY length NULLS LAST, id LIMIT 21")]
    got, query = [], base
    for _ in range(3):
        answer = search_answer(user=user, query=query)
        assert answer.match_count == total and answer.match_count_exact
        assert answer.fallback is None and answer.counts["subset"] == 7
        got += [r.values["id"] for r in answer.rows]
        params = answer.next_params()
        assert ("_next", answer.next_token) in params and params[-1] == ("limit", "7")
        query = query_from_params(params=params, default_table="samples", default_limit=10, max_limit=100)
    assert got == want and query.paged

    # The last page has no next token, and a short first page knows its count for free.
    few = search_answer(user=user, query=replace(base, filters=(Filter("id", "eq", str(want[0])),)))
    assert few.next_token is None and few.match_count == 1 and few.match_count_exact


def test_a_slow_count_says_at_least(demo_subset, user, settings, monkeypatch):
    asked = []
    monkeypatch.setattr("apps.samples.pipeline.subset_match_count",
                        lambda **kw: asked.append(kw["timeout_ms"]))  # ran past its limit: None
    settings.SEARCH_COUNT_TIMEOUT_MS = 123
    answer = search_answer(user=user, query=SearchQuery("samples", (Filter("text", "contains", "match"),), 5))
    assert answer.next_token is not None
    assert not answer.match_count_exact and answer.match_count == 6 and answer.match_count_text() == "≥ 6"
    assert asked == [123]
