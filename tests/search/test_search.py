"""Search service, tables, subset store, demo data, import and the timeout path, on real DuckDB files."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent
from apps.search.demo_data import demo_table, demo_vocabulary
from apps.search.models import SearchLog
from apps.search.query import CompiledQuery, Filter, SearchQuery, SearchValidationError
from apps.search.selectors import search_facets, subset_query_run
from apps.search.services import search_run, subset_table_write
from apps.search.store import subset_connection, subset_current_path
from apps.search.tables import TableNotFound, table_spec_get, table_spec_list


def test_demo_table_shape_and_vocabulary():
    table = demo_table(rows=3000, seed=5, start_id=100)
    assert table.column_names == ["id", "url", "domain", "title", "text", "label", "lang", "crawled_at", "length"]
    ids = table.column("id").to_pylist()
    assert ids[0] == 100 and len(set(ids)) == 3000
    assert demo_table(rows=3000, seed=5, start_id=100).column("text").to_pylist() == table.column("text").to_pylist()
    assert len(set(table.column("label").to_pylist())) == 10
    conn = duckdb.connect()
    conn.register("t", table)
    vocab = demo_vocabulary()
    count = lambda term: conn.execute("SELECT count(*) FROM t WHERE contains(text, ?)", [term]).fetchone()[0]
    assert count(vocab["frequent"][0]) > 2000  # "the"
    assert all(count(term) == 0 for term in vocab["absent"][:20])
    rare_counts = [count(term) for term in vocab["rare"][:40]]
    assert max(rare_counts) <= 10
    assert conn.execute("SELECT min(length), max(length) FROM t").fetchone()[0] > 20
    assert conn.execute("SELECT count(*) FROM t WHERE length = length(text)").fetchone()[0] == 3000


def test_table_spec_from_subset_schema(demo_subset):
    spec = table_spec_get()
    assert spec.name == "samples" and spec.key == "id"
    assert spec.columns["text"] == "VARCHAR" and spec.columns["crawled_at"].startswith("TIMESTAMP")
    assert spec.searchable["length"] == ("eq", "gt", "gte", "lt", "lte")
    assert "contains" in spec.searchable["text"] and "gt" not in spec.searchable["text"]
    assert spec.selected[0] == "id" and spec.facets == ("label", "lang", "domain")
    assert spec.label_column == "label" and spec.text_column == "text"
    assert spec.full_data_glob.endswith("samples/*.parquet") and spec.athena_table == "samples"
    assert "samples" in [s.name for s in table_spec_list()]
    with pytest.raises(TableNotFound):
        table_spec_get(name="nope")


@pytest.mark.django_db
def test_search_run_matches_duckdb_and_logs(demo_subset, user):
    term = "match"
    expected = demo_subset.count("contains(text, ?) AND lang = 'en'", [term])
    assert expected > 5
    query = SearchQuery("samples", (Filter("text", "contains", term), Filter("lang", "eq", "en")), 5)
    result = search_run(user=user, query=query)
    assert result.local_count == 5 and len(result.rows) == 5 and not result.timed_out
    assert all(term in row["text"] and row["lang"] == "en" for row in result.rows)
    assert result.columns[0] == "id" and result.fallback is None and result.elapsed_ms > 0
    log = SearchLog.objects.get(pk=result.log_id)
    assert (log.user, log.table, log.limit, log.local_rows, log.needed_fallback, log.timed_out) == (
        user, "samples", 5, 5, False, False)
    assert log.fingerprint == query.fingerprint() and SearchQuery.from_dict(log.query) == query
    assert AuditEvent.objects.filter(action="search", user=user, detail__search_log_id=log.id).exists()

    everything = search_run(user=user, query=SearchQuery("samples", (Filter("text", "contains", term),), 1000))
    assert everything.local_count == min(1000, demo_subset.count("contains(text, ?)", [term]))
    absent = search_run(user=user, query=SearchQuery("samples", (Filter("text", "contains", "xqnothingzv"),), 10))
    assert absent.rows == [] and SearchLog.objects.get(pk=absent.log_id).needed_fallback


@pytest.mark.django_db
def test_search_run_rejects_bad_filters_without_logging(demo_subset, user):
    with pytest.raises(SearchValidationError) as info:
        search_run(user=user, query=SearchQuery("samples", (Filter("length", "gt", "many"),), 10))
    assert "length__gt" in info.value.errors
    with pytest.raises(TableNotFound):
        search_run(user=user, query=SearchQuery("nope", (), 10))
    assert not SearchLog.objects.exists()


@dataclass
class FakeFallback:
    """What the warehouse hook returns (the contract in apps/search/services.py)."""

    id: int
    rows: list = field(default_factory=list)
    state: str = "succeeded"
    from_cache: bool = True
    error_message: str = ""
    panel_template: str = ""
    url: str = "/api/fallbacks/1"

    def as_api(self):
        return {"id": self.id, "state": self.state, "url": self.url}


CALLS: list[dict] = []


def fallback_hook(*, user, query, local_rows, search_log_id):
    CALLS.append({"user": user, "query": query, "local_rows": local_rows, "search_log_id": search_log_id})
    return FakeFallback(id=41, rows=[{"id": local_rows[0]["id"] if local_rows else -1, "text": "dupe"},
                                     {"id": -5, "text": "from the warehouse"}])


def exploding_hook(**kwargs):
    raise RuntimeError("a broken hook must not break search")


@pytest.mark.django_db
def test_fallback_hook_is_called_when_subset_is_short(demo_subset, user, settings, api_client):
    settings.SEARCH_FALLBACK_HOOK = "tests.search.test_search.fallback_hook"
    CALLS.clear()
    term = demo_subset.query("SELECT text FROM samples LIMIT 1")[0][0].split()[1]
    local = min(demo_subset.count("contains(text, ?) AND id < 40", [term]), 3)
    query = SearchQuery("samples", (Filter("text", "contains", term), Filter("id", "lt", "40")), 1000)
    result = search_run(user=user, query=query)
    assert len(CALLS) == 1 and CALLS[0]["search_log_id"] == result.log_id and CALLS[0]["query"] == query
    assert result.local_count >= 1 and local >= 1
    assert [r["_source"] for r in result.rows] == ["local"] * result.local_count + ["warehouse"]
    assert result.rows[-1]["id"] == -5 and result.fallback.id == 41

    full = search_run(user=user, query=SearchQuery("samples", (), 3))  # the subset has enough: no fallback
    assert len(CALLS) == 1 and full.fallback is None

    response = api_client.get("/api/search", {"text__contains": term, "id__lt": "40", "limit": "1000"})
    assert response.status_code == 200
    assert response.json()["fallback"] == {"id": 41, "state": "succeeded", "url": "/api/fallbacks/1"}

    settings.SEARCH_FALLBACK_HOOK = "tests.search.test_search.exploding_hook"
    result = search_run(user=user, query=query)
    assert result.fallback is None and result.local_count >= 1


def test_timeout_interrupts_a_slow_query(demo_subset):
    outcome = subset_query_run(compiled=CompiledQuery("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3", []),
                               timeout_ms=150)
    assert outcome.timed_out and outcome.rows == [] and 100 < outcome.elapsed_ms < 3000
    # the thread's connection is still usable afterwards
    assert subset_connection().execute("SELECT 42").fetchone() == (42,)


@pytest.fixture(scope="module")
def slow_subset_dir(tmp_path_factory):
    """A subset of its own (so other tests do not copy it around) whose table is big enough that a
    regex scan takes far longer than a 10 ms time limit."""
    from django.test.utils import override_settings

    root = tmp_path_factory.mktemp("slow")
    path = root / "slow.parquet"
    with duckdb.connect() as conn:
        conn.execute(f"COPY (SELECT i AS id, repeat('lorem ipsum dolor ', 12) || i AS body FROM range(800000) t(i)) "
                     f"TO '{path}' (FORMAT parquet)")
    with override_settings(SEARCH_SUBSET_DIR=root / "subset"):
        call_command("import_subset", str(path), table="slowtable", key="id", stdout=io.StringIO())
    return root / "subset"


@pytest.mark.django_db
def test_search_run_timeout_path(slow_subset_dir, user, settings, client):
    settings.SEARCH_SUBSET_DIR = slow_subset_dir
    query = SearchQuery("slowtable", (Filter("body", "regex", "x+y+z+[0-9]{9}"),), 10)
    result = search_run(user=user, query=query, timeout_ms=10)
    assert result.timed_out and result.rows == []
    assert SearchLog.objects.get(pk=result.log_id).timed_out
    settings.SEARCH_TIMEOUT_MS = 10
    client.force_login(user)
    response = client.get("/samples/", {"table": "slowtable", "body__regex": "x+y+z+[0-9]{9}"})
    assert response.status_code == 200
    assert "time limit and was stopped" in response.content.decode()


@pytest.mark.django_db
def test_import_subset_with_another_schema(demo_subset, tmp_path, user, api_client):
    table = pa.table({
        "doc_id": pa.array([f"d-{i:03d}" for i in range(200)]),
        "body": pa.array([f"note {i} about {'100% cotton' if i % 10 == 0 else 'wool'} ünïcode" for i in range(200)]),
        "score": pa.array([i / 10 for i in range(200)], pa.float64()),
        "published": pa.array([f"2024-02-{i % 28 + 1:02d}" for i in range(200)]).cast(pa.date32()),
        "ok": pa.array([i % 2 == 0 for i in range(200)]),
    })
    pq.write_table(table.slice(0, 100), tmp_path / "a.parquet")
    pq.write_table(table.slice(100), tmp_path / "b.parquet")
    before = subset_current_path()
    out = io.StringIO()
    call_command("import_subset", str(tmp_path / "*.parquet"), table="notes", key="doc_id", facets="ok", stdout=out)
    assert "200 rows" in out.getvalue().replace(",", "")
    assert subset_current_path() != before

    spec = table_spec_get(name="notes")
    assert spec.origin == "subset" and spec.key == "doc_id" and spec.facets == ("ok",)
    assert spec.columns == {"doc_id": "VARCHAR", "body": "VARCHAR", "score": "DOUBLE", "published": "DATE", "ok": "BOOLEAN"}
    assert "contains" in spec.searchable["body"] and "gte" in spec.searchable["published"]
    assert table_spec_get(name="samples").columns  # the demo table was kept

    query = SearchQuery("notes", (Filter("body", "contains", "100%"), Filter("published", "gte", "2024-02-10"),
                                  Filter("score", "lt", "15")), 100)
    result = search_run(user=user, query=query)
    expected = sorted(f"d-{i:03d}" for i in range(150) if i % 10 == 0 and i % 28 + 1 >= 10)
    assert sorted(r["doc_id"] for r in result.rows) == expected
    facets, timed_out = search_facets(query=SearchQuery("notes", (), 10), spec=spec, timeout_ms=2000)
    assert not timed_out and facets[0].column == "ok" and sorted(facets[0].values) == [("false", 100), ("true", 100)]

    response = api_client.get("/api/search", {"table": "notes", "doc_id__eq": "d-007"})
    assert response.status_code == 200 and [r["doc_id"] for r in response.json()["rows"]] == ["d-007"]
    response = api_client.get("/api/search", {"table": "notes", "text__contains": "x"})
    assert response.status_code == 422 and "text__contains" in response.json()["errors"]


def test_import_subset_errors(demo_subset, tmp_path):
    pq.write_table(pa.table({"k": [1, 1, 2], "v": ["a", "b", "c"]}), tmp_path / "dupes.parquet")
    with pytest.raises(CommandError, match="unique"):
        call_command("import_subset", str(tmp_path / "dupes.parquet"), table="dupes", key="k", stdout=io.StringIO())
    with pytest.raises(CommandError, match="not a column"):
        call_command("import_subset", str(tmp_path / "dupes.parquet"), table="dupes", key="nope", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No Parquet file"):
        call_command("import_subset", str(tmp_path / "missing-*.parquet"), table="x", key="k", stdout=io.StringIO())
    with pytest.raises(CommandError, match="letters"):
        call_command("import_subset", str(tmp_path / "dupes.parquet"), table="bad name;", key="k", stdout=io.StringIO())
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_subset", str(tmp_path / "junk.parquet"), table="junk", key="k", stdout=io.StringIO())


def test_subset_swap_is_atomic_for_readers(demo_subset):
    reader = subset_connection()
    old_path = subset_current_path()
    count = reader.execute("SELECT count(*) FROM samples").fetchone()[0]
    subset_table_write(name="swaptest", arrow=pa.table({"id": [1, 2, 3]}), description={"key": "id"})
    # the old handle still answers from the old file; a fresh call sees the new file with both tables
    assert reader.execute("SELECT count(*) FROM samples").fetchone()[0] == count
    fresh = subset_connection()
    assert subset_current_path() != old_path and fresh is not reader
    assert fresh.execute("SELECT count(*) FROM samples").fetchone()[0] == count
    assert fresh.execute("SELECT count(*) FROM swaptest").fetchone()[0] == 3


def test_build_demo_data_step_skips_when_present(demo_subset):
    from apps.search.demo import build_demo_data

    out = io.StringIO()
    build_demo_data(stdout=out)
    assert "exists" in out.getvalue()


def test_import_subset_sample_fraction(demo_subset, tmp_path):
    pq.write_table(pa.table({"k": list(range(2000)), "v": [f"v{i}" for i in range(2000)]}), tmp_path / "s.parquet")
    call_command("import_subset", str(tmp_path / "s.parquet"), table="sampled", key="k", sample_fraction=0.25,
                 stdout=io.StringIO())
    assert 300 < demo_subset.count(table="sampled") < 700


def test_table_spec_falls_back_to_the_full_parquet_schema(demo_subset, settings, tmp_path):
    settings.SEARCH_SUBSET_DIR = tmp_path / "no-subset"
    spec = table_spec_get(name="samples")
    assert list(spec.columns)[:3] == ["id", "url", "domain"] and spec.columns["length"] == "INTEGER"
    assert "contains" in spec.searchable["text"]
