"""The filter compiler: every operator in both dialects, escaping proved by running the SQL."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime

import duckdb
import pytest
import sqlglot

from apps.search.operators import OPERATORS
from apps.search.query import (
    CompiledQuery,
    Filter,
    Order,
    SearchQuery,
    SearchValidationError,
    compile_search,
    like_escape,
    next_token,
    query_from_params,
)
from apps.search.tables import TableSpec

SPEC = TableSpec(
    name="docs",
    key="id",
    columns={"id": "BIGINT", "body": "VARCHAR", "score": "DOUBLE", "day": "DATE", "seen": "TIMESTAMP",
             "flag": "BOOLEAN", "n": "INTEGER"},
    searchable={
        "body": ("contains", "icontains", "not_contains", "startswith", "endswith", "eq", "ne", "in", "regex",
                 "isnull", "gt", "gte", "lt", "lte"),
        "id": ("eq", "ne", "in", "gt", "gte", "lt", "lte"),
        "score": ("gt", "gte", "lt", "lte", "eq"),
        "day": ("gt", "gte", "lt", "lte", "eq"),
        "seen": ("gte", "lt"),
        "flag": ("eq",),
        "n": ("eq", "isnull"),
    },
    shown=("body", "score"),
)

BODIES = [
    "plain text", "100% sure", "100 percent", "snake_case_name", "snakeXcaseYname", "back\\slash",
    "backslash", "it's quoted", 'say "hi"', "naïve café 東京", "NAIVE CAFE", "Plain Text shouting", None,
    "a_b%c\\d",
]


@pytest.fixture(scope="module")
def conn():
    c = duckdb.connect()
    c.execute("CREATE TABLE docs (id BIGINT, body VARCHAR, score DOUBLE, day DATE, seen TIMESTAMP, flag BOOLEAN, n INTEGER)")
    for i, body in enumerate(BODIES):
        c.execute("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?)",
                  [i, body, i / 2, f"2024-01-{i + 1:02d}", datetime(2024, 1, i + 1, 12), i % 2 == 0,
                   None if i % 3 == 0 else i])
    yield c
    c.close()


def q(*filters, limit=100) -> SearchQuery:
    return SearchQuery("docs", tuple(Filter(*f) for f in filters), limit)


def run(conn, compiled: CompiledQuery) -> list[int]:
    return sorted(r[0] for r in conn.execute(compiled.sql, compiled.params).fetchall())


def run_trino(conn, compiled: CompiledQuery) -> list[int]:
    """Trino SQL checked by executing it: sqlglot translates it to DuckDB, the parameters stay."""
    sql = sqlglot.transpile(compiled.sql, read="trino", write="duckdb")[0]
    return sorted(r[0] for r in conn.execute(sql, compiled.params).fetchall())


def ids_where(predicate) -> list[int]:
    return [i for i, body in enumerate(BODIES) if predicate(body)]


LITERAL_CASES = ["100%", "_", "%", "\\", "snake_case", "a_b%c\\d", "it's", '"hi"', "café 東京", "'; DROP TABLE docs; --", ""]


@pytest.mark.parametrize("value", [v for v in LITERAL_CASES if v])
@pytest.mark.parametrize("dialect", ["duckdb", "trino"])
def test_contains_matches_value_literally(conn, value, dialect):
    compiled = compile_search(query=q(("body", "contains", value)), spec=SPEC, dialect=dialect)
    if len(value) > 2:
        assert value not in compiled.sql  # values travel as parameters only
    expected = ids_where(lambda b: b is not None and value in b)
    assert (run(conn, compiled) if dialect == "duckdb" else run_trino(conn, compiled)) == expected
    assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == len(BODIES)


@pytest.mark.parametrize("dialect", ["duckdb", "trino"])
@pytest.mark.parametrize(
    "op,value,predicate",
    [
        ("icontains", "naive cafe", lambda b: b is not None and "naive cafe" in b.lower()),
        ("icontains", "PLAIN", lambda b: b is not None and "plain" in b.lower()),
        ("icontains", "100%", lambda b: b is not None and "100%" in b.lower()),
        ("icontains", "_CASE_", lambda b: b is not None and "_case_" in b.lower()),
        ("not_contains", "a", lambda b: b is None or "a" not in b),
        ("not_contains", "_", lambda b: b is None or "_" not in b),
        ("startswith", "back\\", lambda b: b is not None and b.startswith("back\\")),
        ("startswith", "100%", lambda b: b is not None and b.startswith("100%")),
        ("startswith", "a_b", lambda b: b is not None and b.startswith("a_b")),
        ("endswith", "name", lambda b: b is not None and b.endswith("name")),
        ("endswith", "_name", lambda b: b is not None and b.endswith("_name")),  # `_` is no LIKE wildcard
        ("endswith", "c\\d", lambda b: b is not None and b.endswith("c\\d")),
        ("endswith", "100%", lambda b: b is not None and b.endswith("100%")),
        # Ranges on text: string order, by code point (uppercase before lowercase, "é" after "z").
        ("gte", "plain", lambda b: b is not None and b >= "plain"),
        ("gt", "plain text", lambda b: b is not None and b > "plain text"),
        ("lt", "N", lambda b: b is not None and b < "N"),
        ("lte", "backslash", lambda b: b is not None and b <= "backslash"),
        ("gte", "naïve", lambda b: b is not None and b >= "naïve"),
        ("eq", "it's quoted", lambda b: b == "it's quoted"),
        ("eq", "naïve café 東京", lambda b: b == "naïve café 東京"),
        ("ne", "plain text", lambda b: b != "plain text"),
        ("in", "plain text, backslash,NAIVE CAFE", lambda b: b in ("plain text", "backslash", "NAIVE CAFE")),
        ("regex", r"^snake.case", lambda b: b is not None and b.startswith("snake") and len(b) > 10 and b[5] in "_X"),
        ("regex", r"\d+%", lambda b: b is not None and "100%" in b),
        ("isnull", "true", lambda b: b is None),
        ("isnull", "false", lambda b: b is not None),
    ],
)
def test_text_operators(conn, dialect, op, value, predicate):
    compiled = compile_search(query=q(("body", op, value)), spec=SPEC, dialect=dialect)
    got = run(conn, compiled) if dialect == "duckdb" else run_trino(conn, compiled)
    assert got == ids_where(predicate)


@pytest.mark.parametrize("dialect", ["duckdb", "trino"])
@pytest.mark.parametrize(
    "column,op,value,expected",
    [
        ("id", "eq", "3", [3]),
        ("id", "ne", "3", [i for i in range(len(BODIES)) if i != 3]),
        ("id", "in", "1, 2,5", [1, 2, 5]),
        ("id", "gt", "11", [12, 13]),
        ("id", "gte", "12", [12, 13]),
        ("id", "lt", "2", [0, 1]),
        ("id", "lte", "1", [0, 1]),
        ("score", "gt", "5.75", [12, 13]),
        ("score", "eq", "1.5", [3]),
        ("day", "gte", "2024-01-13", [12, 13]),
        ("day", "eq", "2024-01-01", [0]),
        ("day", "lt", "2024-01-02", [0]),
        ("seen", "gte", "2024-01-14", [13]),
        ("seen", "lt", "2024-01-02T00:00:00", [0]),
        ("flag", "eq", "true", [i for i in range(len(BODIES)) if i % 2 == 0]),
        ("n", "isnull", "yes", [i for i in range(len(BODIES)) if i % 3 == 0]),
        ("n", "eq", "4", [4]),
    ],
)
def test_typed_operators(conn, dialect, column, op, value, expected):
    compiled = compile_search(query=q((column, op, value)), spec=SPEC, dialect=dialect)
    got = run(conn, compiled) if dialect == "duckdb" else run_trino(conn, compiled)
    assert got == expected


def test_every_operator_is_covered_and_compiles_in_both_dialects():
    samples = {"contains": "x", "icontains": "x", "not_contains": "x", "startswith": "x", "endswith": "x",
               "eq": "x", "ne": "x",
               "in": "x,y", "regex": "x+", "isnull": "true"}
    numeric = {"gt": "1", "gte": "1", "lt": "1", "lte": "1"}
    assert set(samples) | set(numeric) == set(OPERATORS)
    for op in OPERATORS:
        column, value = ("id", numeric[op]) if op in numeric else ("body", samples[op])
        for dialect in ("duckdb", "trino"):
            compiled = compile_search(query=q((column, op, value)), spec=SPEC, dialect=dialect)
            sqlglot.parse_one(compiled.sql, read="trino" if dialect == "trino" else "duckdb")
            assert compiled.sql.count("?") == len(compiled.params)


def test_dialect_differences():
    query = q(("body", "icontains", "a_b"), ("body", "regex", "a+"), ("body", "contains", "50%"))
    duck = compile_search(query=query, spec=SPEC, dialect="duckdb")
    trino = compile_search(query=query, spec=SPEC, dialect="trino")
    assert "ILIKE ? ESCAPE '\\'" in duck.sql and "regexp_matches(" in duck.sql and 'contains("body", ?)' in duck.sql
    assert "lower(\"body\") LIKE lower(?) ESCAPE '\\'" in trino.sql and "regexp_like(" in trino.sql
    assert duck.params == ["%a\\_b%", "a+", "50%"]
    assert trino.params == ["%a\\_b%", "a+", "%50\\%%"]
    assert duck.sql.startswith('SELECT "id", "body", "score" FROM "docs" WHERE ') and duck.sql.endswith("LIMIT 100")


def test_relation_and_identifier_quoting():
    spec = TableSpec(name="we\"ird", key="k", columns={"k": "INTEGER", 'co"l': "VARCHAR"},
                     searchable={'co"l': ("contains",)}, shown=('co"l',))
    query = SearchQuery('we"ird', (Filter('co"l', "contains", "x"),), 5)
    compiled = compile_search(query=query, spec=spec, relation="read_parquet('/data/*.parquet')")
    assert compiled.sql == ('SELECT "k", "co""l" FROM read_parquet(\'/data/*.parquet\') WHERE contains("co""l", ?) LIMIT 5')
    assert compile_search(query=query, spec=spec).sql.count('"we""ird"') == 1


def test_like_escape():
    assert like_escape("a%b_c\\d") == "a\\%b\\_c\\\\d"


@pytest.mark.parametrize(
    "filters,field,message",
    [
        ([("nope", "contains", "x")], "nope__contains", "Unknown column"),
        ([("score", "contains", "x")], "score__contains", "not available"),
        ([("score", "gt", "abc")], "score__gt", "not a number"),
        ([("score", "gt", "nan")], "score__gt", "finite"),
        ([("id", "eq", "1.5")], "id__eq", "whole number"),
        ([("day", "gte", "2024-13-01")], "day__gte", "not a date"),
        ([("seen", "gte", "yesterday")], "seen__gte", "not a date"),
        ([("body", "regex", "(unclosed")], "body__regex", "Invalid regular expression"),
        ([("body", "regex", "(?<=a)b")], "body__regex", "RE2"),
        ([("body", "contains", "")], "body__contains", "Enter a value"),
        ([("body", "in", " , ")], "body__in", "one or more"),
        ([("flag", "eq", "maybe")], "flag__eq", "true or false"),
        ([("n", "isnull", "perhaps")], "n__isnull", "true or false"),
        ([("body", "contains", "x" * 1001)], "body__contains", "longer than"),
    ],
)
def test_validation_errors(filters, field, message):
    with pytest.raises(SearchValidationError) as info:
        compile_search(query=q(*filters), spec=SPEC)
    assert field in info.value.errors
    assert message in " ".join(info.value.errors[field])


def test_errors_are_collected_for_every_bad_field():
    with pytest.raises(SearchValidationError) as info:
        compile_search(query=q(("nope", "eq", "1"), ("score", "gt", "x"), ("body", "contains", "ok")), spec=SPEC)
    assert set(info.value.errors) == {"nope__eq", "score__gt"}


def test_query_from_params_round_trip_and_fingerprint():
    params = [("text__contains", "foo"), ("url__contains", "b_r%"), ("limit", "25"), ("csrfmiddlewaretoken", "x")]
    query = query_from_params(params=params, default_table="samples", default_limit=10, max_limit=1000, strict=False)
    assert query == SearchQuery("samples", (Filter("text", "contains", "foo"), Filter("url", "contains", "b_r%")), 25)
    assert query.to_params() == [("table", "samples"), ("text__contains", "foo"), ("url__contains", "b_r%"), ("limit", "25")]
    again = query_from_params(params=query.to_params(), default_table="x", default_limit=10, max_limit=1000)
    assert again == query
    assert SearchQuery.from_dict(query.to_dict()) == query
    reordered = SearchQuery("samples", tuple(reversed(query.filters)), 25)
    assert reordered.fingerprint() == query.fingerprint()
    assert len(query.fingerprint()) == 64
    assert SearchQuery("samples", query.filters, 10).fingerprint() != query.fingerprint()


def test_query_from_params_errors():
    with pytest.raises(SearchValidationError) as info:
        query_from_params(params=[("text__like", "x"), ("limit", "5000"), ("bogus", "1")],
                          default_table="samples", default_limit=10, max_limit=1000)
    assert set(info.value.errors) == {"text__like", "limit", "bogus"}
    with pytest.raises(SearchValidationError) as info:
        query_from_params(params=[("limit", "ten")], default_table="samples", default_limit=10, max_limit=1000)
    assert "not a whole number" in info.value.errors["limit"][0]
    blank = query_from_params(params=[("text__contains", ""), ("n__isnull", "")], default_table="t",
                              default_limit=10, max_limit=1000, skip_blank=True)
    assert blank.filters == (Filter("n", "isnull", ""),)


# --- Sorting and keyset paging ------------------------------------------------------------------

SORT_SPEC = replace(SPEC, shown=("body", "score", "n", "day", "seen"))


def run_ordered(conn, compiled: CompiledQuery, dialect: str) -> list[int]:
    """The ids in the order the query returns them (Trino via sqlglot, as above)."""
    sql = compiled.sql if dialect == "duckdb" else sqlglot.transpile(compiled.sql, read="trino", write="duckdb")[0]
    return [r[0] for r in conn.execute(sql, compiled.params).fetchall()]


def expected_order(column: str, desc: bool) -> list[int]:
    """ORDER BY column [DESC] NULLS LAST, id, computed in Python from the fixture rows."""
    values = {
        "body": lambda i: BODIES[i], "score": lambda i: i / 2, "n": lambda i: None if i % 3 == 0 else i,
        "day": lambda i: i, "seen": lambda i: i, "id": lambda i: i,
    }[column]
    ids = list(range(len(BODIES)))
    present = sorted((i for i in ids if values(i) is not None), key=lambda i: (values(i), i))
    if desc:  # descending on the value, the key still ascending among equal values
        present = sorted(present, key=lambda i: values(i), reverse=True)
    return present + [i for i in ids if values(i) is None]


@pytest.mark.parametrize("dialect", ["duckdb", "trino"])
@pytest.mark.parametrize("column", ["body", "score", "n", "day", "seen", "id"])
@pytest.mark.parametrize("desc", [False, True])
def test_order_by_column_then_key_nulls_last(conn, dialect, column, desc):
    query = SearchQuery("docs", (), 100, order=Order(column, desc))
    compiled = compile_search(query=query, spec=SORT_SPEC, dialect=dialect)
    direction = "DESC" if desc else "ASC"
    assert compiled.sql.endswith(f'ORDER BY "{column}" {direction} NULLS LAST, "id" ASC LIMIT 100')
    assert run_ordered(conn, compiled, dialect) == expected_order(column, desc)


@pytest.mark.parametrize("dialect", ["duckdb", "trino"])
@pytest.mark.parametrize("column,desc", [("n", False), ("n", True), ("body", False), ("score", True),
                                         ("day", True), ("seen", False), (None, False)])
def test_keyset_pages_walk_every_row_once_in_order(conn, dialect, column, desc):
    """Follow `_next` tokens page by page (3 rows a page) through both dialects: the pages, joined, are the
    whole sorted table, NULL sort values (the last pages) included."""
    order = Order(column, desc) if column else None
    want = expected_order(column or "id", desc)
    seen: list[int] = []
    after = None
    for _ in range(20):
        query = SearchQuery("docs", (), 3, order=order, after=after)
        compiled = compile_search(query=query, spec=SORT_SPEC, dialect=dialect)
        assert compiled.sql.count("?") == len(compiled.params)
        page = run_ordered(conn, compiled, dialect)
        seen += page
        if len(page) < 3:
            break
        last = conn.execute(f'SELECT {column or "id"}, id FROM docs WHERE id = ?', [page[-1]]).fetchone()
        token = next_token(list(last) if column else [last[1]])
        after = query_from_params(params=[("_next", token)], default_table="docs", default_limit=3,
                                  max_limit=10).after
    assert seen == want


def test_paging_without_a_sort_implies_key_order_only_on_later_pages():
    first = compile_search(query=q(("body", "contains", "a")), spec=SORT_SPEC)
    assert "ORDER BY" not in first.sql  # unsorted first pages stay a plain scan
    later = compile_search(query=SearchQuery("docs", (Filter("body", "contains", "a"),), 5, after=(4,)),
                           spec=SORT_SPEC, dialect="trino")
    assert later.sql.endswith('AND "id" > ? ORDER BY "id" ASC LIMIT 5') and later.params[-1] == 4


def test_sort_and_next_params_are_reserved_validated_and_round_trip():
    params = [("body__contains", "a"), ("_sort_desc", "score"), ("_next", next_token([1.5, 3])), ("limit", "5")]
    query = query_from_params(params=params, default_table="docs", default_limit=10, max_limit=100, strict=True)
    assert query.order == Order("score", True) and query.after == (1.5, 3)
    assert query.to_params() == [("table", "docs"), ("body__contains", "a"), ("_sort_desc", "score"),
                                 ("_next", next_token([1.5, 3])), ("limit", "5")]
    assert query.to_params(page=False)[-2:] == [("_sort_desc", "score"), ("limit", "5")]
    assert query_from_params(params=query.to_params(), default_table="x", default_limit=10, max_limit=100) == query
    assert SearchQuery.from_dict(query.to_dict()) == query
    assert "ORDER BY score DESC" in query.describe()
    plain = SearchQuery("docs", query.filters, 5)
    assert len({plain.fingerprint(), replace(plain, order=Order("score")).fingerprint(),
                replace(plain, order=Order("score", True)).fingerprint(), query.fingerprint()}) == 4
    # An unsorted first page keeps the fingerprint it always had (cached fallbacks stay found).
    assert plain.fingerprint() == hashlib.sha256(json.dumps(
        {"filters": [["body", "contains", "a"]], "limit": 5, "table": "docs"},
        sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    with pytest.raises(SearchValidationError) as info:
        compile_search(query=SearchQuery("docs", (), 5, order=Order("flag")), spec=SORT_SPEC)  # not shown
    assert "_sort" in info.value.errors
    with pytest.raises(SearchValidationError) as info:
        compile_search(query=SearchQuery("docs", (), 5, order=Order("nope", True)), spec=SORT_SPEC)
    assert "_sort_desc" in info.value.errors
    with pytest.raises(SearchValidationError) as info:  # a token of the wrong shape for this sort
        compile_search(query=SearchQuery("docs", (), 5, order=Order("score"), after=(3,)), spec=SORT_SPEC)
    assert "_next" in info.value.errors
    with pytest.raises(SearchValidationError) as info:
        compile_search(query=SearchQuery("docs", (), 5, order=Order("day"), after=("not a date", 3)), spec=SORT_SPEC)
    assert "_next" in info.value.errors
    for bad in ["!!!", next_token([[1], 2]), "e30"]:  # not base64, nested, a dict
        with pytest.raises(SearchValidationError) as info:
            query_from_params(params=[("_next", bad)], default_table="docs", default_limit=10, max_limit=100)
        assert "_next" in info.value.errors
    with pytest.raises(SearchValidationError) as info:
        query_from_params(params=[("_sort", "a"), ("_sort_desc", "b")], default_table="docs", default_limit=10,
                          max_limit=100)
    assert "_sort_desc" in info.value.errors


def test_text_ranges_compare_iso_months_as_strings(conn):
    """Datasette's way with dates kept as text: `month >= 2026-10` is a string comparison, in both dialects."""
    spec = TableSpec(name="m", key="id", columns={"id": "BIGINT", "month": "VARCHAR"},
                     searchable={"month": ("gte", "lt")}, shown=("month",))
    conn.execute("CREATE OR REPLACE TABLE m AS SELECT * FROM (VALUES (1, '2026-09'), (2, '2026-10'), (3, '2026-11'),"
                 " (4, NULL), (5, '2027-01')) t(id, month)")
    for dialect in ("duckdb", "trino"):
        query = SearchQuery("m", (Filter("month", "gte", "2026-10"), Filter("month", "lt", "2027")), 10)
        compiled = compile_search(query=query, spec=spec, dialect=dialect)
        assert (run(conn, compiled) if dialect == "duckdb" else run_trino(conn, compiled)) == [2, 3]


def test_endswith_escapes_like_wildcards_for_trino():
    compiled = compile_search(query=q(("body", "endswith", "50%_x")), spec=SPEC, dialect="trino")
    assert '"body" LIKE ? ESCAPE' in compiled.sql and compiled.params == ["%50\\%\\_x"]
    duck = compile_search(query=q(("body", "endswith", "50%_x")), spec=SPEC, dialect="duckdb")
    assert 'ends_with("body", ?)' in duck.sql and duck.params == ["50%_x"]


def test_random_sort_with_a_seed_is_reproducible_and_differs_by_seed(conn):
    query = query_from_params(params=[("_sort", "random"), ("_seed", "42"), ("limit", "5")], default_table="docs",
                              default_limit=10, max_limit=100)
    assert query.seed == 42 and query.order is None
    assert query.to_params() == [("table", "docs"), ("_sort", "random"), ("_seed", "42"), ("limit", "5")]
    assert SearchQuery.from_dict(query.to_dict()) == query
    assert query.fingerprint() != replace(query, seed=43).fingerprint() != replace(query, seed=None).fingerprint()

    def rows(seed):
        compiled = compile_search(query=replace(query, seed=seed), spec=SPEC)
        return [r[0] for r in conn.execute(compiled.sql, compiled.params).fetchall()]

    assert rows(42) == rows(42) and len(rows(42)) == 5
    assert rows(42) != rows(7) or rows(42) != rows(8)  # another seed, another sample
    assert rows(42) != [0, 1, 2, 3, 4]  # not the first rows by key
    trino = compile_search(query=query, spec=SPEC, dialect="trino").sql  # Trino has xxhash64 (DuckDB has not)
    assert "ORDER BY xxhash64(to_utf8(" in trino and "'42'" in trino
    sqlglot.parse_one(trino, read="trino")
    assert "random(seed 42)" in query.describe()


@pytest.mark.parametrize("params,field", [
    ([("_sort", "random"), ("_seed", "x")], "_seed"),
    ([("_sort", "random"), ("_seed", str(2**31))], "_seed"),
    ([("_sort", "random"), ("_sort_desc", "id")], "_sort"),
    ([("_sort", "random"), ("_next", next_token([3]))], "_next"),
])
def test_random_sort_refuses_a_bad_seed_another_sort_or_a_page(params, field):
    with pytest.raises(Exception) as caught:
        query_from_params(params=params, default_table="docs", default_limit=10, max_limit=100)
    assert field in caught.value.errors


def test_random_sort_without_a_seed_uses_seed_zero():
    query = query_from_params(params=[("_sort", "random")], default_table="docs", default_limit=10, max_limit=100)
    assert query.seed == 0


def test_columns_chosen_keeps_the_key_and_refuses_unknown_columns():
    from apps.search.query import columns_chosen
    assert SPEC.selected == ("id", "body", "score")
    assert columns_chosen(params=[("_col", "score")], spec=SPEC) == ["id", "score"]
    assert columns_chosen(params=[("_col", "score,body")], spec=SPEC) == ["id", "body", "score"]
    assert columns_chosen(params=[("_nocol", "body"), ("_nocol", "id")], spec=SPEC) == ["id", "score"]
    assert columns_chosen(params=[], spec=SPEC) == ["id", "body", "score"]
    with pytest.raises(SearchValidationError) as caught:
        columns_chosen(params=[("_col", "nope")], spec=SPEC)
    assert "Unknown column 'nope'" in caught.value.errors["_col"][0]
