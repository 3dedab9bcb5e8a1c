import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from apps.search import word_index
from apps.search.models import SearchLog


@pytest.mark.django_db
def test_bench_search_small_run(tmp_path, user):
    subset_dir = settings.SEARCH_SUBSET_DIR
    out = tmp_path / "bench.json"
    call_command("bench_search", subset_rows=3000, queries=12, json_path=str(out), stdout=io.StringIO())
    result = json.loads(out.read_text())
    assert result["rows"] == 3000 and result["queries"] == 12
    for engine in ("app", "duckdb_raw", "sqlite_fts5"):
        assert set(result[engine]) >= {"p50_ms", "p95_ms", "max_ms", "mismatches", "by_class"}
        assert 0 < result[engine]["p50_ms"] <= result[engine]["p95_ms"] <= result[engine]["max_ms"]
        assert result[engine]["mismatches"] == 0  # same rows as the scan (FTS5: same count)
        assert {"term:frequent", "term:rare", "term:absent", "term:two_frequent", "limit:10",
                "limit:100"} <= set(result[engine]["by_class"])
        slowest = result[engine]["slowest"]
        assert len(slowest) == 5 and slowest[0]["ms"] == result[engine]["max_ms"]
        assert [s["ms"] for s in slowest] == sorted((s["ms"] for s in slowest), reverse=True)
    assert result["index_bytes"] > 0 and result["subset_bytes"] > 0 and result["sqlite_fts5_bytes"] > 0
    assert settings.SEARCH_SUBSET_DIR == subset_dir  # the benchmark's subset was only borrowed
    assert not SearchLog.objects.exists()  # and its searches do not pollute the log
    again = io.StringIO()
    call_command("bench_search", subset_rows=3000, queries=2, passes=2, json_path=str(out), stdout=again)
    assert "Reusing the benchmark subset" in again.getvalue()
    repeat, = json.loads(out.read_text())["repeat_passes"]  # the same 2 queries once more, page cache warm
    assert set(repeat) == {"app", "duckdb_raw", "sqlite_fts5"} and all(len(r["by_class"]) for r in repeat.values())
    # --reindex rebuilds only the index of that same subset file (after an index format change)
    before = json.loads(out.read_text())
    index_json = next(Path(before["subset_dir"]).glob("tables/samples/*.words")) / "samples.json"
    index_json.write_text(json.dumps({**json.loads(index_json.read_text()), "version": 0}))  # an old format
    rebuilt = io.StringIO()
    call_command("bench_search", subset_rows=3000, queries=2, reindex=True, build_only=True, skip_sqlite=True,
                 stdout=rebuilt)
    assert "Reusing the benchmark subset" in rebuilt.getvalue() and "substring index samples" in rebuilt.getvalue()
    assert json.loads(index_json.read_text())["version"] == word_index.INDEX_VERSION
    assert "index_cpu_seconds" in json.loads((Path(before["subset_dir"]) / "build.json").read_text())


@pytest.mark.django_db(transaction=True)
def test_bench_search_concurrent_clients_over_http(tmp_path, live_server, api_token, settings):
    """--clients N: N threads with a connection each replay the workload at once against the server; every
    answer is checked against the scan's rows (a wrong answer counts as a mismatch, not as a fast one)."""
    settings.RATE_LIMIT_SEARCH_PER_MINUTE = 0
    out = tmp_path / "bench.json"
    call_command("bench_search", subset_rows=3000, queries=8, skip_sqlite=True, http=live_server.url, token=api_token,
                 clients=3, json_path=str(out), stdout=io.StringIO())
    concurrent = json.loads(out.read_text())["concurrent"]
    assert concurrent["clients"] == 3 and concurrent["requests"] == 24 and concurrent["mismatches"] == 0
    assert 0 < concurrent["p50_ms"] <= concurrent["p95_ms"] <= concurrent["max_ms"]
    assert concurrent["requests_per_second"] > 0
    assert sum(c["n"] for g, c in concurrent["by_class"].items() if g.startswith("term:")) == 24


def test_two_frequent_words_are_anded_in_the_workload():
    from apps.samples.bench.workload import english_words, search_workload
    pairs = [item for item in search_workload(count=40, seed=3, words=english_words()[0])
             if item["class"] == "two_frequent"]
    assert len(pairs) == 10
    for item in pairs:
        (c1, op1, w1), (c2, op2, w2) = item["filters"][:2]
        assert c1 == c2 == "text" and op1 == op2 in ("contains", "icontains") and w1 != w2


@pytest.mark.django_db
def test_bench_search_peer_queries_limits_only_the_peers(tmp_path, user):
    out = tmp_path / "bench.json"
    call_command("bench_search", subset_rows=3000, queries=8, peer_queries=3, json_path=str(out), stdout=io.StringIO())
    result = json.loads(out.read_text())
    assert result["sqlite_fts5"]["n"] == 3 and result["app"]["n"] == result["duckdb_raw"]["n"] == 8
    assert result["sqlite_fts5"]["mismatches"] == 0
    assert {name: r["n"] for name, r in result["on_peer_queries"].items()} == {"app": 3, "duckdb_raw": 3, "sqlite_fts5": 3}


@pytest.mark.django_db(transaction=True)
def test_bench_vocabulary_small_run(tmp_path, live_server, api_token, settings):
    """bench_vocabulary end to end at a small size: the full data written once, imported with its vocabulary,
    lookups of each class through the bare lookup, the app and the API, and the scan of the full data that
    checks every proof it was given (none contradicted)."""
    settings.DATA_DIR = tmp_path
    settings.RATE_LIMIT_SEARCH_PER_MINUTE = 0
    out = tmp_path / "vocab.json"
    call_command("bench_vocabulary", rows=20_000, chunk_rows=5_000, queries=6, peer_queries=2, http=live_server.url,
                 token=api_token, json_path=str(out), stdout=io.StringIO())
    result = json.loads(out.read_text())
    assert result["full_data"]["rows"] == 20_000 and result["full_data"]["files"] == 4
    build = result["build"]
    assert build["full_rows"] == 20_000 and build["vocabulary_bytes"] > 0 and build["words"]["text"] > 1000
    assert build["value_columns"]["label"] == 8
    classes = result["by_class"]
    assert set(classes) == {"absent", "misspelt", "rare", "frequent", "label_typo"}
    for engine in ("lookup", "app", "app_http"):
        assert 0 < result["all"][engine]["p50_ms"] <= result["all"][engine]["p95_ms"]
    assert classes["absent"]["outcomes"]["proof"] > 0 and classes["frequent"]["outcomes"]["proof"] == 0
    assert classes["label_typo"]["outcomes"]["proof"] == 6 and classes["label_typo"]["outcomes"]["suggestions"] == 6
    assert result["proofs_checked_by_scan"] > 0 and result["wrong_proofs"] == 0
    again = io.StringIO()
    call_command("bench_vocabulary", rows=20_000, chunk_rows=5_000, queries=1, peer_queries=0, build_only=True,
                 stdout=again)
    assert "Reusing the full dataset" in again.getvalue() and "Reusing table 'crawl'" in again.getvalue()


def test_a_misspelling_is_never_the_word_itself():
    from apps.samples.bench.workload import misspelling

    for word in ("sports", "a", "ab", "science", "letter", "aa"):
        for kind in range(4):
            for at in range(len(word) + 1):
                for letter in range(26):
                    assert misspelling(word, kind, at, letter) != word
