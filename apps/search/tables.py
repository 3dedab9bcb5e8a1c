"""Which tables can be searched, and how: described once, typed from the data itself.

`settings.SEARCH_TABLES_FILE` (apps/search/tables.json) names the configured tables (key
column, searchable columns and operators, shown columns, facets). Tables imported with
`manage.py import_subset` describe themselves in the subset file (a JSON table comment), so
importing needs no code or config change. Column names and types are never configured:
they are read from the subset's schema, else from the full dataset's Parquet schema.
Nothing here knows the demo columns.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from django.conf import settings

from .errors import TableNotFound
from .operators import OPERATORS_BY_KIND
from .sql import quote_identifier, quote_string  # noqa: F401  (used across the app as tables.quote_*)
from .store import file_reader, subset_paths

TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                  "UBIGINT", "UHUGEINT", "INT1", "INT2", "INT4", "INT8"}
_FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}


def column_kind(duckdb_type: str) -> str:
    """Map a DuckDB type name to the kind of value a filter on it takes."""
    base = duckdb_type.upper().split("(")[0].strip()
    if base in ("VARCHAR", "TEXT", "STRING", "UUID", "ENUM") or base.startswith("ENUM"):
        return "text"
    if base in _INTEGER_TYPES:
        return "integer"
    if base in _FLOAT_TYPES or base == "DECIMAL":
        return "float"
    if base == "DATE":
        return "date"
    if base.startswith("TIMESTAMP"):
        return "timestamp"
    if base == "BOOLEAN":
        return "boolean"
    return "other"


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: str
    columns: dict[str, str] = field(default_factory=dict)  # column -> DuckDB type, from the data
    searchable: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column -> operators
    shown: tuple[str, ...] = ()
    facets: tuple[str, ...] = ()
    label_column: str | None = None
    text_column: str | None = None
    full_data_glob: str = ""  # where the full table lives for the local warehouse backend ("" = nowhere)
    athena_table: str = ""  # ... and on Athena ("" = nowhere)
    origin: str = "config"  # "config" (tables.json) or "subset" (import_subset)

    def has_warehouse(self, backend: str) -> bool:
        """Can a fallback to the full table run on this backend? Tables imported without naming where
        their full table lives have only the local copy, and on the local backend so does a table whose
        `full_data_glob` matches no file (a fallback would only fail): checked at most every
        FULL_DATA_CHECK_SECONDS per process (full_data_glob_matches)."""
        if backend == "athena":
            return bool(self.athena_table)
        return bool(self.full_data_glob) and full_data_glob_matches(self.full_data_glob)

    def kind(self, column: str) -> str:
        return column_kind(self.columns.get(column, ""))

    @property
    def selected(self) -> tuple[str, ...]:
        """Columns a search returns: the key first, then the shown ones."""
        return (self.key,) + tuple(c for c in self.shown if c != self.key)


FULL_DATA_CHECK_SECONDS = 30.0  # how long a process trusts what it found for a full-data glob
_glob_checked: dict[str, tuple[float, bool]] = {}  # glob -> (monotonic time checked, matched a file)


def full_data_glob_matches(pattern: str) -> bool:
    """Does the local backend's `pattern` match at least one file? Remembered FULL_DATA_CHECK_SECONDS per process,
    so a search does not list the folder each time. A remote URL (`s3://…`) is taken as present."""
    if not pattern:
        return False
    if "://" in pattern:
        return True
    now = time.monotonic()
    checked = _glob_checked.get(pattern)
    if checked is not None and now - checked[0] < FULL_DATA_CHECK_SECONDS:
        return checked[1]
    matched = bool(_glob(pattern))
    _glob_checked[pattern] = (now, matched)
    return matched


def full_data_checks_forget() -> None:
    """Forget what full_data_glob_matches found (tests; a process that just wrote the full data)."""
    _glob_checked.clear()


# --- Loading --------------------------------------------------------------------------------

_lock = threading.Lock()
_cache: dict[tuple, object] = {}


def _config() -> dict:
    path = Path(settings.SEARCH_TABLES_FILE)
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return {"default": None, "tables": []}
    key = ("config", str(path), stamp)
    with _lock:
        if key not in _cache:
            _cache[key] = json.loads(path.read_text())
        return _cache[key]


CURRENT_SUBSET = object()  # "read the CURRENT pointers now"; else a SubsetSnapshot, or None for no subset


def _subset_schema(snapshot=CURRENT_SUBSET) -> dict[str, tuple[dict[str, str], dict]]:
    """table -> (columns, self-description) for every table of the subset (read once per file): the current
    files, or those of the snapshot a request took (apps.search.context), so its specs and its rows come from
    the same files."""
    if snapshot is CURRENT_SUBSET:
        files = {table: (path, None) for table, path in subset_paths().items()}
    else:
        files = {} if snapshot is None else {table: (taken.path, taken.conn) for table, taken in snapshot.tables.items()}
    tables: dict[str, tuple[dict[str, str], dict]] = {}
    for table, (path, conn) in files.items():
        key = ("subset", str(path), table)
        with _lock:
            found = _cache.get(key)
        if found is None:
            found = _table_schema(path=path, table=table, conn=conn)
            with _lock:
                _cache[key] = found
        tables[table] = found
    return tables


def _table_schema(*, path: Path, table: str, conn: duckdb.DuckDBPyConnection | None = None) -> tuple[dict[str, str], dict]:
    conn = (conn or file_reader(path)).cursor()  # the snapshot's own connection: its file may be swapped out
    try:
        comment = conn.execute(
            "SELECT comment FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database() "
            "AND table_name = ?", [table]).fetchone()
        try:
            described = json.loads(comment[0]) if comment and comment[0] else {}
        except ValueError:
            described = {}
        columns = {column: data_type for column, data_type in conn.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'main' "
            "AND database_name = current_database() AND table_name = ? ORDER BY column_index", [table]).fetchall()}
    finally:
        conn.close()
    return columns, described if isinstance(described, dict) else {}


def _parquet_schema(glob: str) -> dict[str, str]:
    files = sorted(Path(p) for p in _glob(glob))
    if not files:
        return {}
    key = ("parquet", glob, len(files), files[0].stat().st_mtime_ns)
    with _lock:
        if key in _cache:
            return _cache[key]
    conn = duckdb.connect()
    try:
        rows = conn.execute("DESCRIBE SELECT * FROM read_parquet(?)", [[str(f) for f in files]]).fetchall()
    finally:
        conn.close()
    columns = {row[0]: row[1] for row in rows}
    with _lock:
        _cache[key] = columns
    return columns


def _glob(pattern: str) -> list[str]:
    import glob as globmodule

    return globmodule.glob(pattern)


def _full_data_glob(raw: str, name: str) -> str:
    raw = raw or "{full_data_dir}/" + name + "/*.parquet"
    return raw.replace("{full_data_dir}", str(settings.SEARCH_FULL_DATA_DIR))


def _build_spec(entry: dict, columns: dict[str, str], origin: str) -> TableSpec:
    """tables.json entries default to the full data under SEARCH_FULL_DATA_DIR and an Athena table of the
    same name; imported tables have a warehouse only when import_subset was told where it lives."""
    name = entry["name"]
    configured = entry.get("searchable", "*")
    searchable: dict[str, tuple[str, ...]] = {}
    for column, data_type in columns.items():
        allowed = OPERATORS_BY_KIND[column_kind(data_type)]
        if configured == "*":
            wanted = allowed
        elif column in configured:
            wanted = tuple(configured[column])
        else:
            continue
        ops = tuple(op for op in wanted if op in allowed)
        if ops:
            searchable[column] = ops
    shown = tuple(c for c in entry.get("shown") or list(columns) if c in columns) or tuple(columns)
    return TableSpec(
        name=name,
        key=entry["key"],
        columns=dict(columns),
        searchable=searchable,
        shown=shown,
        facets=tuple(c for c in entry.get("facets", ()) if c in columns),
        label_column=entry.get("label_column") if entry.get("label_column") in columns else None,
        text_column=entry.get("text_column") if entry.get("text_column") in columns else None,
        full_data_glob=(_full_data_glob(entry.get("full_data_glob", ""), name) if origin == "config"
                        else entry.get("full_data_glob") or ""),
        athena_table=entry.get("athena_table") or (name if origin == "config" else ""),
        origin=origin,
    )


def table_spec_described(*, name: str, description: dict, columns: dict[str, str]) -> TableSpec:
    """The spec a table imported with `description` (import_subset's table comment) will have, before its
    file exists: to build what the build needs (its vocabulary)."""
    return _build_spec({**description, "name": name}, columns, "subset")


def table_spec_list(*, snapshot=CURRENT_SUBSET) -> list[TableSpec]:
    """Configured tables first (in tables.json order), then tables imported into the subset (the current one,
    or `snapshot`: a SubsetSnapshot, or None for no subset)."""
    subset = _subset_schema(snapshot)
    specs: list[TableSpec] = []
    seen: set[str] = set()
    for entry in _config().get("tables", []):
        name = entry["name"]
        if name in subset:
            columns = subset[name][0]
        else:
            columns = _parquet_schema(_full_data_glob(entry.get("full_data_glob", ""), name))
        specs.append(_build_spec(entry, columns, "config"))
        seen.add(name)
    for name, (columns, described) in sorted(subset.items()):
        if name in seen or not described.get("key"):
            continue  # a table without a description is not meant to be searched
        specs.append(_build_spec({**described, "name": name}, columns, "subset"))
    return specs


def table_spec_get(*, name: str | None = None, specs: list[TableSpec] | None = None) -> TableSpec:
    """The named table (None: the default one) among `specs` (default: table_spec_list()). Raises TableNotFound."""
    specs = table_spec_list() if specs is None else specs
    if not specs:
        raise TableNotFound("No searchable tables: build demo data or run `manage.py import_subset`.")
    if name is None or name == "":
        name = _config().get("default") or specs[0].name
        if not any(s.name == name for s in specs):
            name = specs[0].name
    for spec in specs:
        if spec.name == name:
            return spec
    raise TableNotFound(f"Unknown table {name!r}; known: {', '.join(s.name for s in specs)}")


def default_table_name(*, specs: list[TableSpec] | None = None) -> str:
    try:
        return table_spec_get(specs=specs).name
    except TableNotFound:
        return _config().get("default") or ""
