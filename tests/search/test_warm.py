"""A gunicorn worker opens the subset and its index before it serves (apps/samplescope/gunicorn_conf.py)."""
from __future__ import annotations

import gc

import pytest

from apps.samplescope import gunicorn_conf
from apps.search import selectors, word_index
from apps.search.store import table_current_path


class _Log:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def info(self, message, *args):
        self.lines.append(("info", message % args))

    def warning(self, message, *args):
        self.lines.append(("warning", message % args))


class _Worker:
    def __init__(self):
        self.log = _Log()


@pytest.fixture(autouse=True)
def _unfreeze():
    yield
    gc.unfreeze()  # what the worker froze goes back to the collector (this process runs other tests)


def test_a_worker_opens_the_subset_and_its_index_before_serving(demo_subset):
    gc.unfreeze()
    word_index._open.clear()
    selectors._known_cache.clear()
    worker = _Worker()
    gunicorn_conf.post_worker_init(worker)
    (level, line), = worker.log.lines
    assert level == "info" and line.startswith("Samplescope: subset and index open (") and "samples" in line
    index = word_index._open[table_current_path(table="samples")]
    assert index._tables["samples"] is not None  # opened, not just named
    # the facet columns' known values are read too: a short answer with `label = x` needs them
    assert any(key[0] == str(table_current_path(table="samples")) and key[1] == "samples" and known.get("label")
               for key, known in selectors._known_cache.items())
    # what it loaded is frozen: full collections (~50 ms at 10M rows) no longer walk it
    assert gc.get_freeze_count() > 10_000


def test_a_worker_starts_its_sqlite_checkpoint_thread(settings, tmp_path):
    from apps.core import dbwrite

    settings.SEARCH_SUBSET_DIR = tmp_path / "empty"
    settings.SQLITE_CHECKPOINT_SECONDS = 30
    gunicorn_conf.post_worker_init(_Worker())
    try:
        assert [thread.name for thread, _ in dbwrite._checkpointer if thread.is_alive()] == ["sqlite-checkpoint"]
    finally:
        dbwrite.database_checkpointer_stop()


def test_a_worker_without_a_subset_still_starts_and_says_why(settings, tmp_path):
    settings.SEARCH_SUBSET_DIR = tmp_path / "empty"
    worker = _Worker()
    gunicorn_conf.post_worker_init(worker)
    assert worker.log.lines[0][0] == "warning" and "No local subset" in worker.log.lines[0][1]


def test_a_worker_opens_each_tables_vocabulary_before_serving(demo_subset, tmp_path):
    """The vocabulary is checked whole when opened (its checksums): the worker pays that, not a first search."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from django.core.management import call_command

    from apps.search import vocabulary

    pq.write_table(pa.table({"k": list(range(300)), "t": [f"word{i % 7} other" for i in range(300)]}),
                   tmp_path / "full.parquet")
    call_command("import_subset", str(tmp_path / "full.parquet"), table="notes", key="k", sample_fraction=0.5,
                 full_data_glob=str(tmp_path / "full.parquet"), stdout=io.StringIO())
    gc.unfreeze()
    vocabulary.vocabulary_forget()
    gunicorn_conf.post_worker_init(_Worker())
    opened = vocabulary._open[(table_current_path(table="notes"), "notes")]
    assert opened is not None and opened.rows == 300
