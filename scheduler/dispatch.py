"""Runs what is due: claim the instant, apply the overlap policy, run, record.

One ``Dispatcher`` per scheduler process. Runs are tracked per pipeline (target), so
scheduled and manual runs of one pipeline share the same no-overlap guard:

- ``skip``: a run still going means the new one is recorded as skipped.
- ``buffer_one``: the new one waits and starts right after; a further one is skipped.
- ``cancel_other``: the running one is cancelled (recorded ``cancelled``), the new one starts.
- ``allow``: runs side by side, up to ``max_instances``; beyond that, skipped.

Nothing a run does can stop the dispatcher: every run is its own task, and every
exception it raises ends in its ledger row.

Where a run executes is the ``Executor``'s business: ``LocalExecutor`` (the default)
runs the target on this event loop; ``scheduler.executors.celery.CeleryExecutor``
sends it to a Celery worker and waits for the result the worker wrote to the ledger.
Claiming, the overlap guard, events and the record are the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pipelines.pipeline import RunOptions

from .errors import SchedulerError, UnknownPipelineError
from .events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EventBus,
    JobEvent,
)
from .ledger import Ledger, MissedRun
from .models import Policies, RunRecord, ScheduleDef
from .policies import Plan, judge_due
from .targets import Outcome, Target

logger = logging.getLogger(__name__)


class AlreadyRunningError(SchedulerError):
    """A manual run was refused because the pipeline is running and overlap is ``skip``."""

    def __init__(self, pipeline: str, run_id: str) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        super().__init__(f"pipeline {pipeline!r} is already running (run {run_id[:12]})")


class Executor(Protocol):
    """Runs one claimed run somewhere and reports how it ended."""

    async def execute(self, pipeline: str, target: Target, options: RunOptions) -> Outcome:
        """Run it; cancelling the call stops the run. ``Outcome.recorded``: row written."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads (runs still going are not waited for)."""
        ...


class LocalExecutor:
    """Runs the target on this event loop, in this process."""

    async def execute(self, pipeline: str, target: Target, options: RunOptions) -> Outcome:
        return await target.run(options)

    async def aclose(self) -> None:
        return None


@dataclass
class _Active:
    run_id: str
    task: asyncio.Task[Outcome]
    cancel_reason: str = "cancelled"


@dataclass
class _Lane:
    """The runs of one pipeline that are going or waiting."""

    active: list[_Active] = field(default_factory=list)
    waiting: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to start one run."""

    pipeline: str
    trigger: str
    policies: Policies
    schedule: str | None = None
    scheduled_for: datetime | None = None
    requested_by: str | None = None


class Dispatcher:
    """Starts runs for the engine (scheduled) and for people (manual)."""

    def __init__(
        self,
        ledger: Ledger,
        resolve: Callable[[str], Target | None],
        events: EventBus,
        executor: Executor | None = None,
    ) -> None:
        self._ledger = ledger
        self._resolve = resolve
        self._events = events
        self._executor: Executor = executor or LocalExecutor()
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self.accepting = True

    # --- scheduled runs -------------------------------------------------------------------

    def fire(self, schedule: ScheduleDef, run_times: list[datetime], noticed_at: datetime) -> None:
        """Handle instants the engine found due (called on the event loop, returns at once)."""
        if not self.accepting:
            return
        plan = judge_due(run_times, noticed_at, schedule.policies)
        self.execute_plan(schedule, plan, trigger="schedule")

    def execute_plan(self, schedule: ScheduleDef, plan: Plan, *, trigger: str) -> None:
        """Record a plan's missed instants and start its runs, each in its own task."""
        if plan.missed:
            self._spawn(self._record_missed(schedule, plan))
        for instant in plan.run:
            request = RunRequest(
                pipeline=schedule.pipeline,
                trigger=trigger,
                policies=schedule.policies,
                schedule=schedule.name,
                scheduled_for=instant,
            )
            self._spawn(self._scheduled(request))

    async def _scheduled(self, request: RunRequest) -> None:
        if request.policies.jitter > 0:
            await asyncio.sleep(random.uniform(0, request.policies.jitter))
        try:
            await self.run(request)
        except AlreadyRunningError:
            pass  # recorded as skipped by run()
        except UnknownPipelineError as exc:
            logger.error("schedule %s: %s", request.schedule, exc)

    async def _record_missed(self, schedule: ScheduleDef, plan: Plan) -> None:
        rows = [
            MissedRun(schedule.name, schedule.pipeline, instant, reason)
            for instant, reason in plan.missed
        ]
        new = await self._ledger.record_many(rows)
        if new:
            first, reason = plan.missed[0]
            logger.warning(
                "schedule %s: %d instant(s) missed (first %s: %s)",
                schedule.name,
                new,
                first.isoformat(),
                reason,
            )
        for instant, reason in plan.missed:
            self._events.emit(
                JobEvent(
                    EVENT_JOB_MISSED,
                    schedule.name,
                    schedule.pipeline,
                    None,
                    "missed",
                    instant,
                    reason,
                )
            )
        if plan.truncated:
            logger.warning(
                "schedule %s missed more instants than are recorded one by one", schedule.name
            )

    # --- any run --------------------------------------------------------------------------

    async def run(self, request: RunRequest) -> RunRecord:
        """Run once through the overlap guard; returns the finished run's record.

        Raises ``AlreadyRunningError`` when the guard refuses the run (it is recorded as
        skipped) and ``UnknownPipelineError`` when the target is not registered.
        """
        target = self._resolve(request.pipeline)
        if target is None:
            raise UnknownPipelineError(request.pipeline)
        lane = self._lanes.setdefault(request.pipeline, _Lane())
        if not await self._admit(lane, request):
            raise AlreadyRunningError(request.pipeline, lane.active[0].run_id)
        run_id = await self._open(request)
        if run_id is None:
            logger.debug("%s at %s was claimed already", request.schedule, request.scheduled_for)
            return RunRecord(
                run_id="",
                schedule=request.schedule,
                pipeline=request.pipeline,
                trigger=request.trigger,
                status="claimed-elsewhere",
            )
        return await self._execute(lane, target, run_id, request)

    async def _admit(self, lane: _Lane, request: RunRequest) -> bool:
        policy = request.policies.overlap
        if not lane.active:
            return True
        if policy == "allow" and len(lane.active) < request.policies.max_instances:
            return True
        if policy == "cancel_other":
            for active in list(lane.active):
                active.cancel_reason = "cancelled by a newer run (overlap: cancel_other)"
                active.task.cancel()
            await self._until_idle(lane)
            return True
        if policy == "buffer_one" and lane.waiting == 0:
            lane.waiting += 1
            try:
                await self._until_idle(lane)
            finally:
                lane.waiting -= 1
            return True
        await self._skip(lane, request)
        return False

    @staticmethod
    async def _until_idle(lane: _Lane) -> None:
        while lane.active:
            lane.idle.clear()
            await lane.idle.wait()

    async def _skip(self, lane: _Lane, request: RunRequest) -> None:
        reason = (
            f"run {lane.active[0].run_id[:12]} still going (overlap: {request.policies.overlap})"
        )
        logger.info("%s: skipped, %s", request.schedule or request.pipeline, reason)
        run_id = await self._ledger.record(
            schedule=request.schedule,
            pipeline=request.pipeline,
            scheduled_for=request.scheduled_for,
            status="skipped",
            trigger=request.trigger,
            error=reason,
            requested_by=request.requested_by,
        )
        if run_id is not None:
            self._events.emit(
                JobEvent(
                    EVENT_JOB_MAX_INSTANCES,
                    request.schedule,
                    request.pipeline,
                    run_id,
                    "skipped",
                    request.scheduled_for,
                    reason,
                )
            )

    async def _open(self, request: RunRequest) -> str | None:
        if request.scheduled_for is not None and request.schedule is not None:
            return await self._ledger.claim(
                schedule=request.schedule,
                pipeline=request.pipeline,
                scheduled_for=request.scheduled_for,
                trigger=request.trigger,
                requested_by=request.requested_by,
            )
        return await self._ledger.begin(
            pipeline=request.pipeline,
            trigger=request.trigger,
            schedule=request.schedule,
            requested_by=request.requested_by,
        )

    async def _execute(
        self, lane: _Lane, target: Target, run_id: str, request: RunRequest
    ) -> RunRecord:
        options = RunOptions(
            run_id=run_id,
            trigger=request.trigger,
            scheduled_for=request.scheduled_for,
            requested_by=request.requested_by,
            timeout=request.policies.timeout or target.timeout,
        )
        started = datetime.now(UTC)
        work = self._executor.execute(request.pipeline, target, options)
        active = _Active(run_id, asyncio.create_task(work))
        lane.active.append(active)
        logger.info(
            "run started: run_id=%s schedule=%s pipeline=%s trigger=%s",
            run_id,
            request.schedule or "-",
            request.pipeline,
            request.trigger,
            extra=_run_fields(run_id, request),
        )
        try:
            outcome = await _outcome(active)
        finally:
            lane.active = [a for a in lane.active if a.run_id != run_id]
            if not lane.active:
                lane.idle.set()
        return self._finish(run_id, request, outcome, started)

    def _finish(
        self, run_id: str, request: RunRequest, outcome: Outcome, started: datetime
    ) -> RunRecord:
        finished = outcome.finished_at or datetime.now(UTC)
        if not outcome.recorded:
            self._ledger.finish(
                run_id,
                status=outcome.status,
                finished_at=finished,
                error=outcome.error,
                items=outcome.items,
                stages=outcome.stages,
                schedule=request.schedule,
            )
        else:  # written by the executor (a Celery worker), not through this ledger
            self._ledger.last_run_cache.forget([request.schedule])
        record = RunRecord(
            run_id=run_id,
            schedule=request.schedule,
            pipeline=request.pipeline,
            trigger=request.trigger,
            status=outcome.status,
            scheduled_for=request.scheduled_for,
            started_at=started,
            finished_at=finished,
            requested_by=request.requested_by,
            error=outcome.error,
            items=outcome.items,
            stages=outcome.stages,
        )
        log = logger.info if outcome.status == "success" else logger.warning
        log(
            "run finished: run_id=%s schedule=%s pipeline=%s status=%s duration=%.2fs%s",
            run_id,
            request.schedule or "-",
            request.pipeline,
            outcome.status,
            record.duration or 0.0,
            f" error={outcome.error}" if outcome.error else "",
            extra={
                **_run_fields(run_id, request),
                "status": outcome.status,
                "duration_seconds": record.duration,
            },
        )
        code = EVENT_JOB_EXECUTED if outcome.status == "success" else EVENT_JOB_ERROR
        self._events.emit(
            JobEvent(
                code,
                request.schedule,
                request.pipeline,
                run_id,
                outcome.status,
                request.scheduled_for,
                outcome.error,
                record,
            )
        )
        return record

    # --- lifecycle ------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("dispatch task failed", exc_info=task.exception())

    def running(self) -> dict[str, list[str]]:
        """Run ids going now, per pipeline."""
        return {
            name: [a.run_id for a in lane.active]
            for name, lane in self._lanes.items()
            if lane.active
        }

    async def drain(self, grace: float) -> int:
        """Stop taking runs, give running ones ``grace`` seconds, cancel the rest.

        Returns how many runs were cancelled (each is recorded ``cancelled``).
        """
        self.accepting = False
        runs = [a for lane in self._lanes.values() for a in lane.active]
        cancelled = 0
        if runs:
            logger.info("waiting up to %.0fs for %d running run(s)", grace, len(runs))
            _, pending = await asyncio.wait([a.task for a in runs], timeout=grace)
            for active in runs:
                if active.task in pending:
                    active.cancel_reason = f"cancelled at shutdown after {grace:g}s grace"
                    active.task.cancel()
                    cancelled += 1
            if pending:  # let them stop (a remote run is told to) before the executor closes
                await asyncio.wait(pending, timeout=5)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.aclose()
        return cancelled

    async def aclose(self) -> None:
        """Release the executor's resources (``drain`` does it too)."""
        await self._executor.aclose()


def _run_fields(run_id: str, request: RunRequest) -> dict[str, Any]:
    """The fields of a run's log lines, for ``LOG_FORMAT=json``."""
    return {
        "run_id": run_id,
        "schedule": request.schedule,
        "pipeline": request.pipeline,
        "trigger": request.trigger,
    }


async def _outcome(active: _Active) -> Outcome:
    """Wait for a run; a cancelled or crashing run becomes an outcome, never an exception."""
    task = active.task
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():  # whoever awaited the run was cancelled: stop the run too
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if task.cancelled():
            return Outcome(status="cancelled", error=active.cancel_reason)
        raise
    except Exception as exc:  # a target that raised instead of reporting
        return Outcome(status="failed", error=f"{type(exc).__name__}: {exc}")
