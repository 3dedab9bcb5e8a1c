"""Search queries: parsed from URL parameters, validated against a TableSpec, compiled to
parameterized SQL for DuckDB (the local subset) or Trino (Athena).

Values never enter the SQL text: they are `?` parameters (DuckDB and Athena's
ExecutionParameters both take positional `?`). Identifiers come only from the TableSpec and
are quoted. Substring operators match literally: DuckDB uses contains()/starts_with(), which
know no wildcards; where LIKE is needed (Trino, and ILIKE in DuckDB) `%`, `_` and `\\` in the
value are escaped and the pattern carries an explicit ESCAPE clause.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timezone

from .errors import SearchParamsError, SearchValidationError
from .operators import LIKE_ESCAPE, OPERATORS, like_escape, operator_get, regex_problem  # noqa: F401
from .tables import TableSpec, quote_identifier

DIALECTS = ("duckdb", "trino")
RESERVED_PARAMS = ("limit", "table", "format", "fallback", "confirm")
MAX_VALUE_LENGTH = 1000
MAX_IN_VALUES = 200
MAX_FILTERS = 20


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: str | None

    @property
    def param(self) -> str:
        return f"{self.column}__{self.op}"


@dataclass(frozen=True)
class SearchQuery:
    table: str
    filters: tuple[Filter, ...]
    limit: int

    def _normalized(self) -> dict:
        filters = sorted((f.column, f.op, f.value if f.value is not None else "") for f in self.filters)
        return {"table": self.table, "filters": [list(f) for f in filters], "limit": int(self.limit)}

    def fingerprint(self) -> str:
        payload = json.dumps(self._normalized(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "filters": [{"column": f.column, "op": f.op, "value": f.value} for f in self.filters],
            "limit": int(self.limit),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SearchQuery:
        return cls(
            table=data["table"],
            filters=tuple(Filter(f["column"], f["op"], f.get("value")) for f in data.get("filters", [])),
            limit=int(data["limit"]),
        )

    def to_params(self) -> list[tuple[str, str]]:
        params = [("table", self.table)] if self.table else []
        params += [(f.param, f.value if f.value is not None else "") for f in self.filters]
        params.append(("limit", str(self.limit)))
        return params

    def describe(self) -> str:
        """Short human text, e.g. for the audit log: `text contains 'foo' AND lang = 'en'`."""
        parts = [operator_get(f.op).human.format(col=f.column, value=repr(f.value or "") if f.op != "isnull"
                                                 else (f.value or "true")) for f in self.filters]
        return f"{self.table}: " + (" AND ".join(parts) or "(no filters)") + f" LIMIT {self.limit}"


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    params: list


# --- Parsing URL parameters -----------------------------------------------------------------

def query_from_params(
    *,
    params,
    default_table: str,
    default_limit: int,
    max_limit: int,
    skip_blank: bool = False,
    strict: bool = True,
) -> SearchQuery:
    """Parse `<column>__<op>=<value>` pairs, `limit` and `table` into a SearchQuery.

    `params` is a QueryDict or a list of (name, value) pairs. With skip_blank, filters with an
    empty value are dropped (blank rows of the no-JS form); with strict, unknown parameter
    names are errors (the API) instead of being ignored (the page).
    """
    pairs = list(params.lists()) if hasattr(params, "lists") else None
    if pairs is not None:
        items = [(name, value) for name, values in pairs for value in values]
    else:
        items = list(params)
    errors: dict[str, list[str]] = {}
    table = default_table
    limit_raw = None
    filters: list[Filter] = []
    for name, value in items:
        value = "" if value is None else str(value)
        if name == "table":
            table = value.strip() or default_table
        elif name == "limit":
            limit_raw = value.strip()
        elif name in RESERVED_PARAMS:
            continue
        elif "__" in name:
            column, op = name.rsplit("__", 1)
            if op not in OPERATORS:
                errors.setdefault(name, []).append(
                    f"Unknown operator {op!r}; use one of: {', '.join(OPERATORS)}."
                )
                continue
            if skip_blank and value.strip() == "" and op != "isnull":
                continue
            filters.append(Filter(column, op, value))
        elif strict:
            errors.setdefault(name, []).append(
                "Unknown parameter: filters are written <column>__<operator>=<value>, e.g. text__contains=foo."
            )
    limit = default_limit
    if limit_raw:
        try:
            limit = int(limit_raw)
        except ValueError:
            errors.setdefault("limit", []).append(f"{limit_raw!r} is not a whole number.")
        else:
            if not 1 <= limit <= max_limit:
                errors.setdefault("limit", []).append(f"Limit must be between 1 and {max_limit}.")
    if len(filters) > MAX_FILTERS:
        errors.setdefault("filters", []).append(f"At most {MAX_FILTERS} filters.")
    if errors:
        raise SearchParamsError(errors)
    return SearchQuery(table=table, filters=tuple(filters), limit=limit)


# --- Validation -----------------------------------------------------------------------------

_TRUE = {"", "1", "true", "yes", "y", "t", "on"}
_FALSE = {"0", "false", "no", "n", "f", "off"}


def _typed(kind: str, raw: str) -> object:
    """Convert one text value for a column kind; raises ValueError with a user-facing message."""
    text = raw.strip()
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number.") from None
    if kind == "float":
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number.") from None
        if not math.isfinite(number):
            raise ValueError(f"{raw!r} is not a finite number.")
        return number
    if kind == "date":
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise ValueError(f"{raw!r} is not a date (use YYYY-MM-DD).") from None
    if kind == "timestamp":
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{raw!r} is not a date or time (use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS).") from None
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        return moment.isoformat(sep=" ")
    if kind == "boolean":
        lowered = text.lower()
        if lowered in _TRUE - {""}:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not true or false.")
    return raw  # text: exactly as typed, spaces included


def query_validate(*, query: SearchQuery, spec: TableSpec) -> list[tuple[Filter, object]]:
    """Check every filter against the table; return (filter, typed value) pairs or raise."""
    errors: dict[str, list[str]] = {}
    typed: list[tuple[Filter, object]] = []
    if query.table != spec.name:
        errors.setdefault("table", []).append(f"Query is for table {query.table!r}, not {spec.name!r}.")
    if query.limit < 1:
        errors.setdefault("limit", []).append("Limit must be at least 1.")
    for flt in query.filters:
        field = flt.param
        if flt.column not in spec.columns:
            errors.setdefault(field, []).append(f"Unknown column {flt.column!r} in table {spec.name!r}.")
            continue
        allowed = spec.searchable.get(flt.column, ())
        if flt.op not in allowed:
            hint = f"allowed: {', '.join(allowed)}" if allowed else "this column is not searchable"
            errors.setdefault(field, []).append(f"Operator {flt.op!r} is not available for {flt.column!r} ({hint}).")
            continue
        raw = flt.value if flt.value is not None else ""
        if len(raw) > MAX_VALUE_LENGTH:
            errors.setdefault(field, []).append(f"Value is longer than {MAX_VALUE_LENGTH} characters.")
            continue
        kind = spec.kind(flt.column)
        operator = operator_get(flt.op)
        try:
            if operator.value == "bool":
                lowered = raw.strip().lower()
                if lowered not in _TRUE | _FALSE:
                    raise ValueError(f"{raw!r} is not true or false.")
                value: object = lowered in _TRUE
            elif operator.value == "list":
                parts = [p.strip() for p in raw.split(",")]
                parts = [p for p in parts if p != ""]
                if not parts:
                    raise ValueError("Give one or more values separated by commas.")
                if len(parts) > MAX_IN_VALUES:
                    raise ValueError(f"At most {MAX_IN_VALUES} values.")
                value = [_typed(kind, p) for p in parts]
            else:
                if raw == "":
                    raise ValueError("Enter a value.")
                value = _typed(kind, raw)
                problem = operator.check(raw) if operator.check else None
                if problem:
                    raise ValueError(problem)
        except ValueError as exc:
            errors.setdefault(field, []).append(str(exc))
            continue
        typed.append((flt, value))
    if errors:
        raise SearchValidationError(errors)
    return typed


# --- Compiling ------------------------------------------------------------------------------

def _placeholder(kind: str) -> str:
    # Dates travel as ISO strings: the cast reads the same in DuckDB and Trino.
    if kind == "date":
        return "CAST(? AS DATE)"
    if kind == "timestamp":
        return "CAST(? AS TIMESTAMP)"
    return "?"


def _condition(flt: Filter, value: object, kind: str, dialect: str, params: list) -> str:
    sql, values = operator_get(flt.op).sql(
        dialect=dialect, column=quote_identifier(flt.column), value=value, placeholder=_placeholder(kind))
    params.extend(values)
    return sql


def where_compile(*, query: SearchQuery, spec: TableSpec, dialect: str = "duckdb") -> CompiledQuery:
    """Just the WHERE condition (without the keyword) and its parameters; "TRUE" when no filters."""
    if dialect not in DIALECTS:
        raise ValueError(f"Unknown dialect {dialect!r}; use one of {DIALECTS}")
    params: list = []
    conditions = [
        _condition(flt, value, spec.kind(flt.column), dialect, params)
        for flt, value in query_validate(query=query, spec=spec)
    ]
    return CompiledQuery(sql=" AND ".join(conditions) or "TRUE", params=params)


def compile_search(
    *, query: SearchQuery, spec: TableSpec, dialect: str = "duckdb", relation: str | None = None
) -> CompiledQuery:
    """SELECT key + shown columns FROM relation WHERE filters LIMIT n, with `?` parameters.

    `relation` is trusted SQL from our own code (a table name, `read_parquet('...')`, an Athena
    table); by default the subset table named by the spec.
    """
    where = where_compile(query=query, spec=spec, dialect=dialect)
    columns = ", ".join(quote_identifier(c) for c in spec.selected)
    target = relation or quote_identifier(spec.name)
    sql = f"SELECT {columns} FROM {target} WHERE {where.sql} LIMIT {int(query.limit)}"
    return CompiledQuery(sql=sql, params=where.params)
