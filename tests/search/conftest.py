"""A small demo dataset and subset in the test DATA_DIR, built once per session."""
from __future__ import annotations

import io

import pytest
from django.conf import settings

DEMO_ROWS = 6000


@pytest.fixture(scope="session")
def demo_subset():
    """Full demo data (Parquet) and its subset; returns a helper to count rows in the subset."""
    from apps.search.demo import demo_data_build, demo_data_present

    if not demo_data_present():
        demo_data_build(rows=DEMO_ROWS, subset_fraction=0.5, seed=11, stdout=io.StringIO())
    return SubsetProbe()


class SubsetProbe:
    """Ground truth, straight from the current subset file with its own connection."""

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        from apps.search.store import subset_connection

        cursor = subset_connection().cursor()
        try:
            return cursor.execute(sql, params or []).fetchall()
        finally:
            cursor.close()

    def count(self, where: str = "TRUE", params: list | None = None, table: str = "samples") -> int:
        return self.query(f"SELECT count(*) FROM {table} WHERE {where}", params)[0][0]

    @property
    def full_dir(self):
        return settings.SEARCH_FULL_DATA_DIR


