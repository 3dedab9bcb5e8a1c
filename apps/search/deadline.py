"""Deadlines for running queries: one watchdog thread per process calls each query's interrupt when its
time is up. A threading.Timer per query started a thread for every search; under load, waiting for that
thread to start cost more than many indexed searches themselves."""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Watchdog:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []  # (monotonic deadline, token)
        self._live: dict[int, Callable[[], None]] = {}  # token -> callback, until fired or cancelled
        self._cond = threading.Condition()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, seconds: float, callback: Callable[[], None]) -> int:
        """Call `callback` (on the watchdog thread) after `seconds`, unless cancelled first."""
        with self._cond:
            token = next(self._tokens)
            self._live[token] = callback
            heapq.heappush(self._heap, (time.monotonic() + seconds, token))
            if self._thread is None or not self._thread.is_alive():  # first use, or a forked child
                self._thread = threading.Thread(target=self._run, name="query-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def cancel(self, token: int) -> None:
        with self._cond:
            self._live.pop(token, None)

    def pending(self) -> int:
        with self._cond:
            return len(self._live)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # cancelled: drop it
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                callback = self._live.pop(token)
            try:
                callback()
            except Exception:  # a query that ended meanwhile; the watchdog must live on
                logger.debug("deadline callback failed", exc_info=True)


WATCHDOG = Watchdog()
