"""Datasette as a peer in bench_search: a real `datasette serve` process over bench_search's SQLite
copy, queried through its table JSON API as a client would, over one kept-alive connection.

Settings, chosen so that Datasette answers every query of the workload and does only the work that
answers it (Datasette 0.65):
  -i FILE                    immutable mode, as for a read-only deployment: no locking or change
                             detection (and the table's row count is computed once, at start);
  sql_time_limit_ms 600000   the default 1 s would cut off scans of absent words on large tables;
  max_returned_rows 1000     above the workload's largest limit (100);
  suggest_facets off         plus ?_nofacet=1&_nosuggest=1&_nocount=1 (and _shape=array, which
                             implies the first and the last): the page's facet, facet-suggestion
                             and count(*) queries are skipped, only the rows' SELECT runs.

How the workload's operators map to table filters (docs: "Column filter arguments"):
  contains, icontains -> <col>__contains=v    SQLite `col LIKE '%v%'`: ASCII case-insensitive, so
                                              the peer's contains is case-INSENSITIVE (Datasette has
                                              no case-sensitive contains); `%` and `_` in v act as
                                              wildcards (Datasette does not escape them)
  startswith         -> <col>__startswith=v   `col LIKE 'v%'`: likewise case-insensitive
  eq                 -> <col>__exact=v        `col = v`
  in                 -> <col>__in=["a","b"]   `col IN (...)` (JSON list: values may hold commas)
  gt                 -> <col>__gt=v           `col > v` (text comparison unless v is all digits)
  limit              -> _size=limit           Datasette adds ORDER BY the primary key (id) and
                                              fetches limit + 1 rows (to know if there is a next page)
Datasette does not use the FTS5 table for these filters: LIKE scans the `samples` table in id order.
Rows come back with all columns, as the app's API returns them.

search_fts(item) (engine datasette_fts) is the same query as a Datasette user with full-text search
would write it: each substring filter of 3+ characters on a column of the FTS5 table (trigram) also
gets `_search_<col>=v` (`rowid in (select rowid from fts where <col> match '"v"')`), with
`_fts_table=fts`: bench_search's `content='samples'` is not one of the spellings Datasette detects.
The LIKE filter stays, so the answer is the same as search()'s; FTS only narrows the rows. Datasette
reads one `_search_<col>` per column, so a second substring filter on that column is LIKE only.
"""
from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Self

TABLE = "samples"
OPERATORS = {"contains": "contains", "icontains": "contains", "startswith": "startswith", "eq": "exact",
             "in": "in", "gt": "gt"}
SETTINGS = {"sql_time_limit_ms": "600000", "max_returned_rows": "1000", "suggest_facets": "off"}
# bench_search's check of the peer's answers, also written into its JSON.
MISMATCH_RULE = (
    "datasette (and datasette_fts) is checked like sqlite_fts5, a little stricter: the same number of rows as "
    "duckdb_raw, and when duckdb_raw returned fewer rows than the limit (the whole answer) the same set of ids. "
    "Ids are not compared in order, nor when the limit cut the answer: Datasette returns the lowest ids (ORDER BY"
    " id), the scan any matching rows. A mismatch is legitimate where the peer's semantics differ: its contains "
    "and startswith are SQLite LIKE, ASCII case-insensitive (the app's contains/startswith are case-sensitive, "
    "its icontains folds non-ASCII letters too), and % or _ in a needle are wildcards there."
)


def datasette_same(ids: list, truth: list, limit: int) -> bool:
    """The rule in MISMATCH_RULE."""
    if len(ids) != len(truth):
        return False
    return len(truth) >= limit or set(ids) == set(truth)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DatasettePeer:
    """`with DatasettePeer(path) as peer: peer.search(item)`; the server is stopped on exit."""

    def __init__(self, sqlite_path, *, key: str = "id", fts_table: str = "fts", start_timeout: float = 180.0):
        self.path = Path(sqlite_path)
        self.key = key
        self.start_timeout = start_timeout
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.conn: http.client.HTTPConnection | None = None
        self.version = ""
        self._log_dir = tempfile.TemporaryDirectory(prefix="datasette-peer-")
        self.log_path = Path(self._log_dir.name) / "datasette.log"
        from datasette.utils import tilde_encode  # bench-only dependency (requirements/local.txt)

        self.table_path = f"/{tilde_encode(self.path.stem)}/{TABLE}.json"
        self.fts_table, self.fts_columns = fts_table, self._columns_of(fts_table)

    def _columns_of(self, table: str) -> set[str]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return {row[1] for row in conn.execute(f"PRAGMA table_info({json.dumps(table)})")}
        finally:
            conn.close()

    # --- process -----------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "datasette", "serve", "-i", str(self.path), "-h", "127.0.0.1",
               "--port", str(self.port)]
        for name, value in SETTINGS.items():
            cmd += ["--setting", name, value]
        return cmd

    def start(self) -> Self:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"datasette exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                status, body = self._get("/-/versions.json", timeout=5)
                if status == 200:
                    self.version = json.loads(body)["datasette"]["version"]
                    self._reset()  # queries open their own connection, with a long timeout
                    return self
            except (OSError, http.client.HTTPException):
                self._reset()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"datasette did not answer within {self.start_timeout:.0f}s: {self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._log_dir.cleanup()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def rss_mib(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except (OSError, AttributeError):
            pass
        return None

    def describe(self) -> dict:
        return {"version": self.version, "command": " ".join(self.command()[1:]), "rss_mib": self.rss_mib(),
                "operators": {op: f"<col>__{name}" for op, name in OPERATORS.items()},
                "contains": "case-insensitive (SQLite LIKE, ASCII only), for contains and icontains alike",
                "datasette_fts": "the same filters plus _search_<col>=v (FTS5 trigram MATCH) per substring filter of "
                                 "3+ characters on an FTS column, first per column; same answers",
                "mismatch_rule": MISMATCH_RULE}

    # --- queries -----------------------------------------------------------------------

    def url(self, item, *, fts: bool = False) -> str:
        params, searched = [], set()
        for column, op, value in item["filters"]:
            if op not in OPERATORS:
                raise ValueError(f"datasette peer: no filter for operator {op!r}")
            if op == "in":
                value = json.dumps([v.strip() for v in str(value).split(",")])
            elif (fts and op in ("contains", "icontains", "startswith") and column in self.fts_columns
                  and column not in searched and len(value) >= 3):
                searched.add(column)
                params.append((f"_search_{column}", str(value)))
            params.append((f"{column}__{OPERATORS[op]}", str(value)))
        if searched:
            params.append(("_fts_table", self.fts_table))
        params += [("_size", str(int(item["limit"]))), ("_shape", "array"), ("_nocount", "1"), ("_nofacet", "1"),
                   ("_nosuggest", "1")]
        return f"{self.table_path}?{urllib.parse.urlencode(params)}"

    def search_fts(self, item) -> list:
        return self.search(item, fts=True)

    def search(self, item, *, fts: bool = False) -> list:
        path = self.url(item, fts=fts)
        status, body = self._get(path, retry=True)
        if status != 200:
            raise RuntimeError(f"datasette answered {status} to {path}: {body[:300]!r}")
        return [row[self.key] for row in json.loads(body)]

    def _get(self, path: str, *, timeout: float = 900, retry: bool = False) -> tuple[int, bytes]:
        for attempt in range(2 if retry else 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                self.conn.request("GET", path, headers={"Connection": "keep-alive"})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self._reset()
                if attempt or not retry:
                    raise
        raise AssertionError("unreachable")

    def _reset(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id still exists and is not a zombie (for tests)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

