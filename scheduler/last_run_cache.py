"""Each schedule's last run as read from the ledger, kept until a write may have changed it.

Listing a page of schedules needs the newest run of each: one index probe per name,
the largest cost of ``GET /api/schedules``. ``LastRunCache`` keeps the answers:

* Writes of this process (claims, results, abandoned and pruned rows) go through the
  ledger's writer, which calls ``forget`` with the schedules a commit touched (or
  ``forget_all``) right after the commit, before anyone waiting on it is told. A
  caller that was told a run finished therefore reads it finished.
* Writes of other processes (a ``pipebot jobs run`` from a shell, another instance's
  API) are not seen here: an answer older than ``ttl`` seconds is read again, so they
  show within ``ttl``.

An answer read while a ``forget`` happened is not kept (``token``/``keep``): it may
predate that write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from .models import LastRun

TTL = 2.0
"""Seconds an answer is trusted without a write of this process touching it."""
MAX_ENTRIES = 100_000


class LastRunCache:
    """Safe to use from any thread."""

    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[LastRun | None, float]] = {}
        self._generation = 0

    def lookup(self, names: Sequence[str]) -> tuple[dict[str, LastRun], list[str], int]:
        """(the kept answers that have a run, the names to read, a token for ``keep``)."""
        found: dict[str, LastRun] = {}
        missing: list[str] = []
        oldest = self._clock() - self.ttl
        with self._lock:
            entries = self._entries
            for name in names:
                entry = entries.get(name)
                if entry is None or entry[1] < oldest:
                    missing.append(name)
                elif entry[0] is not None:
                    found[name] = entry[0]
            return found, missing, self._generation

    def keep(self, token: int, names: Iterable[str], read: Mapping[str, LastRun]) -> None:
        """Keep what was read for ``names`` (absent from ``read``: no run yet), unless
        something was forgotten since ``lookup`` gave ``token``."""
        now = self._clock()
        with self._lock:
            if token != self._generation:
                return
            if len(self._entries) > MAX_ENTRIES:
                self._entries.clear()
            for name in names:
                self._entries[name] = (read.get(name), now)

    def forget(self, names: Iterable[str | None]) -> None:
        with self._lock:
            self._generation += 1
            for name in names:
                if name is not None:
                    self._entries.pop(name, None)

    def forget_all(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
