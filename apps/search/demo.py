"""The demo-data setup step (`manage.py setup_demo`)."""
from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings

from .demo_data import demo_dataset_write
from .errors import SubsetMissing, TableNotFound
from .selectors import subset_index_stale
from .services import subset_reindex, subset_table_write, subset_vocabulary_build
from .tables import _subset_schema, table_spec_get
from .vocabulary import table_vocabulary, vocabulary_builder

DEMO_TABLE = "samples"


def demo_data_present() -> bool:
    full = Path(settings.SEARCH_FULL_DATA_DIR) / DEMO_TABLE
    if not any(full.glob("part-*.parquet")):
        return False
    try:
        return table_spec_get(name=DEMO_TABLE).columns != {} and _subset_has(DEMO_TABLE)
    except (TableNotFound, SubsetMissing):
        return False


def _subset_has(name: str) -> bool:
    return name in _subset_schema()


def demo_data_build(*, rows: int, subset_fraction: float, seed: int, stdout) -> dict:
    """Write the full demo dataset as Parquet and install a random subset_fraction of it as the subset."""
    started = time.perf_counter()
    info = demo_dataset_write(rows=rows, subset_fraction=subset_fraction, seed=seed,
                              full_dir=Path(settings.SEARCH_FULL_DATA_DIR), stdout=stdout)
    # The full data's vocabulary (proofs of absence, "did you mean", estimates) is built beside the subset file.
    subset_table_write(name=DEMO_TABLE, arrow=info.subset, stdout=stdout,
                       vocabulary=vocabulary_builder(spec=table_spec_get(name=DEMO_TABLE), stdout=stdout))
    seconds = time.perf_counter() - started
    stdout.write(f"  demo data ready: {rows:,} rows in {len(info.files)} Parquet files, "
                 f"{info.subset_rows:,} rows in the local subset, {seconds:.1f}s\n")
    return {"rows": rows, "subset_rows": info.subset_rows, "files": len(info.files), "seconds": round(seconds, 1)}


def build_demo_data(*, stdout, force: bool = False) -> None:
    """Setup step: build the demo dataset and subset unless they exist."""
    if not force and demo_data_present():
        stdout.write(f"Demo data exists in {settings.SEARCH_FULL_DATA_DIR} (use --force to rebuild)\n")
        stale = subset_index_stale()
        if stale:  # made by an older version: rebuild it, or searches would scan
            stdout.write(f"  rebuilding the substring index of {', '.join(stale)} (another format version)\n")
            for table in stale:  # each stale table's own file; the others are left alone
                subset_reindex(table=table, stdout=stdout)
        if table_vocabulary(table=DEMO_TABLE) is None:  # demo data built before vocabularies (or a damaged one)
            stdout.write("  building the full data's vocabulary of the demo table\n")
            subset_vocabulary_build(table=DEMO_TABLE, stdout=stdout)
        return
    demo_data_build(rows=settings.DEMO_DATA_ROWS, subset_fraction=settings.DEMO_SUBSET_FRACTION, seed=7,
                    stdout=stdout)
