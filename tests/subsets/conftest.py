"""A private demo dataset for the subset-life tests: full Parquet files + a 5% subset in temp dirs
of their own, so refreshing and learning here never changes the subset other apps' tests read."""
from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import override_settings

ROWS = 20_000


@dataclass
class Dataset:
    full_dir: Path
    subset_dir: Path
    learned_dir: Path


@pytest.fixture(scope="session")
def built_dataset(tmp_path_factory):
    from apps.search.demo import demo_data_build

    root = tmp_path_factory.mktemp("subsets-data")
    with override_settings(SEARCH_FULL_DATA_DIR=root / "full", SEARCH_SUBSET_DIR=root / "subset"):
        demo_data_build(rows=ROWS, subset_fraction=0.05, seed=23, stdout=io.StringIO())
    return root


@pytest.fixture
def dataset(built_dataset, tmp_path, settings) -> Dataset:
    """A fresh copy of the subset (the full data is shared read-only), learning on, fallbacks in-process."""
    subset_dir = tmp_path / "subset"
    shutil.copytree(built_dataset / "subset", subset_dir)
    settings.SEARCH_FULL_DATA_DIR = built_dataset / "full"
    settings.SEARCH_SUBSET_DIR = subset_dir
    settings.SUBSET_LEARNED_DIR = tmp_path / "learned"
    settings.SUBSET_LEARNING_ENABLED = True
    settings.WAREHOUSE_BACKEND = "local"
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 0
    return Dataset(full_dir=built_dataset / "full", subset_dir=subset_dir, learned_dir=tmp_path / "learned")


def subset_count(table: str = "samples") -> int:
    from apps.search.store import subset_connection

    cursor = subset_connection().cursor()
    try:
        return cursor.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        cursor.close()
