"""gunicorn settings shared by `make run` (Procfile) and the deploy image: `--config python:apps.samplescope.gunicorn_conf`.

Each worker imports its views and opens the subset, its substring index and the verifier before it takes
requests, so the first search a worker serves is about as fast as the rest (at 10M rows these cost ~0.5 s
and ~0.4 s; the first request of a fresh worker took 0.6-0.9 s without them).

It starts the worker's SQLite checkpoint thread (apps/core/dbwrite.py). Then it freezes what it has loaded
(`gc.freeze()`): the ~125k objects of Django, the views and the open index never become garbage, and a full
collection that scanned them took ~50 ms, paid by whichever request happened to trigger it.

Processes and threads: `make run` starts 2 processes of 4 threads for 2 cores (the Procfile; WEB_WORKERS and
WEB_THREADS). The per-process caches of the index (needles' words, unions of many words' postings, the postings
checked) then serve 4 threads each instead of 1: 8 clients at 10M rows, 197–229 requests/s at p95 70–75 ms over
three runs of scripts/bench_search_http.sh, against 132–175 at 99–142 with 8 x 1 (2026-12-07, apps/search/README).

The worker is gthread with two changes (apps/samplescope/gunicorn_worker.py). A connection takes one of the
`--threads` only once its request headers are in, and is closed if they take longer than WEB_HEADER_TIMEOUT
(10 s): before, 10 clients sending headers a byte a second held every thread of `make run` and the server
answered nobody. And a process takes new connections only while one of its threads is free, so a request waits
for the first free thread of any process, not behind a slow one in a busy process. The request limits below
bound what a request line and headers may be; in production nginx (deploy/nginx.conf, required) also times out
slow headers and bodies and caps connections per client."""
from __future__ import annotations

import gc
import os

# Each search's DuckDB query on one thread in the web server (unless SEARCH_DUCKDB_THREADS is set): its threads
# (2 processes x 4 by default, the Procfile) already keep both cores busy under load, where a query's second thread
# only competed with the other requests (8 clients at 10M rows: p95 97–107 ms instead of 128). Builds, refreshes and
# the local warehouse (Celery, commands) keep the setting's default. Set in the master before it forks the workers
# (they read Django's settings after).
def on_starting(server) -> None:
    os.environ.setdefault("SEARCH_DUCKDB_THREADS", "1")


worker_class = "apps.samplescope.gunicorn_worker.HeaderBufferingThreadWorker"
# Each worker's heartbeat is a file it touches on every turn of its loop: on tmpfs, not the disk (gunicorn's advice;
# ~2.5% of a worker's busy time with /tmp on disk, 8 clients at 10M rows).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# The access line (`--access-logfile -`) built from the atoms its format names only (gunicorn_logger.py).
logger_class = "apps.samplescope.gunicorn_logger.AccessLineLogger"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
# Connections one process holds open, waiting for headers, kept alive or being served (gthread's default 1000).
worker_connections = 250
# A request line of at most 8190 bytes (gunicorn's maximum, as nginx's 8k header buffers; the search page POSTs
# a search whose address would be longer and shows it at a short `?_q=<key>`), at most 50 header fields
# (browsers send about 15) of at most 8190 bytes each; more is refused (400/431).
limit_request_line = 8190
limit_request_fields = 50
limit_request_field_size = 8190


def post_worker_init(worker) -> None:
    from django.conf import settings
    from django.urls import get_resolver

    from apps.core.dbwrite import database_checkpointer_start
    from apps.search.errors import SearchError
    from apps.search.selectors import subset_warm

    get_resolver().url_patterns  # noqa: B018 - import every view now, not during the first request (~0.5 s)
    try:
        tables = subset_warm()
    except (SearchError, OSError) as exc:  # no subset yet: searches will say so; the worker serves anyway
        worker.log.warning("Samplescope: subset not opened at start: %s", exc)
    else:
        worker.log.info("Samplescope: subset and index open (%s)", ", ".join(tables) or "no indexed tables")
    # SQLite's checkpoints in a thread of this worker, not in the request whose commit filled the WAL (dbwrite.py).
    database_checkpointer_start(every=settings.SQLITE_CHECKPOINT_SECONDS)
    gc.collect()
    gc.freeze()
