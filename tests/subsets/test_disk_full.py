"""Issue 13: a disk that fills up while a subset is being built. The real `refresh_subset` command runs in a
process of its own whose files may not grow past a limit (RLIMIT_FSIZE, SIGXFSZ ignored: a write past it fails
with EFBIG, as one fails with ENOSPC on a full disk), so writing the new DuckDB file fails part way."""
from __future__ import annotations

import re
import resource
import signal
import sqlite3
import subprocess
import sys

import pytest
from django.db import connection

from tests.conftest import ROOT, worker_env
from tests.subsets.conftest import subset_count

# The served subset (5% of 20,000 rows) is ~0.8 MB; the new one (all 20,000 rows) needs over 3 MB, and its
# first write (DuckDB's log of the CREATE TABLE) already goes past 2 MB. The command's SQLite copy stays far below.
FILE_SIZE_LIMIT = 2 * 1024 * 1024


def _limit_file_size():  # preexec_fn: runs in the child, before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def _refresh_command(*, env, limited: bool) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "refresh_subset", "--fraction", "1", "--method", "hash"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
        preexec_fn=_limit_file_size if limited else None,
    )


def _search_ids(limit: int = 5) -> list[int]:
    from apps.search.query import Filter, SearchQuery
    from apps.search.selectors import subset_search
    from apps.search.tables import table_spec_get

    query = SearchQuery(table="samples", filters=(Filter("text", "contains", "the"),), limit=limit)
    outcome = subset_search(query=query, spec=table_spec_get(name="samples"), timeout_ms=5000)
    return [row["id"] for row in outcome.rows_as_dicts()]


def _runs(database) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT state, error FROM subsets_subsetrefresh ORDER BY id").fetchall()


@pytest.mark.django_db(transaction=True)
def test_a_disk_full_during_a_build_keeps_the_old_subset_serving_and_leaves_nothing_behind(dataset, tmp_path):
    from apps.search.store import table_files

    subset_dir = dataset.subset_dir / "tables" / "samples"  # the refreshed table's folder
    old_file = (subset_dir / "CURRENT").read_text().strip()
    old_rows, old_ids = subset_count(), _search_ids()
    assert len(old_ids) == 5
    before = sorted(p.name for p in subset_dir.iterdir())
    assert before == sorted([".writer.lock", "CURRENT", old_file, f"{old_file}.vocab", f"{old_file}.words"]) or \
        before == sorted(["CURRENT", old_file, f"{old_file}.vocab", f"{old_file}.words"])
    # The command's own database: a compact copy of the (migrated, empty) test database, so the file-size limit
    # only ever bites the subset file, however large the shared test database has grown.
    database = tmp_path / "refresh.sqlite3"
    with sqlite3.connect(connection.settings_dict["NAME"]) as db:
        db.execute("VACUUM INTO ?", (str(database),))
    env = worker_env("redis://127.0.0.1:1/0")
    env.update(DATABASE_URL=f"sqlite:///{database}", SEARCH_SUBSET_DIR=str(dataset.subset_dir),
               SEARCH_FULL_DATA_DIR=str(dataset.full_dir), SUBSET_LEARNED_DIR=str(dataset.learned_dir))

    full = _refresh_command(env=env, limited=True)

    # A clear failure: the exit status, one line saying what to do, no traceback.
    assert full.returncode == 1, full.stdout + full.stderr
    assert re.search(r"CommandError: refresh #\d+ failed: could not write the new subset file: the disk is full",
                     full.stderr), full.stderr
    assert "File too large" in full.stderr and "Traceback" not in full.stderr, full.stderr
    assert "FAILED, the current subset keeps serving" in full.stdout
    state, error = _runs(database)[-1]  # the copied database may hold earlier tests' runs
    assert state == "failed" and error.startswith("could not write the new subset file: the disk is full")
    # The old subset is still the one served, and still answers.
    assert (subset_dir / "CURRENT").read_text().strip() == old_file
    assert subset_count() == old_rows and _search_ids() == old_ids
    # Nothing of the new file is left: not the file, its index folder, nor DuckDB's write-ahead log.
    assert sorted(p.name for p in subset_dir.iterdir() if p.name != ".writer.lock") == \
        sorted(["CURRENT", old_file, f"{old_file}.vocab", f"{old_file}.words"])
    # The writer lock is free: taken at once here, and a build with room to write succeeds.
    with table_files(table="samples").writer_lock(timeout=1):
        pass

    roomy = _refresh_command(env=env, limited=False)

    assert roomy.returncode == 0, roomy.stdout + roomy.stderr
    assert [state for state, _ in _runs(database)][-2:] == ["failed", "succeeded"]
    new_file = (subset_dir / "CURRENT").read_text().strip()
    assert new_file != old_file and subset_count() == 20_000
    assert (subset_dir / f"{new_file}.words").is_dir() and len(_search_ids()) == 5


@pytest.mark.django_db(transaction=True)
def test_a_disk_full_during_an_import_says_so_without_a_traceback_and_leaves_nothing(dataset, tmp_path):
    subset_dir = dataset.subset_dir
    old_file = (subset_dir / "tables" / "samples" / "CURRENT").read_text().strip()
    old_rows = subset_count()
    database = tmp_path / "import.sqlite3"
    with sqlite3.connect(connection.settings_dict["NAME"]) as db:
        db.execute("VACUUM INTO ?", (str(database),))
    env = worker_env("redis://127.0.0.1:1/0")
    env.update(DATABASE_URL=f"sqlite:///{database}", SEARCH_SUBSET_DIR=str(subset_dir),
               SEARCH_FULL_DATA_DIR=str(dataset.full_dir))
    full = subprocess.run(
        [sys.executable, "manage.py", "import_subset", str(dataset.full_dir / "samples" / "*.parquet"),
         "--table", "copy", "--key", "id"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, preexec_fn=_limit_file_size)
    assert full.returncode == 1, full.stdout + full.stderr
    assert "CommandError: could not write the new subset file: the disk is full" in full.stderr
    assert "The current subset keeps serving" in full.stderr and "Traceback" not in full.stderr, full.stderr
    assert (subset_dir / "tables" / "samples" / "CURRENT").read_text().strip() == old_file
    assert subset_count() == old_rows
    # The other table's folder is as it was; the new table's holds nothing but its lock (no file, .wal, .words)
    assert sorted(p.name for p in (subset_dir / "tables" / "samples").iterdir() if p.name != ".writer.lock") == \
        sorted(["CURRENT", old_file, f"{old_file}.vocab", f"{old_file}.words"])
    assert [p.name for p in (subset_dir / "tables" / "copy").iterdir()] == [".writer.lock"]
