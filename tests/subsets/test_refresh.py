"""Refreshing the subset from the warehouse: local backend end to end, Athena with moto + Stubber,
failures that keep the served subset, the one-at-a-time lock, the command and the beat task."""
from __future__ import annotations

import io
import re
import threading
from datetime import timedelta

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.stub import ANY, Stubber
from celery.exceptions import SoftTimeLimitExceeded
from django.core.management import CommandError, call_command
from django.utils import timezone
from moto import mock_aws

from tests.subsets.conftest import ROWS, subset_count


def _current_name(dataset) -> str:
    return (dataset.subset_dir / "tables" / "samples" / "CURRENT").read_text().strip()


def _common_word_query(limit: int = 10):
    from apps.search.query import Filter, SearchQuery

    return SearchQuery(table="samples", filters=(Filter("text", "contains", "the"),), limit=limit)


@pytest.mark.django_db
def test_local_refresh_swaps_in_a_new_sample_while_searches_keep_working(dataset):
    from apps.samples.pipeline import search_answer
    from apps.search.query import compile_search
    from apps.search.selectors import subset_query_run
    from apps.search.tables import table_spec_get
    from apps.subsets.models import SubsetRefresh
    from apps.subsets.services import subset_refresh

    before_rows, before_file = subset_count(), _current_name(dataset)
    assert 0.03 * ROWS < before_rows < 0.07 * ROWS
    spec = table_spec_get(name="samples")
    compiled = compile_search(query=_common_word_query(), spec=spec)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []  # (rows returned, subset size) per search, from another thread
    errors: list[BaseException] = []

    def searching():
        from apps.search.store import subset_connection

        while not stop.is_set():
            try:
                outcome = subset_query_run(compiled=compiled, timeout_ms=5000)
                cursor = subset_connection().cursor()
                size = cursor.execute("SELECT count(*) FROM samples").fetchone()[0]
                cursor.close()
                seen.append((len(outcome.rows), size))
            except BaseException as exc:  # noqa: BLE001 - the test reports any failure
                errors.append(exc)

    searcher = threading.Thread(target=searching)
    searcher.start()
    try:
        out = io.StringIO()
        run = subset_refresh(fraction=0.3, trigger="test", stdout=out)
    finally:
        # Let the searcher run a little on the new subset too.
        deadline = timezone.now() + timedelta(seconds=5)
        while timezone.now() < deadline and not any(size != before_rows for _, size in seen[-1:]):
            stop.wait(0.05)
        stop.set()
        searcher.join(10)

    assert not errors, errors
    assert run.state == SubsetRefresh.State.SUCCEEDED, run.error
    assert all(rows == 10 for rows, _ in seen), "every search during the refresh returned its rows"
    sizes = [size for _, size in seen]
    assert sizes[0] == before_rows and sizes[-1] == run.rows, "searches saw the old subset, then the new one"
    assert 0.25 * ROWS < run.rows < 0.35 * ROWS
    assert _current_name(dataset) == run.file_name != before_file
    assert "hash(" in run.statement and "installed" in out.getvalue()
    assert run.duration_ms is not None and run.running_key is None
    # The web side: a search through the service in this thread sees the new subset too.
    assert subset_count() == run.rows
    assert search_answer(user=None, query=_common_word_query(limit=5)).local_count == 5


@pytest.mark.django_db
def test_a_failing_build_keeps_the_served_subset(dataset, settings, tmp_path):
    from apps.subsets.models import SubsetRefresh
    from apps.subsets.services import subset_refresh

    before_rows, before_file = subset_count(), _current_name(dataset)
    broken = tmp_path / "broken" / "samples"
    broken.mkdir(parents=True)
    (broken / "part-00000.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")
    settings.SEARCH_FULL_DATA_DIR = tmp_path / "broken"

    run = subset_refresh(fraction=0.5, trigger="test")

    assert run.state == SubsetRefresh.State.FAILED and run.error and run.running_key is None
    assert _current_name(dataset) == before_file and subset_count() == before_rows
    assert sorted(p.name for p in (dataset.subset_dir / "tables" / "samples").glob("*.duckdb*")) == \
        [before_file, f"{before_file}.vocab", f"{before_file}.words"], "no half-built file left"


@pytest.mark.django_db
def test_an_empty_sample_fails_verification_and_is_not_installed(dataset):
    from apps.subsets.services import subset_refresh

    before_file = _current_name(dataset)
    run = subset_refresh(fraction=1e-6, trigger="test")
    assert run.state == "failed" and "empty" in run.error
    assert _current_name(dataset) == before_file


@pytest.mark.django_db
def test_only_one_refresh_runs_at_a_time_and_a_dead_ones_lock_is_taken_over(dataset, settings):
    from apps.subsets.models import SubsetRefresh
    from apps.subsets.services import RefreshBusy, subset_refresh

    holder = SubsetRefresh.objects.create(table="samples", backend="local", method="hash", fraction=0.1,
                                          running_key="samples", heartbeat_at=timezone.now())
    with pytest.raises(RefreshBusy):
        subset_refresh(fraction=0.1, trigger="test")
    with pytest.raises(CommandError, match="running"):
        call_command("refresh_subset", "--fraction", "0.1", stdout=io.StringIO())

    SubsetRefresh.objects.filter(pk=holder.pk).update(heartbeat_at=timezone.now() - timedelta(hours=5))
    settings.SUBSET_REFRESH_STALE_AFTER_SECONDS = 60
    run = subset_refresh(fraction=0.1, trigger="test")
    holder.refresh_from_db()
    assert run.state == "succeeded"
    assert holder.state == "failed" and "abandoned" in holder.error and holder.running_key is None


@pytest.mark.django_db
def test_command_and_beat_task(dataset, settings):
    from apps.subsets.models import SubsetRefresh
    from apps.subsets.tasks import subset_refresh_task

    out = io.StringIO()
    call_command("refresh_subset", "--fraction", "0.1", "--method", "bernoulli", stdout=out)
    assert "succeeded" in out.getvalue()
    assert SubsetRefresh.objects.get().method == "bernoulli"
    with pytest.raises(CommandError, match="fraction"):
        call_command("refresh_subset", "--fraction", "1.5", stdout=io.StringIO())

    entry = settings.CELERY_BEAT_SCHEDULE["subsets-refresh"]
    assert entry["task"] == subset_refresh_task.name
    refresh_id = subset_refresh_task.apply(kwargs={"fraction": 0.2}).get()
    assert SubsetRefresh.objects.get(pk=refresh_id).trigger == "beat"
    assert subset_count() == SubsetRefresh.objects.get(pk=refresh_id).rows


# --- Athena ------------------------------------------------------------------------------------

class UnloadingAthena:
    """The stubbed Athena client, plus what Athena itself would do on UNLOAD: write Parquet files
    under the TO prefix (into moto's S3)."""

    def __init__(self, client, s3, table: pa.Table, parts: int = 2):
        self.client, self.s3, self.table, self.parts = client, s3, table, parts
        self.statements: list[str] = []
        self.stopped: list[str] = []  # every StopQueryExecution asked for, even one the Stubber would refuse

    def stop_query_execution(self, **kwargs):
        self.stopped.append(kwargs.get("QueryExecutionId"))
        return self.client.stop_query_execution(**kwargs)

    def start_query_execution(self, **kwargs):
        response = self.client.start_query_execution(**kwargs)
        statement = kwargs["QueryString"]
        self.statements.append(statement)
        bucket, prefix = re.search(r"TO 's3://([^/]+)/([^']*)'", statement).groups()
        size = self.table.num_rows // self.parts
        for part in range(self.parts):
            sink = pa.BufferOutputStream()
            pq.write_table(self.table.slice(part * size, size), sink)
            # Athena names UNLOAD files without an extension.
            self.s3.put_object(Bucket=bucket, Key=f"{prefix}20240101_000000_00042_abcde_{part}",
                               Body=sink.getvalue().to_pybytes())
        return response

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture
def aws(monkeypatch, settings):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    settings.AWS_REGION = "us-east-1"
    settings.AWS_ENDPOINT_URL = settings.AWS_S3_ENDPOINT_URL = ""
    settings.SUBSET_UNLOAD_S3_URI = "s3://unload-bucket/samplescope/"
    settings.ATHENA_DATABASE = "analytics"
    settings.ATHENA_WORKGROUP = "samplescope"
    settings.ATHENA_OUTPUT_LOCATION = "s3://athena-results/queries/"
    settings.SUBSET_VOCABULARY_ON_ATHENA = False  # these tests stub the sample's UNLOAD alone (vocabulary: tests/search)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="unload-bucket")
        yield s3


def _athena(stubber_client, s3, table):
    from apps.warehouse.backends.athena import AthenaBackend

    return AthenaBackend(client=UnloadingAthena(stubber_client, s3, table), sleep=lambda _: None)


@pytest.mark.django_db
def test_athena_refresh_unloads_to_s3_downloads_and_swaps(dataset, aws):
    from apps.search.demo_data import demo_table
    from apps.search.store import subset_connection
    from apps.subsets.services import subset_refresh

    before_file = _current_name(dataset)
    client = boto3.client("athena", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response("start_query_execution", {"QueryExecutionId": "unload-1"}, {
        "QueryString": ANY, "ClientRequestToken": ANY, "QueryExecutionContext": {"Database": "analytics"},
        "WorkGroup": "samplescope", "ResultConfiguration": {"OutputLocation": "s3://athena-results/queries/"}})
    stubber.add_response("get_query_execution", {"QueryExecution": {
        "QueryExecutionId": "unload-1", "Status": {"State": "RUNNING"}, "Statistics": {"DataScannedInBytes": 1000}}},
        {"QueryExecutionId": "unload-1"})
    stubber.add_response("get_query_execution", {"QueryExecution": {
        "QueryExecutionId": "unload-1", "Status": {"State": "SUCCEEDED"},
        "Statistics": {"DataScannedInBytes": 3 * 1024**3}}}, {"QueryExecutionId": "unload-1"})
    unloaded = demo_table(rows=400, seed=3, start_id=900_000)
    athena = _athena(client, aws, unloaded)

    with stubber:
        run = subset_refresh(backend="athena", fraction=0.2, trigger="test", athena_backend=athena, s3_client=aws)
    stubber.assert_no_pending_responses()

    assert run.state == "succeeded", run.error
    assert athena.client.stopped == []  # a finished UNLOAD is never stopped
    statement = athena.client.statements[0]
    columns = ", ".join(f'"{c}"' for c in ("id", "url", "domain", "title", "text", "label", "lang", "crawled_at", "length"))
    assert statement == (
        f'UNLOAD (SELECT {columns} FROM "analytics"."samples" TABLESAMPLE SYSTEM (20)) '
        f"TO '{run.s3_prefix}' WITH (format = 'PARQUET', compression = 'SNAPPY')")
    assert re.fullmatch(r"s3://unload-bucket/samplescope/samples/refresh-\d{6}-\d{8}T\d{6}/", run.s3_prefix)
    assert run.statement == statement and run.engine_query_id == "unload-1"
    assert run.downloaded_files == 2 and run.rows == 400
    assert run.bytes_scanned == 3 * 1024**3 and float(run.cost_usd) == pytest.approx(3 / 1024 * 5.0)
    # The swap: the served subset is now exactly the unloaded rows.
    assert _current_name(dataset) == run.file_name != before_file
    cursor = subset_connection().cursor()
    ids = {r[0] for r in cursor.execute("SELECT id FROM samples").fetchall()}
    cursor.close()
    assert ids == set(unloaded.column("id").to_pylist())


@pytest.mark.django_db
def test_athena_hash_predicate_and_a_failed_unload_keeps_the_subset(dataset, aws):
    from apps.search.demo_data import demo_table
    from apps.subsets.services import subset_refresh

    before_file, before_rows = _current_name(dataset), subset_count()
    client = boto3.client("athena", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response("start_query_execution", {"QueryExecutionId": "unload-2"}, {
        "QueryString": ANY, "ClientRequestToken": ANY, "QueryExecutionContext": ANY, "WorkGroup": ANY,
        "ResultConfiguration": ANY})
    stubber.add_response("get_query_execution", {"QueryExecution": {
        "QueryExecutionId": "unload-2", "Status": {"State": "FAILED", "AthenaError": {"ErrorMessage": "HIVE_BAD_DATA"}},
        "Statistics": {"DataScannedInBytes": 0}}}, {"QueryExecutionId": "unload-2"})
    athena = _athena(client, aws, demo_table(rows=10, seed=3))
    with stubber:
        run = subset_refresh(backend="athena", method="hash", fraction=0.05, trigger="test", athena_backend=athena,
                             s3_client=aws)
    assert run.state == "failed" and "HIVE_BAD_DATA" in run.error
    assert "abs(from_big_endian_64(xxhash64(to_utf8(CAST(\"id\" AS varchar) || 'samplescope'))) % 1000000) < 50000" \
        in athena.client.statements[0]
    assert _current_name(dataset) == before_file and subset_count() == before_rows
    assert athena.client.stopped == []  # it ended in Athena: nothing to stop


def _interrupting_sleep(exc: BaseException):
    """The backend's sleep between polls, raising `exc` on the first wait: the interruption lands while the
    refresh waits for Athena, where Celery's soft time limit or a SIGTERM would land."""

    def sleep(_seconds):
        raise exc

    return sleep


@pytest.mark.parametrize("interruption", [
    SoftTimeLimitExceeded("soft time limit (10800s) exceeded"),  # the beat task's limit
    KeyboardInterrupt(),  # Ctrl-C on `refresh_subset`
    SystemExit(143),  # SIGTERM, as a worker's warm shutdown turns it into
    ConnectionResetError("connection reset by peer"),  # anything else going wrong mid-wait
], ids=lambda exc: type(exc).__name__)
@pytest.mark.django_db
def test_an_interrupted_refresh_stops_its_athena_unload(dataset, aws, interruption):
    from apps.search.demo_data import demo_table
    from apps.search.selectors import subset_search
    from apps.search.tables import table_spec_get
    from apps.subsets.models import SubsetRefresh
    from apps.subsets.services import subset_refresh
    from apps.warehouse.backends.athena import AthenaBackend

    before_file, before_rows = _current_name(dataset), subset_count()
    client = boto3.client("athena", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response("start_query_execution", {"QueryExecutionId": "unload-stop-1"}, {
        "QueryString": ANY, "ClientRequestToken": ANY, "QueryExecutionContext": ANY, "WorkGroup": ANY,
        "ResultConfiguration": ANY})
    stubber.add_response("get_query_execution", {"QueryExecution": {
        "QueryExecutionId": "unload-stop-1", "Status": {"State": "RUNNING"},
        "Statistics": {"DataScannedInBytes": 5 * 1024**3}}}, {"QueryExecutionId": "unload-stop-1"})
    stubber.add_response("stop_query_execution", {}, {"QueryExecutionId": "unload-stop-1"})
    unloading = UnloadingAthena(client, aws, demo_table(rows=10, seed=3))
    athena = AthenaBackend(client=unloading, sleep=_interrupting_sleep(interruption))
    out = io.StringIO()

    with stubber:
        if isinstance(interruption, Exception):  # the refresh fails and says so, as any failure does
            run = subset_refresh(backend="athena", fraction=0.05, trigger="test", athena_backend=athena,
                                 s3_client=aws, stdout=out)
        else:  # the interruption goes on up, after the run is ended
            with pytest.raises(type(interruption)):
                subset_refresh(backend="athena", fraction=0.05, trigger="test", athena_backend=athena,
                               s3_client=aws, stdout=out)
            run = SubsetRefresh.objects.get()
    stubber.assert_no_pending_responses()

    assert unloading.stopped == ["unload-stop-1"], "exactly one StopQueryExecution, for the UNLOAD it started"
    run.refresh_from_db()
    assert run.state == "failed" and run.running_key is None and run.finished_at is not None
    assert run.engine_query_id == "unload-stop-1"
    assert run.error.startswith(type(interruption).__name__)
    assert "interrupted while waiting for Athena UNLOAD unload-stop-1, so it was stopped" in run.error
    assert "stopped (StopQueryExecution sent)" in out.getvalue()
    # The served subset is untouched and still answers.
    assert _current_name(dataset) == before_file and subset_count() == before_rows
    assert len(subset_search(query=_common_word_query(limit=3), spec=table_spec_get(name="samples"),
                             timeout_ms=5000).rows) == 3


def test_sample_clauses_per_dialect():
    from apps.subsets.services import sample_clause

    assert sample_clause(method="system", fraction=0.05, key="id", dialect="trino") == " TABLESAMPLE SYSTEM (5)"
    assert sample_clause(method="bernoulli", fraction=0.5, key="id", dialect="duckdb") == " USING SAMPLE 50% (bernoulli)"
    with pytest.raises(ValueError):
        sample_clause(method="random", fraction=0.05, key="id", dialect="duckdb")
    with pytest.raises(ValueError):
        sample_clause(method="hash", fraction=0, key="id", dialect="duckdb")
