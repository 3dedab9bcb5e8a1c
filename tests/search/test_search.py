"""The engine: tables, subset store, demo data, import and the query time limit, on real DuckDB files."""
from __future__ import annotations

import io

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from apps.search.demo_data import demo_table, demo_vocabulary
from apps.search.query import CompiledQuery
from apps.search.selectors import subset_query_run
from apps.search.services import subset_table_write
from apps.search.store import subset_connection, subset_paths, table_current_path
from apps.search.tables import TableNotFound, table_spec_get, table_spec_list


def test_demo_table_shape_and_vocabulary():
    table = demo_table(rows=3000, seed=5, start_id=100)
    assert table.column_names == ["id", "url", "domain", "title", "text", "label", "lang", "crawled_at", "length"]
    ids = table.column("id").to_pylist()
    assert ids[0] == 100 and len(set(ids)) == 3000
    assert demo_table(rows=3000, seed=5, start_id=100).column("text").to_pylist() == table.column("text").to_pylist()
    assert len(set(table.column("label").to_pylist())) == 10
    conn = duckdb.connect()
    conn.register("t", table)
    vocab = demo_vocabulary()
    count = lambda term: conn.execute("SELECT count(*) FROM t WHERE contains(text, ?)", [term]).fetchone()[0]
    assert count(vocab["frequent"][0]) > 2000  # "the"
    assert all(count(term) == 0 for term in vocab["absent"][:20])
    rare_counts = [count(term) for term in vocab["rare"][:40]]
    assert max(rare_counts) <= 10
    assert conn.execute("SELECT min(length), max(length) FROM t").fetchone()[0] > 20
    assert conn.execute("SELECT count(*) FROM t WHERE length = length(text)").fetchone()[0] == 3000


def test_table_spec_from_subset_schema(demo_subset):
    spec = table_spec_get()
    assert spec.name == "samples" and spec.key == "id"
    assert spec.columns["text"] == "VARCHAR" and spec.columns["crawled_at"].startswith("TIMESTAMP")
    assert spec.searchable["length"] == ("eq", "gt", "gte", "lt", "lte")
    assert "contains" in spec.searchable["text"] and "gt" not in spec.searchable["text"]
    assert spec.selected[0] == "id" and spec.facets == ("label", "lang", "domain")
    assert spec.label_column == "label" and spec.text_column == "text"
    assert spec.full_data_glob.endswith("samples/*.parquet") and spec.athena_table == "samples"
    assert "samples" in [s.name for s in table_spec_list()]
    with pytest.raises(TableNotFound):
        table_spec_get(name="nope")


def test_timeout_interrupts_a_slow_query(demo_subset):
    outcome = subset_query_run(compiled=CompiledQuery("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3", []),
                               timeout_ms=150)
    assert outcome.timed_out and outcome.rows == [] and 100 < outcome.elapsed_ms < 3000
    # the thread's connection is still usable afterwards
    assert subset_connection().execute("SELECT 42").fetchone() == (42,)


def test_import_subset_errors(demo_subset, tmp_path):
    pq.write_table(pa.table({"k": [1, 1, 2], "v": ["a", "b", "c"]}), tmp_path / "dupes.parquet")
    with pytest.raises(CommandError, match="unique"):
        call_command("import_subset", str(tmp_path / "dupes.parquet"), table="dupes", key="k", stdout=io.StringIO())
    with pytest.raises(CommandError, match="not a column"):
        call_command("import_subset", str(tmp_path / "dupes.parquet"), table="dupes", key="nope", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No Parquet file"):
        call_command("import_subset", str(tmp_path / "missing-*.parquet"), table="x", key="k", stdout=io.StringIO())
    with pytest.raises(CommandError, match="letters"):
        call_command("import_subset", str(tmp_path / "dupes.parquet"), table="bad name;", key="k", stdout=io.StringIO())
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_subset", str(tmp_path / "junk.parquet"), table="junk", key="k", stdout=io.StringIO())


def test_subset_swap_is_atomic_for_readers(demo_subset):
    reader = subset_connection()
    old_paths = subset_paths()
    count = reader.execute("SELECT count(*) FROM samples").fetchone()[0]
    subset_table_write(name="swaptest", arrow=pa.table({"id": [1, 2, 3]}), description={"key": "id"})
    # the old handle still answers from the old files; a fresh call sees both tables, samples' file unchanged
    assert reader.execute("SELECT count(*) FROM samples").fetchone()[0] == count
    fresh = subset_connection()
    assert subset_paths() == {**old_paths, "swaptest": table_current_path(table="swaptest")} and fresh is not reader
    assert fresh.execute("SELECT count(*) FROM samples").fetchone()[0] == count
    assert fresh.execute("SELECT count(*) FROM swaptest").fetchone()[0] == 3


def test_build_demo_data_step_skips_when_present(demo_subset):
    from apps.search.demo import build_demo_data

    out = io.StringIO()
    build_demo_data(stdout=out)
    assert "exists" in out.getvalue()


def test_import_subset_sample_fraction(demo_subset, tmp_path):
    pq.write_table(pa.table({"k": list(range(2000)), "v": [f"v{i}" for i in range(2000)]}), tmp_path / "s.parquet")
    call_command("import_subset", str(tmp_path / "s.parquet"), table="sampled", key="k", sample_fraction=0.25,
                 stdout=io.StringIO())
    assert 300 < demo_subset.count(table="sampled") < 700


def test_import_subset_with_full_data_builds_its_vocabulary(demo_subset, tmp_path):
    """A table imported with --full-data-glob gets the vocabulary of that full data with its file: a word only
    the full data has is known (an estimate, no proof), a word nowhere in it is proven absent; without
    --full-data-glob, no vocabulary."""
    from apps.search.query import Filter, SearchQuery
    from apps.search.vocabulary import table_vocabulary, vocabulary_answer

    words = [f"note {'harbour' if i == 1999 else 'plain'} {i}" for i in range(2000)]
    pq.write_table(pa.table({"k": list(range(2000)), "t": words}), tmp_path / "full.parquet")
    pq.write_table(pa.table({"k": list(range(100)), "t": words[:100]}), tmp_path / "part.parquet")
    call_command("import_subset", str(tmp_path / "part.parquet"), table="notes", key="k",
                 full_data_glob=str(tmp_path / "full.parquet"), stdout=io.StringIO())
    vocabulary = table_vocabulary(table="notes")
    assert vocabulary is not None and vocabulary.rows == 2000
    spec = table_spec_get(name="notes")

    def said(needle):
        return vocabulary_answer(query=SearchQuery("notes", (Filter("t", "contains", needle),), 10), spec=spec,
                                 vocabulary=vocabulary)

    assert not said("harbour").proof and said("harbour").upper_bound == 1  # in the full data only
    assert said("harbor").proof and said("harbor").suggestions[0].suggestion == "harbour"
    call_command("import_subset", str(tmp_path / "part.parquet"), table="bare", key="k", stdout=io.StringIO())
    assert table_vocabulary(table="bare") is None


def test_table_spec_falls_back_to_the_full_parquet_schema(demo_subset, settings, tmp_path):
    settings.SEARCH_SUBSET_DIR = tmp_path / "no-subset"
    spec = table_spec_get(name="samples")
    assert list(spec.columns)[:3] == ["id", "url", "domain"] and spec.columns["length"] == "INTEGER"
    assert "contains" in spec.searchable["text"]


def test_two_subset_writers_at_once_lose_nothing(demo_subset):
    """Three writers of three tables build at the same moment (two imports, a refresh during an import): each
    table has files of its own, so every one of them is served afterwards (writers of one table take turns:
    test_two_writers_of_one_table_take_turns)."""
    import threading

    barrier = threading.Barrier(3)
    errors = []

    def write(name):
        try:
            barrier.wait(10)
            subset_table_write(name=name, arrow=pa.table({"id": list(range(20_000)), "v": [name] * 20_000}),
                               description={"key": "id"})
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(name,)) for name in ("writer_a", "writer_b", "writer_c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    tables = {row[0] for row in subset_connection().execute("SHOW TABLES").fetchall()}
    assert {"samples", "writer_a", "writer_b", "writer_c"} <= tables
    current = table_current_path(table="samples")
    assert current is not None and current.exists()  # CURRENT never names a deleted file


def test_two_writer_processes_at_once_lose_nothing(demo_subset, tmp_path, settings):
    """The same with two real processes (two `import_subset` commands started together): the writer lock
    is an flock on a file, so it holds between processes, not just threads."""
    import subprocess
    import sys

    from tests.conftest import ROOT, worker_env

    commands = []
    for name in ("proc_a", "proc_b"):
        source = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"id": list(range(30_000)), "v": [f"{name} value {i}" for i in range(30_000)]}), source)
        commands.append([sys.executable, "manage.py", "import_subset", str(source), "--table", name, "--key", "id"])
    env = {**worker_env("redis://127.0.0.1:1/0"), "SEARCH_SUBSET_DIR": str(settings.SEARCH_SUBSET_DIR)}
    running = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for command in commands]
    outputs = [process.communicate(timeout=240) for process in running]
    assert [process.returncode for process in running] == [0, 0], outputs
    tables = {row[0] for row in subset_connection().execute("SHOW TABLES").fetchall()}
    assert {"samples", "proc_a", "proc_b"} <= tables
    assert subset_connection().execute("SELECT count(*) FROM proc_a").fetchone()[0] == 30_000


def test_two_writers_of_one_table_take_turns(demo_subset, monkeypatch):
    """Each table has its own files, so writers of different tables never meet; two writers of ONE table do: a
    reindex copies the table's current file, and an import installing new rows meanwhile would be lost when the
    reindex installs its copy. The table's writer lock (subset_table_build) makes the import wait its turn."""
    import threading
    import time

    from apps.search import services

    started = time.perf_counter()
    subset_table_write(name="turns", arrow=pa.table({"id": [1, 2, 3]}), description={"key": "id"})
    one_write = time.perf_counter() - started
    copied, release, errors = threading.Event(), threading.Event(), []
    table_copy = services.table_copy

    def copy_then_wait(**kwargs):
        table_copy(**kwargs)
        copied.set()
        release.wait(60)  # the reindex holds the copy of the 3 rows until the import had its chance

    monkeypatch.setattr(services, "table_copy", copy_then_wait)

    def run(work):
        try:
            work()
        except Exception as exc:  # reported below
            errors.append(exc)

    reindex = threading.Thread(target=run, args=(lambda: services.subset_reindex(table="turns"),))
    reindex.start()
    assert copied.wait(60)
    new_rows = pa.table({"id": [1, 2, 3, 4, 5]})
    imports = threading.Thread(target=run, args=(lambda: subset_table_write(name="turns", arrow=new_rows,
                                                                            description={"key": "id"}),))
    imports.start()
    imports.join(max(2.0, 5 * one_write))  # time enough to install, were it not waiting for the lock
    release.set()
    reindex.join(60)
    imports.join(60)
    assert errors == [] and not reindex.is_alive() and not imports.is_alive()
    assert subset_connection().execute("SELECT count(*) FROM turns").fetchone()[0] == 5, "the import was lost"


def test_setup_demo_rebuilds_an_index_of_an_older_format(demo_subset):
    """`make run` on a checkout whose demo subset was indexed by an older version heals it (else searches scan)."""
    from apps.search import word_index
    from apps.search.demo import build_demo_data
    from apps.search.selectors import subset_index_stale

    current = table_current_path(table="samples")
    meta = word_index.index_dir_for(current) / "samples.json"
    meta.write_text(meta.read_text().replace(f'"version": {word_index.INDEX_VERSION}', '"version": 1'))
    assert subset_index_stale() == ["samples"]
    out = io.StringIO()
    build_demo_data(stdout=out)
    assert "rebuilding the substring index of samples" in out.getvalue()
    assert subset_index_stale() == [] and table_current_path(table="samples") != current


def test_demo_text_is_english_words_not_pseudo_words():
    """Issue 25: the demo text read as word salad (a tenth of its words were syllable pseudo-words such as
    "vodreki"); its shared words and rare tail now come from wordfreq's English list, by real frequency."""
    import wordfreq

    table = demo_table(rows=500, seed=5)
    tokens = [w.strip(".").lower() for text in table.column("text").to_pylist() for w in text.split()]
    english = sum(wordfreq.zipf_frequency(w, "en") > 0 for w in tokens)
    assert english / len(tokens) >= 0.97, english / len(tokens)
    assert demo_vocabulary()["frequent"][:3] == ["the", "and", "for"]  # the most frequent English words first
