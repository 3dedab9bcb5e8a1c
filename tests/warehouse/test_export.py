"""Exports of every matching row (issue 24, item 5): the Athena UNLOAD checked with botocore's Stubber (and its
files read back from moto's S3), the local DuckDB COPY against a scan of the full Parquet, the budget shared with
fallbacks, cancel, who may see and download an export, and the streamed CSV of every local match."""
from __future__ import annotations

import csv
import gzip
import io
import threading
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import boto3
import duckdb
import pytest
from botocore.stub import Stubber
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone
from moto import mock_aws

from apps.audit.models import AuditEvent
from apps.search.query import Filter, SearchQuery
from apps.search.tables import TableSpec, table_spec_get
from apps.warehouse.backends.athena import AthenaBackend
from apps.warehouse.backends.base import NullControl, scan_cost_usd
from apps.warehouse.backends.export_sql import export_select, unload_sql
from apps.warehouse.export_selectors import export_file_chunks
from apps.warehouse.export_services import (
    export_cancel,
    export_estimate,
    export_execute,
    export_request,
    export_sweep,
)
from apps.warehouse.models import Export, Fallback
from apps.warehouse.selectors import fallback_budget_left
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db

DE = SearchQuery(table="samples", filters=(Filter("lang", "eq", "de"),), limit=20)


@pytest.fixture
def local_backend(settings, warehouse_data, tmp_path):
    settings.WAREHOUSE_BACKEND = "local"
    settings.WAREHOUSE_EXPORT_DIR = tmp_path / "exports"
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 0
    settings.FALLBACK_DAILY_BUDGET_USD = 5.0
    settings.FALLBACK_TEAM_DAILY_BUDGET_USD = 50.0
    settings.FALLBACK_MAX_IN_FLIGHT_PER_USER = 4
    return settings


def full_scan(sql_where: str, params: list) -> list[tuple]:
    """The rows a plain scan of the full Parquet files returns (written by hand, not by the export's compiler)."""
    glob = table_spec_get(name="samples").full_data_glob
    conn = duckdb.connect()
    try:
        return conn.execute(f"SELECT id, url, domain, title, text, label, lang, crawled_at, length "
                            f"FROM read_parquet(?) WHERE {sql_where} ORDER BY id", [glob, *params]).fetchall()
    finally:
        conn.close()


def started(user, query=DE) -> Export:
    return export_request(user=user, query=query, spec=table_spec_get(name=query.table))


# --- the SQL --------------------------------------------------------------------------------------

SPEC = TableSpec(name="samples", key="id", columns={"id": "BIGINT", "title": "VARCHAR", "score": "DOUBLE"},
                 searchable={"title": ("contains",), "id": ("gte",)}, shown=("id", "title", "score"),
                 athena_table="samples_full")


def test_athena_export_is_one_unload_of_every_matching_row(settings, monkeypatch):
    settings.AWS_REGION = "us-east-1"
    settings.AWS_ENDPOINT_URL = ""
    settings.ATHENA_DATABASE = "crawl"
    settings.ATHENA_WORKGROUP = "analysts"
    settings.ATHENA_OUTPUT_LOCATION = "s3://results-bucket/athena/"
    settings.ATHENA_RESULT_REUSE_MAX_AGE_MINUTES = 30
    settings.ATHENA_PRICE_PER_TB_USD = 5.0
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    query = SearchQuery(table="samples", filters=(Filter("title", "contains", "50%_off"), Filter("id", "gte", "7")),
                        limit=10)
    location = "s3://exports-bucket/exports/000000000042/"
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="exports-bucket")
        lines = ['"7","50%_off, \'""quoted""\'","1.5"\n', '"9","=\'=1+1 50%_off","' + '"\n']
        for index, line in enumerate(lines):  # as UNLOAD writes them: one gzipped text file per writer
            s3.put_object(Bucket="exports-bucket", Key=f"exports/000000000042/q-9_{index}.gz",
                          Body=gzip.compress(line.encode()))
        client = boto3.client("athena", region_name="us-east-1")
        with Stubber(client) as stubber:
            expected_sql = unload_sql(query=query, spec=SPEC, relation='"crawl"."samples_full"', location=location).sql
            stubber.add_response("start_query_execution", {"QueryExecutionId": "q-9"}, {
                "QueryString": expected_sql,
                "ClientRequestToken": "samplescope-export-000000000042-abc",
                "QueryExecutionContext": {"Database": "crawl"},
                "WorkGroup": "analysts",
                "ExecutionParameters": ["'%50\\%\\_off%'", "7"],
                "ResultConfiguration": {"OutputLocation": "s3://results-bucket/athena/"},
                # no ResultReuseConfiguration: a reused result would write no files
            })
            stubber.add_response("get_query_execution", {"QueryExecution": {
                "QueryExecutionId": "q-9", "Status": {"State": "SUCCEEDED"},
                "Statistics": {"DataScannedInBytes": 3 * 1024**3}}}, {"QueryExecutionId": "q-9"})
            result = AthenaBackend(client=client, sleep=lambda s: None).export(
                query=query, spec=SPEC, request_token="samplescope-export-000000000042-abc", control=NullControl(),
                location=location)
            stubber.assert_no_pending_responses()
        # The statement: UNLOAD of the search's own WHERE, every row (no LIMIT), to the export's own prefix.
        assert expected_sql.startswith("UNLOAD (SELECT ")
        assert 'FROM "crawl"."samples_full" WHERE "title" LIKE ? ESCAPE' in expected_sql and '"id" >= ?' in expected_sql
        assert "LIMIT" not in expected_sql and "ORDER BY" not in expected_sql
        assert f"TO '{location}' WITH (format = 'TEXTFILE', compression = 'GZIP')" in expected_sql
        assert result.state == "succeeded" and result.engine_query_id == "q-9"
        assert result.bytes_scanned == 3 * 1024**3 and result.cost_usd == scan_cost_usd(bytes_scanned=3 * 1024**3)
        assert result.file_bytes == sum(o["Size"] for o in s3.list_objects_v2(Bucket="exports-bucket")["Contents"])

        # The download: the header, then each file decompressed as it streams from S3.
        export = Export(pk=42, table="samples", backend="athena", location=location, state="succeeded")
        monkeypatch.setattr("apps.warehouse.export_selectors._spec_for", lambda export: SPEC)
        text = b"".join(export_file_chunks(export=export, chunk_bytes=7)).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["id", "title", "score"], ["7", "50%_off, '\"quoted\"'", "1.5"], ["9", "='=1+1 50%_off", ""]]


def test_text_that_would_start_a_formula_is_defused_in_the_export_sql():
    spec = TableSpec(name="t", key="id", columns={"id": "BIGINT", "v": "VARCHAR", "n": "DOUBLE"},
                     searchable={"id": ("gte",)}, shown=("id", "v", "n"))
    conn = duckdb.connect()
    conn.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, '=1+1', -1.5), (2, '-1.5', 2.0), (3, '@x', NULL), "
                 "(4, 'plain', 0.0), (5, chr(9) || 'tab', 1.0), (6, '＋full', 1.0), (7, NULL, 1.0)) v(id, v, n)")
    compiled = export_select(query=SearchQuery(table="t", filters=(Filter("id", "gte", "0"),), limit=1), spec=spec,
                             dialect="duckdb", relation="t")
    rows = conn.execute(compiled.sql + " ORDER BY id", compiled.params).fetchall()
    assert rows == [(1, "'=1+1", -1.5), (2, "-1.5", 2.0), (3, "'@x", None), (4, "plain", 0.0), (5, "'\ttab", 1.0),
                    (6, "'＋full", 1.0), (7, None, 1.0)]


# --- local backend: COPY --------------------------------------------------------------------------

def test_local_copy_writes_exactly_the_rows_a_full_scan_returns(user, local_backend,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        export = started(user)
    assert export.state == "queued" and len(callbacks) == 1  # one task, sent once the row is committed
    export = export_execute(export_id=export.pk)
    assert export.state == "succeeded", export.error
    expected = full_scan("lang = ?", ["de"])
    assert len(expected) > DE.limit  # every row, not the search's page
    with open(export.location, newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))
    assert written[0] == ["id", "url", "domain", "title", "text", "label", "lang", "crawled_at", "length"]
    by_id = sorted(written[1:], key=lambda r: int(r[0]))
    assert [int(r[0]) for r in by_id] == [r[0] for r in expected]
    assert [(r[4], r[6]) for r in by_id] == [(e[4] or "", e[6]) for e in expected]  # the text itself, unchanged
    assert export.row_count == len(expected) and export.file_bytes == Path(export.location).stat().st_size
    assert export.bytes_scanned == export.bytes_estimate > 0 and export.bytes_are_estimate
    assert export.cost_usd == scan_cost_usd(bytes_scanned=export.bytes_scanned) > 0  # the cost is recorded
    assert not Path(export.location + ".part").exists()
    event = AuditEvent.objects.get(action="export", outcome="succeeded")
    assert event.user == user and event.detail["export_id"] == export.pk and event.detail["rows"] == len(expected)
    assert Decimal(str(event.cost_usd)) == export.cost_usd.quantize(Decimal("1e-6"))
    # The spend ledger counts it with the fallbacks.
    assert fallback_budget_left(user=user).user_spent == export.cost_usd
    assert export_execute(export_id=export.pk).state == "succeeded"  # a second delivery does nothing
    assert AuditEvent.objects.filter(action="export", outcome="succeeded").count() == 1


# --- budget -----------------------------------------------------------------------------------------

def test_over_budget_an_export_is_refused_before_anything_is_sent(user, local_backend, settings,
                                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        first = started(user)
    reserved = first.estimated_cost_usd
    assert first.state == "queued" and reserved > 0
    settings.FALLBACK_DAILY_BUDGET_USD = float(reserved * 2) - 1e-9  # room for one more? no: one reservation only
    with django_capture_on_commit_callbacks() as more:
        refused = started(user)
    assert refused.state == "refused" and "today's warehouse budget" in refused.error
    assert more == [] and refused.cost_usd == 0 and refused.bytes_scanned is None
    assert not Path(settings.WAREHOUSE_EXPORT_DIR).exists() or not any(Path(settings.WAREHOUSE_EXPORT_DIR).iterdir())
    assert AuditEvent.objects.filter(action="export", outcome="refused", user=user).count() == 1
    assert len(callbacks) == 1


def test_fallback_spend_counts_against_an_export_and_the_team_cap_too(user, staff_user, local_backend, settings,
                                                                       django_capture_on_commit_callbacks):
    probe = started(user)
    reserved = probe.estimated_cost_usd
    Export.objects.filter(pk=probe.pk).update(state="cancelled", finished_at=timezone.now())  # costs 0
    settings.FALLBACK_DAILY_BUDGET_USD = float(reserved) * 1.5
    Fallback.objects.create(user=user, table="samples", query=DE.to_dict(), fingerprint="f", limit=1,
                            backend="local", state="succeeded", cost_usd=reserved, finished_at=timezone.now())
    assert started(user).state == "refused"  # the fallback's cost + this export > the budget
    Fallback.objects.all().delete()
    Export.objects.filter(pk=probe.pk).update(state="succeeded", cost_usd=reserved)
    assert started(user).state == "refused"  # an earlier export's cost counts the same way
    settings.FALLBACK_DAILY_BUDGET_USD = 5.0
    settings.FALLBACK_TEAM_DAILY_BUDGET_USD = float(reserved) * 1.5
    refused = started(staff_user)  # the user's fallback counts for the whole team
    assert refused.state == "refused" and "team's daily warehouse budget" in refused.error


def test_the_worker_checks_the_budget_again_and_refuses_without_writing(user, local_backend, settings):
    export = started(user)
    settings.FALLBACK_DAILY_BUDGET_USD = float(export.estimated_cost_usd) / 2  # lowered since it was accepted
    export = export_execute(export_id=export.pk)
    assert export.state == "refused" and export.error.startswith("Refused when a worker picked it up")
    assert export.cost_usd == 0 and not Path(export.location).exists()


def test_in_flight_cap_counts_exports(user, local_backend, settings):
    settings.FALLBACK_MAX_IN_FLIGHT_PER_USER = 1
    assert started(user).state == "queued"
    refused = started(user)
    assert refused.state == "refused" and "already have 1 warehouse queries" in refused.error


def test_no_role_no_export(plain_user, local_backend):
    with pytest.raises(PermissionDenied):
        started(plain_user)
    assert not Export.objects.exists()


# --- cancel ------------------------------------------------------------------------------------------

def test_a_queued_export_is_cancelled_at_once_by_its_creator_only(user, staff_user, django_user_model, local_backend):
    export = started(user)
    other = django_user_model.objects.create_user(username="other", password="x")
    with pytest.raises(PermissionDenied):
        export_cancel(export=export, user=other)
    assert Export.objects.get(pk=export.pk).state == "queued"
    export = export_cancel(export=export, user=user)
    assert export.state == "cancelled" and export.cost_usd == 0 and export.error == "cancelled by analyst"
    assert export_execute(export_id=export.pk).state == "cancelled"  # the late task does nothing
    assert not Path(export.location).exists()


@pytest.mark.django_db(transaction=True)
def test_a_running_export_stops_and_leaves_no_file(user, local_backend, settings, monkeypatch):
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 20_000  # the run is held open long enough to cancel it
    monkeypatch.setattr("apps.warehouse.export_services.export_enqueue", lambda export: True)  # run here instead
    export = started(user)
    runner = threading.Thread(target=export_execute, kwargs={"export_id": export.pk})
    runner.start()
    # Cancelled once the COPY has written its (still unpublished) file: that file must go too.
    wait_until(lambda: Export.objects.filter(pk=export.pk, state="running", progress=1.0).exists(), timeout=20,
               what="the export's COPY to finish")
    assert Path(export.location + ".part").exists() and not Path(export.location).exists()
    export_cancel(export=Export.objects.get(pk=export.pk), user=user)
    runner.join(20)
    assert not runner.is_alive()
    export = Export.objects.get(pk=export.pk)
    assert export.state == "cancelled" and export.error == "cancelled by analyst"
    assert export.cost_usd == scan_cost_usd(bytes_scanned=export.bytes_estimate)  # it reached the engine: billed
    assert not Path(export.location).exists() and not Path(export.location + ".part").exists()


def test_an_export_whose_worker_died_is_failed_by_the_sweeper(user, local_backend):
    running = started(user)
    fresh = started(user)
    old = timezone.now() - timedelta(seconds=3600)
    Export.objects.filter(pk=running.pk).update(state="running", heartbeat_at=old)
    Export.objects.filter(pk=fresh.pk).update(state="running", heartbeat_at=timezone.now())
    assert export_sweep(stale_after_seconds=60) == 1
    assert Export.objects.get(pk=running.pk).state == "failed" and Export.objects.get(pk=fresh.pk).state == "running"


# --- pages: permissions, download -------------------------------------------------------------------

def test_only_its_creator_and_staff_see_and_download_an_export(client, user, staff_user, plain_user,
                                                                django_user_model, local_backend):
    export = export_execute(export_id=started(user).pk)
    download = reverse("warehouse:export-download", args=[export.pk])
    detail = reverse("warehouse:export-detail", args=[export.pk])

    client.force_login(user)
    response = client.get(download)
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    assert body == Path(export.location).read_bytes() and response["Content-Type"].startswith("text/csv")
    assert client.get(detail).status_code == 200

    other = django_user_model.objects.create_user(username="other", password="x")
    from apps.accounts.services import user_roles_grant
    user_roles_grant(user=other)
    client.force_login(other)  # an analyst, but not its creator
    assert client.get(download).status_code == 403
    assert client.get(detail).status_code == 403
    assert client.post(reverse("warehouse:export-cancel", args=[export.pk])).status_code == 403

    client.force_login(plain_user)  # no role at all
    assert client.get(download).status_code == 403
    assert client.post(reverse("warehouse:export-start"), {"search": "lang__eq=de"}).status_code == 403
    assert client.get(reverse("warehouse:export-new"), {"lang__eq": "de"}).status_code == 403

    client.force_login(staff_user)
    assert client.get(download).status_code == 200

    client.logout()
    assert client.get(download).status_code == 302  # to the login page


def test_start_from_the_page_redirects_to_its_progress(client, user, local_backend,
                                                        django_capture_on_commit_callbacks):
    client.force_login(user)
    search = client.get(reverse("samples:page"), {"lang__eq": "de", "limit": 20}).content.decode()
    assert f'href="{reverse("warehouse:export-new")}?table=samples&amp;lang__eq=de&amp;limit=20"' in search
    confirm = client.get(reverse("warehouse:export-new"), {"table": "samples", "lang__eq": "de", "limit": 20})
    _, cost = export_estimate(query=DE, spec=table_spec_get(name="samples"))
    assert confirm.status_code == 200 and f"${cost:.6f}" in confirm.content.decode() and not Export.objects.exists()
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("warehouse:export-start"), {"search": "table=samples&lang__eq=de&limit=20"})
    export = Export.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("warehouse:export-detail", args=[export.pk])
    assert export.query["filters"] == [{"column": "lang", "op": "eq", "value": "de"}] and len(callbacks) == 1
    panel = client.get(response["Location"], HTTP_HX_REQUEST="true")
    assert panel.status_code == 200 and b'hx-trigger="every 1s"' in panel.content  # polls while queued
    assert client.get(reverse("warehouse:export-download", args=[export.pk])).status_code == 409  # nothing yet
    export_execute(export_id=export.pk)
    done = client.get(response["Location"], HTTP_HX_REQUEST="true")
    assert done.status_code == 286 and b"data-export-download" in done.content  # stops polling, offers the file
    assert client.get(reverse("warehouse:export-download", args=[export.pk])).status_code == 200
    bad = client.post(reverse("warehouse:export-start"), {"search": "lang__eq=de&nosuch__eq=1&id__gte=x"})
    assert bad.status_code == 400 and Export.objects.count() == 1


def test_a_read_only_token_cannot_start_an_export(client, user, local_backend):
    from apps.accounts.services import api_token_create

    _, raw = api_token_create(user=user, name="ro", read_only=True)
    response = client.post(reverse("warehouse:export-start"), {"search": "lang__eq=de"},
                           HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code in (302, 403) and "/accounts/login" in response.get("Location", "/accounts/login")
    assert not Export.objects.exists()


# --- every local match, streamed --------------------------------------------------------------------

def test_all_local_matches_stream_past_the_page_export_limit(client, user, local_backend, settings):
    settings.SEARCH_EXPORT_MAX_ROWS = 50
    client.force_login(user)
    page_export = client.get(reverse("samples:page"), {"lang__eq": "de", "limit": 1000, "format": "csv"})
    capped = list(csv.reader(io.StringIO(b"".join(page_export.streaming_content).decode())))
    assert len(capped) - 1 == 50  # today's export: a page, at most SEARCH_EXPORT_MAX_ROWS

    response = client.get(reverse("warehouse:export-local"), {"lang__eq": "de"})
    assert response.status_code == 200 and response.streaming
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    from apps.search.store import subset_connection
    subset = sorted(r[0] for r in subset_connection().execute("SELECT id FROM samples WHERE lang = 'de'").fetchall())
    assert rows[0][-1] == "_source" and len(rows) - 1 == len(subset) > 50
    assert sorted(int(r[0]) for r in rows[1:]) == subset and {r[-1] for r in rows[1:]} == {"subset"}
    assert AuditEvent.objects.filter(action="export", detail__kind="local_all").count() == 1


def test_all_local_matches_add_learned_rows_once(client, user, local_backend, settings, warehouse_data):
    from apps.warehouse.learned import learned_answer_add, learned_clear

    settings.SUBSET_LEARNING_ENABLED = True
    learned_clear()
    missing = [r for r in full_scan("lang = ?", ["de"]) if r[0] not in warehouse_data.subset_ids][:3]
    local_one = full_scan("id = ?", [sorted(warehouse_data.subset_ids & {r[0] for r in full_scan("lang = ?", ["de"])})[0]])
    names = ["id", "url", "domain", "title", "text", "label", "lang", "crawled_at", "length"]
    learned_answer_add(spec=table_spec_get(name="samples"), query=DE,
                       rows=[dict(zip(names, r)) for r in missing + local_one])
    try:
        client.force_login(user)
        rows = list(csv.reader(io.StringIO(b"".join(
            client.get(reverse("warehouse:export-local"), {"lang__eq": "de"}).streaming_content).decode())))
    finally:
        learned_clear()
    learned = [r for r in rows[1:] if r[-1] == "learned"]
    assert sorted(int(r[0]) for r in learned) == sorted(r[0] for r in missing)  # the subset's copy is not repeated
    assert len({r[0] for r in rows[1:]}) == len(rows) - 1


def test_local_matches_need_the_role(client, plain_user, local_backend):
    client.force_login(plain_user)
    assert client.get(reverse("warehouse:export-local"), {"lang__eq": "de"}).status_code == 403
