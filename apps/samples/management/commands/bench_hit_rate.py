"""Replay a Zipf-like workload through the search pipeline and report how many searches are answered
without a new warehouse query, with learning from fallbacks on (and what a subset-only app would do)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.samples.bench.replay import replay_environment, replay_table_check, workload_replay
from apps.samples.bench.workload import workload_draw, workload_pool
from apps.search.errors import SearchError
from apps.subsets.selectors import learned_status_get


class Command(BaseCommand):
    help = (
        "Benchmark the local hit rate: replay --queries searches drawn with Zipf-like popularity from a pool of "
        "distinct queries through the same pipeline as the samples page (subset, learned rows, warehouse "
        "fallback; the fallback task runs in this process on the local backend, learning into a private "
        "temporary store). Prints JSON {queries, local_share, fallbacks, fallbacks_per_1000, rows_by_source, "
        "cost_usd, local_share_without_learning, ...}."
    )

    def add_arguments(self, parser):
        parser.add_argument("--queries", type=int, default=2000, help="searches to replay (default 2000)")
        parser.add_argument("--pool", type=int, default=5000, help="distinct queries in the pool (default 5000)")
        parser.add_argument("--exponent", type=float, default=1.1, help="Zipf exponent of popularity (default 1.1)")
        parser.add_argument("--seed", type=int, default=5, help="workload seed (default 5)")
        parser.add_argument("--max-learned-rows", type=int, default=None,
                            help="learned-store bound for this run (default SUBSET_LEARNED_MAX_ROWS)")
        parser.add_argument("--json", dest="json_path", default="", help="also write the JSON to this path")

    def handle(self, *args, queries, pool, exponent, seed, max_learned_rows, json_path, **options):
        if queries < 1 or pool < 1:
            raise CommandError("--queries and --pool must be at least 1")
        if exponent <= 0:
            raise CommandError("--exponent must be positive")
        try:
            replay_table_check()
        except SearchError as exc:
            raise CommandError(f"{exc} Build the demo data first: `python manage.py setup_demo`.") from exc
        distinct = workload_pool(size=pool, seed=seed)
        workload = workload_draw(pool=distinct, count=queries, exponent=exponent, seed=seed)
        unique = len({json.dumps(q, sort_keys=True) for q in workload})
        self.stdout.write(f"Replaying {queries} searches ({unique} distinct, pool {len(distinct)}, "
                          f"Zipf exponent {exponent}, seed {seed})\n")
        with replay_environment(learning=True, max_learned_rows=max_learned_rows) as user:
            report = workload_replay(workload=workload, user=user, stdout=self.stdout)
            learned = learned_status_get()
        result = {
            "queries": report.queries,
            "local_share": round(report.local / report.queries, 4),
            "fallbacks": report.fallbacks_created,
            "fallbacks_per_1000": report.fallbacks_per_1000,
            "fallbacks_joined_or_cached": report.fallbacks_joined_or_cached,
            "rows_by_source": report.rows,
            "cost_usd": float(report.cost_usd),
            "local_share_without_learning": round(report.subset_enough / report.queries, 4),
            "fallbacks_per_1000_without_learning": round(1000 * (report.queries - report.subset_enough) / report.queries, 2),
            "cost_usd_without_learning": float(report.cost_usd_without_learning),
            "distinct_queries": unique,
            "answered_by_learned_rows": report.answered_by_learned,
            "answered_by_complete_answers": report.answered_by_complete_answer,
            "fallbacks_by_kind": report.created_by_kind,
            "fallbacks_failed": report.fallbacks_failed,
            "learned_rows": learned.rows,
            "learned_answers": learned.answers,
            "learned_max_rows": learned.max_rows,
            "local_ms_p50": round(statistics.median(report.local_ms), 2),
            "fallback_ms_p50": round(statistics.median(report.fallback_ms), 1) if report.fallback_ms else None,
            "workload": {"pool": len(distinct), "exponent": exponent, "seed": seed},
            "pipeline": "apps.samples.pipeline.search_answer; warehouse = local backend, task run in-process; "
                        "cost = Athena price of the bytes the local backend estimates",
            "seconds": round(report.seconds, 1),
        }
        text = json.dumps(result, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text + "\n")
