"""The timing engine: APScheduler 3 fed from our schedule rows.

This is the only module that imports ``apscheduler``. APScheduler keeps the
in-memory timetable and wakes up when something is due; through its documented
plugin points we change three things:

- ``_TriggerAdapter`` lets APScheduler ask *our* triggers (standard cron, our DST
  rule) for fire times; its own CronTrigger reads cron differently.
- ``_SlicedMemoryJobStore`` hands out at most ``slice_size`` due jobs per pass, so
  10,000 jobs due at one instant are dispatched in short passes with the event loop
  turning in between, instead of one pass that stalls it for half a second. It also
  remembers when a backlog began, so a burst the engine itself queued is not judged
  late (``noticed_at``).
- ``_HandOffExecutor`` runs nothing itself: it hands (schedule, scheduled instants,
  noticed_at) to our dispatcher, which claims each instant in the ledger and applies
  overlap, misfire, coalesce and timeout policies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.jobstores.base import JobLookupError as ApsJobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from .models import FireTimes

logger = logging.getLogger(__name__)

DEFAULT_SLICE = 500
"""Due jobs handed out per engine pass."""


OnFire = Callable[[str, list[datetime], datetime], None]
"""Called with (schedule name, scheduled instants, noticed_at) when a schedule is due."""


class _TriggerAdapter(BaseTrigger):  # type: ignore[misc]
    __slots__ = ("trigger",)

    def __init__(self, trigger: FireTimes) -> None:
        self.trigger = trigger

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is not None:
            return self.trigger.next_fire(previous_fire_time)
        return self.trigger.next_fire(now - timedelta(microseconds=1))

    def __str__(self) -> str:
        return str(self.trigger)


class _SlicedMemoryJobStore(MemoryJobStore):  # type: ignore[misc]
    def __init__(self, slice_size: int) -> None:
        super().__init__()
        self.slice_size = slice_size
        self.noticed_at: datetime | None = None
        """When the jobs of the current pass were first found due (start of a backlog)."""
        self._backlog_since: datetime | None = None
        self.last_pass = time.monotonic()

    def get_due_jobs(self, now: datetime) -> list[Any]:
        self.last_pass = time.monotonic()
        due: list[Any] = super().get_due_jobs(now)
        self.noticed_at = self._backlog_since or now
        if len(due) > self.slice_size:
            self._backlog_since = self.noticed_at
            return due[: self.slice_size]
        self._backlog_since = None
        return due


class _HandOffExecutor(BaseExecutor):  # type: ignore[misc]
    def __init__(self, on_fire: OnFire, store: _SlicedMemoryJobStore) -> None:
        super().__init__()
        self._on_fire = on_fire
        self._store = store

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        noticed_at = self._store.noticed_at or datetime.now(UTC)
        try:
            self._on_fire(job.id, list(run_times), noticed_at)
        finally:
            self._run_job_success(job.id, [])


def _never_called() -> None:  # the executor hands off instead of calling job functions
    raise AssertionError("engine jobs are dispatched, not called")


class Engine:
    """APScheduler as an in-memory timetable: add, replace, pause and remove schedules."""

    def __init__(self, on_fire: OnFire, *, slice_size: int = DEFAULT_SLICE) -> None:
        self._store = _SlicedMemoryJobStore(slice_size)
        self._aps = AsyncIOScheduler(
            timezone=UTC,
            jobstores={"default": self._store},
            executors={"default": _HandOffExecutor(on_fire, self._store)},
            job_defaults={"coalesce": False, "misfire_grace_time": None, "max_instances": 1_000},
        )

    @property
    def running(self) -> bool:
        return bool(self._aps.running)

    @property
    def seconds_since_pass(self) -> float:
        return time.monotonic() - self._store.last_pass

    def start(self) -> None:
        """Start inside the running event loop."""
        self._aps.start()

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    def wakeup(self) -> None:
        if self._aps.running:
            self._aps.wakeup()

    def put(self, name: str, trigger: FireTimes, *, first: datetime | None, paused: bool) -> None:
        """Add or replace the timetable entry ``name``; ``first`` is its next fire time."""
        if self._aps.get_job(name) is not None:
            self._aps.remove_job(name)
        if first is None:
            return
        job = self._aps.add_job(
            _never_called,
            trigger=_TriggerAdapter(trigger),
            id=name,
            name=name,
            next_run_time=None if paused else first,
        )
        if paused:
            logger.debug("schedule %s added paused (job %s)", name, job.id)

    def put_many(self, entries: list[tuple[str, FireTimes, datetime | None, bool]]) -> None:
        """``put`` for many schedules with one engine wake-up instead of one per schedule."""
        running = self.running
        if running:
            self._aps.pause()
        try:
            for name, trigger, first, paused in entries:
                self.put(name, trigger, first=first, paused=paused)
        finally:
            if running:
                self._aps.resume()

    def remove(self, name: str) -> None:
        try:
            self._aps.remove_job(name)
        except ApsJobLookupError:
            pass

    def next_run(self, name: str) -> datetime | None:
        job = self._aps.get_job(name)
        return None if job is None else job.next_run_time

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self._aps.get_jobs()}

    def names(self) -> set[str]:
        return {job.id for job in self._aps.get_jobs()}
