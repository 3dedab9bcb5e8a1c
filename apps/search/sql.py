"""Quoting for the few SQL names and literals that cannot be `?` parameters."""
from __future__ import annotations


def quote_identifier(name: str) -> str:
    """Double-quoted SQL identifier; valid in DuckDB and Trino alike."""
    return '"' + name.replace('"', '""') + '"'


def quote_string(text: str) -> str:
    """Single-quoted SQL literal, for DDL that takes no parameters (ATTACH, COMMENT ON)."""
    return "'" + text.replace("'", "''") + "'"
