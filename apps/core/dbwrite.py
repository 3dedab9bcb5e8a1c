"""One SQLite writer at a time, waited for without sleeping.

SQLite lets one connection write at a time. A writer that finds the write lock taken waits in SQLite's busy
handler, which sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries and so wakes late, whenever the holder let go:
with the web server's 8 threads each writing a search's log row and audit event, those sleeps were about a tenth of
a request's time under load (py-spy, 8 clients at 10M rows). `database_write_lock()` takes a lock of its own
first: a thread lock (the threads of one process) and then an `flock` on a file beside the database (the
processes: web workers, Celery), on which the kernel wakes the next waiter as soon as the holder releases it. Only
the writes that every request makes take it; any other write still has SQLite's busy handler. With another
database (PostgreSQL: row locks, no single writer) it does nothing."""
from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

_thread_lock = threading.Lock()
_files: dict[str, int] = {}  # lock file path -> this process's descriptor


def _forget_files() -> None:  # a forked child opens its own: an flock belongs to an open file description
    global _thread_lock
    _files.clear()
    _thread_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_files)


def _lock_file(path: str) -> int:
    fd = _files.get(path)
    if fd is None:
        fd = _files[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return fd


@contextmanager
def database_write_lock(*, using: str = "default") -> Iterator[None]:
    connection = connections[using]
    name = str(connection.settings_dict.get("NAME") or "")
    if connection.vendor != "sqlite" or not name or name == ":memory:" or name.startswith("file:"):
        yield
        return
    with _thread_lock:  # an flock is held by an open file description, which this process's threads share
        fd = _lock_file(name + ".write-lock")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
