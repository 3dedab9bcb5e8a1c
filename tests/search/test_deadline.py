"""The query watchdog (apps/search/deadline.py): one thread per process interrupts queries past their
deadline, instead of a new Timer thread per query."""
from __future__ import annotations

import threading

from apps.search.deadline import WATCHDOG, Watchdog
from apps.search.query import CompiledQuery
from apps.search.selectors import subset_query_run


def test_callbacks_fire_in_deadline_order_and_cancelled_ones_never():
    dog = Watchdog()
    fired: list[str] = []
    done = threading.Event()
    dog.schedule(0.15, lambda: (fired.append("late"), done.set()))
    dog.schedule(0.05, lambda: fired.append("early"))
    cancelled = dog.schedule(0.1, lambda: fired.append("cancelled"))
    dog.cancel(cancelled)
    assert done.wait(5)
    assert fired == ["early", "late"]
    assert dog.pending() == 0


def test_a_failing_callback_does_not_stop_the_watchdog():
    dog = Watchdog()
    done = threading.Event()
    dog.schedule(0.01, lambda: 1 / 0)
    dog.schedule(0.05, done.set)
    assert done.wait(5)


def test_queries_share_one_watchdog_thread_and_leave_no_deadline_behind(demo_subset):
    subset_query_run(compiled=CompiledQuery("SELECT 1", []), timeout_ms=60_000)  # the watchdog thread exists now
    threads = threading.active_count()
    for _ in range(30):
        outcome = subset_query_run(compiled=CompiledQuery("SELECT count(*) FROM samples", []), timeout_ms=60_000)
        assert not outcome.timed_out
    assert threading.active_count() == threads
    assert WATCHDOG.pending() == 0
