"""One SQLite writer at a time, waited for on a lock that wakes the next writer at once (apps/core/dbwrite.py)."""
from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest
from django.db import connection

from apps.core.dbwrite import database_write_lock

pytestmark = pytest.mark.django_db


def _lock_path() -> str:
    return str(connection.settings_dict["NAME"]) + ".write-lock"


def test_the_tests_database_is_a_sqlite_file_so_the_lock_is_taken():
    assert connection.vendor == "sqlite" and not str(connection.settings_dict["NAME"]).startswith("file:")
    with database_write_lock():
        other = os.open(_lock_path(), os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # another process's attempt would wait
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)


def test_a_writer_waits_for_another_process_holding_the_lock_and_goes_on_when_it_lets_go():
    events: list[str] = []
    other = os.open(_lock_path(), os.O_RDWR | os.O_CREAT)  # another open file description: as another process
    fcntl.flock(other, fcntl.LOCK_EX)

    def writer():
        with database_write_lock():
            events.append("writer in")

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.2)
    events.append("other lets go")
    fcntl.flock(other, fcntl.LOCK_UN)
    os.close(other)
    thread.join(5)
    assert events == ["other lets go", "writer in"]


def test_two_threads_of_one_process_take_turns():
    inside, overlaps = [], []
    barrier = threading.Barrier(4)

    def writer():
        barrier.wait(5)
        for _ in range(20):
            with database_write_lock():
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(len(inside))
                time.sleep(0.001)
                inside.pop()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert overlaps == []


def test_connections_leave_checkpoints_to_the_thread_up_to_the_backstop(settings):
    """A request's commit does not checkpoint at SQLite's default 1,000 pages: only past the backstop."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone()[0] == settings.SQLITE_WAL_AUTOCHECKPOINT_PAGES > 1000
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


@pytest.mark.django_db(transaction=True)
def test_a_checkpoint_copies_the_wal_back_and_the_thread_runs_it(monkeypatch):
    from django.contrib.auth import get_user_model

    from apps.core import dbwrite

    for number in range(30):
        get_user_model().objects.create(username=f"writer{number}")
    busy, log, copied = dbwrite.database_checkpoint()
    assert busy == 0 and log > 0 and copied == log  # every committed page copied back

    calls = []
    real = dbwrite.database_checkpoint
    monkeypatch.setattr(dbwrite, "database_checkpoint", lambda **kw: calls.append(real(**kw)))
    thread = dbwrite.database_checkpointer_start(every=0.02)
    try:
        assert thread is not None and thread.name == "sqlite-checkpoint"
        assert dbwrite.database_checkpointer_start(every=0.02) is None  # one a process
        get_user_model().objects.create(username="later")
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(calls) >= 3 and all(call[0] == 0 for call in calls)
    finally:
        dbwrite.database_checkpointer_stop()
    assert not thread.is_alive()
    assert dbwrite.database_checkpointer_start(every=0) is None
