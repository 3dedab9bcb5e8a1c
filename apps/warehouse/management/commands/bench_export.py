"""Time an export of N matching rows on the local backend (DuckDB COPY of the full Parquet files to CSV).

    python manage.py bench_export --rows 100000 --rows 1000000 [--dir /tmp/bench-export]

For each N, a demo full dataset of N * 1.2 rows is written under --dir (kept and reused), and `id < N` is exported:
exactly N matching rows. Prints JSON: rows written, seconds, CSV bytes, the bytes the budget counts and their cost.
"""
from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand

from apps.search.demo import demo_dataset_write
from apps.search.query import Filter, SearchQuery
from apps.search.tables import TableSpec
from apps.warehouse.backends.base import NullControl
from apps.warehouse.backends.local import LocalBackend


class Command(BaseCommand):
    help = "Time local exports of N matching rows (DuckDB COPY to CSV); prints JSON."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, action="append", help="matching rows to export (repeatable)")
        parser.add_argument("--dir", default="", help="where the demo datasets and exports go (default: a temp dir)")

    def handle(self, *args, rows, dir, **options):
        base = Path(dir or tempfile.mkdtemp(prefix="bench-export-"))
        results = []
        for wanted in rows or [100_000]:
            full = base / f"full-{wanted}"
            total = int(wanted * 1.2)
            if not any(full.glob("samples/*.parquet")):
                started = time.perf_counter()
                demo_dataset_write(rows=total, subset_fraction=0.01, seed=3, full_dir=full, stdout=io.StringIO())
                self.stderr.write(f"wrote {total:,} demo rows in {time.perf_counter() - started:.1f}s")
            glob = str(full / "samples" / "*.parquet")
            spec = TableSpec(name="samples", key="id",
                             columns={"id": "BIGINT", "url": "VARCHAR", "domain": "VARCHAR", "title": "VARCHAR",
                                      "text": "VARCHAR", "label": "VARCHAR", "lang": "VARCHAR",
                                      "crawled_at": "TIMESTAMP", "length": "INTEGER"},
                             searchable={"id": ("lt",)},
                             shown=("id", "url", "domain", "title", "text", "label", "lang", "crawled_at", "length"),
                             full_data_glob=glob)
            query = SearchQuery(table="samples", filters=(Filter("id", "lt", str(wanted)),), limit=1)
            target = base / "exports" / f"bench-{wanted}.csv"
            target.unlink(missing_ok=True)
            started = time.perf_counter()
            result = LocalBackend().export(query=query, spec=spec, request_token=f"bench-{wanted}",
                                           control=NullControl(), location=str(target))
            seconds = time.perf_counter() - started
            results.append({"matching_rows": wanted, "full_rows": total, "state": result.state,
                            "rows_written": result.row_count, "seconds": round(seconds, 2),
                            "csv_bytes": result.file_bytes, "bytes_scanned_estimate": result.bytes_scanned,
                            "cost_usd": float(result.cost_usd),
                            "rows_per_second": round(wanted / seconds) if seconds else None})
            target.unlink(missing_ok=True)
        self.stdout.write(json.dumps({"backend": "local", "exports": results}, indent=2))
