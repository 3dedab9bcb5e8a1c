"""Benchmark: the full-data vocabulary at production size. Its build (time, peak memory, bytes on disk, distinct
words) from an N-row full dataset of realistic text with a long tail of misspellings, and what a lookup costs: the
bare lookup, the app in-process and over HTTP, side by side with the DuckDB scan of the full data that a proof
of absence saves."""
from __future__ import annotations

import json
import random
import resource
import statistics
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from apps.core.stats import latency_summary
from apps.samples.bench.workload import english_words, misspelling, realistic_table
from apps.samples.pipeline import search_answer
from apps.search.query import Filter, SearchQuery
from apps.search.sql import quote_string
from apps.search.store import table_current_path
from apps.search.tables import table_spec_get
from apps.search.vocabulary import table_vocabulary, vocabulary_answer, vocabulary_dir_for

from .bench_search import _HttpClient

CLASSES = ("absent", "misspelt", "rare", "frequent", "label_typo")


class Command(BaseCommand):
    help = (
        "Benchmark the full-data vocabulary at production size. Writes an N-row full dataset of realistic text "
        "(words drawn by their English frequency, --typo-share of them misspelt and --code-share codes: the long "
        "tail of distinct words real text has) as Parquet under DATA_DIR/bench/full-N-seed-S-typos-T-codes-C/ "
        "(once, reused), imports --fraction of it as "
        "table --table with that full data (import_subset: the subset, its index and the vocabulary built in one "
        "go), then replays --queries lookups of five classes (absent words, misspelt words, rare and frequent "
        "words, a misspelt label) through the bare vocabulary lookup, the app in-process and, with --http URL "
        "--token T, the API of a running server serving that subset; the first --peer-queries of each class also "
        "through a DuckDB scan of the full data (what a proof saves; any row it finds where a proof was given "
        "is counted in `wrong_proofs`). Prints JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, required=True, help="rows of the full dataset")
        parser.add_argument("--seed", type=int, default=11)
        parser.add_argument("--typo-share", type=float, default=0.02, help="share of text words misspelt")
        parser.add_argument("--code-share", type=float, default=0.01,
                            help="share of text words that are codes (random letters and digits: ids, names)")
        parser.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per Parquet file")
        parser.add_argument("--table", default="crawl", help="subset table to import it as")
        parser.add_argument("--fraction", type=float, default=0.05, help="share of the rows the subset keeps")
        parser.add_argument("--rebuild", action="store_true", help="import again even if the table exists")
        parser.add_argument("--build-only", action="store_true")
        parser.add_argument("--queries", type=int, default=200, help="lookups per class")
        parser.add_argument("--peer-queries", type=int, default=3, help="of each class, scanned by DuckDB too")
        parser.add_argument("--http", default="", help="also ask a running server at this base URL")
        parser.add_argument("--token", default="", help="API token for --http (a read-only one starts nothing)")
        parser.add_argument("--json", dest="json_path", default="")

    def handle(self, *args, rows, seed, typo_share, code_share, chunk_rows, table, fraction, rebuild, build_only, queries,
               peer_queries, http, token, json_path, **options):
        if rows < 1 or queries < 1 or not 0 < fraction <= 1 or not 0 <= typo_share < 1 or not 0 <= code_share < 1:
            raise CommandError("--rows and --queries must be positive, --fraction in (0, 1], the shares in [0, 1)")
        if http and not token:
            raise CommandError("--http needs --token (python manage.py create_api_token USER --read-only)")
        full_dir = Path(settings.DATA_DIR) / "bench" / f"full-{rows}-seed-{seed}-typos-{typo_share}-codes-{code_share}"
        result: dict = {"rows": rows, "typo_share": typo_share, "code_share": code_share, "full_data_dir": str(full_dir),
                        "table": table, "fraction": fraction}
        result["full_data"] = self._full_data(full_dir, rows, seed, typo_share, code_share, chunk_rows)
        glob = str(full_dir / "*.parquet")
        result["build"] = self._import(table, glob, fraction, rebuild)
        if not build_only:
            result.update(self._replay(table, glob, seed, queries, peer_queries, http, token))
        text = json.dumps(result, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text + "\n")

    def _full_data(self, folder: Path, rows: int, seed: int, typo_share: float, code_share: float,
                   chunk_rows: int) -> dict:
        done = folder / "done.json"
        if done.exists():
            self.stdout.write(f"Reusing the full dataset {folder}")
            return json.loads(done.read_text())
        folder.mkdir(parents=True, exist_ok=True)
        words, probs = english_words()
        started = time.perf_counter()
        written = 0
        for number, start in enumerate(range(0, rows, chunk_rows)):
            part = realistic_table(rows=min(chunk_rows, rows - start), seed=seed, start_id=start, words=words,
                                   probs=probs, typo_share=typo_share, code_share=code_share)
            pq.write_table(part, folder / f"part-{number:05d}.parquet", compression="zstd")
            written += part.num_rows
            self.stdout.write(f"  full data: {written:,}/{rows:,} rows, {time.perf_counter() - started:.0f}s")
        info = {"rows": written, "files": number + 1, "seconds": round(time.perf_counter() - started, 1),
                "bytes": sum(p.stat().st_size for p in folder.glob("*.parquet"))}
        done.write_text(json.dumps(info))
        return info

    def _import(self, table: str, glob: str, fraction: float, rebuild: bool) -> dict:
        current = table_current_path(table=table)
        if (current is None or rebuild or not vocabulary_dir_for(current).is_dir()
                or table_spec_get(name=table).full_data_glob != glob):  # a table of other full data
            started = time.perf_counter()
            call_command("import_subset", glob, table=table, key="id", facets="label,lang,domain",
                         label_column="label", text_column="text", sample_fraction=fraction, full_data_glob=glob,
                         stdout=self.stdout)
            import_seconds = round(time.perf_counter() - started, 1)
            peak_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            current = table_current_path(table=table)
        else:
            self.stdout.write(f"Reusing table {table!r} ({current.name})")
            import_seconds = peak_rss_mib = None
        meta = json.loads((vocabulary_dir_for(current) / f"{table}.json").read_text())
        folder = vocabulary_dir_for(current)
        return {"file": current.name, "import_seconds": import_seconds, "peak_rss_mib_of_this_command": peak_rss_mib,
                "vocabulary_build_seconds": meta["build_seconds"], "vocabulary_bytes": meta["bytes"],
                "vocabulary_files_bytes": {p.name: p.stat().st_size for p in sorted(folder.iterdir())},
                "words": {c: info["words"] for c, info in meta["columns"].items()},
                "value_columns": {c: len(v) for c, v in meta["values"].items()},
                "full_rows": meta["rows"],
                "subset_bytes": current.stat().st_size}

    def _workload(self, seed: int, queries: int) -> list[tuple[str, list[tuple[str, str, str]]]]:
        words, _ = english_words()
        rng = random.Random(seed)
        items = []
        for kind in CLASSES:
            made, tries = 0, 0
            while made < queries and tries < queries * 50:
                tries += 1
                if kind == "absent":  # two letters of a long word swapped twice: rarely anyone's typo
                    word = rng.choice(words[2_000:60_000])
                    if len(word) < 8 or not word.isalpha():
                        continue
                    needle = misspelling(misspelling(word, 2, rng.randrange(1, 3), 0), 2, len(word) - 3, 0)
                    filters = [("text", "contains", needle)]
                elif kind == "misspelt":  # a frequent word with two edits: "did you mean" territory
                    word = rng.choice(words[300:20_000])
                    if len(word) < 5 or not word.isalpha():
                        continue
                    needle = misspelling(misspelling(word, rng.randrange(4), rng.randrange(99), rng.randrange(26)),
                                         rng.randrange(4), rng.randrange(99), rng.randrange(26))
                    filters = [("text", "contains", needle)]
                elif kind == "rare":
                    filters = [("text", "contains", rng.choice(words[30_000:200_000]))]
                elif kind == "frequent":
                    filters = [("text", "contains", rng.choice(words[:300]))]
                else:
                    label = rng.choice(("sports", "politics", "technology", "science", "health", "business"))
                    filters = [("label", "eq", misspelling(label, rng.randrange(4), rng.randrange(99),
                                                           rng.randrange(26)))]
                items.append((kind, filters))
                made += 1
        return items

    def _replay(self, table: str, glob: str, seed: int, queries: int, peer_queries: int, http: str,
                token: str) -> dict:
        spec = table_spec_get(name=table)
        opened = time.perf_counter()
        vocabulary = table_vocabulary(table=table)
        open_ms = round((time.perf_counter() - opened) * 1000, 1)
        if vocabulary is None:
            raise CommandError(f"Table {table!r} has no usable vocabulary (see the log).")
        user = get_user_model().objects.filter(is_active=True).order_by("id").first()
        server = _HttpClient(http, token) if http else None
        raw = duckdb.connect(":memory:")
        relation = f"read_parquet({quote_string(glob)})"
        workload = self._workload(seed, queries)
        timings: dict[str, dict[str, list[float]]] = {}
        outcomes: dict[str, dict[str, int]] = {}
        peers: dict[str, list[float]] = {}
        wrong_proofs = 0
        proofs_scanned = 0
        first = SearchQuery(table, tuple(Filter(*f) for f in workload[0][1]), 10)
        vocabulary_answer(query=first, spec=spec, vocabulary=vocabulary)  # warm: the first touch of the files
        for kind, filters in workload:
            query = SearchQuery(table, tuple(Filter(*f) for f in filters), 10)
            times = timings.setdefault(kind, {"lookup": [], "app": [], "app_http": []})
            began = time.perf_counter()
            said = vocabulary_answer(query=query, spec=spec, vocabulary=vocabulary)
            times["lookup"].append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            answer = search_answer(user=user, query=query, allow_fallback=False, count=False)
            times["app"].append((time.perf_counter() - began) * 1000)
            if server is not None:
                began = time.perf_counter()
                server.search(query)
                times["app_http"].append((time.perf_counter() - began) * 1000)
            seen = outcomes.setdefault(kind, {"n": 0, "proof": 0, "suggestions": 0, "local_rows": 0})
            seen["n"] += 1
            seen["proof"] += bool(said.proof)
            seen["suggestions"] += bool(said.suggestions)
            seen["local_rows"] += bool(answer.rows)
            if len(peers.setdefault(kind, [])) < peer_queries:
                column, op, value = filters[0]
                condition = (f"contains(lower({column}), {quote_string(value.lower())})" if op != "eq"
                             else f"{column} = {quote_string(value)}")
                began = time.perf_counter()
                found = raw.execute(f"SELECT count(*) FROM {relation} WHERE {condition}").fetchone()[0]
                peers[kind].append((time.perf_counter() - began) * 1000)
                proofs_scanned += bool(said.proof)
                wrong_proofs += bool(said.proof and found)
        every = {engine: latency_summary([t for kind in timings.values() for t in kind[engine]])
                 for engine in ("lookup", "app", "app_http") if any(kind[engine] for kind in timings.values())}
        return {
            "vocabulary_open_ms": open_ms,
            "queries_per_class": queries,
            "all": every,
            "by_class": {kind: {**{engine: latency_summary(values) for engine, values in times.items() if values},
                                "outcomes": outcomes[kind],
                                "duckdb_full_scan": latency_summary(peers[kind]) if peers.get(kind) else None}
                         for kind, times in timings.items()},
            "wrong_proofs": wrong_proofs, "proofs_checked_by_scan": proofs_scanned,
            "duckdb_full_scan_ms_p50": round(statistics.median([t for v in peers.values() for t in v]), 1)
            if peers else None,
        }
