"""Benchmark: the app's search service vs hand-written SQL on raw DuckDB and on SQLite."""
from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from pathlib import Path

import duckdb
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from apps.audit.models import AuditEvent
from apps.core.stats import latency_summary
from apps.samples.pipeline import search_answer
from apps.search.demo_data import demo_table, demo_vocabulary
from apps.search.models import SearchLog
from apps.search.query import Filter, SearchQuery
from apps.search.store import SUBSET, subset_current_path, subset_install

TABLE = "samples"
CLASSES = (("frequent", 0.4), ("rare", 0.3), ("absent", 0.3))


class Command(BaseCommand):
    help = (
        "Benchmark sample search on an N-row subset (built once under DATA_DIR/bench/rows-N/ and reused): "
        "replays Q generated queries (frequent, rare and absent terms from the demo vocabulary, 1-3 filters, "
        "limit 10) through the app's search service and, side by side, as hand-written SQL on raw DuckDB and "
        "on SQLite over the same rows. Prints JSON {rows, queries, app, duckdb_raw, sqlite_raw}; --json PATH "
        "also writes it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--subset-rows", type=int, required=True, help="rows in the benchmark subset")
        parser.add_argument("--queries", type=int, default=100, help="queries to replay (default %(default)s)")
        parser.add_argument("--json", dest="json_path", default="", help="also write the result JSON here")
        parser.add_argument("--seed", type=int, default=7, help="seed for the data and the workload")
        parser.add_argument("--limit", type=int, default=10, help="LIMIT of every query (default %(default)s)")
        parser.add_argument("--rebuild", action="store_true", help="rebuild the benchmark data even if present")
        parser.add_argument("--skip-sqlite", action="store_true", help="leave SQLite out")
        parser.add_argument("--chunk-rows", type=int, default=500_000, help="rows generated per step")

    def handle(self, *args, subset_rows, queries, json_path, seed, limit, rebuild, skip_sqlite, chunk_rows, **options):
        if subset_rows < 1 or queries < 1:
            raise CommandError("--subset-rows and --queries must be positive")
        bench_dir = Path(settings.DATA_DIR) / "bench" / f"rows-{subset_rows}-seed-{seed}"
        bench_dir.mkdir(parents=True, exist_ok=True)
        # The app reads this subset exactly as it reads the real one, through the same store.
        with override_settings(SEARCH_SUBSET_DIR=bench_dir / "subset", SEARCH_TIMEOUT_MS=600_000):
            result = self._bench(bench_dir, subset_rows, queries, seed, limit, rebuild, skip_sqlite, chunk_rows)
        text = json.dumps(result, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(text + "\n")

    def _bench(self, bench_dir, subset_rows, queries, seed, limit, rebuild, skip_sqlite, chunk_rows) -> dict:
        build = {}
        duck_path = self._duckdb_build(bench_dir, subset_rows, seed, chunk_rows, rebuild, build)
        sqlite_path = None if skip_sqlite else self._sqlite_build(bench_dir, duck_path, rebuild, build)
        workload = self._workload(queries, seed, limit)
        result = self._run(workload, duck_path, sqlite_path, limit)
        result = {"rows": subset_rows, "queries": queries, **result, "build_seconds": build,
                  "cpu_count": os.cpu_count(), "duckdb_threads": settings.SEARCH_DUCKDB_THREADS,
                  "data_dir": str(bench_dir)}
        return result

    # --- data ---------------------------------------------------------------------------

    def _duckdb_build(self, bench_dir, rows, seed, chunk_rows, rebuild, build) -> Path:

        current = subset_current_path()
        if current is not None and not rebuild:
            self.stdout.write(f"Reusing the benchmark subset {current}")
            return current
        started = time.perf_counter()
        with SUBSET.build() as (path, conn):  # an interrupted build leaves no half-written file
            done = 0
            while done < rows:
                n = min(chunk_rows, rows - done)
                chunk = demo_table(rows=n, seed=seed, start_id=done)
                conn.register("chunk", chunk)
                if done == 0:
                    conn.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM chunk")
                else:
                    conn.execute(f"INSERT INTO {TABLE} SELECT * FROM chunk")
                conn.unregister("chunk")
                done += n
                elapsed = time.perf_counter() - started
                self.stdout.write(f"  duckdb subset: {done:,}/{rows:,} rows, {elapsed:.1f}s ({done / elapsed:,.0f} rows/s)")
        subset_install(path=path)
        build["duckdb"] = round(time.perf_counter() - started, 1)
        return path

    def _sqlite_build(self, bench_dir, duck_path, rebuild, build) -> Path:
        path = bench_dir / "sqlite.db"
        done_marker = bench_dir / "sqlite.done"
        if done_marker.exists() and path.exists() and not rebuild:
            self.stdout.write(f"Reusing the SQLite copy {path}")
            return path
        path.unlink(missing_ok=True)
        done_marker.unlink(missing_ok=True)
        started = time.perf_counter()
        source = duckdb.connect(str(duck_path), read_only=True, config={"threads": settings.SEARCH_DUCKDB_THREADS})
        columns = [row[0] for row in source.execute(f"DESCRIBE {TABLE}").fetchall()]
        total = source.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        target = sqlite3.connect(path)
        target.execute("PRAGMA journal_mode=OFF")
        target.execute("PRAGMA synchronous=OFF")
        target.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, url TEXT, domain TEXT, title TEXT, text TEXT, "
                       "label TEXT, lang TEXT, crawled_at TEXT, length INTEGER)")
        cursor = source.execute(f"SELECT {', '.join(columns)} FROM {TABLE} ORDER BY id")
        placeholders = ", ".join("?" for _ in columns)
        copied = 0
        while batch := cursor.fetchmany(100_000):
            target.executemany(f"INSERT INTO {TABLE} VALUES ({placeholders})",
                               [tuple(str(v) if hasattr(v, "isoformat") else v for v in row) for row in batch])
            copied += len(batch)
            if copied % 1_000_000 < 100_000 or copied == total:
                elapsed = time.perf_counter() - started
                self.stdout.write(f"  sqlite copy: {copied:,}/{total:,} rows, {elapsed:.1f}s")
        target.commit()
        target.close()
        source.close()
        done_marker.write_text("ok\n")
        build["sqlite"] = round(time.perf_counter() - started, 1)
        return path

    # --- workload ----------------------------------------------------------------------

    def _workload(self, count: int, seed: int, limit: int) -> list[dict]:
        vocab = demo_vocabulary()
        rng = random.Random(seed)
        extra = [("url", vocab["labels"]), ("title", [w.capitalize() for w in vocab["topic"]]),
                 ("domain", [d.split(".")[0] for d in vocab["domains"]])]
        workload = []
        for _ in range(count):
            term_class = rng.choices([c for c, _ in CLASSES], weights=[w for _, w in CLASSES])[0]
            filters = [("text", rng.choice(vocab[term_class]))]
            for column, terms in rng.sample(extra, rng.randint(0, 2)):
                filters.append((column, rng.choice(terms)))
            workload.append({"class": term_class, "filters": filters, "limit": limit})
        return workload

    # --- runs --------------------------------------------------------------------------

    def _run(self, workload, duck_path, sqlite_path, limit) -> dict:
        from django.contrib.auth import get_user_model


        user = get_user_model().objects.filter(is_active=True).order_by("id").first()
        first_log = (SearchLog.objects.order_by("-id").values_list("id", flat=True).first() or 0)
        first_audit = (AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0)
        raw = duckdb.connect(str(duck_path), read_only=True, config={"threads": settings.SEARCH_DUCKDB_THREADS})
        lite = sqlite3.connect(sqlite_path) if sqlite_path else None

        def app(item):
            query = SearchQuery(TABLE, tuple(Filter(c, "contains", v) for c, v in item["filters"]), item["limit"])
            return len(search_answer(user=user, query=query, allow_fallback=False).rows)

        def duck(item):  # what an analyst types: literal LIKE patterns
            where = " AND ".join(f"{c} LIKE '%{v}%'" for c, v in item["filters"])
            return len(raw.execute(f"SELECT * FROM {TABLE} WHERE {where} LIMIT {item['limit']}").fetchall())

        def sqlite(item):  # instr() is case-sensitive like contains(); SQLite's LIKE is not
            where = " AND ".join(f"instr({c}, '{v}') > 0" for c, v in item["filters"])
            return len(lite.execute(f"SELECT * FROM {TABLE} WHERE {where} LIMIT {item['limit']}").fetchall())

        engines = {"app": app, "duckdb_raw": duck}
        if lite is not None:
            engines["sqlite_raw"] = sqlite
        for item in workload[:3]:  # warm the page cache and the connections
            for run in engines.values():
                run(item)
        timings = {name: [] for name in engines}
        by_class = {name: {c: [] for c, _ in CLASSES} for name in engines}
        mismatches = 0
        started = time.perf_counter()
        for index, item in enumerate(workload):
            names = list(engines)
            names = names[index % len(names):] + names[:index % len(names)]  # rotate: no engine always first
            counts = {}
            for name in names:
                t0 = time.perf_counter()
                counts[name] = engines[name](item)
                elapsed = (time.perf_counter() - t0) * 1000
                timings[name].append(elapsed)
                by_class[name][item["class"]].append(elapsed)
            if len(set(counts.values())) != 1:
                mismatches += 1
            if (index + 1) % max(1, len(workload) // 10) == 0:
                self.stdout.write(f"  {index + 1}/{len(workload)} queries, {time.perf_counter() - started:.1f}s")
        raw.close()
        if lite is not None:
            lite.close()
        SearchLog.objects.filter(id__gt=first_log, user=user).delete()  # benchmark noise, not real searches
        AuditEvent.objects.filter(id__gt=first_audit, action="search", user=user).delete()
        result = {name: latency_summary(values) for name, values in timings.items()}
        result["by_term_class_p50_ms"] = {
            name: {c: latency_summary(v)["p50_ms"] for c, v in classes.items()} for name, classes in by_class.items()
        }
        result["row_count_mismatches"] = mismatches
        return result
