"""Replay a Zipf-like workload and report how many searches the local store answers, with and
without learning from fallbacks."""
from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.test import override_settings


class Command(BaseCommand):
    help = (
        "Benchmark the subset's hit rate: replay --queries searches drawn with Zipf-like popularity from a pool "
        "of distinct queries over the demo vocabulary. Each runs on the local subset plus the learned rows; a "
        "search still short runs on the local warehouse backend in this process and its rows are learned before "
        "the next search (in a private temporary learned store, so the app's own is untouched). Prints JSON "
        "{queries, local_share, fallbacks, cost_usd, local_share_without_learning, ...}."
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
        from django.conf import settings

        from apps.search.tables import TableNotFound, table_spec_get
        from apps.subsets.bench import workload_draw, workload_pool, workload_replay

        if queries < 1 or pool < 1:
            raise CommandError("--queries and --pool must be at least 1")
        if exponent <= 0:
            raise CommandError("--exponent must be positive")
        try:
            table_spec_get(name="samples")
        except (TableNotFound, FileNotFoundError) as exc:
            raise CommandError(f"{exc} Build the demo data first: `python manage.py make_demo_data`.") from exc
        distinct = workload_pool(size=pool, seed=seed)
        workload = workload_draw(pool=distinct, count=queries, exponent=exponent, seed=seed)
        unique = len({json.dumps(q, sort_keys=True) for q in workload})
        self.stdout.write(f"Replaying {queries} searches ({unique} distinct, pool {len(distinct)}, "
                          f"Zipf exponent {exponent}, seed {seed})\n")
        bound = max_learned_rows or settings.SUBSET_LEARNED_MAX_ROWS
        with tempfile.TemporaryDirectory(prefix="bench-learned-") as learned_dir, override_settings(
                SUBSET_LEARNED_DIR=Path(learned_dir), SUBSET_LEARNING_ENABLED=True, SUBSET_LEARNED_MAX_ROWS=bound):
            report = workload_replay(workload=workload, learning=True, stdout=self.stdout)
            from apps.subsets.selectors import learned_status_get

            learned = learned_status_get()
        result = {
            "queries": report.queries,
            "local_share": round(report.local / report.queries, 4),
            "fallbacks": report.fallbacks,
            "cost_usd": float(report.cost_usd),
            "local_share_without_learning": round(report.local_without_learning / report.queries, 4),
            "cost_usd_without_learning": float(report.cost_usd_without_learning),
            "distinct_queries": unique,
            "answered_by_learned_rows": report.answered_by_learned,
            "answered_by_complete_answers": report.answered_by_complete_answer,
            "fallbacks_by_kind": report.misses_by_kind,
            "fallbacks_failed": report.fallbacks_failed,
            "learned_rows": learned.rows,
            "learned_answers": learned.answers,
            "learned_max_rows": bound,
            "local_ms_p50": round(statistics.median(report.local_ms), 2),
            "fallback_ms_p50": round(statistics.median(report.fallback_ms), 1) if report.fallback_ms else None,
            "workload": {"pool": len(distinct), "exponent": exponent, "seed": seed},
            "backend": "local (DuckDB over the full Parquet files, in-process); cost = Athena price of the "
                       "estimated bytes",
            "seconds": round(report.seconds, 1),
        }
        text = json.dumps(result, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text + "\n")
