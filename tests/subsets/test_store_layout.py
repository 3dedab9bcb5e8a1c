"""Issue 23: one file (and word index) per subset table, durable swaps, and builds killed with kill -9.

Each table lives in SEARCH_SUBSET_DIR/tables/<table>/ with its own CURRENT; a build of one table never reads
or writes another's files; the old layout (one file for every table, SEARCH_SUBSET_DIR/CURRENT) is served until
the next build converts it."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, worker_env
from tests.subsets.conftest import subset_count

DESCRIPTION = {"key": "id", "searchable": "*", "shown": ["id", "body"]}


def _rows(table: str, count: int, word: str, start: int = 0) -> pa.Table:
    return pa.table({"id": list(range(start, start + count)),
                     "body": [f"{word} row {i} of {table} with words to index" for i in range(start, start + count)]})


def _files_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (the lock aside) -> (inode, mtime_ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".writer.lock"}


def _search_ids(table: str, word: str) -> list[int]:
    from apps.search.query import Filter, SearchQuery
    from apps.search.selectors import subset_search
    from apps.search.tables import table_spec_get

    query = SearchQuery(table=table, filters=(Filter("body", "contains", word),), limit=10)
    outcome = subset_search(query=query, spec=table_spec_get(name=table), timeout_ms=10_000)
    return [row["id"] for row in outcome.rows_as_dicts()]


def test_a_build_of_one_table_leaves_every_other_tables_files_untouched(dataset):
    from apps.search.services import subset_reindex, subset_table_write
    from apps.search.store import subset_connection, subset_paths

    samples = dataset.subset_dir / "tables" / "samples"
    before = _files_state(samples)
    assert any(name.endswith(".duckdb") for name in before) and any(".words/" in name for name in before)

    subset_table_write(name="small", arrow=_rows("small", 500, "pebble"), description=DESCRIPTION)
    subset_table_write(name="small", arrow=_rows("small", 700, "gravel"), description=DESCRIPTION)  # a refresh
    subset_reindex(table="small")

    assert _files_state(samples) == before  # same files: same inodes, same mtimes, nothing added or removed
    assert set(subset_paths()) == {"samples", "small"} and subset_paths()["small"].parent.name == "small"
    assert _search_ids("small", "gravel")[:3] == [0, 1, 2] and _search_ids("small", "pebble") == []
    assert subset_connection().execute("SELECT count(*) FROM small").fetchone()[0] == 700
    small = _files_state(dataset.subset_dir / "tables" / "small")

    subset_reindex(table="samples")  # and the other way round

    assert _files_state(dataset.subset_dir / "tables" / "small") == small
    assert _files_state(samples) != before and subset_count() == subset_count("samples") > 0


def test_import_subset_replace_all_drops_the_other_tables(dataset, tmp_path):
    from django.core.management import call_command

    from apps.search.store import subset_paths

    pq.write_table(_rows("only", 300, "lonely"), tmp_path / "only.parquet")
    call_command("import_subset", str(tmp_path / "only.parquet"), table="only", key="id", stdout=io.StringIO())
    assert set(subset_paths()) == {"samples", "only"}
    call_command("import_subset", str(tmp_path / "only.parquet"), table="only", key="id", replace_all=True,
                 stdout=io.StringIO())
    assert set(subset_paths()) == {"only"}
    assert not (dataset.subset_dir / "tables" / "samples" / "CURRENT").exists()
    assert not list((dataset.subset_dir / "tables" / "samples").glob("*.duckdb*"))


def _legacy_subset(directory: Path) -> Path:
    """A subset in the old layout: SEARCH_SUBSET_DIR/CURRENT naming one file that holds every table."""
    from apps.search.store import SUBSET
    from apps.search.word_index import index_dir_for

    with SUBSET.build() as (path, conn):
        for table, word in (("alpha", "apple"), ("beta", "banana")):
            conn.register("incoming", _rows(table, 400, word))
            conn.execute(f"CREATE TABLE {table} AS SELECT * FROM incoming")
            conn.unregister("incoming")
            conn.execute(f"COMMENT ON TABLE {table} IS '{json.dumps(DESCRIPTION)}'")
    SUBSET.install(path=path)
    assert (directory / "CURRENT").read_text() == path.name and index_dir_for(path).is_dir()
    return path


def test_the_old_one_file_layout_is_served_until_the_next_build_converts_it(settings, tmp_path):
    from apps.search.selectors import subset_index_stale
    from apps.search.services import subset_table_write
    from apps.search.store import subset_connection, subset_paths, table_snapshot
    from apps.search.tables import table_spec_get
    from apps.search.word_index import index_dir_for

    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    legacy = _legacy_subset(settings.SEARCH_SUBSET_DIR)

    # Served as it is: each table from the one file, searched through its index, seen by name together.
    assert subset_paths() == {"alpha": legacy, "beta": legacy}
    assert table_snapshot(table="beta").path == legacy and subset_index_stale() == []
    assert _search_ids("alpha", "apple")[:2] == [0, 1] and _search_ids("beta", "apple") == []
    assert table_spec_get(name="beta").key == "id"
    assert subset_connection().execute("SELECT count(*) FROM alpha, beta WHERE alpha.id = beta.id").fetchone() == (400,)

    # The next build (of another table) gives each old table its own file, then retires the old one.
    subset_table_write(name="gamma", arrow=_rows("gamma", 50, "grape"), description=DESCRIPTION)

    paths = subset_paths()
    assert set(paths) == {"alpha", "beta", "gamma"}
    assert all(path.parent == settings.SEARCH_SUBSET_DIR / "tables" / table for table, path in paths.items())
    assert not (settings.SEARCH_SUBSET_DIR / "CURRENT").exists()
    assert not legacy.exists() and not index_dir_for(legacy).exists()
    assert _search_ids("beta", "banana")[:2] == [0, 1] and _search_ids("gamma", "grape")[:1] == [0]
    assert table_spec_get(name="alpha").key == "id"  # the self-description came along
    assert subset_index_stale() == []


def test_a_rebuild_of_an_old_layout_table_converts_the_others_first(settings, tmp_path):
    """Rebuilding `alpha` from the old file: `beta` gets its own file before, and the old file stays served for
    alpha until alpha's new file is installed (a failed build leaves it serving)."""
    from apps.search.services import subset_table_write
    from apps.search.store import subset_paths

    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    legacy = _legacy_subset(settings.SEARCH_SUBSET_DIR)
    with pytest.raises(duckdb.Error):
        subset_table_write(name="alpha", parquet=str(tmp_path / "missing.parquet"), description=DESCRIPTION)
    assert subset_paths()["alpha"] == legacy and subset_paths()["beta"].parent.name == "beta"
    assert _search_ids("alpha", "apple")[:1] == [0]

    subset_table_write(name="alpha", arrow=_rows("alpha", 10, "apricot"), description=DESCRIPTION)

    assert not legacy.exists() and subset_paths()["alpha"].parent.name == "alpha"
    assert _search_ids("alpha", "apricot")[:1] == [0] and _search_ids("alpha", "apple") == []


def test_a_pointer_moves_only_after_the_file_its_index_and_their_folder_are_on_disk(settings, tmp_path, monkeypatch):
    from apps.search import store
    from apps.search.word_index import index_dir_for

    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    files = store.table_files(table="t")
    with files.writer_lock(), files.build() as (path, conn):
        conn.execute("CREATE TABLE t AS SELECT range AS id, 'word ' || range AS body FROM range(100)")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", f"{src} -> {dst}"))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files.install(path=path)

    moved = next(i for i, (kind, what) in enumerate(events) if kind == "replace" and what.endswith("/CURRENT"))
    before = {what for kind, what in events[:moved] if kind == "fsync"}
    index = index_dir_for(path)
    wanted = {str(path), str(index), str(files.directory()), *(str(p) for p in index.iterdir())}
    assert len(wanted) > 4 and wanted <= before, wanted - before
    temp = events[moved][1].split(" -> ")[0]
    assert temp in before  # the new pointer's bytes too
    assert ("fsync", str(files.directory())) in events[moved + 1:]  # and the rename itself
    assert (files.directory() / "CURRENT").read_text() == path.name


def test_leftovers_are_removed_only_under_the_writer_lock_and_never_the_served_file(settings, tmp_path):
    from apps.search import store

    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    files = store.table_files(table="t")
    with files.writer_lock():
        with files.build() as (served, conn):
            conn.execute("CREATE TABLE t AS SELECT 1 AS id, 'x' AS body")
        files.install(path=served)
    with pytest.raises(RuntimeError, match="writer lock"):
        files.leftovers_remove()
    # What a build killed half way leaves: a marked file, its .wal and .words, a temp pointer; an orphan index.
    killed = files.directory() / "t-20000101-000000-999999-1.duckdb"
    for name in (killed.name, f"{killed.name}.wal", f"{killed.name}.building", ".CURRENT.999999.1.tmp"):
        (files.directory() / name).write_bytes(b"left")
    (files.directory() / f"{killed.name}.words").mkdir()
    (files.directory() / f"{killed.name}.vocab").mkdir()  # a killed build's vocabulary
    (files.directory() / "t-19990101-000000-999998-1.duckdb.vocab").mkdir()  # one whose file is gone
    (files.directory() / "t-19990101-000000-999998-1.duckdb.words").mkdir()
    (files.directory() / f"{served.name}.building").touch()  # killed right after its install
    with files.writer_lock():
        removed = files.leftovers_remove()
    assert sorted(p.name for p in files.directory().iterdir()) == sorted(
        [".writer.lock", "CURRENT", served.name, f"{served.name}.words"])
    assert killed.name in removed and served.exists()


def test_a_live_build_of_one_table_is_never_cleaned_by_a_build_of_another(settings, tmp_path):
    from apps.search.services import subset_table_build, subset_table_write

    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    started, release, seen = threading.Event(), threading.Event(), {}

    def slow_build():
        with subset_table_build(table="slow") as (path, conn):
            conn.execute("CREATE TABLE slow AS SELECT range AS id, 'tortoise ' || range AS body FROM range(100)")
            conn.execute(f"COMMENT ON TABLE slow IS '{json.dumps(DESCRIPTION)}'")
            seen["path"] = path
            started.set()
            release.wait(60)

    thread = threading.Thread(target=slow_build)
    thread.start()
    try:
        assert started.wait(60)
        subset_table_write(name="fast", arrow=_rows("fast", 100, "hare"), description=DESCRIPTION)
        assert seen["path"].exists() and Path(f"{seen['path']}.building").exists()
        from apps.search.store import table_files

        with pytest.raises(TimeoutError):  # a second build of the same table waits for the live one
            with table_files(table="slow").writer_lock(timeout=0.3):
                pass
    finally:
        release.set()
        thread.join(60)
    assert _search_ids("slow", "tortoise")[:1] == [0] and _search_ids("fast", "hare")[:1] == [0]


# --- kill -9 during real builds ----------------------------------------------------------------------

def _phase_reached(folder: Path, phase: str, known: set[str]) -> bool:
    names = {p.name for p in folder.iterdir()} - known
    if phase == "marked":
        return any(n.endswith(".building") for n in names)
    if phase == "writing":
        return any(n.endswith(".duckdb.wal") for n in names)
    if phase == "indexing":
        return any(n.endswith(".duckdb.words") for n in names)
    return False


def _build_command(source: Path) -> list[str]:
    return [sys.executable, "manage.py", "import_subset", str(source), "--table", "big", "--key", "id"]


def test_kill_9_at_any_point_of_a_build_keeps_the_old_rows_and_the_next_build_leaves_only_live_files(dataset,
                                                                                                     tmp_path):
    import random

    from apps.search.services import subset_table_write

    folder = dataset.subset_dir / "tables" / "big"
    subset_table_write(name="big", arrow=_rows("big", 2000, "original"), description=DESCRIPTION)
    served = (folder / "CURRENT").read_text()
    samples_before = _files_state(dataset.subset_dir / "tables" / "samples")
    source = tmp_path / "big.parquet"
    pq.write_table(_rows("big", 60_000, "replacement", start=1_000_000), source)
    env = {**worker_env("redis://127.0.0.1:1/0"), "SEARCH_SUBSET_DIR": str(dataset.subset_dir)}
    rng = random.Random(23)
    left_behind = []
    for phase in ("marked", "writing", "indexing", "random", "random", "indexing"):
        known = {p.name for p in folder.iterdir()}
        process = subprocess.Popen(_build_command(source), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            # "random": a random moment once the build has begun (its marker is there), within the first
            # 0.8 s of it, so a fast machine cannot finish the build before the kill (the 60k-row build takes
            # longer than that here); the named phases: just after their file appears.
            while not _phase_reached(folder, "marked" if phase == "random" else phase, known) \
                    and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.8) if phase == "random" else rng.uniform(0, 0.05))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        # The old rows are still served, whatever the killed build had written.
        assert (folder / "CURRENT").read_text() == served, phase
        assert subset_count("big") == 2000 and _search_ids("big", "original")[:3] == [0, 1, 2]
        left_behind += [n for n in os.listdir(folder) if n not in known]
    assert any(n.endswith(".building") for n in left_behind), left_behind  # the kills did leave files behind
    assert any(n.endswith(".words") for n in left_behind), left_behind

    finished = subprocess.run(_build_command(source), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    new = (folder / "CURRENT").read_text()
    assert new != served and subset_count("big") == 60_000
    assert _search_ids("big", "replacement")[:1] == [1_000_000] and _search_ids("big", "original") == []
    # Only live files: the served one, the previous one (kept for readers still on it), their indexes.
    assert sorted(os.listdir(folder)) == sorted([".writer.lock", "CURRENT", new, f"{new}.words", served,
                                                 f"{served}.words"])
    assert _files_state(dataset.subset_dir / "tables" / "samples") == samples_before


@pytest.mark.django_db(transaction=True)
def test_kill_9_during_a_refresh_keeps_the_old_sample_and_the_next_refresh_cleans_up(dataset, tmp_path):
    import sqlite3

    from django.db import connection

    from apps.subsets.services import subset_refresh

    folder = dataset.subset_dir / "tables" / "samples"
    served = (folder / "CURRENT").read_text()
    rows = subset_count()
    database = tmp_path / "refresh.sqlite3"  # the killed command's own database: its run stays "running" there
    with sqlite3.connect(connection.settings_dict["NAME"]) as db:
        db.execute("VACUUM INTO ?", (str(database),))
    env = {**worker_env("redis://127.0.0.1:1/0"), "DATABASE_URL": f"sqlite:///{database}",
           "SEARCH_SUBSET_DIR": str(dataset.subset_dir), "SEARCH_FULL_DATA_DIR": str(dataset.full_dir),
           "SUBSET_LEARNED_DIR": str(dataset.learned_dir)}
    known = {p.name for p in folder.iterdir()}
    process = subprocess.Popen([sys.executable, "manage.py", "refresh_subset", "--fraction", "1", "--method", "hash"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _phase_reached(folder, "indexing", known) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    assert any(n.endswith(".building") for n in set(os.listdir(folder)) - known), os.listdir(folder)
    assert (folder / "CURRENT").read_text() == served and subset_count() == rows

    run = subset_refresh(fraction=1.0, method="hash", trigger="test")

    assert run.state == "succeeded", run.error
    assert sorted(os.listdir(folder)) == sorted([".writer.lock", "CURRENT", run.file_name, f"{run.file_name}.words",
                                                 f"{run.file_name}.vocab", served, f"{served}.words",
                                                 f"{served}.vocab"])
    assert subset_count() == 20_000
