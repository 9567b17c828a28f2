"""The running scheduler inside one event loop: engine, dispatcher, ledger, watchdog.

``Runtime`` is created by ``PipelineScheduler.astart`` and lives on one event loop.
Start-up order matters: abandoned runs are marked, missed instants are planned from
the ledger, and only then does the engine begin to fire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .dispatch import Dispatcher
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

logger = logging.getLogger(__name__)
PRUNE_EVERY = 3600.0


class Runtime:
    """Feeds schedule rows to the engine and keeps them in step with the store."""

    def __init__(
        self,
        settings: SchedulerSettings,
        store: ScheduleStore,
        ledger: Ledger,
        resolve: Callable[[str], Target | None],
        events: EventBus,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self._resolve = resolve
        self.events = events
        self.dispatcher = Dispatcher(ledger, resolve, events)
        self.engine = Engine(self._on_fire)
        self.defs: dict[str, ScheduleDef] = {}
        self.invalid: dict[str, str] = {}
        self.revision = -1
        self.store_error: str | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._last_prune = 0.0

    # --- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
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

    async def stop(self, grace: float) -> int:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        self.engine.shutdown()
        cancelled = await self.dispatcher.drain(grace)
        await self.ledger.stop()
        try:
            await asyncio.to_thread(self.store.clear_beat)
        except SchedulerError as exc:  # the database may be the reason we stop
            logger.warning("could not record the clean stop: %s", exc)
        return cancelled

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
        """Apply changes other processes (or this one) wrote to the store."""
        schedules = {s.name: s for s in await asyncio.to_thread(self.store.all)}
        for name in set(self.defs) - set(schedules):
            self.drop(name)
        for name, schedule in schedules.items():
            known = self.defs.get(name)
            if (
                known is None
                or known.enabled != schedule.enabled
                or known.definition_hash() != schedule.definition_hash()
            ):
                self.apply(schedule)

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

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            self.engine.wakeup()
            try:
                await self._poll_store()
                await self._prune()
            except SchedulerError as exc:
                if self.store_error is None:
                    logger.warning("database unavailable, will keep retrying: %s", exc)
                self.store_error = str(exc)
            else:
                if self.store_error is not None:
                    logger.info("database reachable again")
                self.store_error = None

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
