"""Edges of the search: every cap accepts exactly its maximum and refuses one more; an integer column takes its
type's extremes and not one past them; NULLs are kept or dropped per operator alike on the index path's Python
checks, the DuckDB scan and the SQL sent to Athena."""
from __future__ import annotations

import io

import duckdb
import pyarrow as pa
import pytest

from apps.search import selectors
from apps.search.errors import SearchParamsError, SearchValidationError
from apps.search.query import (
    MAX_FILTERS,
    MAX_IN_VALUES,
    MAX_VALUE_LENGTH,
    Filter,
    SearchQuery,
    compile_search,
    query_from_params,
    query_validate,
)
from apps.search.selectors import subset_query_run, subset_search
from apps.search.services import subset_table_write
from apps.search.tables import TableSpec, table_spec_get

SPEC = TableSpec(
    name="docs", key="id",
    columns={"id": "BIGINT", "body": "VARCHAR", "title": "VARCHAR", "score": "INTEGER"},
    searchable={"id": ("eq", "ne", "in", "gt", "lt"),
                "body": ("contains", "icontains", "not_contains", "startswith", "eq", "ne", "in", "isnull"),
                "title": ("contains", "icontains", "not_contains", "startswith", "eq", "ne", "in", "isnull"),
                "score": ("eq", "ne", "gt", "gte", "lt", "lte", "isnull")},
    shown=("id", "body", "title", "score"),
)


def parse(pairs, *, max_limit=1000):
    return query_from_params(params=pairs, default_table="docs", default_limit=10, max_limit=max_limit)


# --- caps: the maximum is allowed, one more is not --------------------------------------------------

def test_the_largest_limit_is_accepted_and_one_more_refused():
    assert parse([("limit", "1000")]).limit == 1000
    with pytest.raises(SearchParamsError, match="between 1 and 1000"):
        parse([("limit", "1001")])


def test_exactly_max_filters_are_accepted_and_one_more_refused():
    filters = [("body__contains", f"w{i}") for i in range(MAX_FILTERS)]
    assert len(parse(filters).filters) == MAX_FILTERS
    with pytest.raises(SearchParamsError, match=f"At most {MAX_FILTERS} filters"):
        parse(filters + [("body__contains", "one more")])


def test_exactly_max_in_values_are_accepted_and_one_more_refused():
    values = ",".join(str(i) for i in range(MAX_IN_VALUES))
    [(_, typed)] = query_validate(query=parse([("id__in", values)]), spec=SPEC)
    assert len(typed) == MAX_IN_VALUES
    with pytest.raises(SearchValidationError, match=f"At most {MAX_IN_VALUES} values"):
        query_validate(query=parse([("id__in", values + ",99999")]), spec=SPEC)


def test_a_value_of_exactly_the_maximum_length_is_accepted_and_one_more_refused():
    longest = "x" * MAX_VALUE_LENGTH
    assert query_validate(query=parse([("body__contains", longest)]), spec=SPEC)[0][1] == longest
    with pytest.raises(SearchValidationError, match="longer than"):
        query_validate(query=parse([("body__contains", longest + "x")]), spec=SPEC)


@pytest.mark.parametrize(("column_type", "lowest", "highest"), [
    ("BIGINT", -(2 ** 63), 2 ** 63 - 1),
    ("INTEGER", -(2 ** 31), 2 ** 31 - 1),
    ("SMALLINT", -(2 ** 15), 2 ** 15 - 1),
])
def test_an_integer_column_takes_its_types_extremes_and_the_engine_can_compare_them(column_type, lowest, highest):
    spec = TableSpec(name="t", key="k", columns={"k": column_type}, searchable={"k": ("eq", "gt")}, shown=("k",))
    conn = duckdb.connect()
    conn.execute(f"CREATE TABLE t (k {column_type})")
    conn.execute("INSERT INTO t VALUES (?), (?)", [lowest, highest])
    for value in (lowest, highest):
        query = SearchQuery("t", (Filter("k", "eq", str(value)),), 10)
        compiled = compile_search(query=query, spec=spec)
        assert conn.execute(compiled.sql, compiled.params).fetchall() == [(value,)]
    for value in (lowest - 1, highest + 1):  # the engine could not even cast these: refused before
        with pytest.raises(SearchValidationError, match="out of range"):
            compile_search(query=SearchQuery("t", (Filter("k", "gt", str(value)),), 10), spec=spec)


# --- NULLs per operator: DuckDB and Athena's SQL agree, and keep what IS DISTINCT FROM keeps ----------

ROWS = [(1, "alpha", None, None), (2, "beta", "zebra one", 10), (3, None, "plain", 60), (4, "alpha beta", None, 90),
        (5, "gamma", "zebra two", None)]

NULL_CASES = [
    ("title", "ne", "plain", {1, 2, 4, 5}),  # NULL differs from every value
    ("title", "not_contains", "zebra", {1, 3, 4}),  # a NULL does not contain it
    ("body", "ne", "alpha", {2, 3, 4, 5}),
    ("body", "not_contains", "alpha", {2, 3, 5}),
    ("title", "isnull", "true", {1, 4}),
    ("title", "isnull", "false", {2, 3, 5}),
    ("score", "ne", "10", {1, 3, 4, 5}),
    ("score", "gt", "20", {3, 4}),
    ("title", "icontains", "ZEBRA", {2, 5}),
    ("title", "startswith", "zebra", {2, 5}),
]


@pytest.mark.parametrize(("column", "op", "value", "expected"), NULL_CASES)
@pytest.mark.parametrize("dialect", ["duckdb", "trino"])
def test_nulls_are_kept_or_dropped_per_operator_in_both_dialects(dialect, column, op, value, expected):
    """Athena's SQL (the trino dialect) is plain enough for DuckDB to run: both must give the same rows."""
    conn = duckdb.connect()
    conn.execute("CREATE TABLE docs (id BIGINT, body VARCHAR, title VARCHAR, score INTEGER)")
    conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", ROWS)
    compiled = compile_search(query=SearchQuery("docs", (Filter(column, op, value),), 100), spec=SPEC,
                              dialect=dialect)
    assert {row[0] for row in conn.execute(compiled.sql, compiled.params).fetchall()} == expected


# --- NULLs on the index path: the Python checks decide as DuckDB's SQL --------------------------------

INDEX_ROWS = 400


def _index_table() -> pa.Table:
    """`body` holds the word "needle" in every other row (what the index narrows by); `title` and `score` are
    NULL in some of those rows, so the second filter's Python check meets NULLs."""
    ids = list(range(INDEX_ROWS))
    return pa.table({
        "id": pa.array(ids, type=pa.int64()),
        "body": pa.array([f"needle row {i}" if i % 2 == 0 else f"other words {i}" for i in ids]),
        "title": pa.array([None if i % 3 == 0 else (f"zebra {i}" if i % 4 else f"-plain {i}") for i in ids]),
        "score": pa.array([None if i % 5 == 0 else i % 100 for i in ids], type=pa.int32()),
    })


@pytest.fixture
def indexed(settings, tmp_path, monkeypatch):
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    subset_table_write(name="nulls", arrow=_index_table(), stdout=io.StringIO(), keep_other_tables=False,
                       description={"key": "id", "searchable": "*", "shown": ["id", "body", "title", "score"]})
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)  # every narrowable query takes the index path
    decided = []
    verify = selectors._python_verify

    def spy(*args, **kwargs):
        result = verify(*args, **kwargs)
        decided.append(result is not None)
        return result

    monkeypatch.setattr(selectors, "_python_verify", spy)
    return table_spec_get(name="nulls"), decided


def _expected(column: str, op: str, value: str) -> set[int]:
    table = _index_table().to_pylist()
    test = {
        "ne": lambda x: x is None or str(x) != value,
        "not_contains": lambda x: x is None or value not in x,
        "isnull": lambda x: (x is None) == (value == "true"),
        "gt": lambda x: x is not None and x > int(value),
        "lt": lambda x: x is not None and x < int(value),
        "icontains": lambda x: x is not None and value.lower() in x.lower(),
        "startswith": lambda x: x is not None and x.startswith(value),
    }[op]
    return {row["id"] for row in table if "needle" in row["body"] and test(row[column])}


@pytest.mark.parametrize(("column", "op", "value"), [
    ("title", "ne", "-plain 4"),
    ("title", "not_contains", "zebra"),
    ("title", "isnull", "true"),
    ("title", "isnull", "false"),
    ("score", "gt", "50"),
    ("score", "lt", "30"),
    ("score", "ne", "10"),
    ("title", "icontains", "ZEBRA"),
    ("title", "startswith", "zebra"),
    ("title", "startswith", "-"),  # no word to look up: the index cannot narrow, the Python check meets the NULLs
])
def test_nulls_on_the_index_path_match_the_scan(indexed, column, op, value):
    spec, decided = indexed
    query = SearchQuery("nulls", (Filter("body", "contains", "needle"), Filter(column, op, value)), 1000)
    compiled = compile_search(query=query, spec=spec)
    by_index = subset_search(query=query, spec=spec, compiled=compiled, timeout_ms=60_000)
    by_scan = subset_query_run(compiled=compiled, timeout_ms=60_000)
    assert decided and all(decided), "the rows were not decided by the Python checks"
    expected = _expected(column, op, value)
    assert expected and {row[0] for row in by_scan.rows} == expected
    assert sorted(by_index.rows) == sorted(by_scan.rows)
