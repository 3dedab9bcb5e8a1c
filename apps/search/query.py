"""Search queries: parsed from URL parameters, validated against a TableSpec, compiled to
parameterized SQL for DuckDB (the local subset) or Trino (Athena).

Values never enter the SQL text: they are `?` parameters (DuckDB and Athena's
ExecutionParameters both take positional `?`). Identifiers come only from the TableSpec and
are quoted. Substring operators match literally: DuckDB uses contains()/starts_with(), which
know no wildcards; where LIKE is needed (Trino, and ILIKE in DuckDB) `%`, `_` and `\\` in the
value are escaped and the pattern carries an explicit ESCAPE clause.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from datetime import date, datetime, timezone

from .errors import SearchParamsError, SearchValidationError
from .operators import LIKE_ESCAPE, OPERATORS, like_escape, operator_get, regex_problem  # noqa: F401
from .tables import TableSpec, quote_identifier

DIALECTS = ("duckdb", "trino")
RESERVED_PARAMS = ("limit", "table", "format", "fallback", "confirm", "_sort", "_sort_desc", "_next", "_count",
                   "_seed", "_col", "_nocol", "_facet", "_q")
SORT_PARAMS = ("_sort", "_sort_desc")  # Datasette's names: sort by a column, ascending or descending
NEXT_PARAM = "_next"  # a keyset token: the page after the row it names
RANDOM_SORT = "random"  # `_sort=random&_seed=<n>`: a random sample, the same rows for the same seed
SEED_PARAM = "_seed"
MAX_SEED = 2**31 - 1
COLUMN_PARAMS = ("_col", "_nocol")  # Datasette's names: show only these columns / all but these
MAX_TOKEN_LENGTH = 4000
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
class Order:
    column: str
    desc: bool = False

    @property
    def param(self) -> tuple[str, str]:
        return ("_sort_desc" if self.desc else "_sort", self.column)


def next_token(values: list) -> str:
    """The `_next` token for the page after a row: [sort value, key] when sorted, [key] when not."""
    from django.core.serializers.json import DjangoJSONEncoder
    raw = json.dumps(list(values), cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def next_token_read(token: str) -> tuple:
    """Raises ValueError for a token we did not write."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError("The next-page token is too long.")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("The next-page token is not valid; start again from the first page.") from None
    if not isinstance(values, list) or not 1 <= len(values) <= 2 or \
            any(isinstance(v, (list, dict)) for v in values):
        raise ValueError("The next-page token is not valid; start again from the first page.")
    return tuple(values)


@dataclass(frozen=True)
class SearchQuery:
    table: str
    filters: tuple[Filter, ...]
    limit: int
    order: Order | None = None  # ORDER BY column [DESC], key
    after: tuple | None = None  # keyset paging: (sort value, key) when ordered, else (key,); implies ORDER BY key
    seed: int | None = None  # a random sample: ORDER BY hash(key, seed); no next page

    @property
    def paged(self) -> bool:
        return self.after is not None

    def _normalized(self) -> dict:
        filters = sorted((f.column, f.op, f.value if f.value is not None else "") for f in self.filters)
        normalized = {"table": self.table, "filters": [list(f) for f in filters], "limit": int(self.limit)}
        # Only present when used, so unsorted first pages keep the fingerprints they always had.
        if self.order is not None:
            normalized["order"] = [self.order.column, bool(self.order.desc)]
        if self.after is not None:
            normalized["after"] = list(self.after)
        if self.seed is not None:
            normalized["seed"] = int(self.seed)
        return normalized

    def fingerprint(self) -> str:
        from django.core.serializers.json import DjangoJSONEncoder
        payload = json.dumps(self._normalized(), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                             cls=DjangoJSONEncoder)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict:
        data = {
            "table": self.table,
            "filters": [{"column": f.column, "op": f.op, "value": f.value} for f in self.filters],
            "limit": int(self.limit),
        }
        if self.order is not None:
            data["order"] = {"column": self.order.column, "desc": bool(self.order.desc)}
        if self.after is not None:
            data["after"] = list(self.after)
        if self.seed is not None:
            data["seed"] = int(self.seed)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SearchQuery:
        order = data.get("order")
        after = data.get("after")
        return cls(
            table=data["table"],
            filters=tuple(Filter(f["column"], f["op"], f.get("value")) for f in data.get("filters", [])),
            limit=int(data["limit"]),
            order=Order(order["column"], bool(order.get("desc"))) if order else None,
            after=tuple(after) if after is not None else None,
            seed=int(data["seed"]) if data.get("seed") is not None else None,
        )

    def to_params(self, *, page: bool = True) -> list[tuple[str, str]]:
        """URL parameters; `limit` stays last. Without `page`, the first page of the same search."""
        params = [("table", self.table)] if self.table else []
        params += [(f.param, f.value if f.value is not None else "") for f in self.filters]
        if self.order is not None:
            params.append(self.order.param)
        if self.seed is not None:
            params += [("_sort", RANDOM_SORT), (SEED_PARAM, str(self.seed))]
        if page and self.after is not None:
            params.append((NEXT_PARAM, next_token(list(self.after))))
        params.append(("limit", str(self.limit)))
        return params

    def describe(self) -> str:
        """Short human text, e.g. for the audit log: `text contains 'foo' AND lang = 'en'`."""
        parts = [operator_get(f.op).human.format(col=f.column, value=repr(f.value or "") if f.op != "isnull"
                                                 else (f.value or "true")) for f in self.filters]
        text = f"{self.table}: " + (" AND ".join(parts) or "(no filters)")
        if self.order is not None:
            text += f" ORDER BY {self.order.column}{' DESC' if self.order.desc else ''}"
        if self.seed is not None:
            text += f" ORDER BY random(seed {self.seed})"
        if self.after is not None:
            text += f" AFTER {list(self.after)!r}"
        return text + f" LIMIT {self.limit}"


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    params: list


# --- Parsing URL parameters -----------------------------------------------------------------

def value_is_blank(value) -> bool:
    """A filter value that is empty or only whitespace is no value, everywhere (as a Django form field strips
    it): the search page leaves its filter out, as it does the blank rows of its form (skip_blank), and the API
    answers 422 "Enter a value." (query_validate) for `text__contains=%20` as for `text__contains=`. Before,
    the page dropped "  " while the API searched for two spaces. A value with text keeps its spaces."""
    return value is None or str(value).strip() == ""


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

    `params` is a QueryDict or a list of (name, value) pairs. With skip_blank, filters with a
    blank value (empty or only whitespace: value_is_blank) are dropped (blank rows of the no-JS form);
    with strict, unknown parameter names are errors (the API) instead of being ignored (the page).
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
    order: Order | None = None
    after: tuple | None = None
    random_sort = False
    seed_raw = None
    for name, value in items:
        value = "" if value is None else str(value)
        if "\x00" in value:  # no column holds it, and PostgreSQL cannot store it in the search log
            errors.setdefault(name, []).append("Values may not contain NUL characters.")
            continue
        if name == "table":
            table = value.strip() or default_table
        elif name == "limit":
            limit_raw = value.strip()
        elif name in SORT_PARAMS:
            column = value.strip()
            if not column:
                continue
            if name == "_sort" and column == RANDOM_SORT:
                random_sort = True
                continue
            if order is not None and order != Order(column, name == "_sort_desc"):
                errors.setdefault(name, []).append("Sort by one column: give _sort or _sort_desc once.")
                continue
            order = Order(column, name == "_sort_desc")
        elif name == SEED_PARAM:
            seed_raw = value.strip()
        elif name == NEXT_PARAM:
            if not value.strip():
                continue
            try:
                after = next_token_read(value.strip())
            except ValueError as exc:
                errors.setdefault(name, []).append(str(exc))
        elif name in RESERVED_PARAMS:
            continue
        elif "__" in name:
            column, op = name.rsplit("__", 1)
            if op not in OPERATORS:
                errors.setdefault(name, []).append(
                    f"Unknown operator {op!r}; use one of: {', '.join(OPERATORS)}."
                )
                continue
            if skip_blank and value_is_blank(value) and op != "isnull":
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
    seed = None
    if random_sort:
        seed = 0
        if seed_raw:
            if seed_raw.isascii() and seed_raw.isdigit() and len(seed_raw) <= 10 and int(seed_raw) <= MAX_SEED:
                seed = int(seed_raw)
            else:
                errors.setdefault(SEED_PARAM, []).append(f"The seed is a whole number from 0 to {MAX_SEED}.")
        if order is not None:
            errors.setdefault("_sort", []).append("Sort by one column or at random (_sort=random), not both.")
        if after is not None:
            errors.setdefault(NEXT_PARAM, []).append(
                "A random sample has no next page: ask for a larger limit or another seed.")
    if errors:
        raise SearchParamsError(errors)
    return SearchQuery(table=table, filters=tuple(filters), limit=limit, order=order, after=after, seed=seed)


def columns_chosen(*, params, spec: TableSpec) -> list[str]:
    """The columns to show (`_col=a&_col=b`: only those; `_nocol=c`: all but those), in table order, the key
    always first; Datasette's parameters. Raises SearchValidationError naming an unknown column. The rows
    are the same (and so are the fingerprint and counts): only the columns shown or exported change."""
    def wanted(name: str) -> list[str]:
        values = params.getlist(name) if hasattr(params, "getlist") else [v for k, v in params if k == name]
        return [part.strip() for value in values for part in str(value).split(",") if part.strip()]

    chosen, dropped = wanted("_col"), wanted("_nocol")
    errors: dict[str, list[str]] = {}
    for name, columns in (("_col", chosen), ("_nocol", dropped)):
        unknown = [c for c in columns if c not in spec.selected]
        if unknown:
            errors.setdefault(name, []).append(
                f"Unknown column {', '.join(map(repr, unknown))}: choose among {', '.join(spec.selected)}.")
    if errors:
        raise SearchValidationError(errors)
    shown = [c for c in spec.selected if not chosen or c in chosen or c == spec.key]
    return [c for c in shown if c not in dropped or c == spec.key]


# --- Validation -----------------------------------------------------------------------------

_TRUE = {"", "1", "true", "yes", "y", "t", "on"}
_FALSE = {"0", "false", "no", "n", "f", "off"}

# The values each number type holds (DuckDB's names; Athena's are the same or narrower). A filter value
# outside its column's range is refused here: the engine could not even cast it to compare (a server error).
_INTEGER_BITS = {"TINYINT": 8, "INT1": 8, "SMALLINT": 16, "INT2": 16, "INTEGER": 32, "INT4": 32, "INT": 32,
                 "BIGINT": 64, "INT8": 64, "HUGEINT": 128}
_UNSIGNED_BITS = {"UTINYINT": 8, "USMALLINT": 16, "UINTEGER": 32, "UBIGINT": 64, "UHUGEINT": 128}
_FLOAT_MAX = {"FLOAT": 3.4028234663852886e38, "REAL": 3.4028234663852886e38, "FLOAT4": 3.4028234663852886e38}


def number_range(column_type: str) -> tuple[int | float, int | float]:
    """(lowest, highest) value a column of this number type holds (a 64-bit integer when not a known type)."""
    base = column_type.upper().split("(")[0].strip()
    if base in _UNSIGNED_BITS:
        return 0, 2 ** _UNSIGNED_BITS[base] - 1
    if base in _FLOAT_MAX:
        return -_FLOAT_MAX[base], _FLOAT_MAX[base]
    if base in ("DOUBLE", "FLOAT8", "DECIMAL", "NUMERIC"):
        return -sys.float_info.max, sys.float_info.max
    bits = _INTEGER_BITS.get(base, 64)
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _in_range(number: int | float, raw: str, column_type: str) -> int | float:
    if column_type:
        lowest, highest = number_range(column_type)
        if not lowest <= number <= highest:
            shown = raw.strip() if len(raw.strip()) <= 40 else raw.strip()[:40] + "…"
            bounds = f"{lowest:g} to {highest:g}" if isinstance(highest, float) else f"{lowest} to {highest}"
            raise ValueError(f"{shown!r} is out of range for this {column_type.upper()} column ({bounds}).")
    return number


def _typed(kind: str, raw: str, column_type: str = "") -> object:
    """Convert one text value for a column kind; raises ValueError with a user-facing message. With the
    column's type, numbers outside the values it holds are refused too."""
    text = raw.strip()
    if kind == "integer":
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number.") from None
        return _in_range(number, raw, column_type)
    if kind == "float":
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number.") from None
        if not math.isfinite(number):
            raise ValueError(f"{raw!r} is not a finite number.")
        return _in_range(number, raw, column_type)
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
            try:
                moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
            except OverflowError:  # e.g. 0001-01-01T00:00+01:00: before the first representable moment in UTC
                raise ValueError(f"{raw!r} is out of range for a date and time.") from None
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
        column_type = spec.columns.get(flt.column, "")
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
                value = [_typed(kind, p, column_type) for p in parts]
            else:
                if value_is_blank(raw):
                    raise ValueError("Enter a value.")
                value = _typed(kind, raw, column_type)
                problem = operator.check(raw) if operator.check else None
                if problem:
                    raise ValueError(problem)
        except ValueError as exc:
            errors.setdefault(field, []).append(str(exc))
            continue
        typed.append((flt, value))
    if query.order is not None and query.order.column not in spec.selected:
        errors.setdefault(query.order.param[0], []).append(
            f"Cannot sort by {query.order.column!r}: sort by one of the columns shown "
            f"({', '.join(spec.selected)}).")
    elif query.after is not None:
        try:
            _after_values(query, spec)
        except ValueError:
            errors.setdefault(NEXT_PARAM, []).append(
                "The next-page token does not fit this search; start again from the first page.")
    if errors:
        raise SearchValidationError(errors)
    return typed


def sort_value(kind: str, value: object) -> object:
    """A row's value comparable across sources (the subset gives dates, the warehouse ISO text)."""
    if value is None or kind in ("text", "boolean"):
        return value
    try:
        return _typed(kind, str(value))
    except ValueError:
        return value


def _after_value(kind: str, value: object, column_type: str = "") -> object:
    if value is None:
        return None
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("not a boolean")
        return value
    if kind == "text":
        return str(value)
    if isinstance(value, bool):
        raise ValueError("not a number")  # noqa: TRY004 - callers catch ValueError
    return _typed(kind, str(value), column_type)


def _after_values(query: SearchQuery, spec: TableSpec) -> tuple[object | None, object]:
    """(sort value, key) of the token, typed; the sort value is None when unsorted. Raises ValueError."""
    after = query.after or ()
    if len(after) != (2 if query.order is not None else 1):
        raise ValueError("token does not match the sort")
    key = _after_value(spec.kind(spec.key), after[-1], spec.columns.get(spec.key, ""))
    if key is None:
        raise ValueError("no key")
    sort_value = (_after_value(spec.kind(query.order.column), after[0], spec.columns.get(query.order.column, ""))
                  if query.order is not None else None)
    return sort_value, key


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


def where_compile(*, query: SearchQuery, spec: TableSpec, dialect: str = "duckdb",
                  validated: list[tuple[Filter, object]] | tuple | None = None) -> CompiledQuery:
    """Just the WHERE condition (without the keyword) and its parameters; "TRUE" when no filters.
    `validated`: what query_validate already returned for this query (apps.search.context), not redone."""
    if dialect not in DIALECTS:
        raise ValueError(f"Unknown dialect {dialect!r}; use one of {DIALECTS}")
    params: list = []
    conditions = [
        _condition(flt, value, spec.kind(flt.column), dialect, params)
        for flt, value in (query_validate(query=query, spec=spec) if validated is None else validated)
    ]
    return CompiledQuery(sql=" AND ".join(conditions) or "TRUE", params=params)


def compile_search(
    *, query: SearchQuery, spec: TableSpec, dialect: str = "duckdb", relation: str | None = None,
    validated: list[tuple[Filter, object]] | tuple | None = None,
) -> CompiledQuery:
    """SELECT key + shown columns FROM relation WHERE filters LIMIT n, with `?` parameters.

    `relation` is trusted SQL from our own code (a table name, `read_parquet('...')`, an Athena
    table); by default the subset table named by the spec.
    """
    where = where_compile(query=query, spec=spec, dialect=dialect, validated=validated)
    params = list(where.params)
    conditions = where.sql
    key = quote_identifier(spec.key)
    key_ph = _placeholder(spec.kind(spec.key))
    order_sql = ""
    if query.order is not None:
        col = quote_identifier(query.order.column)
        direction = "DESC" if query.order.desc else "ASC"
        # NULLS LAST in both directions, spelled out: the keyset condition below relies on it.
        order_sql = f" ORDER BY {col} {direction} NULLS LAST, {key} ASC"
    elif query.seed is not None:
        # A random sample that the same seed gives again: rows ordered by a hash of (key, seed). DuckDB's
        # hash() and Trino's xxhash64 differ, so a fallback's rows are another sample, equally reproducible.
        if dialect == "duckdb":
            order_sql = f" ORDER BY hash({key}, {int(query.seed)}), {key} ASC"
        else:
            order_sql = (f" ORDER BY xxhash64(to_utf8(CAST({key} AS VARCHAR) || '/' || '{int(query.seed)}')), "
                         f"{key} ASC")
    elif query.after is not None:
        order_sql = f" ORDER BY {key} ASC"  # paging without a sort: key order
    if query.after is not None:
        sort_value, key_value = _after_values(query, spec)
        if query.order is None:
            keyset = f"{key} > {key_ph}"
            params.append(key_value)
        elif sort_value is None:  # the last row had no value: only the other NULL rows remain
            keyset = f"({col} IS NULL AND {key} > {key_ph})"
            params.append(key_value)
        else:
            ph = _placeholder(spec.kind(query.order.column))
            beyond = "<" if query.order.desc else ">"
            keyset = f"({col} {beyond} {ph} OR {col} IS NULL OR ({col} = {ph} AND {key} > {key_ph}))"
            params += [sort_value, sort_value, key_value]
        conditions = keyset if conditions == "TRUE" else f"{conditions} AND {keyset}"
    columns = ", ".join(quote_identifier(c) for c in spec.selected)
    target = relation or quote_identifier(spec.name)
    sql = f"SELECT {columns} FROM {target} WHERE {conditions}{order_sql} LIMIT {int(query.limit)}"
    return CompiledQuery(sql=sql, params=params)
