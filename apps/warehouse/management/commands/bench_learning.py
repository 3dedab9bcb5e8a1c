"""Benchmark the learned store's writes and reads (issue 23): learning one answer with a large store, many
answers one after another, and searches over many segments before and after a merge. Prints JSON."""
from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from apps.core.stats import latency_summary
from apps.search.operators import OPERATORS_BY_KIND
from apps.search.query import Filter, SearchQuery
from apps.search.tables import TableSpec, column_kind
from apps.warehouse.learned import learned_answer_add, learned_rows_for_search, learned_segments_merge, learned_snapshot

COLUMNS = {"id": "BIGINT", "text": "VARCHAR", "lang": "VARCHAR", "n": "INTEGER"}
SPEC = TableSpec(name="bench_notes", key="id", columns=COLUMNS, shown=("text", "lang", "n"),
                 searchable={c: OPERATORS_BY_KIND[column_kind(t)] for c, t in COLUMNS.items()})
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "bo", "da", "fe", "gu", "hi", "jo", "pu"]


def _vocabulary(size: int, rng: random.Random) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class Command(BaseCommand):
    help = ("Benchmark learning (apps/warehouse/learned.py) in a private temporary store, on a synthetic table: "
            "(a) adding a small answer to a store of --store-rows learned rows; (b) --answers answers of "
            "--answer-rows rows one after another (each timed; ratio of the last 10 to the first 10); (c) search "
            "latency over those segments before and after a merge. Prints JSON.")

    def add_arguments(self, parser):
        parser.add_argument("--store-rows", type=int, default=200_000, help="learned rows before (a) (default 200k)")
        parser.add_argument("--small-rows", type=int, default=5, help="rows of the answer timed in (a) (default 5)")
        parser.add_argument("--repeat", type=int, default=5, help="small answers timed in (a) (default 5)")
        parser.add_argument("--answers", type=int, default=100, help="answers learned in (b) (default 100)")
        parser.add_argument("--answer-rows", type=int, default=1000, help="rows per answer in (b) (default 1000)")
        parser.add_argument("--searches", type=int, default=200, help="searches timed per pass in (c) (default 200)")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--json", dest="json_path", default="", help="also write the JSON to this path")

    def handle(self, *args, store_rows, small_rows, repeat, answers, answer_rows, searches, seed, json_path, **options):
        if min(store_rows, small_rows, repeat, answers, answer_rows, searches) < 1 or answers < 20:
            raise CommandError("every count must be at least 1, --answers at least 20")
        rng = random.Random(seed)
        self.vocabulary = _vocabulary(3000, rng)
        self.weights = [1 / (i + 1) for i in range(len(self.vocabulary))]  # Zipf-like
        self.rng = rng
        self.next_id = 0
        result = {"machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}}
        with tempfile.TemporaryDirectory(prefix="bench-learning-") as folder, override_settings(
                SUBSET_LEARNED_DIR=Path(folder) / "a", SUBSET_LEARNING_ENABLED=True, SUBSET_LEARNED_MAX_ROWS=10**9,
                SUBSET_LEARNED_MAX_ANSWERS=10**6, SUBSET_LEARNED_COMPLETE_MAX_AGE_SECONDS=0):
            result["a_small_answer_into_large_store"] = self._large_store(store_rows, small_rows, repeat)
        with tempfile.TemporaryDirectory(prefix="bench-learning-") as folder, override_settings(
                SUBSET_LEARNED_DIR=Path(folder) / "b", SUBSET_LEARNING_ENABLED=True, SUBSET_LEARNED_MAX_ROWS=10**9,
                SUBSET_LEARNED_MAX_ANSWERS=10**6, SUBSET_LEARNED_COMPLETE_MAX_AGE_SECONDS=0):
            result["b_answers_one_after_another"] = self._many_answers(answers, answer_rows)
            result["c_search_before_after_merge"] = self._search_merge(searches)
        text = json.dumps(result, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text)

    def _rows(self, count: int) -> list[dict]:
        rows = []
        for _ in range(count):
            words = self.rng.choices(self.vocabulary, weights=self.weights, k=self.rng.randint(4, 14))
            rows.append({"id": self.next_id, "text": " ".join(words), "lang": self.rng.choice(["en", "de", "fr"]),
                         "n": self.rng.randint(0, 1000)})
            self.next_id += 1
        return rows

    def _learn(self, rows: list[dict]) -> tuple[float, dict]:
        query = SearchQuery(table=SPEC.name, filters=(Filter("text", "contains", f"q{self.next_id}"),),
                            limit=len(rows) + 1)
        started = time.perf_counter()
        stats = learned_answer_add(spec=SPEC, query=query, rows=rows)
        return (time.perf_counter() - started) * 1000, stats

    def _large_store(self, store_rows: int, small_rows: int, repeat: int) -> dict:
        chunk = min(10_000, store_rows)
        fill_ms = []
        while self.next_id < store_rows:
            fill_ms.append(self._learn(self._rows(min(chunk, store_rows - self.next_id)))[0])
        merge = learned_segments_merge()
        times = [self._learn(self._rows(small_rows))[0] for _ in range(repeat)]
        snapshot = learned_snapshot()
        return {"store_rows_before": store_rows, "answer_rows": small_rows, "fill_answers": len(fill_ms),
                "fill_answer_rows": chunk, "fill_ms_mean": round(statistics.mean(fill_ms), 1),
                "merge_after_fill": merge, "segments": len(snapshot.segments),
                "add_ms": [round(t, 1) for t in times], "add_ms_median": round(statistics.median(times), 1),
                "add_ms_max": round(max(times), 1), "target_ms": 200}

    def _many_answers(self, answers: int, answer_rows: int) -> dict:
        times = [self._learn(self._rows(answer_rows))[0] for _ in range(answers)]
        first, last = statistics.mean(times[:10]), statistics.mean(times[-10:])
        return {"answers": answers, "answer_rows": answer_rows, "add_ms": [round(t, 1) for t in times],
                "first10_mean_ms": round(first, 1), "last10_mean_ms": round(last, 1),
                "ratio_last10_first10": round(last / first, 3), "target_ratio": 1.3,
                "segments": len(learned_snapshot().segments), "merges_during": 0}

    def _queries(self, count: int) -> list[SearchQuery]:
        rng = random.Random(7)
        queries = []
        for _ in range(count):
            word = rng.choices(self.vocabulary, weights=self.weights, k=1)[0]
            filters = [Filter("text", "contains", word)]
            if rng.random() < 0.3:
                filters.append(Filter("lang", "eq", rng.choice(["en", "de", "fr"])))
            queries.append(SearchQuery(table=SPEC.name, filters=tuple(filters), limit=rng.choice([10, 50, 100])))
        return queries

    def _search_pass(self, queries: list[SearchQuery]) -> dict:
        for query in queries[:10]:  # warm: connections and index files open
            learned_rows_for_search(query=query, spec=SPEC, local_rows=[])
        times, rows = [], 0
        for query in queries:
            started = time.perf_counter()
            found = learned_rows_for_search(query=query, spec=SPEC, local_rows=[])
            times.append((time.perf_counter() - started) * 1000)
            rows += len(found.rows)
        return {"segments": len(learned_snapshot().segments), "rows_returned": rows, **latency_summary(times)}

    def _search_merge(self, searches: int) -> dict:
        queries = self._queries(searches)
        before = self._search_pass(queries)
        started = time.perf_counter()
        merge = learned_segments_merge()
        merge_ms = (time.perf_counter() - started) * 1000
        after = self._search_pass(queries)
        return {"before_merge": before, "merge": merge, "merge_ms": round(merge_ms, 1), "after_merge": after,
                "same_rows": before["rows_returned"] == after["rows_returned"]}
