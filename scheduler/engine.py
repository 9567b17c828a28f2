"""The timing engine: APScheduler 3 fed from our schedule rows.

This is the only module that imports ``apscheduler``. APScheduler decides when to wake
up and what is due; through its documented plugin points we change three things:

- ``_TriggerAdapter`` lets APScheduler ask *our* triggers (standard cron, our DST
  rule) for fire times; its own CronTrigger reads cron differently.
- ``_Timetable`` is the job store: per schedule only its trigger and next fire time,
  ordered in a heap. APScheduler ``Job`` objects are made when a schedule is due (as
  the job stores that read rows do), so 10,000 schedules cost a few hundred bytes
  each and load in milliseconds. It hands out at most ``slice_size`` due jobs per
  pass, so 10,000 jobs due at one instant are dispatched in short passes with the
  event loop turning in between, and it remembers when a backlog began, so a burst
  the engine itself queued is not judged late (``noticed_at``).
- ``_HandOffExecutor`` runs nothing itself: it hands (schedule, scheduled instants,
  noticed_at) to our dispatcher, which claims each instant in the ledger and applies
  overlap, misfire, coalesce and timeout policies.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError
from apscheduler.jobstores.base import JobLookupError as ApsJobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from .models import FireTimes

logger = logging.getLogger(__name__)

DEFAULT_SLICE = 500
"""Due jobs handed out per engine pass."""
_MAX_INSTANCES = 1_000
"""APScheduler's own per-job limit, never reached: the dispatcher applies ``max_instances``."""


OnFire = Callable[[str, list[datetime], datetime], None]
"""Called with (schedule name, scheduled instants, noticed_at) when a schedule is due."""


class _TriggerAdapter(BaseTrigger):  # type: ignore[misc]
    """Our trigger as APScheduler's; one per job handed out, so it may remember a little.

    APScheduler asks twice per firing for the time after the last run time (to collect
    run times, then to reschedule); the second answer comes from ``_last``.
    """

    __slots__ = ("trigger", "_last")

    def __init__(self, trigger: FireTimes) -> None:
        self.trigger = trigger
        self._last: tuple[datetime, datetime | None] | None = None

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            return self.trigger.next_fire(now - timedelta(microseconds=1))
        last = self._last
        if last is not None and last[0] == previous_fire_time:
            return last[1]
        following = self.trigger.next_fire(previous_fire_time)
        self._last = (previous_fire_time, following)
        return following

    def __str__(self) -> str:
        return str(self.trigger)


def _never_called() -> None:  # the executor hands off instead of calling job functions
    raise AssertionError("engine jobs are dispatched, not called")


_FUNC_REF = f"{__name__}:{_never_called.__name__}"


class _Timetable(BaseJobStore):  # type: ignore[misc]
    """A job store of (trigger, next fire time) per schedule name, due times in a heap.

    The heap holds ``(when, name)`` pairs and is cleaned lazily: a pair counts only
    while ``when`` is still that schedule's next fire time. Jobs handed to APScheduler
    come back through ``update_job`` or ``remove_job``; one that does not (a pass that
    failed half-way) is put back on the heap at the next pass.
    """

    def __init__(self, slice_size: int) -> None:
        super().__init__()
        self.slice_size = slice_size
        self.noticed_at: datetime | None = None
        """When the jobs of the current pass were first found due (start of a backlog)."""
        self.last_pass = time.monotonic()
        self._triggers: dict[str, FireTimes] = {}
        self._next: dict[str, datetime | None] = {}
        """Next fire time per schedule; None while paused."""
        self._heap: list[tuple[datetime, str]] = []
        self._handed: list[tuple[datetime, str]] = []
        self._backlog_since: datetime | None = None

    # --- our side: the engine fills the timetable directly -------------------------------

    def put(self, name: str, trigger: FireTimes, when: datetime | None) -> None:
        self._triggers[name] = trigger
        self._set_next(name, when)

    def discard(self, name: str) -> bool:
        """Remove ``name``; False if it was not there."""
        if self._triggers.pop(name, None) is None:
            return False
        del self._next[name]  # its heap pair is stale from now on
        return True

    def next_run(self, name: str) -> datetime | None:
        return self._next.get(name)

    def next_runs(self) -> dict[str, datetime | None]:
        return dict(self._next)

    def has(self, name: str) -> bool:
        return name in self._next

    def names(self) -> set[str]:
        return set(self._triggers)

    def _set_next(self, name: str, when: datetime | None) -> None:
        previous = self._next.get(name)
        self._next[name] = when
        if when is None or when == previous:
            return  # paused, or its pair is on the heap already
        heapq.heappush(self._heap, (when, name))
        if len(self._heap) > 2 * len(self._next) + 1024:
            self._heap = [(w, n) for n, w in self._next.items() if w is not None]
            heapq.heapify(self._heap)

    def _valid(self, pair: tuple[datetime, str]) -> bool:
        return self._next.get(pair[1], None) == pair[0]

    def _restore_handed(self) -> None:
        for pair in self._handed:
            if self._valid(pair):  # handed out, but APScheduler never reported back
                heapq.heappush(self._heap, pair)
        self._handed = []

    def _top(self) -> datetime | None:
        heap = self._heap
        while heap and not self._valid(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _job(self, name: str, when: datetime | None) -> Job:
        """A transient APScheduler job for ``name``.

        Built as job stores unpickle jobs (``Job.__setstate__``), with the attributes set
        directly: resolving the function reference for every due job cost more than the
        rest of building it.
        """
        job = Job.__new__(Job)
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        job.id = name
        job.name = name
        job.func = _never_called
        job.func_ref = _FUNC_REF
        job.trigger = _TriggerAdapter(self._triggers[name])
        job.executor = "default"
        job.args = ()
        job.kwargs = {}
        job.misfire_grace_time = None
        job.coalesce = False
        job.max_instances = _MAX_INSTANCES
        job.next_run_time = when
        return job

    # --- APScheduler's side ---------------------------------------------------------------

    def get_due_jobs(self, now: datetime) -> list[Job]:
        self.last_pass = time.monotonic()
        self._restore_handed()
        heap = self._heap
        handed = self._handed
        taken: set[str] = set()
        while len(handed) < self.slice_size and heap and heap[0][0] <= now:
            pair = heapq.heappop(heap)
            if pair[1] not in taken and self._valid(pair):
                taken.add(pair[1])
                handed.append(pair)
        noticed = self._backlog_since or now
        self.noticed_at = noticed
        top = self._top()
        self._backlog_since = noticed if top is not None and top <= now else None
        return [self._job(name, when) for when, name in handed]

    def get_next_run_time(self) -> datetime | None:
        self._restore_handed()
        return self._top()

    def lookup_job(self, job_id: str) -> Job | None:
        if job_id not in self._triggers:
            return None
        return self._job(job_id, self._next[job_id])

    def get_all_jobs(self) -> list[Job]:
        far = datetime.max.replace(tzinfo=UTC)
        order = sorted(self._next.items(), key=lambda item: (item[1] or far, item[0]))
        jobs = [self._job(name, when) for name, when in order]
        self._fix_paused_jobs_sorting(jobs)
        return jobs

    def add_job(self, job: Job) -> None:
        if job.id in self._triggers:
            raise ConflictingIdError(job.id)
        self.put(job.id, _our_trigger(job), job.next_run_time)

    def update_job(self, job: Job) -> None:
        if job.id not in self._triggers:
            raise ApsJobLookupError(job.id)
        self.put(job.id, _our_trigger(job), job.next_run_time)

    def remove_job(self, job_id: str) -> None:
        if not self.discard(job_id):
            raise ApsJobLookupError(job_id)

    def remove_all_jobs(self) -> None:
        self._triggers.clear()
        self._next.clear()
        self._heap.clear()
        self._handed.clear()

    def shutdown(self) -> None:
        self.remove_all_jobs()


def _our_trigger(job: Job) -> FireTimes:
    trigger = job.trigger
    if not isinstance(trigger, _TriggerAdapter):
        raise TypeError(f"the engine's job store only holds pipebot triggers, not {trigger!r}")
    return trigger.trigger


class _HandOffExecutor(BaseExecutor):  # type: ignore[misc]
    def __init__(self, on_fire: OnFire, store: _Timetable) -> None:
        super().__init__()
        self._on_fire = on_fire
        self._store = store

    def submit_job(self, job: Job, run_times: list[datetime]) -> None:
        # Nothing runs here, so APScheduler's per-job instance count stays out of it.
        self._do_submit_job(job, run_times)

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        noticed_at = self._store.noticed_at or datetime.now(UTC)
        self._on_fire(job.id, list(run_times), noticed_at)


class Engine:
    """APScheduler as an in-memory timetable: add, replace, pause and remove schedules."""

    def __init__(self, on_fire: OnFire, *, slice_size: int = DEFAULT_SLICE) -> None:
        self._store = _Timetable(slice_size)
        self._aps = AsyncIOScheduler(
            timezone=UTC,
            jobstores={"default": self._store},
            executors={"default": _HandOffExecutor(on_fire, self._store)},
            job_defaults={
                "coalesce": False,
                "misfire_grace_time": None,
                "max_instances": _MAX_INSTANCES,
            },
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
        self.put_many([(name, trigger, first, paused)])

    def put_many(self, entries: Iterable[tuple[str, FireTimes, datetime | None, bool]]) -> None:
        """``put`` for many schedules with one engine wake-up."""
        store = self._store
        for name, trigger, first, paused in entries:
            if first is None:
                store.discard(name)  # it will not fire again
            else:
                store.put(name, trigger, None if paused else first)
        self.wakeup()

    def remove(self, name: str) -> None:
        self._store.discard(name)

    def next_run(self, name: str) -> datetime | None:
        return self._store.next_run(name)

    def next_runs(self) -> dict[str, datetime | None]:
        return self._store.next_runs()

    def has(self, name: str) -> bool:
        """Whether ``name`` is on the timetable (paused ones are; finished ones are not)."""
        return self._store.has(name)

    def names(self) -> set[str]:
        return self._store.names()
