"""The whole filter language on the index path returns exactly the scan's rows (issue 26).

Randomized over a fixed list of seeds: every operator of apps/search/operators.py on every column kind it
takes (free text, a coded low-cardinality text column, integers of two widths, doubles with NaN and -0.0,
dates, timestamps, booleans), over data with NULLs in every column, empty strings, non-ASCII text, and
filter values equal to values in the data (the `<` / `<=` boundaries). Each query runs:

- through subset_search, with DENSE_SHARE = 1.0 so that every query a filter can narrow takes the index path;
- its candidates verified in Python (selectors._python_check, the default where exact) or, in the `duckdb`
  runs, by DuckDB over the candidate rows (selectors._python_filter answers None);
- with small FIRST_ROUND_ROWS / VERIFY_MAX_ROWS in some runs, so that answers span several rounds and the
  scan that continues after the last verified row;

and its rows (keys, values, order) must equal the plain LIMIT scan's; the index's candidates must hold every
matching row of the table, not only the first `limit`.
"""
from __future__ import annotations

import io
import math
import random
from datetime import date, datetime, timedelta

import pyarrow as pa
import pytest

from apps.search import selectors, word_index
from apps.search.operators import OPERATOR_TABLE, OPERATORS_BY_KIND
from apps.search.query import Filter, SearchQuery, compile_search
from apps.search.selectors import search_plan, subset_query_run, subset_search
from apps.search.services import subset_table_write
from apps.search.store import table_snapshot
from apps.search.tables import table_spec_get

TABLE = "lang"
ROWS = 1500
WORDS = ["alpha", "Beta", "gamma", "ÉCOLE", "école", "straße", "ΣΟΦΙΑ", "σοφία", "50%", "a_b", "c\\d",
         "İstanbul", "\u212aelvin", "kelvin", "日本語", "🙂smile", "don't", "O'Neil's", "x_y%z", "naïve", "Ünïcödé"]
ALPHABET = list("abcxyzABCéÉßσΣİı日本🙂%_\\-/. '0123456789")
KINDS = ["news", "Science", "", "日本", "é", "n/a"]  # a coded column: <= 15 values, "" among them
COLUMNS = {  # column -> kind, as apps.search.tables.column_kind reads its type
    "body": "text", "title": "text", "kind": "text", "score": "integer", "big": "integer", "ratio": "float",
    "day": "date", "seen_at": "timestamp", "flag": "boolean",
}


def _text(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.12:
        return None
    if roll < 0.18:
        return ""
    if roll < 0.21:
        return " "
    parts = [rng.choice(WORDS) if rng.random() < 0.6
             else "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 5))]
    return rng.choice([" ", "-", "", "/"]).join(parts)


def _maybe(rng: random.Random, value, share: float = 0.15):
    return None if rng.random() < share else value


def _table(seed: int) -> pa.Table:
    rng = random.Random(seed)
    start = datetime(2024, 1, 1)
    ratios = [0.0, -0.0, 0.5, -1.25, 1e-9, 3.0, float("nan"), float("inf"), 2.5]
    return pa.table({
        "id": pa.array(range(ROWS), type=pa.int64()),
        "body": pa.array([_text(rng) for _ in range(ROWS)], type=pa.string()),
        "title": pa.array([_text(rng) for _ in range(ROWS)], type=pa.string()),
        "kind": pa.array([_maybe(rng, rng.choice(KINDS)) for _ in range(ROWS)], type=pa.string()),
        "score": pa.array([_maybe(rng, rng.randint(-5, 20)) for _ in range(ROWS)], type=pa.int32()),
        "big": pa.array([_maybe(rng, rng.choice([0, -1, 2**53 + 1, -(2**62), 2**63 - 1, rng.randint(-10**12, 10**12)]))
                         for _ in range(ROWS)], type=pa.int64()),
        "ratio": pa.array([_maybe(rng, rng.choice(ratios)) for _ in range(ROWS)], type=pa.float64()),
        "day": pa.array([_maybe(rng, date(2024, 1, 1) + timedelta(days=rng.randint(0, 60))) for _ in range(ROWS)],
                        type=pa.date32()),
        "seen_at": pa.array([_maybe(rng, start + timedelta(minutes=rng.randint(0, 3000),
                                                            microseconds=rng.choice([0, 1, 500000])))
                             for _ in range(ROWS)], type=pa.timestamp("us")),
        "flag": pa.array([_maybe(rng, rng.random() < 0.5) for _ in range(ROWS)], type=pa.bool_()),
    })


def _install(seed: int):
    subset_table_write(name=TABLE, arrow=_table(seed), description={"key": "id", "searchable": "*",
                                                                     "shown": ["id", *COLUMNS]},
                       keep_other_tables=False, stdout=io.StringIO())
    return table_spec_get(name=TABLE)


def _piece(rng: random.Random, values: list) -> str:
    """A substring of a value in the data (cased differently now and then), or made up."""
    present = [v for v in values if v and v.strip()]
    if present and rng.random() < 0.8:
        value = rng.choice(present)
        start = rng.randrange(len(value))
        piece = value[start: start + rng.randint(1, 8)]
        return rng.choice([piece, piece, piece.upper(), piece.lower()])
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6)))


def _regex(rng: random.Random, piece: str) -> str:
    escaped = "".join("\\" + c if c.isascii() and not c.isalnum() else c for c in piece)
    return rng.choice([escaped, escaped + ".*a", "^" + escaped, "(" + escaped + ")", escaped + "|zz", "(?i)" + escaped,
                       escaped + "$", "[a-z]" + escaped])


def _text_value(rng: random.Random, op: str, values: list) -> str:
    present = [v for v in values if v is not None and v != ""]
    if op == "startswith":
        value = rng.choice(present)[: rng.randint(1, 8)] if rng.random() < 0.8 else _piece(rng, values)
    elif op == "endswith":
        value = rng.choice(present)[-rng.randint(1, 8):] if rng.random() < 0.8 else _piece(rng, values)
    elif op in ("gt", "gte", "lt", "lte"):  # string order: a value in the data (the boundary), a prefix, or any
        value = rng.choice([rng.choice(present), rng.choice(present)[: rng.randint(1, 3)], _piece(rng, values)])
    elif op in ("eq", "ne"):
        value = rng.choice(present) if rng.random() < 0.8 else _piece(rng, values)
    elif op == "in":
        picked = [rng.choice(present) if rng.random() < 0.8 else _piece(rng, values) for _ in range(rng.randint(1, 4))]
        value = ",".join(p.replace(",", "") for p in picked)
        if not value.replace(",", "").strip():
            value = "alpha"
    elif op == "regex":
        value = _regex(rng, _piece(rng, values))
    else:  # contains, icontains, not_contains
        value = _piece(rng, values)
    return value if value.strip() else "alpha"  # a blank value is refused ("Enter a value."), as an empty one


def _ordered_value(rng: random.Random, kind: str, values: list) -> str:
    """Mostly a value in the data (so `<` and `<=` differ on its rows), else the extremes or one beyond."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and not math.isfinite(v))]
    value = rng.choice(present) if rng.random() < 0.8 else rng.choice([min(present), max(present)])
    if kind == "integer":
        return str(value + rng.choice([0, 0, 0, 1, -1])) if abs(value) < 2**62 else str(value)
    if kind == "float":
        return repr(value) if rng.random() < 0.8 else rng.choice(["0", "-0.0", "1e-9", "2.5", "-1e308"])
    if kind == "date":
        return value.isoformat()
    return value.isoformat(sep=rng.choice([" ", "T"])) if rng.random() < 0.8 else value.date().isoformat()


def _filter(rng: random.Random, column: str, op: str, data: dict) -> Filter:
    kind, values = COLUMNS[column], data[column]
    if op == "isnull":
        value = rng.choice(["true", "false", "1", "0"])
    elif kind == "text":
        value = _text_value(rng, op, values)
    elif kind == "boolean":
        value = rng.choice(["true", "false"])
    elif op == "in":  # integers
        value = ",".join(_ordered_value(rng, kind, values) for _ in range(rng.randint(1, 4)))
    else:
        value = _ordered_value(rng, kind, values)
    return Filter(column, op, value)


NARROWING = ("contains", "icontains", "startswith", "endswith", "eq", "in", "regex")


def _random_query(rng: random.Random, data: dict, spec) -> SearchQuery:
    filters = []
    if rng.random() < 0.9:  # a filter the index can narrow (most of the time), then any others
        filters.append(_filter(rng, rng.choice(["body", "title", "kind"]), rng.choice(NARROWING), data))
    for _ in range(rng.randint(0 if filters else 1, 3)):
        column = rng.choice(list(COLUMNS))
        filters.append(_filter(rng, column, rng.choice(spec.searchable[column]), data))
    return SearchQuery(TABLE, tuple(filters), rng.choice([1, 3, 10, 50, 1000]))


def test_the_table_covers_every_operator_on_every_kind():
    """Every operator a column kind takes is drawn here on a column of that kind (a new operator or kind fails
    this test until the randomized test below draws it)."""
    kinds = set(COLUMNS.values())
    for op in OPERATOR_TABLE:
        assert {k for k in op.kinds if k in kinds} == {k for k in op.kinds if k != "other"}, op.key
    assert {k for k in OPERATORS_BY_KIND if OPERATORS_BY_KIND[k]} - {"other"} == kinds


@pytest.fixture
def language_subset(settings, tmp_path):
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    return _install


@pytest.mark.parametrize("verify", ["python", "duckdb"])
@pytest.mark.parametrize(("seed", "rounds"), [(1, "one"), (2, "many"), (3, "one"), (4, "many")])
def test_every_operator_on_every_kind_returns_the_scans_rows(language_subset, monkeypatch, seed, rounds, verify):
    spec = language_subset(seed)
    table = _table(seed)
    data = {column: table.column(column).to_pylist() for column in COLUMNS}
    for column, kind in COLUMNS.items():
        assert spec.kind(column) == kind and column in spec.searchable, column
    path = table_snapshot(table=TABLE).path
    index = word_index.file_index(path).table(TABLE)
    assert "kind" in index.coded and "body" not in index.coded
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)
    if rounds == "many":  # rounds of 4, 8, … candidates; past 60 the scan continues after the last verified row
        monkeypatch.setattr(selectors, "FIRST_ROUND_ROWS", 4)
        monkeypatch.setattr(selectors, "VERIFY_MAX_ROWS", 60)
    decided_in_python = []
    if verify == "duckdb":
        monkeypatch.setattr(selectors, "_python_filter", lambda query, spec, validated=None: None)
    else:
        original = selectors._python_verify
        monkeypatch.setattr(selectors, "_python_verify", lambda *args: decided_in_python.append(
            result := original(*args)) or result)
    rng = random.Random(seed)
    plans = {"index": 0, "scan": 0, "empty": 0}
    drawn: set[tuple[str, str]] = set()
    for _ in range(220):
        query = _random_query(rng, data, spec)
        drawn |= {(flt.op, COLUMNS[flt.column]) for flt in query.filters}
        plan = search_plan(query=query, spec=spec, index=index)
        plans[plan.kind] += 1
        compiled = compile_search(query=query, spec=spec)
        indexed = subset_search(query=query, spec=spec, compiled=compiled, timeout_ms=60_000)
        scanned = subset_query_run(compiled=compiled, timeout_ms=60_000)
        assert not indexed.timed_out and not scanned.timed_out
        assert _same(indexed.rows, scanned.rows), (plan.kind, query.describe())
        if plan.candidates is not None:  # every matching row, not just the first `limit`, is a candidate
            every = SearchQuery(TABLE, query.filters, ROWS)
            matching = {row[0] for row in subset_query_run(compiled=compile_search(query=every, spec=spec),
                                                           timeout_ms=60_000).rows}
            assert matching <= set(plan.candidates), query.describe()
    wanted = {(op.key, kind) for op in OPERATOR_TABLE for kind in op.kinds if kind in set(COLUMNS.values())}
    assert drawn == wanted, wanted - drawn
    assert plans["index"] >= 60 and plans["empty"] >= 3 and plans["scan"] >= 10, plans
    if verify == "python":
        assert sum(result is not None for result in decided_in_python) >= 40


def _same(left: list[tuple], right: list[tuple]) -> bool:
    """Equal rows, NaN equal to NaN (as DuckDB compares it) and -0.0 told from 0.0."""
    def key(value):
        if isinstance(value, float):
            return ("nan",) if value != value else (value, math.copysign(1.0, value))
        return value
    return [tuple(map(key, row)) for row in left] == [tuple(map(key, row)) for row in right]


def test_nan_is_above_every_number_on_the_index_path_as_in_duckdb(settings, tmp_path, monkeypatch):
    """DuckDB orders NaN above every number (NaN > 5 and NaN >= 5 are true, NaN < 5 false); the Python check
    of the index path must agree, or rows the scan returns go missing."""
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)
    ratio = [float("nan"), 1.0, None, 7.0, float("inf"), -0.0, float("nan"), 5.0]
    rows = len(ratio) * 20
    subset_table_write(name=TABLE, arrow=pa.table({
        "id": pa.array(range(rows), type=pa.int64()), "body": [f"word{i % 3} filler" for i in range(rows)],
        "ratio": pa.array([ratio[i % len(ratio)] for i in range(rows)], type=pa.float64())}),
        description={"key": "id", "searchable": "*", "shown": ["id", "body", "ratio"]},
        keep_other_tables=False, stdout=io.StringIO())
    spec = table_spec_get(name=TABLE)
    for op, value, expected in (("gt", "5", {"nan", 7.0, math.inf}), ("gte", "5", {"nan", 5.0, 7.0, math.inf}),
                                ("lt", "5", {1.0, -0.0}), ("lte", "5", {1.0, -0.0, 5.0}),
                                ("ne", "5", {"nan", 1.0, None, 7.0, math.inf, -0.0}), ("eq", "-0.0", {-0.0})):
        query = SearchQuery(TABLE, (Filter("body", "contains", "word0"), Filter("ratio", op, value)), 1000)
        assert search_plan(query=query, spec=spec, index=word_index.file_index(table_snapshot(table=TABLE).path).table(TABLE)).kind \
            == "index"
        compiled = compile_search(query=query, spec=spec)
        indexed = subset_search(query=query, spec=spec, compiled=compiled, timeout_ms=60_000)
        scanned = subset_query_run(compiled=compiled, timeout_ms=60_000)
        assert _same(indexed.rows, scanned.rows), (op, value)
        assert {"nan" if v != v else v for _, _, v in scanned.rows} == expected, (op, value)
        assert {row[1] for row in indexed.rows} == {"word0 filler"}


def test_a_random_sample_is_the_scans_hash_order_not_the_index_paths_table_order(language_subset, monkeypatch):
    """`_sort=random&_seed=n` orders by hash(key, seed): the planner leaves it to the scan's ORDER BY even
    where the index could narrow (the index path returns candidates in table order)."""
    from dataclasses import replace
    spec = language_subset(1)
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)
    index = word_index.file_index(table_snapshot(table=TABLE).path).table(TABLE)
    query = SearchQuery(TABLE, (Filter("body", "icontains", "alpha"),), 20)
    assert search_plan(query=query, spec=spec, index=index).kind == "index"
    sampled = replace(query, seed=5)
    assert search_plan(query=sampled, spec=spec, index=index).kind == "scan"
    rows = subset_search(query=sampled, spec=spec, timeout_ms=60_000).rows
    assert len(rows) == 20 and [r[0] for r in rows] != sorted(r[0] for r in rows)
    assert _same(rows, subset_query_run(compiled=compile_search(query=sampled, spec=spec), timeout_ms=60_000).rows)
