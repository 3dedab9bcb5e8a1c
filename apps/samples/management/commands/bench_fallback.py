"""Replay a workload of distinct searches through the search pipeline: how many need the warehouse
fallback, and how long the local backend (DuckDB over the full Parquet files) takes to answer them."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.core.stats import percentile
from apps.samples.bench.replay import replay_environment, replay_table_check, workload_replay
from apps.samples.bench.workload import FALLBACK_MIX, workload_pool
from apps.search.errors import SearchError
from apps.search.models import SearchLog


class Command(BaseCommand):
    help = ("Benchmark the warehouse fallback: replay a workload of distinct searches (generated from the demo "
            "vocabulary, or the recent search log with --from-log) through the same pipeline as the samples page, "
            "with learning off so each answer shows what the subset alone gives; searches short of their limit "
            "run a fallback on the local backend in this process. Prints JSON: share needing the fallback, rows "
            "per source and fallback latency percentiles.")

    def add_arguments(self, parser):
        parser.add_argument("--queries", type=int, default=200, help="workload size (default 200)")
        parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
        parser.add_argument("--from-log", action="store_true", help="replay the latest searches from SearchLog")
        parser.add_argument("--json", dest="json_path", default="", help="also write the JSON to this path")

    def handle(self, *args, queries: int, seed: int, from_log: bool, json_path: str, **options):
        if queries < 1:
            raise CommandError("--queries must be at least 1")
        try:
            replay_table_check()
        except SearchError as exc:
            raise CommandError(f"{exc} Build the demo data first: `python manage.py setup_demo`.") from exc
        if from_log:
            workload = [{**q, "kind": "log"} for q in
                        SearchLog.objects.order_by("-created_at").values_list("query", flat=True)[:queries]]
        else:
            workload = workload_pool(size=queries, seed=seed, mix=FALLBACK_MIX)
        if not workload:
            raise CommandError("The search log is empty: run some searches or drop --from-log.")
        started = time.perf_counter()
        with replay_environment(learning=False) as user:
            report = workload_replay(workload=workload, user=user, stdout=self.stderr, progress_every=20)
        by_kind: dict[str, dict] = {}
        for item in workload:
            by_kind.setdefault(item["kind"], {"queries": 0, "needed_fallback": 0})["queries"] += 1
        for kind, n in report.created_by_kind.items():
            by_kind[kind]["needed_fallback"] = n
        fallback_ms = report.fallback_ms
        result = {
            "workload": "search log" if from_log else f"generated (seed {seed})",
            "backend": "local (DuckDB over the full Parquet files; the task runs in this process: no queue time)",
            "queries": report.queries,
            "needed_fallback": report.fallbacks_created,
            "share_needed_fallback": round(report.fallbacks_created / report.queries, 4),
            "rows_by_source": report.rows,
            "by_kind": by_kind,
            "local_search_ms_median": statistics.median(report.local_ms),
            "fallback_ms_median": round(statistics.median(fallback_ms), 1) if fallback_ms else None,
            "fallback_ms_p90": percentile(fallback_ms, 0.9),
            "fallback_ms_max": round(max(fallback_ms), 1) if fallback_ms else None,
            "fallback_failed": report.fallbacks_failed,
            "cost_usd_per_fallback_mean": float(report.cost_usd / report.fallbacks_created) if report.fallbacks_created else None,
            "seconds": round(time.perf_counter() - started, 1),
        }
        text = json.dumps(result, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text + "\n")
