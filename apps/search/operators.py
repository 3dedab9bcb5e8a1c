"""Every filter operator, defined once: the URL key, its label, which column kinds take it, how its
value is read, its SQL in DuckDB and in Trino (Athena), and how it reads in plain words.

Adding an operator is one entry in OPERATOR_TABLE (Datasette's `filters.py` does the same).

SQL templates get `{col}` (a quoted identifier from the TableSpec), `{p}` (a placeholder, `?` or a
typed cast of one), `{ps}` (placeholders for a list) and `{esc}` (the LIKE escape clause). Values
never enter the SQL text: `params` turns the parsed value into the positional parameters in the
order the template uses them.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

LIKE_ESCAPE = "\\"
ESCAPE_CLAUSE = f"ESCAPE '{LIKE_ESCAPE}'"  # standard SQL strings: one backslash, no escaping
TEXT = ("text",)
# Ranges: numbers and dates by value; text by string order (Datasette's way with ISO dates kept as text:
# `month >= 2026-10`). DuckDB and Trino both compare VARCHAR by code point (binary, no collation).
ORDERED = ("text", "integer", "float", "date", "timestamp")
ALL_KINDS = ("text", "integer", "float", "date", "timestamp", "boolean", "other")


def like_escape(value: str) -> str:
    """Make `%`, `_` and the escape character itself match literally in a LIKE pattern."""
    return value.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")


@dataclass(frozen=True)
class Operator:
    key: str  # the `<column>__<key>` suffix in URLs
    label: str  # shown in the form's picker
    kinds: tuple[str, ...]  # column kinds (tables.column_kind) that take it
    value: str  # how the raw text is read: "scalar" (typed per column), "list" (comma-separated), "bool"
    duckdb: str
    trino: str
    human: str  # "{col} contains {value}"
    duckdb_params: Callable[[object], list] = lambda v: [v]
    trino_params: Callable[[object], list] = lambda v: [v]
    substring: bool = False  # a literal substring test on text (highlighted in results)
    # How the substring index (apps.search.word_index) narrows it: "contains" (the needle is in the value;
    # endswith narrows so too: a superset of its rows, which the engine then verifies),
    # "start" (the value begins with it), "whole" (the value is it, or one of the list), "regex" (through
    # the pattern's required literal); "" cannot narrow.
    narrows: str = ""
    check: Callable[[str], str | None] | None = None  # extra validation of the raw value: the problem, or None

    def sql(self, *, dialect: str, column: str, value: object, placeholder: str) -> tuple[str, list]:
        template = self.duckdb if dialect == "duckdb" else self.trino
        params = (self.duckdb_params if dialect == "duckdb" else self.trino_params)(value)
        holders = ", ".join(placeholder for _ in params) if self.value == "list" else placeholder
        negate = "" if value else "NOT "  # isnull: true/false
        return template.format(col=column, p=placeholder, ps=holders, esc=ESCAPE_CLAUSE, not_=negate), params


_regex_check = threading.local()


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` is not a usable regex (Python's parser and DuckDB's RE2), else None."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"Invalid regular expression: {exc}."
    conn = getattr(_regex_check, "conn", None)
    if conn is None:
        conn = _regex_check.conn = duckdb.connect()
    try:
        conn.execute("SELECT regexp_matches('', ?)", [pattern]).fetchall()
    except duckdb.Error as exc:
        message = str(exc).split("Error:", 1)[-1].strip()
        return f"Invalid regular expression (RE2): {message}."
    return None


def _contains_pattern(v):
    return ["%" + like_escape(v) + "%"]


OPERATOR_TABLE: tuple[Operator, ...] = (
    Operator("contains", "contains", TEXT, "scalar",
             duckdb="contains({col}, ?)", trino="{col} LIKE ? {esc}", human="{col} contains {value}",
             trino_params=_contains_pattern, substring=True, narrows="contains"),
    Operator("icontains", "contains (any case)", TEXT, "scalar",
             duckdb="{col} ILIKE ? {esc}", trino="lower({col}) LIKE lower(?) {esc}",
             human="{col} contains {value} (any case)",
             duckdb_params=_contains_pattern, trino_params=_contains_pattern, substring=True, narrows="contains"),
    Operator("not_contains", "does not contain", TEXT, "scalar",
             duckdb="({col} IS NULL OR NOT contains({col}, ?))", trino="({col} IS NULL OR NOT {col} LIKE ? {esc})",
             human="{col} does not contain {value}", trino_params=_contains_pattern),
    Operator("startswith", "starts with", TEXT, "scalar",
             duckdb="starts_with({col}, ?)", trino="{col} LIKE ? {esc}", human="{col} starts with {value}",
             trino_params=lambda v: [like_escape(v) + "%"], substring=True, narrows="start"),
    Operator("endswith", "ends with", TEXT, "scalar",
             duckdb="ends_with({col}, ?)", trino="{col} LIKE ? {esc}", human="{col} ends with {value}",
             trino_params=lambda v: ["%" + like_escape(v)], substring=True, narrows="contains"),
    Operator("eq", "=", ALL_KINDS[:-1], "scalar", duckdb="{col} = {p}", trino="{col} = {p}", human="{col} = {value}",
             narrows="whole"),
    # A NULL differs from every value, so it matches "≠".
    Operator("ne", "≠", ALL_KINDS[:-1], "scalar", duckdb="{col} IS DISTINCT FROM {p}",
             trino="{col} IS DISTINCT FROM {p}", human="{col} ≠ {value}"),
    Operator("in", "is one of (a,b,c)", ("text", "integer"), "list",
             duckdb="{col} IN ({ps})", trino="{col} IN ({ps})", human="{col} is one of {value}",
             duckdb_params=list, trino_params=list, narrows="whole"),
    Operator("gt", ">", ORDERED, "scalar", duckdb="{col} > {p}", trino="{col} > {p}", human="{col} > {value}"),
    Operator("gte", "≥", ORDERED, "scalar", duckdb="{col} >= {p}", trino="{col} >= {p}", human="{col} ≥ {value}"),
    Operator("lt", "<", ORDERED, "scalar", duckdb="{col} < {p}", trino="{col} < {p}", human="{col} < {value}"),
    Operator("lte", "≤", ORDERED, "scalar", duckdb="{col} <= {p}", trino="{col} <= {p}", human="{col} ≤ {value}"),
    Operator("regex", "matches regex", TEXT, "scalar",
             duckdb="regexp_matches({col}, ?)", trino="regexp_like({col}, ?)", human="{col} matches /{value}/",
             check=regex_problem, narrows="regex"),
    Operator("isnull", "is empty (true/false)", ALL_KINDS, "bool",
             duckdb="{col} IS {not_}NULL", trino="{col} IS {not_}NULL", human="{col} is empty: {value}",
             duckdb_params=lambda v: [], trino_params=lambda v: []),
)
OPERATOR_BY_KEY: dict[str, Operator] = {op.key: op for op in OPERATOR_TABLE}
OPERATORS: tuple[str, ...] = tuple(OPERATOR_BY_KEY)
OPERATOR_LABELS: dict[str, str] = {op.key: op.label for op in OPERATOR_TABLE}
OPERATORS_BY_KIND: dict[str, tuple[str, ...]] = {
    kind: tuple(op.key for op in OPERATOR_TABLE if kind in op.kinds) for kind in ALL_KINDS
}


def operator_get(key: str) -> Operator:
    return OPERATOR_BY_KEY[key]
