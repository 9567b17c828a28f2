"""Pages of schedules for listings, reused while the store's revision stands still.

Every change to the ``schedules`` table bumps ``meta.schedules_revision`` in the same
transaction, from whichever process makes it. A page read at revision R is therefore
exactly what the table holds for as long as the revision is still R: ``ListingCache``
checks the revision (one indexed read) and serves the page it read before, with each
definition's trigger already built, instead of reading, decoding and parsing the rows
again. The revision is read before the page, so a change landing in between can only
make a cached page newer than its tag, never older: the next call sees the revision
moved and reads again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .errors import InvalidScheduleError
from .models import ScheduleDef
from .schedules import build_trigger
from .store import ScheduleStore

ITEM_BUDGET = 50_000
"""Schedules kept across all cached pages (a page of the whole table counts in full)."""

PageKey = tuple[str | None, int | None]
"""(``after``, ``limit``) of a page; (None, None) is the whole table."""


@dataclass(frozen=True, slots=True)
class Listed:
    """A stored definition with what listing it needs: its trigger (None if invalid)."""

    schedule: ScheduleDef
    trigger: Any
    expression: str


def listed(schedule: ScheduleDef) -> Listed:
    try:
        trigger = build_trigger(schedule)
    except InvalidScheduleError:
        return Listed(schedule, None, str(schedule.fields))
    return Listed(schedule, trigger, trigger.expression)


class ListingCache:
    """Pages of ``Listed`` schedules by (after, limit), valid for one schedule revision.

    Safe to use from any thread. Old pages are dropped first once more than
    ``budget`` schedules are held; a new revision drops them all.
    """

    def __init__(self, store: ScheduleStore, budget: int = ITEM_BUDGET) -> None:
        self.store = store
        self.budget = budget
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._pages: OrderedDict[PageKey, list[Listed]] = OrderedDict()
        self._held = 0
        self.hits = 0
        self.misses = 0

    def page(self, after: str | None, limit: int | None) -> list[Listed]:
        """Up to ``limit`` schedules after ``after`` by name (both None: all of them)."""
        revision = self.store.revision()
        key = (after, limit)
        with self._lock:
            if revision != self._revision:
                self._pages.clear()
                self._held = 0
                self._revision = revision
            found = self._pages.get(key)
            if found is not None:
                self._pages.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        if after is None and limit is None:
            schedules = self.store.all()
        else:
            schedules = self.store.page(after, limit if limit is not None else 1 << 30)
        page = [listed(s) for s in schedules]
        with self._lock:
            if self._revision == revision and key not in self._pages:
                self._pages[key] = page
                self._held += len(page)
                while self._held > self.budget and len(self._pages) > 1:
                    _, dropped = self._pages.popitem(last=False)
                    self._held -= len(dropped)
        return page

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()
            self._held = 0
            self._revision = None
