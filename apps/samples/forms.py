"""The search form: rows of (column, operator, value) plus limit and table.

The page's canonical URL uses the API's `<column>__<op>=<value>` parameters. A plain HTML form
cannot build such names without JavaScript, so the form submits repeated `col`/`op`/`val`
fields and the view turns them into the canonical URL.
"""
from __future__ import annotations

from dataclasses import dataclass

from apps.search.operators import OPERATOR_LABELS
from apps.search.query import RESERVED_PARAMS, value_is_blank
from apps.search.tables import TableSpec

EMPTY_ROWS = 2  # always offered, so filters can be added without JavaScript


@dataclass(frozen=True)
class FilterRow:
    column: str
    op: str
    value: str
    errors: tuple[str, ...] = ()
    known: bool = True  # False: a column the table does not have (kept so the user sees it)


def form_submitted(params) -> bool:
    return "col" in params


def form_to_params(params) -> list[tuple[str, str]]:
    """col/op/val triplets (blank values dropped, except for isnull) -> canonical parameters."""
    columns, ops, values = params.getlist("col"), params.getlist("op"), params.getlist("val")
    out: list[tuple[str, str]] = []
    if params.get("table"):
        out.append(("table", params.get("table")))
    for column, op, value in zip(columns, ops, values):
        if column and op and (not value_is_blank(value) or op == "isnull"):
            out.append((f"{column}__{op}", value))
    for name in ("_sort", "_sort_desc", "_seed"):  # the sort on screen stays for the new search (a hidden input)
        if params.get(name):
            out.append((name, params.get(name)))
    for name in ("_col", "_nocol", "_facet"):  # so do the columns and facets chosen
        out += [(name, value) for value in params.getlist(name) if value.strip()]
    if params.get("limit"):
        out.append(("limit", params.get("limit")))
    return out


def filter_rows(params, errors: dict[str, list[str]] | None = None, known_columns=()) -> list[FilterRow]:
    """The rows to show: what the URL asked for (valid or not), then a few empty ones."""
    errors = errors or {}
    rows = []
    for name, values in params.lists():
        if name in RESERVED_PARAMS or "__" not in name:
            continue
        column, op = name.rsplit("__", 1)
        for value in values:
            rows.append(FilterRow(column, op, value, tuple(errors.get(name, ())), column in known_columns))
    return rows + [FilterRow("", "", "") for _ in range(EMPTY_ROWS)]


def column_choices(spec: TableSpec) -> list[dict]:
    """Searchable columns with their operators, for the pickers (and search.js)."""
    return [
        {"name": column, "type": spec.columns.get(column, ""), "ops": list(ops)}
        for column, ops in spec.searchable.items()
    ]


def operator_choices(spec: TableSpec) -> list[tuple[str, str]]:
    used = {op for ops in spec.searchable.values() for op in ops}
    return [(op, label) for op, label in OPERATOR_LABELS.items() if op in used]
