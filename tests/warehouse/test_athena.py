"""The Athena backend against botocore's Stubber (what moto does not emulate) and moto itself."""
from __future__ import annotations

from decimal import Decimal

import boto3
import pytest
import requests
from botocore.stub import ANY, Stubber
from moto import mock_aws

from apps.search.query import Filter, SearchQuery
from apps.search.tables import TableSpec
from apps.warehouse.backends.athena import AthenaBackend, sql_literal
from apps.warehouse.backends.base import MEGABYTE, NullControl, WarehouseTransientError, scan_cost_usd

SPEC = TableSpec(
    name="samples", key="id",
    columns={"id": "BIGINT", "title": "VARCHAR", "score": "DOUBLE", "ok": "BOOLEAN", "lang": "VARCHAR"},
    searchable={"title": ("contains",), "lang": ("eq", "in"), "id": ("gte",)},
    shown=("id", "title", "score", "ok"), athena_table="samples_full",
)
COLUMNS = [{"Name": "id", "Type": "bigint"}, {"Name": "title", "Type": "varchar"},
           {"Name": "score", "Type": "double"}, {"Name": "ok", "Type": "boolean"}]


def query(limit=10, **filters):
    flts = tuple(Filter(*name.split("__"), value) for name, value in filters.items()) or (Filter("lang", "eq", "en"),)
    return SearchQuery(table="samples", filters=flts, limit=limit)


def cells(*values):
    return {"Data": [{} if v is None else {"VarCharValue": str(v)} for v in values]}


def execution(state, scanned=0, reason="", reused=False):
    status = {"State": state}
    if reason:
        status["StateChangeReason"] = reason
    return {"QueryExecution": {"QueryExecutionId": "q-1", "Status": status,
                               "Statistics": {"DataScannedInBytes": scanned,
                                              "ResultReuseInformation": {"ReusedPreviousResult": reused}}}}


def throttled(stubber, operation):
    stubber.add_client_error(operation, service_error_code="TooManyRequestsException",
                             service_message="Rate exceeded", http_status_code=400)


@pytest.fixture
def athena_settings(settings):
    settings.AWS_REGION = "us-east-1"
    settings.AWS_ENDPOINT_URL = ""
    settings.ATHENA_DATABASE = "crawl"
    settings.ATHENA_WORKGROUP = "analysts"
    settings.ATHENA_OUTPUT_LOCATION = "s3://results-bucket/athena/"
    settings.ATHENA_RESULT_REUSE_MAX_AGE_MINUTES = 30
    settings.ATHENA_PRICE_PER_TB_USD = 5.0
    settings.FALLBACK_MAX_BYTES_SCANNED = 200 * 1024**3
    return settings


@pytest.fixture
def stubbed(athena_settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("athena", region_name="us-east-1")
    sleeps: list[float] = []
    with Stubber(client) as stubber:
        backend = AthenaBackend(client=client, sleep=sleeps.append)
        yield backend, stubber, sleeps
        stubber.assert_no_pending_responses()


# --- cost arithmetic ----------------------------------------------------------------------------

def test_cost_has_a_ten_megabyte_minimum():
    minimum = Decimal(10) * Decimal(5) / Decimal(1024 * 1024)
    assert scan_cost_usd(bytes_scanned=0, price_per_tb_usd=5) == minimum.quantize(Decimal("1e-10"))
    assert scan_cost_usd(bytes_scanned=1, price_per_tb_usd=5) == scan_cost_usd(bytes_scanned=10 * MEGABYTE, price_per_tb_usd=5)


def test_cost_rounds_up_to_the_next_megabyte():
    just_over = scan_cost_usd(bytes_scanned=50 * MEGABYTE + 1, price_per_tb_usd=5)
    assert just_over == scan_cost_usd(bytes_scanned=51 * MEGABYTE, price_per_tb_usd=5)
    assert just_over > scan_cost_usd(bytes_scanned=50 * MEGABYTE, price_per_tb_usd=5)


def test_a_terabyte_costs_the_price_per_terabyte():
    assert scan_cost_usd(bytes_scanned=1024**4, price_per_tb_usd=5) == Decimal("5")
    assert scan_cost_usd(bytes_scanned=3 * 1024**4, price_per_tb_usd=2.5) == Decimal("7.5")


def test_execution_parameters_are_sql_literals():
    assert sql_literal("it's") == "'it''s'"
    assert sql_literal(42) == "42"
    assert sql_literal(True) == "true"
    assert sql_literal(None) == "NULL"


# --- the Stubber: what moto does not emulate ---------------------------------------------------

def test_start_sends_parameters_token_workgroup_output_and_reuse(stubbed):
    backend, stubber, _ = stubbed
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"}, {
        "QueryString": ANY,
        "ClientRequestToken": "samplescope-fallback-000000000001-abcdefabcdefabcdefabcdef",
        "QueryExecutionContext": {"Database": "crawl"},
        "WorkGroup": "analysts",
        "ExecutionParameters": ["'%it''s%'", "'en'"],  # Trino: LIKE pattern
        "ResultConfiguration": {"OutputLocation": "s3://results-bucket/athena/"},
        "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": True, "MaxAgeInMinutes": 30}},
    })
    q = SearchQuery(table="samples", filters=(Filter("title", "contains", "it's"), Filter("lang", "eq", "en")), limit=5)
    assert backend.start(query=q, spec=SPEC,
                         request_token="samplescope-fallback-000000000001-abcdefabcdefabcdefabcdef") == "q-1"


def test_results_are_paged_across_next_token_typed_and_cost_counted(stubbed):
    backend, stubber, sleeps = stubbed
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stubber.add_response("get_query_execution", execution("QUEUED"))
    stubber.add_response("get_query_execution", execution("RUNNING", scanned=3 * MEGABYTE))
    stubber.add_response("get_query_execution", execution("SUCCEEDED", scanned=123 * MEGABYTE + 5))
    header = cells("id", "title", "score", "ok")
    first = [header] + [cells(i, f"title {i}", i / 2, "true") for i in range(999)]
    stubber.add_response("get_query_results", {
        "ResultSet": {"Rows": first, "ResultSetMetadata": {"ColumnInfo": COLUMNS}}, "NextToken": "page-2"},
        {"QueryExecutionId": "q-1", "MaxResults": 1000})
    second = [cells(999 + i, None, "1.5", "false") for i in range(600)]
    stubber.add_response("get_query_results", {
        "ResultSet": {"Rows": second, "ResultSetMetadata": {"ColumnInfo": COLUMNS}}},
        {"QueryExecutionId": "q-1", "MaxResults": 1000, "NextToken": "page-2"})

    ticks = []

    class Recorder:
        def tick(self, **kwargs):
            ticks.append(kwargs)
            return None

    result = backend.run(query=query(limit=1200), spec=SPEC, request_token="t" * 40, control=Recorder())
    assert result.state == "succeeded"
    assert result.engine_query_id == "q-1"
    assert len(result.rows) == 1200  # stops at the limit, in the middle of the second page
    assert result.rows[0] == {"id": 0, "title": "title 0", "score": 0.0, "ok": True}
    assert result.rows[999] == {"id": 999, "title": None, "score": 1.5, "ok": False}
    assert result.bytes_scanned == 123 * MEGABYTE + 5
    assert result.cost_usd == scan_cost_usd(bytes_scanned=124 * MEGABYTE)
    assert ticks[0]["engine_query_id"] == "q-1"
    assert any(t.get("bytes_scanned") == 3 * MEGABYTE for t in ticks)  # bytes so far, while running
    assert sleeps and sleeps == sorted(sleeps)  # polling backs off


def test_small_query_is_billed_the_ten_megabyte_minimum(stubbed):
    backend, stubber, _ = stubbed
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stubber.add_response("get_query_execution", execution("SUCCEEDED", scanned=2048))
    stubber.add_response("get_query_results", {"ResultSet": {"Rows": [cells("id", "title", "score", "ok")],
                                                             "ResultSetMetadata": {"ColumnInfo": COLUMNS}}})
    result = backend.run(query=query(), spec=SPEC, request_token="t" * 40, control=NullControl())
    assert result.state == "succeeded" and result.rows == []
    assert result.bytes_scanned == 2048
    assert result.cost_usd == scan_cost_usd(bytes_scanned=10 * MEGABYTE) == Decimal("0.0000476837")


def test_reused_result_costs_nothing(stubbed):
    backend, stubber, _ = stubbed
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stubber.add_response("get_query_execution", execution("SUCCEEDED", scanned=0, reused=True))
    stubber.add_response("get_query_results", {"ResultSet": {"Rows": [], "ResultSetMetadata": {"ColumnInfo": COLUMNS}}})
    result = backend.run(query=query(), spec=SPEC, request_token="t" * 40, control=NullControl())
    assert result.state == "succeeded" and result.reused_result and result.cost_usd == 0


def test_failed_query_reports_athenas_reason_and_is_settled_on_its_bytes(stubbed):
    backend, stubber, _ = stubbed
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stubber.add_response("get_query_execution", execution("FAILED", scanned=5 * MEGABYTE,
                                                          reason="TABLE_NOT_FOUND: Table crawl.samples_full does not exist"))
    result = backend.run(query=query(), spec=SPEC, request_token="t" * 40, control=NullControl())
    assert result.state == "failed"
    assert "TABLE_NOT_FOUND" in result.error
    # Counted against the budget on what it scanned (apps/warehouse/README.md, "Cost").
    assert result.cost_usd == scan_cost_usd(bytes_scanned=5 * MEGABYTE) and result.rows == []


def test_query_cancelled_in_athena_is_reported_and_billed_for_its_scan(stubbed):
    backend, stubber, _ = stubbed
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stubber.add_response("get_query_execution", execution("CANCELLED", scanned=40 * MEGABYTE, reason="Query cancelled"))
    result = backend.run(query=query(), spec=SPEC, request_token="t" * 40, control=NullControl())
    assert result.state == "cancelled"
    assert result.cost_usd == scan_cost_usd(bytes_scanned=40 * MEGABYTE)


def test_cancel_from_the_app_stops_the_athena_query(stubbed):
    backend, stubber, _ = stubbed
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stubber.add_response("get_query_execution", execution("RUNNING", scanned=MEGABYTE))
    stubber.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-1"})

    class CancelAtOnce:
        def tick(self, **kwargs):
            return "cancelled"

    result = backend.run(query=query(), spec=SPEC, request_token="t" * 40, control=CancelAtOnce())
    assert result.state == "cancelled"


def test_bytes_over_the_cutoff_stop_the_query(stubbed, settings):
    settings.FALLBACK_MAX_BYTES_SCANNED = 100 * MEGABYTE
    backend, stubber, _ = stubbed
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stubber.add_response("get_query_execution", execution("RUNNING", scanned=150 * MEGABYTE))
    stubber.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-1"})
    result = backend.run(query=query(), spec=SPEC, request_token="t" * 40, control=NullControl())
    assert result.state == "failed" and "cutoff" in result.error
    assert result.cost_usd == scan_cost_usd(bytes_scanned=150 * MEGABYTE)


def test_throttling_is_retried_with_backoff_then_succeeds(stubbed):
    backend, stubber, sleeps = stubbed
    throttled(stubber, "start_query_execution")
    throttled(stubber, "start_query_execution")
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    throttled(stubber, "get_query_execution")
    stubber.add_response("get_query_execution", execution("SUCCEEDED", scanned=MEGABYTE))
    throttled(stubber, "get_query_results")
    stubber.add_response("get_query_results", {"ResultSet": {"Rows": [cells("id", "title", "score", "ok"), cells(7, "x", 1, "true")],
                                                             "ResultSetMetadata": {"ColumnInfo": COLUMNS}}})
    result = backend.run(query=query(), spec=SPEC, request_token="t" * 40, control=NullControl())
    assert result.state == "succeeded" and result.rows == [{"id": 7, "title": "x", "score": 1.0, "ok": True}]
    assert sleeps[:2] == [0.5, 1.0]  # exponential backoff between throttled starts


def test_persistent_throttling_becomes_a_transient_error_for_the_task_to_retry(stubbed):
    backend, stubber, _ = stubbed
    backend.max_throttle_retries = 2
    for _ in range(3):
        throttled(stubber, "start_query_execution")
    with pytest.raises(WarehouseTransientError):
        backend.run(query=query(), spec=SPEC, request_token="t" * 40, control=NullControl())


def test_a_retried_task_resumes_the_same_query_instead_of_starting_another(stubbed):
    backend, stubber, _ = stubbed
    stubber.add_response("get_query_execution", execution("SUCCEEDED", scanned=MEGABYTE), {"QueryExecutionId": "q-1"})
    stubber.add_response("get_query_results", {"ResultSet": {"Rows": [], "ResultSetMetadata": {"ColumnInfo": COLUMNS}}})
    result = backend.run(query=query(), spec=SPEC, request_token="t" * 40, control=NullControl(),
                         resume_engine_query_id="q-1")
    assert result.state == "succeeded"  # no start_query_execution was stubbed, so none was sent


# --- moto -------------------------------------------------------------------------------------

@mock_aws
def test_full_run_against_moto_with_seeded_results(athena_settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="results-bucket")
    client = boto3.client("athena", region_name="us-east-1")
    client.create_work_group(Name="analysts", Configuration={
        "ResultConfiguration": {"OutputLocation": "s3://results-bucket/athena/"}})
    seeded = {"results": [{
        "rows": [cells("id", "title", "score", "ok"), cells(11, "eleven", 0.25, "true"), cells(12, "twelve", 2, "false")],
        "column_info": [{**c, "CatalogName": "hive", "SchemaName": "crawl", "TableName": "samples_full",
                         "Label": c["Name"], "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN",
                         "CaseSensitive": False} for c in COLUMNS],
    }]}
    assert requests.post("http://motoapi.amazonaws.com/moto-api/static/athena/query-results", json=seeded).status_code == 201

    backend = AthenaBackend(client=client, sleep=lambda s: None)
    result = backend.run(query=query(limit=10, lang__eq="en"), spec=SPEC, request_token="t" * 40, control=NullControl())
    assert result.state == "succeeded"
    assert result.rows == [{"id": 11, "title": "eleven", "score": 0.25, "ok": True},
                           {"id": 12, "title": "twelve", "score": 2.0, "ok": False}]
    details = client.get_query_execution(QueryExecutionId=result.engine_query_id)["QueryExecution"]
    assert details["ExecutionParameters"] == ["'en'"]
    assert details["WorkGroup"] == "analysts"
    assert '"crawl"."samples_full"' in details["Query"] and "?" in details["Query"]
    assert result.cost_usd == scan_cost_usd(bytes_scanned=0)  # moto scans nothing: the 10 MB minimum

    backend.stop(engine_query_id=result.engine_query_id)
    assert client.get_query_execution(QueryExecutionId=result.engine_query_id)["QueryExecution"]["Status"]["State"] == "CANCELLED"
