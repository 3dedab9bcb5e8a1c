"""One SQLite writer at a time, waited for without sleeping.

SQLite lets one connection write at a time. A writer that finds the write lock taken waits in SQLite's busy
handler, which sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries and so wakes late, whenever the holder let go:
with the web server's 8 threads each writing a search's log row and audit event, those sleeps were about a tenth of
a request's time under load (py-spy, 8 clients at 10M rows). `database_write_lock()` takes a lock of its own
first: a thread lock (the threads of one process) and then an `flock` on a file beside the database (the
processes: web workers, Celery), on which the kernel wakes the next waiter as soon as the holder releases it. Only
the writes that every request makes take it; any other write still has SQLite's busy handler. With another
database (PostgreSQL: row locks, no single writer) it does nothing.

Checkpoints, too, are kept out of requests. In WAL mode a commit only appends to the WAL (no fsync with
synchronous=NORMAL), until the WAL passes the autocheckpoint size: then that commit copies the WAL back into the
database and fsyncs it. With other disk reads going on (a scan of the full data, a refresh) that took 20-60 ms, paid
by one search in ~80 (3,000 log-and-audit writes while `cat` read a large file: max 60 ms, p99 12.4 ms; with the
checkpoints in a thread: max 2.8 ms, p99 1.0 ms). `database_checkpointer_start` runs a PASSIVE checkpoint every
SQLITE_CHECKPOINT_SECONDS in a daemon thread of each web worker (it neither waits for nor blocks readers and
writers); connections checkpoint themselves only past SQLITE_WAL_AUTOCHECKPOINT_PAGES (settings: a backstop)."""
from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

logger = logging.getLogger(__name__)

_thread_lock = threading.Lock()
_files: dict[str, int] = {}  # lock file path -> this process's descriptor
_checkpointer: list[tuple[threading.Thread, threading.Event]] = []  # this process's checkpoint thread and its stop


def _after_fork() -> None:  # a forked child opens its own lock files (an flock belongs to an open file description)
    global _thread_lock
    _files.clear()
    _thread_lock = threading.Lock()
    _checkpointer.clear()  # threads do not survive a fork


os.register_at_fork(after_in_child=_after_fork)


def _lock_file(path: str) -> int:
    fd = _files.get(path)
    if fd is None:
        fd = _files[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return fd


def _sqlite_file(using: str) -> str:
    """The SQLite file of database `using`, or "" for another database (or an in-memory one)."""
    connection = connections[using]
    name = str(connection.settings_dict.get("NAME") or "")
    if connection.vendor != "sqlite" or not name or name == ":memory:" or name.startswith("file:"):
        return ""
    return name


@contextmanager
def database_write_lock(*, using: str = "default") -> Iterator[None]:
    name = _sqlite_file(using)
    if not name:
        yield
        return
    with _thread_lock:  # an flock is held by an open file description, which this process's threads share
        fd = _lock_file(name + ".write-lock")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def database_checkpoint(*, using: str = "default") -> tuple[int, int, int] | None:
    """Copy the WAL's committed pages back into the SQLite database now, waiting for no reader or writer (PASSIVE):
    (busy, pages in the WAL, pages copied), or None for another database."""
    if not _sqlite_file(using):
        return None
    with connections[using].cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        busy, log, copied = cursor.fetchone()
    return int(busy), int(log), int(copied)


def database_checkpointer_start(*, every: float, using: str = "default") -> threading.Thread | None:
    """Start this process's checkpoint thread: database_checkpoint every `every` seconds (a daemon thread, with its
    own connection), until database_checkpointer_stop. None when there is nothing to do (another database,
    `every` <= 0) or one already runs."""
    if every <= 0 or not _sqlite_file(using) or any(thread.is_alive() for thread, _ in _checkpointer):
        return None
    stop = threading.Event()

    def run() -> None:
        failing = False
        while not stop.wait(every):
            try:
                database_checkpoint(using=using)
            except Exception:  # a checkpoint missed is retried; the backstop still bounds the WAL
                if not failing:
                    logger.exception("SQLite checkpoint failed; retrying every %s s", every)
                failing = True
            else:
                failing = False
        connections[using].close()

    thread = threading.Thread(target=run, name="sqlite-checkpoint", daemon=True)
    _checkpointer[:] = [(thread, stop)]
    thread.start()
    return thread


def database_checkpointer_stop(*, timeout: float = 5.0) -> None:
    """Stop this process's checkpoint thread (tests; a worker's ends with its process)."""
    for thread, stop in _checkpointer:
        stop.set()
        thread.join(timeout)
    _checkpointer.clear()
