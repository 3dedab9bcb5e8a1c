"""Rows merged from several sources are sorted as each source's ORDER BY column [DESC] NULLS LAST, key sorts
them: a row without a value comes after every row with one, ascending or descending, then by key."""
from __future__ import annotations

import pytest

from apps.samples.pipeline import RowSource, _Rows


@pytest.mark.parametrize("desc", [False, True])
def test_merged_rows_sort_nulls_last_in_both_directions(desc):
    rows = _Rows(key="id", limit=10)
    rows.add([{"id": 5, "length": None}, {"id": 2, "length": 30}, {"id": 9, "length": 10}], RowSource.SUBSET)
    rows.add([{"id": 1, "length": None}, {"id": 7, "length": 20}, {"id": 3, "length": 30}], RowSource.WAREHOUSE)
    rows.sort(column="length", kind="integer", desc=desc)
    got = [(r.values["length"], r.values["id"]) for r in rows.rows]
    with_value = sorted([(30, 2), (10, 9), (20, 7), (30, 3)], key=lambda p: (-p[0] if desc else p[0], p[1]))
    assert got == with_value + [(None, 1), (None, 5)]
