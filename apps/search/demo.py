"""The demo-data setup step (`manage.py setup_demo`)."""
from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pyarrow as pa
from django.conf import settings

from .coverage import coverage_keys
from .demo_data import demo_dataset_write
from .errors import SubsetMissing, TableNotFound
from .selectors import subset_index_stale
from .services import subset_reindex, subset_table_write, subset_vocabulary_build
from .sql import quote_identifier, quote_string
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
    """Write the full demo dataset as Parquet and install a random subset_fraction of it as the subset, with the
    coverage rows a refresh adds (apps.search.coverage: rare words and thin cells, SUBSET_COVERAGE_SHARE)."""
    started = time.perf_counter()
    info = demo_dataset_write(rows=rows, subset_fraction=subset_fraction, seed=seed,
                              full_dir=Path(settings.SEARCH_FULL_DATA_DIR), stdout=stdout)
    spec = table_spec_get(name=DEMO_TABLE)
    subset = info.subset
    covered = _coverage_rows(spec=spec, sample=subset, fraction=subset_fraction)
    if covered is not None and covered.num_rows:
        subset = pa.concat_tables([subset, covered.select(subset.column_names).cast(subset.schema)])
        stdout.write(f"  coverage: {covered.num_rows:,} rows of rare words and thin cells added to the "
                     f"{info.subset_rows:,} sampled\n")
    # The full data's vocabulary (proofs of absence, "did you mean", estimates) is built beside the subset file.
    subset_table_write(name=DEMO_TABLE, arrow=subset, stdout=stdout,
                       vocabulary=vocabulary_builder(spec=spec, stdout=stdout))
    seconds = time.perf_counter() - started
    stdout.write(f"  demo data ready: {rows:,} rows in {len(info.files)} Parquet files, "
                 f"{subset.num_rows:,} rows in the local subset, {seconds:.1f}s\n")
    return {"rows": rows, "subset_rows": subset.num_rows, "sampled_rows": info.subset_rows,
            "files": len(info.files), "seconds": round(seconds, 1)}


def _coverage_rows(*, spec, sample: pa.Table, fraction: float) -> pa.Table | None:
    """The full demo data's coverage rows that the random sample lacks (the statement a local refresh runs)."""
    relation = f"read_parquet({quote_string(spec.full_data_glob)})"
    key = quote_identifier(spec.key)
    keys = coverage_keys(spec=spec, relation=relation, sample_rows=sample.num_rows, fraction=fraction,
                         order=f"hash(CAST({key} AS VARCHAR))", dialect="duckdb")
    if keys is None:
        return None
    conn = duckdb.connect(":memory:")
    try:
        conn.register("sample", sample.select([spec.key]))
        return conn.sql(f"SELECT * FROM {relation} WHERE {key} IN ({keys}) "
                        f"AND {key} NOT IN (SELECT {key} FROM sample)").to_arrow_table()
    finally:
        conn.close()


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
