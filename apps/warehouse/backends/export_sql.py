"""The SQL of an export: every row of the full table that matches a search, no LIMIT, no ORDER BY.

The WHERE is the search compiler's own (`apps.search.query.where_compile`, values as `?` parameters), so an
export holds exactly the rows the search's warehouse query would, all of them. Text cells that a spreadsheet
would run as a formula are defused in the SQL itself, the way apps/core/csv.py does for every CSV the app
writes in Python (a leading `'`), since here the engine writes the file, not Python.
"""
from __future__ import annotations

from apps.core.csv import FORMULA_START
from apps.search.query import CompiledQuery, where_compile
from apps.search.sql import quote_identifier, quote_string

# apps/core/csv.py's _PLAIN_NUMBER, anchored: RE2 (DuckDB) and Java regexes (Trino) read it alike.
PLAIN_NUMBER = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$"


def _starts(char: str) -> str:
    return f"chr({ord(char)})" if not char.isprintable() else quote_string(char)


def defused_sql(column: str, *, dialect: str) -> str:
    """`column` as the CSV cell to write: a text starting like a formula gets a leading quote."""
    col = quote_identifier(column)
    first_char = f"substr({col}, 1, 1)"  # the same in DuckDB and Trino
    matches = "regexp_matches" if dialect == "duckdb" else "regexp_like"
    starts = ", ".join(_starts(c) for c in FORMULA_START)
    return (f"CASE WHEN {first_char} IN ({starts}) AND NOT {matches}({col}, {quote_string(PLAIN_NUMBER)}) "
            f"THEN '''' || {col} ELSE {col} END")


def export_columns(*, spec) -> tuple[str, ...]:
    """What an export writes: the search's columns (key first, then the shown ones)."""
    return spec.selected


def export_select(*, query, spec, dialect: str, relation: str) -> CompiledQuery:
    """SELECT <columns, text defused> FROM relation WHERE <the search's filters>: every matching row."""
    where = where_compile(query=query, spec=spec, dialect=dialect)
    cells = []
    for column in export_columns(spec=spec):
        expr = defused_sql(column, dialect=dialect) if spec.kind(column) == "text" else quote_identifier(column)
        cells.append(f"{expr} AS {quote_identifier(column)}")
    return CompiledQuery(sql=f"SELECT {', '.join(cells)} FROM {relation} WHERE {where.sql}", params=list(where.params))


def csv_line_sql(*, spec, dialect: str = "trino") -> str:
    """One CSV line per row, as a single text column (RFC 4180: every cell quoted, `"` doubled): Athena's
    TEXTFILE writes it as it is, so the UNLOADed files are valid CSV whatever the text holds (commas,
    quotes, newlines). NULL is written as an empty cell, as DuckDB's COPY does."""
    cells = []
    for column in export_columns(spec=spec):
        value = quote_identifier(column)
        text = f"CAST({value} AS varchar)"
        cells.append(f"'\"' || replace(coalesce({text}, ''), '\"', '\"\"') || '\"'")
    return " || ',' || ".join(cells)


def unload_sql(*, query, spec, relation: str, location: str) -> CompiledQuery:
    """Athena: UNLOAD every matching row, one CSV line each, to `location` (an empty s3:// prefix), gzipped
    text files written in parallel. The header is not written: the download adds it."""
    inner = export_select(query=query, spec=spec, dialect="trino", relation=relation)
    line = csv_line_sql(spec=spec)
    sql = (f"UNLOAD (SELECT {line} AS csv_line FROM ({inner.sql}) AS matching) "
           f"TO {quote_string(location)} WITH (format = 'TEXTFILE', compression = 'GZIP')")
    return CompiledQuery(sql=sql, params=inner.params)


def copy_sql(*, query, spec, relation: str, path: str) -> CompiledQuery:
    """Local backend: DuckDB COPY of every matching row to one CSV file with a header."""
    inner = export_select(query=query, spec=spec, dialect="duckdb", relation=relation)
    sql = f"COPY ({inner.sql}) TO {quote_string(path)} (FORMAT CSV, HEADER TRUE)"
    return CompiledQuery(sql=sql, params=inner.params)
