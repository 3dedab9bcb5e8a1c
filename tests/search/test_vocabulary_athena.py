"""An Athena refresh builds the vocabulary from its Trino statements: each UNLOADed (Stubber: the exact SQL
and request parameters; moto: the S3 it writes and the refresh downloads), the Parquet they write made by
running the statement's SELECT on DuckDB through sqlglot, and their cost added to the refresh's."""
from __future__ import annotations

import io
import re

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from botocore.stub import ANY, Stubber
from moto import mock_aws

from tests.subsets.conftest import built_dataset, dataset  # noqa: F401


class DuckAthena:
    """The stubbed Athena client, plus what Athena would do on UNLOAD: run the SELECT (Trino SQL, translated
    by sqlglot) over the full demo data and write its rows as Parquet under the TO prefix in moto's S3."""

    def __init__(self, client, s3, full_glob: str):
        self.client, self.s3 = client, s3
        self.conn = duckdb.connect()
        self.conn.execute("CREATE SCHEMA analytics")
        self.conn.execute(f"CREATE TABLE analytics.samples AS SELECT * FROM read_parquet('{full_glob}')")
        self.statements: list[str] = []

    def start_query_execution(self, **kwargs):
        response = self.client.start_query_execution(**kwargs)
        statement = kwargs["QueryString"]
        self.statements.append(statement)
        select, bucket, prefix = re.fullmatch(
            r"UNLOAD \((.*)\) TO 's3://([^/]+)/([^']*)' WITH \(format = 'PARQUET', compression = 'SNAPPY'\)",
            statement, re.S).groups()
        if "TABLESAMPLE" in select:  # the sample's own UNLOAD: every 10th row will do
            select = select.split(" FROM ")[0] + ' FROM "analytics"."samples" WHERE id % 10 = 0'
        # Athena's xxhash64 of the hash sample's order (coverage rows): DuckDB has its own hash.
        select = re.sub(r"abs\(from_big_endian_64\(xxhash64\(to_utf8\((.*?)\)\)\) % (\d+)\)", r"(hash(\1) % \2)", select)
        rows = self.conn.sql(sqlglot.transpile(select, read="trino", write="duckdb")[0]).to_arrow_table()
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink)
        self.s3.put_object(Bucket=bucket, Key=f"{prefix}20240101_000000_00042_abcde_0",
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
    settings.ATHENA_OUTPUT_LOCATION = ""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="unload-bucket")
        yield s3


@pytest.mark.django_db
def test_an_athena_refresh_builds_the_vocabulary_from_its_statements_and_counts_their_cost(dataset, aws, user):
    from apps.samples.pipeline import search_answer
    from apps.search.query import Filter, SearchQuery
    from apps.search.tables import table_spec_get
    from apps.search.vocabulary import (
        table_vocabulary,
        value_columns,
        vocabulary_build_local,
        vocabulary_columns,
        vocabulary_load,
    )
    from apps.subsets.services import subset_refresh
    from apps.warehouse.backends.athena import AthenaBackend

    spec = table_spec_get(name="samples")
    words = vocabulary_columns(spec=spec)
    values = value_columns(spec=spec, columns=words)
    statements = 3 + len(values) + len(words)  # the sample, the total, values, the cells of the few-valued, words
    client = boto3.client("athena", region_name="us-east-1")
    stubber = Stubber(client)
    for number in range(statements):
        stubber.add_response("start_query_execution", {"QueryExecutionId": f"q-{number}"}, {
            "QueryString": ANY, "ClientRequestToken": ANY if number == 0 else _Token(number - 1),
            "QueryExecutionContext": {"Database": "analytics"}, "WorkGroup": "samplescope"})
        stubber.add_response("get_query_execution", {"QueryExecution": {
            "QueryExecutionId": f"q-{number}", "Status": {"State": "SUCCEEDED"},
            "Statistics": {"DataScannedInBytes": 1024**3}}}, {"QueryExecutionId": f"q-{number}"})
    athena = AthenaBackend(client=DuckAthena(client, aws, spec.full_data_glob), sleep=lambda _: None)
    with stubber:
        run = subset_refresh(backend="athena", fraction=0.1, trigger="test", athena_backend=athena, s3_client=aws,
                             stdout=io.StringIO())
    stubber.assert_no_pending_responses()
    assert run.state == "succeeded", run.error
    sent = athena.client.statements
    assert sent[1] == ("UNLOAD (SELECT count(*) AS n FROM \"analytics\".\"samples\") TO "
                       f"'s3://unload-bucket/samplescope/samples/refresh-{run.pk:06d}-vocabulary/000-total/' "
                       "WITH (format = 'PARQUET', compression = 'SNAPPY')")
    assert "SELECT \"label\" AS value, count(*) AS n FROM \"analytics\".\"samples\" WHERE \"label\" IS NOT NULL " \
           "GROUP BY \"label\" LIMIT 1001" in "".join(sent)
    assert ("SELECT CASE WHEN regexp_like(w, '^[0-9]{7,}$') THEN '#' ELSE w END AS word, count(*) AS n FROM "
            "\"analytics\".\"samples\" CROSS JOIN UNNEST(array_distinct(regexp_split(lower(\"text\"), "
            "'[^\\p{L}\\p{N}]+'))) AS t (w) WHERE w <> '' GROUP BY 1") in "".join(sent)
    # Every statement's scan is the refresh's (system) spend: 1 GiB each at $5/TB.
    assert run.bytes_scanned == statements * 1024**3
    assert float(run.cost_usd) == pytest.approx(statements / 1024 * 5.0)
    vocabulary = table_vocabulary(table="samples")
    assert vocabulary.meta["source"] == "athena" and vocabulary.rows == 20_000
    # The same words and counts as the local build over the same full data.
    vocabulary_build_local(path=dataset.subset_dir / "local.duckdb", spec=spec,
                           relation=f"read_parquet('{spec.full_data_glob}')")
    local = vocabulary_load(dataset.subset_dir / "local.duckdb", table="samples")
    for column in words:
        a, b = vocabulary.words[column], local.words[column]
        assert len(a) == len(b) and a.blob[:] == b.blob[:] and (a.cum == b.cum).all(), column
        assert a.digits == b.digits and a.whole is not None and b.whole is None, column  # whole: the subset's words
    assert vocabulary.words["text"].digits  # the codes' numbers
    assert vocabulary.meta["values"] == local.meta["values"]
    assert vocabulary.meta["cells"] == local.meta["cells"] and vocabulary.meta["cells"]["columns"] == [
        "domain", "label", "lang"]
    assert ('SELECT "domain", "label", "lang", count(*) AS n FROM "analytics"."samples" GROUP BY "domain", "label", '
            '"lang" LIMIT 20001') in "".join(sent)
    answer = search_answer(user=user, query=SearchQuery("samples", (Filter("text", "contains", "xqnowherezv"),), 10))
    assert answer.complete and answer.fallback is None and answer.vocabulary.proof


class _Token:
    """Matches the vocabulary statements' ClientRequestToken (one per statement: a retry runs it once)."""

    def __init__(self, number: int):
        self.number = number

    def __eq__(self, other) -> bool:
        pattern = rf"samplescope-vocabulary-\d{{12}}-{self.number:03d}"
        return isinstance(other, str) and re.fullmatch(pattern, other) is not None

    def __repr__(self) -> str:
        return f"<vocabulary token {self.number:03d}>"


@pytest.mark.django_db
def test_an_athena_refresh_unloads_the_coverage_rows_and_counts_their_cost(dataset, aws, settings):
    """With SUBSET_COVERAGE_SHARE on, one more UNLOAD (after the sample's) brings the rows of rare words and thin
    cells; its Trino SQL runs (through sqlglot) over the full data, and its scan is the refresh's."""
    import duckdb as duck

    from apps.search.store import subset_connection
    from apps.search.tables import table_spec_get
    from apps.subsets.services import subset_refresh
    from apps.warehouse.backends.athena import AthenaBackend

    settings.SUBSET_COVERAGE_SHARE = 1.0
    settings.SUBSET_VOCABULARY_ON_ATHENA = False
    spec = table_spec_get(name="samples")
    client = boto3.client("athena", region_name="us-east-1")
    stubber = Stubber(client)
    for number in range(2):
        stubber.add_response("start_query_execution", {"QueryExecutionId": f"q-{number}"}, {
            "QueryString": ANY, "ClientRequestToken": ANY, "QueryExecutionContext": {"Database": "analytics"},
            "WorkGroup": "samplescope"})
        stubber.add_response("get_query_execution", {"QueryExecution": {
            "QueryExecutionId": f"q-{number}", "Status": {"State": "SUCCEEDED"},
            "Statistics": {"DataScannedInBytes": 1024**3}}}, {"QueryExecutionId": f"q-{number}"})
    athena = AthenaBackend(client=DuckAthena(client, aws, spec.full_data_glob), sleep=lambda _: None)
    out = io.StringIO()
    with stubber:
        run = subset_refresh(backend="athena", fraction=0.1, trigger="test", athena_backend=athena, s3_client=aws,
                             stdout=out)
    stubber.assert_no_pending_responses()
    assert run.state == "succeeded", run.error
    coverage = athena.client.statements[1]
    assert "refresh-" in coverage and "-coverage/000-rows/" in coverage and "WHERE n <= 30 AND" in coverage
    assert "row_number() OVER (PARTITION BY \"domain\", \"label\", \"lang\"" in coverage
    assert run.bytes_scanned == 2 * 1024**3  # the sample's UNLOAD and the coverage's
    assert "coverage:" in out.getvalue() and run.rows > 2_000  # every 10th row, and more
    full = duck.connect().execute(
        f"SELECT w, count(*) FROM (SELECT id, unnest(list_distinct(string_split_regex(lower(text), "
        f"'[^\\p{{L}}\\p{{N}}]+'))) AS w FROM read_parquet('{spec.full_data_glob}')) "
        f"WHERE regexp_full_match(w, '[a-z]{{6,}}') GROUP BY w HAVING count(*) BETWEEN 2 AND 9 ORDER BY w LIMIT 1"
    ).fetchone()
    cursor = subset_connection().cursor()
    try:
        here = cursor.execute("SELECT count(*) FROM samples WHERE list_contains(string_split_regex(lower(text), "
                              "'[^\\p{L}\\p{N}]+'), ?)", [full[0]]).fetchone()[0]
    finally:
        cursor.close()
    assert here == full[1]
