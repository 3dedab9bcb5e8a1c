"""The learned store as append-only segments: exact answers over subset rows plus many segments (some merged,
some with dropped answers), whole-answer eviction, merges that keep what was added meanwhile, concurrent
writers, and the single-file layout of before."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace

import duckdb
import pytest

from .learned_race import note, notes_spec, query

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def learned_store(settings, tmp_path):
    settings.SUBSET_LEARNING_ENABLED = True
    settings.SUBSET_LEARNED_DIR = tmp_path / "learned"
    settings.SUBSET_LEARNED_MAX_ROWS = 1_000_000
    settings.SUBSET_LEARNED_MAX_ANSWERS = 10_000
    settings.SUBSET_LEARNED_COMPLETE_MAX_AGE_SECONDS = 0
    return tmp_path / "learned"


def _ids_query(ids, limit=None):
    return query(("id", "in", ",".join(map(str, ids))), limit=limit or len(ids) + 1)


def _add(ids, *, limit=None, q=None):
    from apps.warehouse.learned import learned_answer_add

    return learned_answer_add(spec=notes_spec(), query=q or _ids_query(ids, limit), rows=[note(i) for i in ids])


def _found(q, local=()):
    from apps.warehouse.learned import learned_rows_for_search

    return learned_rows_for_search(query=q, spec=notes_spec(), local_rows=[note(i) for i in local])


def _ids(q, local=()):
    return [r["id"] for r in _found(q, local).rows]


def _manifest():
    from apps.warehouse.segments import manifest_read

    return manifest_read()


class _Reference:
    """A DuckDB scan over the union of the live answers' rows: every matching row in the query's order (ORDER BY
    key without a sort), less the keys already seen, the first limit - |seen|."""

    def __init__(self, rows: dict[int, dict]):
        import pyarrow as pa

        self.conn = duckdb.connect()
        self.conn.register("incoming", pa.Table.from_pylist(list(rows.values()), schema=pa.schema(
            [("id", pa.int64()), ("text", pa.string()), ("lang", pa.string()), ("n", pa.int32())])))
        self.conn.execute("CREATE TABLE notes AS SELECT * FROM incoming")

    def rows(self, q, seen: set) -> list[dict]:
        from apps.search.query import where_compile
        from apps.search.tables import quote_identifier

        where = where_compile(query=q, spec=notes_spec())
        order = "id"
        if q.order is not None:
            order = f"{quote_identifier(q.order.column)} {'DESC' if q.order.desc else 'ASC'} NULLS LAST, id"
        cursor = self.conn.execute(f"SELECT id, text, lang, n FROM notes WHERE {where.sql} ORDER BY {order}",
                                   where.params)
        names = [d[0] for d in cursor.description]
        matching = [dict(zip(names, r)) for r in cursor.fetchall()]
        return [r for r in matching if r["id"] not in seen][: q.limit - len(seen)]


def test_subset_plus_many_segments_returns_exactly_the_scan_of_their_union(settings):
    """Randomized: answers learned one by one, some merged, some evicted (inside merged segments too), some
    replaced; every search returns exactly the first rows a scan of the live answers' rows returns."""
    from apps.warehouse.learned import learned_segments_merge

    rng = random.Random(23)
    rows_of: dict[int, list[int]] = {}  # answer id -> its row ids
    pool = list(range(0, 1500))

    def learn_some(count):
        for _ in range(count):
            ids = rng.sample(pool, rng.randint(1, 60))
            stats = _add(ids)
            rows_of[stats["answer_id"]] = ids

    learn_some(25)
    assert learned_segments_merge(max_segments=3)["merges"] >= 1
    learn_some(15)
    settings.SUBSET_LEARNED_MAX_ROWS = 700  # evicts the least recently used: the oldest, inside merged segments
    learn_some(5)
    settings.SUBSET_LEARNED_MAX_ROWS = 1_000_000
    # The same filters again: the newer answer replaces the older one.
    again = next(iter(rows_of))
    manifest = _manifest()
    live_ids = {a["id"] for a in manifest["answers"]}
    if again in live_ids:
        replacement = rng.sample(pool, 10)
        old = next(a for a in manifest["answers"] if a["id"] == again)
        from apps.search.query import SearchQuery
        stats = _add(replacement, q=SearchQuery.from_dict({"table": "notes", "filters": old["filters"], "limit": 200}))
        rows_of[stats["answer_id"]] = replacement

    manifest = _manifest()
    live = {a["id"]: a for a in manifest["answers"]}
    hidden_somewhere = [s for s in manifest["segments"] if set(s["built_answers"]) - set(live)]
    merged = [s for s in manifest["segments"] if len(s["built_answers"]) > 1]
    assert merged and hidden_somewhere, "the test must cover merged segments holding dropped answers"
    assert len(live) < len(rows_of), "and evicted answers"
    union = {i: note(i) for answer_id in live for i in rows_of[answer_id]}
    learned_ids = set(union)
    reference = _Reference(union)

    words = ["amber", "basalt", "cobalt", "dune", "fjord", "quartz", "tundra", "am", "r", "sier"]
    for trial in range(120):
        filters = [("text", rng.choice(["contains", "icontains", "startswith"]), rng.choice(words))]
        if rng.random() < 0.3:
            filters.append(("lang", "eq", rng.choice(["en", "de", "fr"])))
        if rng.random() < 0.15:
            filters = [("n", "gt", str(rng.randint(0, 40)))]
        order = rng.choice([None, None, ("n", False), ("n", True), ("text", False)])
        q = query(*filters, limit=rng.randint(1, 80), order=order)
        # "Subset" rows: some learned keys and some not, fewer than the limit.
        if trial % 2:
            local = rng.sample(sorted(learned_ids), rng.randint(0, min(q.limit - 1, 30))) + \
                rng.sample(range(5000, 6000), rng.randint(0, 3))
        else:  # the subset returned the first matching rows: every segment's first rows are seen ones
            local = [r["id"] for r in reference.rows(replace(q, limit=10**6), set())][: rng.randint(0, q.limit - 1)]
        local = local[: q.limit - 1]
        got = _found(q, local).rows
        assert got == reference.rows(q, set(local)), (trial, q, sorted(local))
        assert len({r["id"] for r in got}) == len(got)


def test_learning_writes_one_segment_and_leaves_the_others_untouched():
    from apps.warehouse.segments import segment_path

    _add([1, 2, 3])
    first = _manifest()["segments"][0]
    before = segment_path(first).stat()
    _add([4, 5])
    manifest = _manifest()
    assert [s["id"] for s in manifest["segments"]][:1] == [first["id"]] and len(manifest["segments"]) == 2
    after = segment_path(first).stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert manifest["segments"][1]["tables"]["notes"]["rows"] == 2
    assert _ids(_ids_query([1, 2, 3, 4, 5], limit=10)) == [1, 2, 3, 4, 5]
    # An empty answer needs no segment, yet makes the search complete.
    stats = _add([], q=query(("text", "contains", "xqzv"), limit=5))
    assert stats["complete"] and len(_manifest()["segments"]) == 2
    assert _found(query(("text", "contains", "xqzv"), ("lang", "eq", "en"), limit=3)).complete
    assert not _found(query(("text", "contains", "xqz"), limit=3)).complete  # a broader query is not


def test_eviction_drops_whole_answers_even_inside_a_merged_segment(settings):
    from apps.search.models import SearchLog
    from apps.warehouse.learned import learned_segments_merge
    from apps.warehouse.segments import segment_path

    a, b, c = [10, 11, 12, 13, 14, 15], [15, 16, 17], [20, 21, 22, 23]  # a and b share row 15
    b_id = _add(b)["answer_id"]
    _add(a)  # learned after b: without the search log, b would be the least recently used
    assert learned_segments_merge(max_segments=1)["merges"] == 1
    merged = _manifest()["segments"]
    assert len(merged) == 1 and len(merged[0]["built_answers"]) == 2
    # Someone runs b's search again: a is now the least recently used.
    SearchLog.objects.create(table="notes", query=_ids_query(b).to_dict(), fingerprint=_ids_query(b).fingerprint(),
                             limit=5)
    settings.SUBSET_LEARNED_MAX_ROWS = 8
    stats = _add(c)
    assert stats["evicted_answers"] == 1 and stats["answers"] == 2
    assert _ids(_ids_query(a)) == [15], "a's rows are hidden at once, but 15 is b's too"
    assert _ids(_ids_query(b)) == b and _ids(_ids_query(c)) == c
    assert _ids(query(("n", "gte", "0"), limit=50)) == [i for i in b + c if note(i)["n"] is not None]
    # The segment keeps a's rows on disk until it is merged again: then they are gone from it.
    path = segment_path(_manifest()["segments"][0])
    with duckdb.connect(str(path), read_only=True, config={"threads": 1}) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 8
    report = learned_segments_merge(max_segments=10)  # few segments, but that one is mostly dropped rows
    assert report["merges"] == 1
    assert not path.exists()
    rewritten = next(s for s in _manifest()["segments"] if b_id in s["built_answers"])
    assert rewritten["built_answers"] == [b_id] and rewritten["tables"]["notes"]["rows"] == 3
    assert _ids(_ids_query(a)) == [15] and _ids(_ids_query(b)) == b
    # An answer whose segment holds nothing else goes with its files.
    settings.SUBSET_LEARNED_MAX_ROWS = 4
    only_c = next(s for s in _manifest()["segments"] if s is not rewritten)
    _add([30, 31, 32, 33])
    assert not segment_path(only_c).exists() and not segment_path(rewritten).exists()
    assert _ids(_ids_query(c)) == [] and _ids(_ids_query(b)) == [] and len(_manifest()["segments"]) == 1


def test_a_key_learned_twice_is_served_from_the_newer_answer_before_and_after_a_merge():
    from apps.warehouse.learned import learned_answer_add, learned_segments_merge

    def learn(ids, text):
        rows = [{**note(i), "text": text} for i in ids]
        learned_answer_add(spec=notes_spec(), query=_ids_query(ids, limit=len(ids) + 1 + len(text)), rows=rows)

    learn([1, 2, 3], "old words")
    learn([2, 3, 4], "new words")
    learn([5], "other words")
    expected = {1: "old words", 2: "new words", 3: "new words", 4: "new words", 5: "other words"}
    assert {r["id"]: r["text"] for r in _found(query(("text", "contains", "words"), limit=10)).rows} == expected
    assert learned_segments_merge(max_segments=1)["merges"] >= 1 and len(_manifest()["segments"]) == 1
    assert {r["id"]: r["text"] for r in _found(query(("text", "contains", "words"), limit=10)).rows} == expected
    assert _ids(query(("text", "contains", "old"), limit=10)) == [1]


def test_a_merge_keeps_segments_added_while_it_ran_and_gives_way_to_an_earlier_merge():
    from apps.warehouse.learned import _merge_build, _merge_install
    from apps.warehouse.segments import segment_path

    for start in (0, 10, 20, 30):
        _add(list(range(start, start + 5)))
    snapshot = _manifest()
    inputs = [s["id"] for s in snapshot["segments"]]
    built = _merge_build(manifest=snapshot, segment_ids=inputs)
    _add([100, 101])  # learned while the merge was building
    assert _merge_install(built)
    manifest = _manifest()
    assert len(manifest["segments"]) == 2 and {s["tables"]["notes"]["rows"] for s in manifest["segments"]} == {20, 2}
    assert not any(segment_path(s).exists() for s in snapshot["segments"]), "merged segments' files go"
    every = [*range(0, 5), *range(10, 15), *range(20, 25), *range(30, 35), 100, 101]
    assert _ids(_ids_query(every, limit=50)) == every

    # Two merges of the same segments: the second finds them gone and gives way (its files go).
    snapshot = _manifest()
    first = _merge_build(manifest=snapshot, segment_ids=[s["id"] for s in snapshot["segments"]])
    second = _merge_build(manifest=snapshot, segment_ids=[s["id"] for s in snapshot["segments"]])
    assert _merge_install(first)
    assert not _merge_install(second)
    assert not second["path"].exists() and first["path"].exists()
    assert len(_manifest()["segments"]) == 1 and _ids(_ids_query(every, limit=50)) == every


def test_two_writer_processes_and_a_merge_at_once_lose_nothing(settings, learned_store):
    from tests.conftest import ROOT, worker_env

    env = {**worker_env("redis://127.0.0.1:1/0"), "SUBSET_LEARNED_DIR": str(learned_store),
           "SUBSET_LEARNING_ENABLED": "1", "SUBSET_LEARNED_MAX_ROWS": "1000000", "SUBSET_LEARNED_MAX_ANSWERS": "10000"}
    module = [sys.executable, "-m", "tests.warehouse.learned_race"]
    procs = [subprocess.Popen([*module, "--first-id", str(first), "--answers", "12"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for first in (0, 100_000)]
    procs.append(subprocess.Popen([*module, "--merge", "40"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(json.loads(next(l for l in out.splitlines() if l.startswith("LEARNED_RACE ")).split(" ", 1)[1]))
    learned = outputs[0]["answers"] + outputs[1]["answers"]
    manifest = _manifest()
    assert sorted(a["id"] for a in manifest["answers"]) == sorted(learned) and len(set(learned)) == 24
    every = [i for first in (0, 100_000) for i in range(first, first + 12 * 20)]
    assert _ids(query(("n", "gte", "0"), limit=1000)) == [i for i in every if note(i)["n"] is not None]
    assert _ids(_ids_query(every[:200], limit=500)) == every[:200]
    listed = {os.path.dirname(s["file"]).split("/")[-1] for s in manifest["segments"]}
    assert {p.name for p in (learned_store / "segments").iterdir()} == listed, "no segment left unlisted"


def test_a_reader_keeps_its_snapshot_until_the_manifest_changes():
    from apps.warehouse.learned import learned_snapshot

    _add([1, 2])
    first = learned_snapshot()
    assert learned_snapshot() is first
    _add([3])
    second = learned_snapshot()
    assert second is not first and len(second.segments) == 2
    assert second.segments[0].conn is first.segments[0].conn, "an unchanged segment keeps its connection"
    # The snapshot a request resolved serves the rows of its manifest, even after newer ones.
    _add([4])
    assert _ids(_ids_query([1, 2, 3, 4])) == [1, 2, 3, 4]
    from apps.warehouse.learned import learned_rows_for_search
    assert [r["id"] for r in learned_rows_for_search(query=_ids_query([1, 2, 3, 4]), spec=notes_spec(), local_rows=[],
                                                     snapshot=second).rows] == [1, 2, 3]


def _legacy_store(folder, answers):
    """The single-file layout of before segments: CURRENT -> learned-*.duckdb with _answers and _answer_keys,
    rows in the order they were learned (not key order)."""
    from apps.search.store import SwappedFiles

    legacy = SwappedFiles(dir_setting="SUBSET_LEARNED_DIR", prefix="learned")
    with legacy.build(threads=1) as (path, conn):
        conn.execute("CREATE TABLE _answers (id BIGINT, table_name VARCHAR, key_column VARCHAR, fingerprint VARCHAR, "
                     "filters VARCHAR, filters_key VARCHAR, limit_rows INTEGER, row_count INTEGER, complete BOOLEAN, "
                     "fallback_id BIGINT, learned_at TIMESTAMP, last_used_at TIMESTAMP)")
        conn.execute("CREATE TABLE _answer_keys (answer_id BIGINT, table_name VARCHAR, key VARCHAR)")
        conn.execute("CREATE TABLE notes (id BIGINT, text VARCHAR, lang VARCHAR, n INTEGER)")
        from apps.warehouse.learned import _filters_key_text
        for answer_id, (q, ids) in enumerate(answers, 1):
            conn.execute("INSERT INTO _answers VALUES (?, 'notes', 'id', ?, ?, ?, ?, ?, ?, NULL, now(), now())",
                         [answer_id, q.fingerprint(), json.dumps(q.to_dict()["filters"]), _filters_key_text(q.filters),
                          q.limit, len(ids), len(ids) < q.limit])
            for i in ids:
                row = note(i)
                if not conn.execute("SELECT count(*) FROM notes WHERE id = ?", [i]).fetchone()[0]:
                    conn.execute("INSERT INTO notes VALUES (?, ?, ?, ?)", [i, row["text"], row["lang"], row["n"]])
                conn.execute("INSERT INTO _answer_keys VALUES (?, 'notes', ?)", [answer_id, str(i)])
    legacy.install(path=path)
    return path


def test_the_single_file_layout_is_read_then_converted_once(learned_store):
    from apps.warehouse.learned import learned_segments_merge

    absent = query(("text", "contains", "xqzv"), limit=5)
    old = _legacy_store(learned_store, [(_ids_query([9, 3, 7]), [9, 3, 7]), (_ids_query([5, 1]), [5, 1]),
                                        (absent, [])])
    assert _ids(_ids_query([9, 3, 7, 5, 1])) == [1, 3, 5, 7, 9], "read as it is, in key order"
    assert _ids(query(("n", "gte", "0"), limit=2)) == [i for i in [1, 3, 5, 7, 9] if note(i)["n"] is not None][:2]
    assert _found(absent).complete

    learned_segments_merge()  # the beat's merge converts it
    manifest = _manifest()
    assert not old.exists() and not (learned_store / "CURRENT").exists()
    assert len(manifest["answers"]) == 3 and len(manifest["segments"]) == 1 and manifest["segments"][0]["sorted"]
    _add([2, 4])
    assert _ids(_ids_query([9, 3, 7, 5, 1, 2, 4], limit=20)) == [1, 2, 3, 4, 5, 7, 9]
    assert _found(absent).complete


def test_a_killed_writers_leftover_folder_goes_with_the_next_merge(learned_store):
    from apps.warehouse.learned import learned_segments_merge

    _add([1])
    orphan = learned_store / "segments" / "seg-99-1"
    orphan.mkdir()
    (orphan / "segment-x.duckdb").write_bytes(b"half")
    recent = learned_store / "segments" / "merge-1-1"  # a merge in progress elsewhere: recent, kept
    recent.mkdir()
    os.utime(orphan, (0, 0))
    assert learned_segments_merge()["orphans_removed"] == 1
    assert not orphan.exists() and recent.exists() and _ids(_ids_query([1])) == [1]


def test_clear_forgets_everything(learned_store):
    from apps.warehouse.learned import learned_clear

    _add([1, 2])
    learned_clear()
    assert _manifest()["segments"] == [] and _ids(_ids_query([1, 2])) == []
    assert list((learned_store / "segments").iterdir()) == []


def test_the_beat_runs_the_merge(settings):
    from apps.warehouse.tasks import learned_segments_merge_task

    entry = settings.CELERY_BEAT_SCHEDULE["warehouse-merge-learned"]
    assert entry["task"] == learned_segments_merge_task.name
    settings.SUBSET_LEARNED_MAX_SEGMENTS = 2
    for start in (0, 10, 20):
        _add([start, start + 1])
    assert learned_segments_merge_task()["merges"] == 1 and len(_manifest()["segments"]) == 1
    settings.SUBSET_LEARNED_MAX_SEGMENTS = 3
    _add([40])
    _add([50])
    assert learned_segments_merge_task()["merges"] == 0 and len(_manifest()["segments"]) == 3  # within the bound


def test_a_burst_of_fallbacks_is_merged_by_the_worker_past_twice_the_bound(settings, monkeypatch, django_user_model):
    from apps.warehouse import learned
    from apps.warehouse.models import Fallback

    monkeypatch.setattr(learned, "table_spec_get", lambda name: notes_spec())
    settings.SUBSET_LEARNED_MAX_SEGMENTS = 2
    user = django_user_model.objects.create(username="worker-burst")
    reports = []
    for start in range(0, 50, 10):
        q = _ids_query([start, start + 1])
        fallback = Fallback.objects.create(user=user, table="notes", query=q.to_dict(), fingerprint=q.fingerprint(),
                                           limit=q.limit, backend="local", state=Fallback.State.SUCCEEDED,
                                           rows=[note(start), note(start + 1)], row_count=2)
        reports.append(learned.learned_from_fallback(fallback_id=fallback.pk))
    assert ["merge" in r for r in reports] == [False, False, False, False, True]  # 5 segments > 2 × 2
    assert reports[-1]["merge"]["merges"] == 1 and len(_manifest()["segments"]) == 1
    assert _ids(_ids_query([0, 1, 40, 41])) == [0, 1, 40, 41]
