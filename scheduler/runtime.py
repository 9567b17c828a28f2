"""The running scheduler inside one event loop: engine, dispatcher, ledger, watchdog.

``Runtime`` is created by ``PipelineScheduler.astart`` and lives on one event loop.
Start-up order matters: (as a leader, the fence is advanced first,) abandoned runs are
marked, missed instants are planned from the ledger, and only then does the engine
begin to fire.

The watchdog beats the heartbeat and re-reads the schedules when the revision moved,
every ``SCHEDULER_POLL_SECONDS`` or at once when woken (PostgreSQL NOTIFY, see
``notify``). Database outages: when the store or the ledger cannot be reached, firing
pauses (the timetable stays in memory, nothing is claimed) while the ledger keeps
retrying its queued writes; once both answer again, the queue is flushed, the
schedules re-read, and what fell due meanwhile is planned by each schedule's catch-up
policy, exactly as at start-up. As a leader (``on_step_down`` given), an outage longer
than the lease TTL, or a claim refused for a stale fence, ends the term.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .dispatch import Dispatcher, Executor
from .engine import Engine
from .errors import InvalidScheduleError, SchedulerError
from .events import EVENT_JOB_ERROR, EventBus, JobEvent
from .ledger import Ledger
from .models import ScheduleDef
from .policies import Plan, plan_catchup
from .schedules import build_trigger
from .settings import SchedulerSettings
from .store import ScheduleStore
from .targets import Target

if TYPE_CHECKING:
    from .notify import ChangeListener

logger = logging.getLogger(__name__)
PRUNE_EVERY = 3600.0
SYNC_SLICE = 500
"""Changed schedules applied to the engine per event-loop turn."""
StepDown = Callable[[str], None]
"""Called once, on the loop, with the reason this process must stop being the leader."""


class Runtime:
    """Feeds schedule rows to the engine and keeps them in step with the store."""

    def __init__(
        self,
        settings: SchedulerSettings,
        store: ScheduleStore,
        ledger: Ledger,
        resolve: Callable[[str], Target | None],
        events: EventBus,
        *,
        leader_token: int | None = None,
        on_step_down: StepDown | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self._resolve = resolve
        self.events = events
        self.dispatcher = Dispatcher(ledger, resolve, events, executor=executor)
        self.engine = Engine(self._on_fire)
        self.defs: dict[str, ScheduleDef] = {}
        self.invalid: dict[str, str] = {}
        self.revision = -1
        self.store_error: str | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self._leader_token = leader_token
        self._on_step_down = on_step_down
        self._wake = asyncio.Event()
        self._listener: ChangeListener | None = None
        self.outage: str | None = None
        """Why firing is paused (database unreachable); None while firing."""
        self._outage_since = 0.0
        self._last_answer = 0.0
        """Loop time of the store's last answer (a leader steps down a TTL after it)."""
        self._outage_timer: asyncio.TimerHandle | None = None
        self._halted = False
        self._engine_down = False

    # --- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._on_step_down is not None:
            await asyncio.to_thread(
                self.ledger.advance_fence,
                self._leader_token,
                idle_limit=self.settings.lease_seconds,
            )

        def on_health(healthy: bool) -> None:  # on the ledger's writer thread
            loop.call_soon_threadsafe(self._ledger_health, healthy)

        def on_fenced() -> None:
            loop.call_soon_threadsafe(self._step_down, "another process took over (stale fence)")

        self.ledger.on_health = on_health
        self.ledger.on_fenced = on_fenced
        self.ledger.start()
        abandoned = await asyncio.to_thread(
            self.ledger.mark_abandoned, exclude_holder=self.ledger.holder
        )
        if abandoned:
            logger.warning(
                "marked %d run(s) left running by a stopped process as abandoned", len(abandoned)
            )
        for record in abandoned:
            self.events.emit(
                JobEvent(
                    EVENT_JOB_ERROR,
                    record.schedule,
                    record.pipeline,
                    record.run_id,
                    record.status,
                    record.scheduled_for,
                    record.error,
                    record,
                )
            )
        await self._prune()
        self.revision = await asyncio.to_thread(self.store.revision)
        schedules = await asyncio.to_thread(self.store.all)
        claimed = await asyncio.to_thread(self.ledger.last_claimed_all)
        now = datetime.now(UTC)
        entries, plans = self._prepare(schedules, claimed, now)
        self.engine.put_many(entries)
        self.engine.start()
        for schedule, plan in plans:
            self.dispatcher.execute_plan(schedule, plan, trigger="catchup")
        await asyncio.to_thread(self.store.beat)
        self._last_answer = loop.time()
        self._listen()
        self._watchdog = asyncio.create_task(self._watch(), name="pipebot-watchdog")
        logger.info(
            "scheduler started: %d schedule(s), %d catching up, database %s",
            len(self.defs),
            len(plans),
            self.ledger.where,
        )

    def _prepare(
        self,
        schedules: list[ScheduleDef],
        claimed: dict[str, datetime],
        now: datetime,
    ) -> tuple[list[tuple[str, Any, datetime | None, bool]], list[tuple[ScheduleDef, Plan]]]:
        entries: list[tuple[str, Any, datetime | None, bool]] = []
        plans: list[tuple[ScheduleDef, Plan]] = []
        for schedule in schedules:
            trigger = self._trigger(schedule)
            if trigger is None:
                continue
            self.defs[schedule.name] = schedule
            entries.append((schedule.name, trigger, trigger.next_fire(now), not schedule.enabled))
            plan = self._catchup(schedule, trigger, claimed.get(schedule.name), now)
            if plan is not None:
                plans.append((schedule, plan))
        return entries, plans

    def _catchup(
        self, schedule: ScheduleDef, trigger: Any, last: datetime | None, now: datetime
    ) -> Plan | None:
        if not schedule.enabled:
            return None
        since = max(t for t in (last, schedule.updated_at, schedule.created_at) if t is not None)
        first = trigger.next_fire(since)
        if first is None or first > now:
            return None
        plan = plan_catchup(trigger, schedule.policies.catchup, since, now)
        return plan if plan.run or plan.missed else None

    async def stop(self, grace: float, *, keep_ledger: bool = False) -> int:
        """Stop firing, drain runs; ``keep_ledger`` leaves the writer retrying (step-down)."""
        self._shutdown_engine()
        self.dispatcher.accepting = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        if self._listener is not None:
            await self._listener.stop()
        cancelled = await self.dispatcher.drain(grace)
        self.ledger.on_health = None
        self.ledger.on_fenced = None
        if keep_ledger:  # results still queued are written once the database answers
            return cancelled
        await self.ledger.stop()
        try:
            await asyncio.to_thread(self.store.clear_beat)
        except SchedulerError as exc:  # the database may be the reason we stop
            logger.warning("could not record the clean stop: %s", exc)
        return cancelled

    def halt(self) -> None:
        """Stop firing at once (the lease is lost): no engine, no new claims."""
        self._halted = True
        if self._outage_timer is not None:
            self._outage_timer.cancel()
            self._outage_timer = None
        self.dispatcher.accepting = False
        self._shutdown_engine()
        self.ledger.revoke_fence()

    def _shutdown_engine(self) -> None:
        # APScheduler's asyncio shutdown takes effect on the next loop pass: only once
        if not self._engine_down:
            self._engine_down = True
            self.engine.shutdown()

    def _step_down(self, reason: str) -> None:
        if self._on_step_down is None or self._halted:
            return
        self.halt()
        self._on_step_down(reason)

    # --- keeping the engine in step -------------------------------------------------------

    def _trigger(self, schedule: ScheduleDef) -> Any:
        try:
            trigger = build_trigger(schedule)
        except InvalidScheduleError as exc:
            self.invalid[schedule.name] = str(exc)
            logger.error("schedule %s cannot run: %s (kept in the store)", schedule.name, exc)
            return None
        self.invalid.pop(schedule.name, None)
        return trigger

    def apply(self, schedule: ScheduleDef) -> None:
        """Add or replace one schedule in the engine (call on the loop)."""
        self.apply_many([schedule])

    def apply_many(self, schedules: list[ScheduleDef]) -> None:
        """Add or replace schedules with one engine wake-up (call on the loop)."""
        now = datetime.now(UTC)
        entries: list[tuple[str, Any, datetime | None, bool]] = []
        for schedule in schedules:
            trigger = self._trigger(schedule)
            if trigger is None:
                self.drop(schedule.name)
                continue
            self.defs[schedule.name] = schedule
            entries.append((schedule.name, trigger, trigger.next_fire(now), not schedule.enabled))
        self.engine.put_many(entries)

    def drop(self, name: str) -> None:
        self.defs.pop(name, None)
        self.engine.remove(name)

    async def sync_from_store(self) -> None:
        """Apply changes other processes (or this one) wrote to the store.

        The store is read and compared in a worker thread; the changes are applied on
        the loop a slice at a time, with one engine wake-up per slice.
        """
        known = dict(self.defs)
        gone, changed = await asyncio.to_thread(self._store_changes, known)
        for name in gone:
            self.drop(name)
        for start in range(0, len(changed), SYNC_SLICE):
            self.apply_many(changed[start : start + SYNC_SLICE])
            await asyncio.sleep(0)

    def _store_changes(self, known: dict[str, ScheduleDef]) -> tuple[list[str], list[ScheduleDef]]:
        """(names gone from the store, schedules new or changed there); in a thread."""
        schedules = {s.name: s for s in self.store.all()}
        gone = [name for name in known if name not in schedules]
        changed = [
            schedule
            for name, schedule in schedules.items()
            if (old := known.get(name)) is None or not _same_definition(old, schedule)
        ]
        return gone, changed

    # --- firing ---------------------------------------------------------------------------

    def _on_fire(self, name: str, run_times: list[datetime], noticed_at: datetime) -> None:
        schedule = self.defs.get(name)
        if schedule is None:
            return
        if self._resolve(schedule.pipeline) is None:
            reason = f"nothing is registered under {schedule.pipeline!r} in this process"
            plan = Plan(missed=tuple((t, reason) for t in run_times))
            self.dispatcher.execute_plan(schedule, plan, trigger="schedule")
            return
        self.dispatcher.fire(schedule, run_times, noticed_at)

    # --- watchdog -------------------------------------------------------------------------

    def wake(self) -> None:
        """Re-read the store now rather than at the next poll (thread-unsafe: on the loop)."""
        self._wake.set()

    def _listen(self) -> None:
        if not self.settings.on_postgres:
            return
        try:
            from .notify import ChangeListener
        except ImportError:  # psycopg missing: the store could not be PostgreSQL either
            return
        self._listener = ChangeListener(self.settings.database_url, self.wake)
        self._listener.start()

    async def _watch(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            self.engine.wakeup()
            try:
                await self._poll_store()
                await self._prune()
                if self.outage is not None and self.ledger.healthy:
                    await self._resume()
            except SchedulerError as exc:
                if self.store_error is None:
                    logger.warning("database unavailable, will keep retrying: %s", exc)
                self.store_error = str(exc)
                self._pause(f"store: {exc}")
            else:
                self._last_answer = asyncio.get_running_loop().time()
                if self.store_error is not None:
                    logger.info("database reachable again")
                self.store_error = None

    # --- database outages -----------------------------------------------------------------

    def _ledger_health(self, healthy: bool) -> None:
        if healthy:
            self.wake()  # resume without waiting for the next poll
        else:
            self._pause(f"run ledger: {self.ledger.last_error}")

    def _pause(self, reason: str) -> None:
        if self.outage is not None or self._halted:
            return
        loop = asyncio.get_running_loop()
        self.outage = reason
        self._outage_since = loop.time()
        self.dispatcher.accepting = False
        logger.warning(
            "database unavailable: firing paused, %d schedule(s) kept in memory (%s)",
            len(self.defs),
            reason,
        )
        if self._on_step_down is not None:  # a leader: give way if it lasts a lease TTL
            deadline = max(self._last_answer, self._outage_since - self.settings.poll_interval)
            self._outage_timer = loop.call_at(
                deadline + self.settings.lease_seconds, self._outage_expired
            )

    def _outage_expired(self) -> None:
        self._outage_timer = None
        if self.outage is not None:
            lasted = asyncio.get_running_loop().time() - self._outage_since
            self._step_down(f"database unreachable (paused {lasted:.1f}s ago)")

    async def _resume(self) -> None:
        """The database answers again: write what is queued, then catch up and fire."""
        await self.ledger.flush()
        await self.sync_from_store()
        claimed = await asyncio.to_thread(self.ledger.last_claimed_all)
        if self._halted:
            return
        now = datetime.now(UTC)
        plans = []
        for schedule in list(self.defs.values()):
            trigger = self._trigger(schedule)
            plan = (
                None
                if trigger is None
                else self._catchup(schedule, trigger, claimed.get(schedule.name), now)
            )
            if plan is not None:
                plans.append((schedule, plan))
        lasted = asyncio.get_running_loop().time() - self._outage_since
        self.outage = None
        if self._outage_timer is not None:
            self._outage_timer.cancel()
            self._outage_timer = None
        self.dispatcher.accepting = True
        for schedule, plan in plans:
            self.dispatcher.execute_plan(schedule, plan, trigger="catchup")
        logger.info(
            "database reachable again after %.1fs: firing resumed, %d schedule(s) catching up",
            lasted,
            len(plans),
        )

    async def _poll_store(self) -> None:
        await asyncio.to_thread(self.store.beat)
        revision = await asyncio.to_thread(self.store.revision)
        if revision != self.revision:
            self.revision = revision
            await self.sync_from_store()

    async def _prune(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_prune < PRUNE_EVERY and self._last_prune:
            return
        self._last_prune = loop.time()
        settings = self.settings
        if settings.history_days is None and settings.history_rows is None:
            return
        removed = await asyncio.to_thread(
            self.ledger.prune,
            older_than_days=settings.history_days,
            keep_rows=settings.history_rows,
        )
        if removed:
            logger.info("history retention removed %d old run(s)", removed)


def _same_definition(a: ScheduleDef, b: ScheduleDef) -> bool:
    """Whether two definitions fire alike (``definition_hash`` equality, without hashing)."""
    return (a.enabled, a.pipeline, a.kind, a.fields, a.timezone, a.policies) == (
        b.enabled,
        b.pipeline,
        b.kind,
        b.fields,
        b.timezone,
        b.policies,
    )
