"""bench_search's Datasette peer: a real `datasette serve` over a small SQLite table."""
import io
import json
import sqlite3

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.samples.bench.datasette_peer import DatasettePeer, datasette_same, pid_alive

ROWS = [  # id, title, text, label, lang, crawled_at (and an FTS5 trigram table over title and text)
    (1, "river walk", "the quick brown fox", "travel", "en", "2024-01-05 10:00:00"),
    (2, "River news", "a Brown bear", "science", "de", "2024-07-01 09:00:00"),
    (3, "market day", "brownies and tea", "business", "fr", "2025-02-11 00:00:00"),
    (4, "riverside", "no match here", "travel", "en", "2024-06-02 00:00:00"),
    (5, "the river", "brown, brown, brown", "travel", "es", "2023-12-31 23:59:59"),
]


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    path = tmp_path_factory.mktemp("datasette") / "tiny.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, title TEXT, text TEXT, label TEXT, lang TEXT, "
                 "crawled_at TEXT)")
    conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?)", ROWS)
    conn.execute("CREATE VIRTUAL TABLE fts USING fts5(title, text, content='samples', content_rowid='id', "
                 "tokenize='trigram')")
    conn.execute("INSERT INTO fts(rowid, title, text) SELECT id, title, text FROM samples")
    conn.commit()
    conn.close()
    with DatasettePeer(path) as running:
        yield running
    assert running.proc.poll() is not None and not pid_alive(running.proc.pid)


def search(peer, *filters, limit=100, fts=False):
    return peer.search({"filters": list(filters), "limit": limit}, fts=fts)


def test_peer_filters(peer):
    assert peer.version.startswith("0.65")
    # contains is LIKE: case-insensitive, for contains and icontains alike
    assert search(peer, ("text", "contains", "brown")) == [1, 2, 3, 5]
    assert search(peer, ("text", "icontains", "BROWN")) == [1, 2, 3, 5]
    assert search(peer, ("title", "startswith", "river")) == [1, 2, 4]
    assert search(peer, ("label", "eq", "travel")) == [1, 4, 5]
    assert search(peer, ("lang", "in", "en,de")) == [1, 2, 4]
    assert search(peer, ("crawled_at", "gt", "2024-06-01")) == [2, 3, 4]
    assert search(peer, ("text", "contains", "brown"), ("lang", "in", "en,es"), ("crawled_at", "gt", "2023")) == [1, 5]
    assert search(peer, ("text", "contains", "absent")) == []
    assert search(peer, ("text", "contains", "brown"), limit=2) == [1, 2]  # the lowest ids: ORDER BY id
    assert search(peer, ("text", "contains", "br")) == [1, 2, 3, 5]
    url = peer.url({"filters": [("text", "contains", "a b"), ("lang", "in", "en,de")], "limit": 10})
    assert "text__contains=a+b" in url and "_nocount=1" in url and "_nofacet=1" in url and "_size=10" in url


def test_peer_fts(peer):
    assert peer.fts_columns == {"title", "text"}
    fts_url = peer.url({"filters": [("text", "contains", "brown"), ("title", "startswith", "riv"),
                                    ("title", "contains", "wal"), ("text", "contains", "br")], "limit": 10}, fts=True)
    assert "_search_text=brown" in fts_url and "_search_title=riv" in fts_url and "_fts_table=fts" in fts_url
    assert "_search_title=wal" not in fts_url and "title__contains=wal" in fts_url  # one _search_ per column
    assert "_search" not in peer.url({"filters": [("text", "contains", "br")], "limit": 10}, fts=True)  # < 3 chars
    for filters in ([("text", "contains", "brown")], [("text", "icontains", "BROWN")], [("text", "contains", "br")],
                    [("title", "startswith", "river")], [("title", "startswith", "river"), ("title", "contains", "r")],
                    [("text", "contains", "brown"), ("lang", "in", "en,es"), ("crawled_at", "gt", "2023")],
                    [("text", "contains", "absent")], [("label", "eq", "travel")]):
        assert search(peer, *filters, fts=True) == search(peer, *filters), filters  # FTS narrows, same answer
    assert search(peer, ("text", "contains", "brown"), limit=2, fts=True) == [1, 2]
    # FTS is really in the query: `_` is a LIKE wildcard (a legitimate difference, documented), not in MATCH
    assert search(peer, ("text", "contains", "b_own")) == [1, 2, 3, 5]
    assert search(peer, ("text", "contains", "b_own"), fts=True) == []


def test_mismatch_rule():
    assert datasette_same([3, 1], [1, 3], limit=10)  # whole answer: same set, any order
    assert not datasette_same([1, 4], [1, 3], limit=10)
    assert datasette_same([1, 2], [7, 9], limit=2)  # cut by the limit: count only
    assert not datasette_same([1], [1, 3], limit=10)


def test_peer_stops_on_exit(tmp_path):
    path = tmp_path / "empty.db"
    sqlite3.connect(path).execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, text TEXT)").connection.close()
    with DatasettePeer(path) as running:
        pid = running.proc.pid
        assert pid_alive(pid) and search(running, ("text", "contains", "x")) == []
    assert not pid_alive(pid)


def test_bench_search_datasette_needs_sqlite():
    with pytest.raises(CommandError, match="--datasette"):
        call_command("bench_search", subset_rows=2000, queries=6, datasette=True, skip_sqlite=True,
                     stdout=io.StringIO())


@pytest.mark.django_db
def test_bench_search_with_datasette(tmp_path, user):
    out = tmp_path / "bench.json"
    call_command("bench_search", subset_rows=2000, queries=6, datasette=True, datasette_fts=True, json_path=str(out),
                 stdout=io.StringIO())
    result = json.loads(out.read_text())
    for engine in ("app", "duckdb_raw", "sqlite_fts5", "datasette", "datasette_fts"):
        assert 0 < result[engine]["p50_ms"] <= result[engine]["p95_ms"] <= result[engine]["max_ms"]
    assert {"term:frequent", "term:rare", "term:absent"} <= set(result["datasette"]["by_class"])
    assert result["datasette"]["mismatches"] == 0 and result["datasette_fts"]["mismatches"] == 0
    assert result["datasette_peer"]["version"].startswith("0.65") and result["datasette_peer"]["mismatch_rule"]
