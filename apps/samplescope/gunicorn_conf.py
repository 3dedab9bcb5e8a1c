"""gunicorn settings shared by `make run` (Procfile) and the deploy image: `--config python:apps.samplescope.gunicorn_conf`.

Each worker imports its views and opens the subset, its substring index and the verifier before it takes
requests, so the first search a worker serves is about as fast as the rest (at 10M rows these cost ~0.5 s
and ~0.4 s; the first request of a fresh worker took 0.6-0.9 s without them).

Then it freezes what it has loaded (`gc.freeze()`): the ~125k objects of Django, the views and the open
index never become garbage, and a full collection that scanned them took ~50 ms, paid by whichever
request happened to trigger it."""
from __future__ import annotations

import gc


def post_worker_init(worker) -> None:
    from django.urls import get_resolver

    from apps.search.errors import SearchError
    from apps.search.selectors import subset_warm

    get_resolver().url_patterns  # noqa: B018 - import every view now, not during the first request (~0.5 s)
    try:
        tables = subset_warm()
    except (SearchError, OSError) as exc:  # no subset yet: searches will say so; the worker serves anyway
        worker.log.warning("Samplescope: subset not opened at start: %s", exc)
    else:
        worker.log.info("Samplescope: subset and index open (%s)", ", ".join(tables) or "no indexed tables")
    gc.collect()
    gc.freeze()
