"""Benchmark: the app's search (in-process, or over HTTP against a running server) vs a raw DuckDB scan
and SQLite FTS5 (trigram) over the same rows, per query class."""
from __future__ import annotations

import http.client
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from contextlib import nullcontext
from pathlib import Path

import duckdb
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from apps.audit.models import AuditEvent
from apps.core.stats import latency_summary
from apps.samples.bench.datasette_peer import DatasettePeer, datasette_same
from apps.samples.bench.workload import english_words, realistic_table, search_workload
from apps.samples.pipeline import search_answer
from apps.search.models import SearchLog
from apps.search.word_index import index_build, index_dir_for
from apps.search.query import Filter, SearchQuery, compile_search
from apps.search.services import subset_table_build
from apps.search.store import subset_dir, table_current_path
from apps.search.tables import table_spec_get

TABLE = "samples"
FTS_TEXT = ("url", "title", "text")
PEERS = ("sqlite_fts5", "datasette", "datasette_fts")  # --peer-queries limits these


class Command(BaseCommand):
    help = (
        "Benchmark sample search on an N-row table of realistic text (words drawn by their English frequency "
        "from wordfreq; built once under DATA_DIR/bench/words-N-seed-S/, with its substring index, and reused). "
        "Replays Q queries (frequent, rare and absent terms; contains, icontains, startswith; 1-3 filters; "
        "limit 10 and 100) through the app (in-process, or over HTTP with --http URL --token T against a server "
        "serving that subset: SEARCH_SUBSET_DIR=<data_dir>/subset), a raw DuckDB scan and SQLite FTS5 trigram, "
        "side by side. Prints JSON (p50/p95/max and mismatches per query class, build seconds, bytes, RSS)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--subset-rows", type=int, required=True, help="rows in the benchmark table")
        parser.add_argument("--queries", type=int, default=120, help="queries to replay (default %(default)s)")
        parser.add_argument("--json", dest="json_path", default="", help="also write the result JSON here")
        parser.add_argument("--seed", type=int, default=7, help="seed for the data and the workload")
        parser.add_argument("--rebuild", action="store_true", help="rebuild the benchmark data even if present")
        parser.add_argument("--reindex", action="store_true",
                            help="rebuild only the substring index of the existing benchmark subset (after an index "
                                 "format change); no server may be serving it meanwhile")
        parser.add_argument("--skip-sqlite", action="store_true", help="leave SQLite FTS5 out")
        parser.add_argument("--build-only", action="store_true", help="build the data (and SQLite) and stop")
        parser.add_argument("--chunk-rows", type=int, default=500_000, help="rows generated per step")
        parser.add_argument("--http", default="", help="also query a running server at this base URL")
        parser.add_argument("--token", default="", help="API token for --http (manage.py create_api_token USER)")
        parser.add_argument("--skip-inprocess", action="store_true", help="with --http: leave the in-process app out")
        parser.add_argument("--datasette", action="store_true",
                            help="also query a `datasette serve` of the SQLite copy (engine datasette; needs SQLite)")
        parser.add_argument("--datasette-fts", action="store_true",
                            help="also query it with its full-text search on the FTS5 table (engine datasette_fts)")
        parser.add_argument("--passes", type=int, default=1,
                            help="replay the workload this many times; the headline figures are the first pass "
                                 "(cold), `repeat_passes` the later ones (the pages the first one read are cached)")
        parser.add_argument("--peer-queries", type=int, default=0,
                            help="ask the peers (SQLite FTS5, Datasette) only the first N queries of each pass (0: all); "
                                 "at 10M rows a LIKE scan of Datasette's SQLite takes 3-9 s, so a full workload "
                                 "would take hours. Each engine's figures say how many queries it ran (`n`)")
        parser.add_argument("--clients", type=int, default=0,
                            help="with --http: after the passes, N clients (threads, one kept-alive connection each) "
                                 "replay the workload at once, each from its own starting point; reported as "
                                 "`concurrent` (latency per request, requests per second, mismatches)")

    def handle(self, *args, subset_rows, queries, json_path, seed, rebuild, skip_sqlite, build_only, chunk_rows,
               http, token, skip_inprocess, reindex, datasette=False, datasette_fts=False, passes=1, clients=0,
               peer_queries=0, **options):
        if subset_rows < 1 or queries < 1 or passes < 1:
            raise CommandError("--subset-rows, --queries and --passes must be positive")
        if clients and not http:
            raise CommandError("--clients replays over HTTP: give --http URL --token T")
        if http and not token:
            raise CommandError("--http needs --token (python manage.py create_api_token USER prints one)")
        if (datasette or datasette_fts) and skip_sqlite:
            raise CommandError("--datasette serves the SQLite copy: leave out --skip-sqlite")
        bench_dir = Path(settings.DATA_DIR) / "bench" / f"words-{subset_rows}-seed-{seed}"
        bench_dir.mkdir(parents=True, exist_ok=True)
        # The app reads this subset exactly as it reads the real one, through the same store.
        with override_settings(SEARCH_SUBSET_DIR=bench_dir / "subset", SEARCH_TIMEOUT_MS=600_000):
            build: dict = {}
            duck_path = self._duckdb_build(subset_rows, seed, chunk_rows, rebuild, build)
            if reindex and not rebuild:
                self._reindex(duck_path, build)
            sqlite_path = None if skip_sqlite else self._sqlite_build(bench_dir, duck_path, rebuild, build)
            result = {"rows": subset_rows, "queries": queries, "data_dir": str(bench_dir),
                      "subset_dir": str(bench_dir / "subset"), "cpu_count": os.cpu_count(),
                      "duckdb_threads": settings.SEARCH_DUCKDB_THREADS, **self._sizes(duck_path, sqlite_path, build)}
            if not build_only:
                workload = search_workload(count=queries, seed=seed, words=english_words()[0])
                with DatasettePeer(sqlite_path) if datasette or datasette_fts else nullcontext() as peer:
                    result.update(self._run(workload, duck_path, sqlite_path, http, token, skip_inprocess, seed,
                                            peer, datasette, datasette_fts, passes, clients, peer_queries))
        text = json.dumps(result, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(text + "\n")

    # --- data ---------------------------------------------------------------------------

    def _duckdb_build(self, rows, seed, chunk_rows, rebuild, build) -> Path:
        current = table_current_path(table=TABLE)
        meta = index_dir_for(current) / f"{TABLE}.json" if current else None
        build_json = subset_dir() / "build.json"
        if current is not None and meta.exists() and not rebuild:
            self.stdout.write(f"Reusing the benchmark subset {current}")
            build.update(json.loads(build_json.read_text()) if build_json.exists() else {})
            return current
        words, probs = english_words()
        started = time.perf_counter()
        cpu_started = time.process_time()  # CPU seconds of this process, all threads: the load of others aside
        with subset_table_build(table=TABLE, stdout=self.stdout) as (path, conn):  # the index is built inside
            done = 0
            while done < rows:
                n = min(chunk_rows, rows - done)
                conn.register("chunk", realistic_table(rows=n, seed=seed, start_id=done, words=words, probs=probs))
                conn.execute(f"{'CREATE TABLE samples AS' if done == 0 else 'INSERT INTO samples'} SELECT * FROM chunk")
                conn.unregister("chunk")
                done += n
                elapsed = time.perf_counter() - started
                self.stdout.write(f"  duckdb subset: {done:,}/{rows:,} rows, {elapsed:.1f}s")
        index_meta = json.loads((index_dir_for(path) / f"{TABLE}.json").read_text())
        build["index_seconds"] = index_meta["build_seconds"]
        build["subset_and_index_seconds"] = round(time.perf_counter() - started, 1)
        build["subset_and_index_cpu_seconds"] = round(time.process_time() - cpu_started, 1)
        (subset_dir() / "build.json").write_text(json.dumps(build))
        return path

    def _reindex(self, duck_path: Path, build: dict) -> None:
        """Rebuild the index folder of the benchmark subset in place (the subset file is unchanged)."""
        started = time.perf_counter()
        cpu_started = time.process_time()
        conn = duckdb.connect(str(duck_path), read_only=True, config={"threads": settings.SEARCH_DUCKDB_THREADS})
        try:
            index_build(conn=conn, path=duck_path, stdout=self.stdout)
        finally:
            conn.close()
        build["index_seconds"] = round(time.perf_counter() - started, 1)
        build["index_cpu_seconds"] = round(time.process_time() - cpu_started, 1)
        build.pop("subset_and_index_seconds", None)
        (subset_dir() / "build.json").write_text(json.dumps(build))

    def _sqlite_build(self, bench_dir, duck_path, rebuild, build) -> Path:
        """A table of the same rows with an FTS5 trigram index over url, title and text."""
        path = bench_dir / "sqlite-fts5.db"
        done_marker = bench_dir / "sqlite-fts5.done"
        if done_marker.exists() and path.exists() and not rebuild:
            self.stdout.write(f"Reusing the SQLite copy {path}")
            build.update(json.loads(done_marker.read_text()))
            return path
        path.unlink(missing_ok=True)
        started = time.perf_counter()
        source = duckdb.connect(str(duck_path), read_only=True, config={"threads": settings.SEARCH_DUCKDB_THREADS})
        total = source.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        target = sqlite3.connect(path)
        target.execute("PRAGMA journal_mode=OFF")
        target.execute("PRAGMA synchronous=OFF")
        target.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, url TEXT, domain TEXT, title TEXT, text TEXT, "
                       "label TEXT, lang TEXT, crawled_at TEXT, length INTEGER)")
        target.execute(f"CREATE VIRTUAL TABLE fts USING fts5({', '.join(FTS_TEXT)}, content='{TABLE}', "
                       "content_rowid='id', tokenize='trigram')")
        cursor = source.execute(f"SELECT id, url, domain, title, text, label, lang, CAST(crawled_at AS VARCHAR), length "
                                f"FROM {TABLE} ORDER BY id")
        copied = 0
        while batch := cursor.fetchmany(100_000):
            target.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
            copied += len(batch)
            if copied % 1_000_000 < 100_000 or copied == total:
                self.stdout.write(f"  sqlite copy: {copied:,}/{total:,} rows, {time.perf_counter() - started:.1f}s")
        copied_at = time.perf_counter()
        target.execute(f"INSERT INTO fts(rowid, {', '.join(FTS_TEXT)}) SELECT id, {', '.join(FTS_TEXT)} FROM {TABLE}")
        target.commit()
        target.close()
        source.close()
        done = {"sqlite_copy_seconds": round(copied_at - started, 1),
                "sqlite_fts5_index_seconds": round(time.perf_counter() - copied_at, 1)}
        done_marker.write_text(json.dumps(done))
        build.update(done)
        return path

    def _sizes(self, duck_path, sqlite_path, build) -> dict:
        folder = index_dir_for(duck_path)
        meta = json.loads((folder / f"{TABLE}.json").read_text())
        index_bytes = sum(p.stat().st_size for p in folder.iterdir())
        subset_bytes = duck_path.stat().st_size
        sizes = {"build_seconds": build, "subset_bytes": subset_bytes, "index_bytes": index_bytes,
                 "index_to_subset": round(index_bytes / subset_bytes, 2),
                 "index_parts_bytes": {"row_file": meta["rows_file_bytes"], "postings_and_words": meta["postings_bytes"]}}
        if sqlite_path:
            sizes["sqlite_fts5_bytes"] = sqlite_path.stat().st_size
        return sizes

    # --- runs --------------------------------------------------------------------------

    def _run(self, workload, duck_path, sqlite_path, http, token, skip_inprocess, seed, peer=None, datasette=False,
             datasette_fts=False, passes=1, clients=0, peer_queries=0) -> dict:
        spec = table_spec_get(name=TABLE)
        user = get_user_model().objects.filter(is_active=True).order_by("id").first()
        first_log = SearchLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
        first_audit = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        raw = duckdb.connect(str(duck_path), read_only=True, config={"threads": settings.SEARCH_DUCKDB_THREADS})
        lite = sqlite3.connect(sqlite_path) if sqlite_path else None
        server = _HttpClient(http, token) if http else None

        def query_of(item) -> SearchQuery:
            return SearchQuery(TABLE, tuple(Filter(*f) for f in item["filters"]), item["limit"])

        def app(item):
            answer = search_answer(user=user, query=query_of(item), allow_fallback=False, count=False)
            return [row.values[spec.key] for row in answer.rows]

        def app_http(item):
            return [row[spec.key] for row in server.search(query_of(item))]

        def duck(item):  # the scan the app ran before the index: the same compiled SQL, on its own connection
            compiled = compile_search(query=query_of(item), spec=spec)
            return [row[0] for row in raw.execute(compiled.sql, compiled.params).fetchall()]

        def sqlite(item):
            sql, params = _fts_sql(item)
            return [row[0] for row in lite.execute(sql, params).fetchall()]

        engines = {}
        if not (server and skip_inprocess):
            engines["app"] = app
        if server:
            engines["app_http"] = app_http
        engines["duckdb_raw"] = duck
        if lite is not None:
            engines["sqlite_fts5"] = sqlite
        if peer is not None and datasette:  # Datasette's table JSON API (datasette_peer.py: mapping, rule)
            engines["datasette"] = peer.search
        if peer is not None and datasette_fts:
            engines["datasette_fts"] = peer.search_fts
        # Warm the page cache, the connections and every server thread on queries of their own (the
        # measured ones stay cold: there is no result cache to hit, but the page cache would be).
        for item in search_workload(count=12, seed=seed + 1000, words=english_words()[0]):
            for run in engines.values():
                run(item)
        mismatches = {name: 0 for name in engines}
        mismatch_examples = []
        truths: dict[int, list] = {}  # the scan's keys per workload item, for the concurrent replay

        def replay(label: str) -> tuple[dict, dict]:
            timings = {name: [] for name in engines}
            groups = {name: {} for name in engines}
            started = time.perf_counter()
            for index, item in enumerate(workload):
                names = [name for name in engines if name not in PEERS or not peer_queries or index < peer_queries]
                names = names[index % len(names):] + names[:index % len(names)]  # rotate: no engine always first
                keys = {}
                for name in names:
                    t0 = time.perf_counter()
                    keys[name] = engines[name](item)
                    elapsed = (time.perf_counter() - t0) * 1000
                    timings[name].append(elapsed)
                    for group in _groups(item):
                        groups[name].setdefault(group, []).append(elapsed)
                truth = truths[index] = keys["duckdb_raw"]
                for name in names:
                    # The app must return the scan's rows exactly; FTS5 (no row order promised) the same count.
                    same = keys[name] == truth if name.startswith("app") else len(keys[name]) == len(truth)
                    if name.startswith("datasette"):
                        same = datasette_same(keys[name], truth, item["limit"])
                    if not same:
                        mismatches[name] += 1
                        if len(mismatch_examples) < 5:
                            mismatch_examples.append({"engine": name, "query": item, "rows": len(keys[name]),
                                                      "scan_rows": len(truth)})
                if (index + 1) % max(1, len(workload) // 10) == 0:
                    self.stdout.write(f"  {label}{index + 1}/{len(workload)} queries, "
                                      f"{time.perf_counter() - started:.1f}s")
            return timings, groups

        timings, groups = replay("")
        repeats = [replay(f"pass {number + 2}: ") for number in range(passes - 1)]
        concurrent = self._concurrent(workload, truths, http, token, clients) if server and clients else None
        raw.close()
        if lite is not None:
            lite.close()
        SearchLog.objects.filter(id__gt=first_log, user=user).delete()  # benchmark noise, not real searches
        AuditEvent.objects.filter(id__gt=first_audit, action="search", user=user).delete()
        result = {name: {**latency_summary(values), "n": len(values), "mismatches": mismatches[name],
                         "by_class": {g: {**latency_summary(v), "n": len(v)} for g, v in sorted(groups[name].items())}}
                  for name, values in timings.items()}
        for name, values in timings.items():  # where the tail comes from
            slowest = sorted(range(len(values)), key=values.__getitem__, reverse=True)[:5]
            result[name]["slowest"] = [{"ms": round(values[i], 2), "class": workload[i]["class"],
                                        "filters": workload[i]["filters"], "limit": workload[i]["limit"]}
                                       for i in slowest]
        result["mismatch_examples"] = mismatch_examples
        if peer_queries and any(name in PEERS for name in engines):  # every engine on the queries the peers ran
            result["on_peer_queries"] = {name: {**latency_summary(values[:peer_queries]), "n": len(values[:peer_queries])}
                                         for name, values in timings.items()}
        if repeats:  # the same queries again: the pages (row file, postings, DuckDB blocks) the first pass read are cached
            result["repeat_passes"] = [
                {name: {**latency_summary(values), "by_class": {g: {**latency_summary(v), "n": len(v)}
                                                               for g, v in sorted(pass_groups[name].items())}}
                 for name, values in pass_timings.items()} for pass_timings, pass_groups in repeats]
        if concurrent is not None:
            result["concurrent"] = concurrent
        if peer is not None:
            result["datasette_peer"] = peer.describe()
        if server:
            result["http"] = {"url": http, "web_worker_rss_mib": _gunicorn_rss(http)}
        return result

    def _concurrent(self, workload, truths, http, token, clients: int) -> dict:
        """`clients` threads, each with its own kept-alive connection, replay the whole workload at once (client
        i starts at item i * len / clients, so they do not ask the same query together); every answer is
        checked against the scan's keys."""
        per_client: list[list[tuple[int, float, bool]]] = [[] for _ in range(clients)]
        start = threading.Barrier(clients + 1)

        def client(number: int) -> None:
            server = _HttpClient(http, token)
            offset = number * len(workload) // clients
            start.wait()
            for step in range(len(workload)):
                index = (offset + step) % len(workload)
                item = workload[index]
                t0 = time.perf_counter()
                rows = server.search(SearchQuery(TABLE, tuple(Filter(*f) for f in item["filters"]), item["limit"]))
                elapsed = (time.perf_counter() - t0) * 1000
                per_client[number].append((index, elapsed, [row["id"] for row in rows] == truths[index]))

        threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
        for thread in threads:
            thread.start()
        start.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        samples = [sample for done in per_client for sample in done]
        groups: dict[str, list[float]] = {}
        for index, elapsed, _ in samples:
            for group in _groups(workload[index]):
                groups.setdefault(group, []).append(elapsed)
        self.stdout.write(f"  {clients} clients: {len(samples)} requests, {wall:.1f}s")
        return {"clients": clients, "requests": len(samples), "wall_seconds": round(wall, 2),
                "requests_per_second": round(len(samples) / wall, 1),
                **latency_summary([elapsed for _, elapsed, _ in samples]),
                "mismatches": sum(1 for *_, same in samples if not same),
                "by_class": {g: {**latency_summary(v), "n": len(v)} for g, v in sorted(groups.items())}}


def _groups(item) -> list[str]:
    return [f"term:{item['class']}", f"op:{item['op']}", f"limit:{item['limit']}", f"filters:{len(item['filters'])}",
            f"{item['class']}/{item['op']}/limit {item['limit']}"]


def _fts_sql(item) -> tuple[str, list]:
    """The same filters on SQLite: substring filters through the FTS5 trigram index (LIKE is ASCII
    case-insensitive, GLOB case-sensitive: both use the trigram index), the rest on the table."""
    where, params = [], []
    for column, op, value in item["filters"]:
        if op in ("contains", "icontains", "startswith") and len(value) < 3:
            # Under 3 characters the trigram index cannot help (and SQLite 3.40's FTS5 crashed on such a GLOB).
            where.append({"contains": f"instr(s.{column}, ?) > 0", "icontains": f"s.{column} LIKE ? ESCAPE '\\'",
                          "startswith": f"substr(s.{column}, 1, {len(value)}) = ?"}[op])
            params.append("%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                          if op == "icontains" else value)
        elif op == "contains":
            where.append(f"f.{column} GLOB ?")
            params.append("*" + "".join(f"[{c}]" if c in "*?[]" else c for c in value) + "*")
        elif op == "icontains":
            where.append(f"f.{column} LIKE ? ESCAPE '\\'")
            params.append("%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        elif op == "startswith":
            where.append(f"f.{column} GLOB ?")
            params.append("".join(f"[{c}]" if c in "*?[]" else c for c in value) + "*")
        elif op == "eq":
            where.append(f"s.{column} = ?")
            params.append(value)
        elif op == "in":
            values = value.split(",")
            where.append(f"s.{column} IN ({', '.join('?' for _ in values)})")
            params.extend(values)
        elif op == "gt":
            where.append(f"s.{column} > ?")
            params.append(value)
        else:
            raise ValueError(op)
    sql = (f"SELECT s.id FROM fts f JOIN {TABLE} s ON s.id = f.rowid WHERE {' AND '.join(where)} "
           f"LIMIT {int(item['limit'])}")
    return sql, params


class _HttpClient:
    """GET /api/search over one kept-alive connection, as a client library would."""

    def __init__(self, base: str, token: str):
        parsed = urllib.parse.urlparse(base)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.prefix = parsed.path.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Connection": "keep-alive"}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def search(self, query: SearchQuery) -> list[dict]:
        path = f"{self.prefix}/api/search?{urllib.parse.urlencode(query.to_params())}"
        for attempt in range(2):
            try:
                self.conn.request("GET", path, headers=self.headers)
                response = self.conn.getresponse()
                body = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt:
                    raise
        if response.status != 200:
            raise CommandError(f"{path} answered {response.status}: {body[:300]!r}")
        return json.loads(body)["rows"]


def _gunicorn_rss(base: str) -> list[float]:
    """RSS (MiB) of each gunicorn worker serving the benchmark: processes whose parent is the gunicorn
    master bound to the URL's port."""
    port = f":{urllib.parse.urlparse(base).port or 80}"
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if "gunicorn" not in cmdline or "samplescope" not in cmdline:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parent = fields.get("PPid", "").strip()
        try:
            parent_cmd = Path(f"/proc/{parent}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "gunicorn" in parent_cmd and port in parent_cmd.replace("\0", " "):  # a worker, not the master
            found.append(round(int(fields["VmRSS"].split()[0]) / 1024, 1))
    return sorted(found)
