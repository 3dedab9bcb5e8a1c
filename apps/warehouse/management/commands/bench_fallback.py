"""Replay a query workload against the demo data: how many searches need the warehouse fallback,
and how long the local backend (DuckDB over the full Parquet files) takes to answer them."""
from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.core.stats import percentile

# Kinds of searches an analyst runs, with their share of the generated workload.
WORKLOAD_MIX = (
    ("frequent_word", 0.30),   # text contains a common word
    ("topic_word", 0.20),      # text contains a topic word
    ("rare_word", 0.25),       # text contains a rare word, product code or name
    ("facets", 0.15),          # label / lang / domain equality, bigger limits
    ("absent_word", 0.05),     # a word in no row at all
    ("id_lookup", 0.05),       # a list of sample ids
)
LIMITS = (10, 10, 10, 20, 50, 100)


class Command(BaseCommand):
    help = ("Benchmark the warehouse fallback: replay a query workload (generated from the demo vocabulary, "
            "or the recent search log with --from-log) against the local subset, count the searches that "
            "return fewer rows than their limit, run each of those on the local warehouse backend in this "
            "process, and print JSON: share needing the fallback and fallback latency percentiles.")

    def add_arguments(self, parser):
        parser.add_argument("--queries", type=int, default=200, help="workload size (default 200)")
        parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
        parser.add_argument("--from-log", action="store_true", help="replay the latest searches from SearchLog")
        parser.add_argument("--max-fallbacks", type=int, default=0,
                            help="run at most this many fallbacks (0 = all that are needed)")
        parser.add_argument("--json", dest="json_path", default="", help="also write the JSON to this path")

    def handle(self, *args, queries: int, seed: int, from_log: bool, max_fallbacks: int, json_path: str, **options):
        from apps.search.query import SearchQuery, compile_search
        from apps.search.selectors import subset_query_run
        from apps.search.tables import TableNotFound, table_spec_get
        from apps.warehouse.backends.base import NullControl
        from apps.warehouse.backends.local import LocalBackend

        if queries < 1:
            raise CommandError("--queries must be at least 1")
        try:
            spec = table_spec_get(name="samples")
        except (TableNotFound, FileNotFoundError) as exc:
            raise CommandError(f"{exc} Build the demo data first: `python manage.py setup_demo`.") from exc
        workload = self._from_log(queries) if from_log else self._generated(queries, seed)
        if not workload:
            raise CommandError("The search log is empty: run some searches or drop --from-log.")

        backend = LocalBackend()
        started = time.perf_counter()
        records = []
        fallback_ms: list[float] = []
        for index, (kind, query_dict) in enumerate(workload, 1):
            query = SearchQuery.from_dict(query_dict)
            outcome = subset_query_run(compiled=compile_search(query=query, spec=spec), timeout_ms=30_000)
            record = {"kind": kind, "limit": query.limit, "local_rows": len(outcome.rows),
                      "local_ms": outcome.elapsed_ms, "needed_fallback": len(outcome.rows) < query.limit}
            if record["needed_fallback"] and (not max_fallbacks or len(fallback_ms) < max_fallbacks):
                run_started = time.perf_counter()
                result = backend.run(query=query, spec=spec, request_token=f"bench-{index}", control=NullControl())
                record.update(fallback_ms=round((time.perf_counter() - run_started) * 1000, 1),
                              fallback_state=result.state, fallback_rows=len(result.rows),
                              bytes_estimate=result.bytes_scanned, cost_usd=float(result.cost_usd))
                fallback_ms.append(record["fallback_ms"])
            records.append(record)
            if index % 20 == 0 or index == len(workload):
                elapsed = time.perf_counter() - started
                self.stderr.write(f"  {index}/{len(workload)} queries, {sum(r['needed_fallback'] for r in records)} "
                                  f"needed the fallback, {elapsed:.1f}s ({index / elapsed:.1f} queries/s)")

        needed = [r for r in records if r["needed_fallback"]]
        ran = [r for r in needed if "fallback_ms" in r]
        by_kind = {}
        for kind, _ in WORKLOAD_MIX + (("log", 0),):
            of_kind = [r for r in records if r["kind"] == kind]
            if of_kind:
                by_kind[kind] = {"queries": len(of_kind), "needed_fallback": sum(r["needed_fallback"] for r in of_kind)}
        report = {
            "workload": "search log" if from_log else f"generated (seed {seed})",
            "backend": "local (DuckDB over the full Parquet files, in-process: no queue time)",
            "full_data_glob": spec.full_data_glob,
            "queries": len(records),
            "needed_fallback": len(needed),
            "share_needed_fallback": round(len(needed) / len(records), 4),
            "by_kind": by_kind,
            "local_search_ms_median": statistics.median(r["local_ms"] for r in records),
            "fallbacks_run": len(ran),
            "fallback_ms_median": statistics.median(fallback_ms) if fallback_ms else None,
            "fallback_ms_p90": percentile(fallback_ms, 0.9),
            "fallback_ms_max": max(fallback_ms) if fallback_ms else None,
            "fallback_rows_added_median": statistics.median(r["fallback_rows"] - r["local_rows"] for r in ran) if ran else None,
            "fallback_failed": sum(r.get("fallback_state") != "succeeded" for r in ran),
            "bytes_estimate_median": statistics.median(r["bytes_estimate"] or 0 for r in ran) if ran else None,
            "cost_usd_per_fallback_median": statistics.median(r["cost_usd"] for r in ran) if ran else None,
            "seconds": round(time.perf_counter() - started, 1),
        }
        text = json.dumps(report, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text + "\n")

    @staticmethod
    def _from_log(count: int) -> list[tuple[str, dict]]:
        from apps.search.models import SearchLog

        return [("log", q) for q in SearchLog.objects.order_by("-created_at").values_list("query", flat=True)[:count]]

    @staticmethod
    def _generated(count: int, seed: int) -> list[tuple[str, dict]]:
        from apps.search.demo_data import demo_vocabulary

        vocabulary = demo_vocabulary()
        rng = random.Random(seed)
        kinds = [k for k, _ in WORKLOAD_MIX]
        weights = [w for _, w in WORKLOAD_MIX]
        workload = []
        for _ in range(count):
            kind = rng.choices(kinds, weights)[0]
            limit = rng.choice(LIMITS)
            if kind == "frequent_word":
                filters = [("text", "contains", rng.choice(vocabulary["frequent"]))]
            elif kind == "topic_word":
                filters = [("text", "contains", rng.choice(vocabulary["topic"]))]
            elif kind == "rare_word":
                filters = [("text", "contains", rng.choice(vocabulary["rare"]))]
            elif kind == "absent_word":
                filters = [("text", "contains", rng.choice(vocabulary["absent"]))]
            elif kind == "facets":
                filters = [("label", "eq", rng.choice(vocabulary["labels"])),
                           ("lang", "eq", rng.choice(["de", "fr", "es", "it", "nl"])),
                           ("domain", "eq", rng.choice(vocabulary["domains"]))]
                limit = rng.choice((50, 100, 200))
            else:
                ids = rng.sample(range(0, 2_000_000), rng.randint(3, 12))
                filters = [("id", "in", ",".join(map(str, ids)))]
                limit = len(ids)
            workload.append((kind, {"table": "samples", "limit": limit,
                                    "filters": [{"column": c, "op": o, "value": v} for c, o, v in filters]}))
        return workload
