"""``PipelineScheduler``: the one facade the bot, the CLI, the API and scripts use.

It offers the API people know from APScheduler and the seed schedulers
(``schedule_cron/daily/hourly/interval/at``, ``add_job``, ``list_schedules``,
``enable``/``disable``, ``run_now``, ``get_history``, ``health_check`` ...).
Definitions are written to the store first; a running engine then picks them up.
Every public method is safe to call from any thread. ``start()`` joins a running
event loop when there is one and otherwise runs the scheduler in a background thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, TypeVar, Unpack

from pipelines.db import get_engine, redact_url
from pipelines.pipeline import Pipeline

from . import migrate
from .dispatch import Dispatcher, Executor, RunRequest
from .errors import (
    InvalidScheduleError,
    JobExistsError,
    JobLookupError,
    ReadOnlyScheduleError,
    SchedulerError,
    StoreError,
    UnknownPipelineError,
)
from .events import EVENT_ALL, EVENT_JOB_ADDED, EVENT_JOB_REMOVED, EventBus, JobEvent, Listener
from .executors.celery_settings import CelerySettings
from .ledger import Ledger
from .listing import Listed, ListingCache, listed
from .models import LastRun, Owner, Policies, RunFilters, RunRecord, ScheduleDef, ScheduleInfo
from .runtime import Runtime
from .schedules import build_trigger, interval_seconds, make_schedule
from .settings import SchedulerSettings
from .store import ScheduleStore, SyncReport
from .targets import CallableTarget, PipelineTarget, Target

logger = logging.getLogger(__name__)
T = TypeVar("T")
INFOS_KEPT = 50_000
RESULT_WRITE_WAIT = 5.0
"""Seconds ``arun`` waits for its result row to be committed before answering anyway."""
_APS_CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")


_NEVER = datetime.max.replace(tzinfo=UTC)


def _soonest_first(timed: tuple[datetime | None, Listed]) -> tuple[int, datetime, str]:
    next_run, item = timed
    if not item.schedule.enabled:
        return (2, _NEVER, item.schedule.name)
    if next_run is None:
        return (1, _NEVER, item.schedule.name)
    return (0, next_run, item.schedule.name)


class PipelineScheduler:
    """Schedules pipelines (by name) and code callables, persists them, runs them."""

    def __init__(
        self,
        settings: SchedulerSettings | None = None,
        *,
        targets: Mapping[str, Target] | None = None,
    ) -> None:
        self.settings = settings or SchedulerSettings.from_env()
        self._db = get_engine(self.settings.database_url)
        migrate.upgrade(self._db)
        self.store = ScheduleStore(self._db)
        self._listing = ListingCache(self.store)
        self._infos: dict[str, tuple[Listed, Target | None, LastRun | None, ScheduleInfo]] = {}
        """The newest ``ScheduleInfo`` of each schedule listed, with what it was made of: an
        unchanged schedule is listed as the same object (the API keeps its JSON by object)."""
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ledger = Ledger(self._db, holder=holder)
        self.events = EventBus()
        self._celery = CelerySettings.from_env()  # bad executor settings refuse to start
        self._targets: dict[str, Target] = dict(targets or {})
        self._runtime: Runtime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._yaml_loader: Callable[[], tuple[dict[str, Target], list[ScheduleDef]]] | None = None

    def __repr__(self) -> str:
        return f"PipelineScheduler(database={redact_url(self.settings.database_url)!r})"

    def _executor(self) -> Executor | None:
        """A fresh executor for a dispatcher (``drain`` closes it); None: run in-process."""
        if not self._celery.enabled:
            return None
        from .executors.celery import CeleryExecutor  # imports celery only when asked for

        return CeleryExecutor(self._celery, self._db)

    # --- targets --------------------------------------------------------------------------

    def register(self, name: str, target: Target | Pipeline | Callable[[], Any]) -> None:
        """Make ``name`` runnable: a pipeline, a Target, or a function (re-bound on restart)."""
        self._targets[name] = _as_target(target)

    def resolve(self, name: str) -> Target | None:
        return self._targets.get(name)

    def pipelines(self) -> dict[str, str]:
        """Registered target names with their descriptions."""
        return {name: target.description for name, target in sorted(self._targets.items())}

    def set_yaml_source(
        self, loader: Callable[[], tuple[dict[str, Target], list[ScheduleDef]]]
    ) -> None:
        """Where ``reload()`` reads pipelines.yml from: returns (targets, yaml schedules)."""
        self._yaml_loader = loader

    # --- the seed API ---------------------------------------------------------------------

    def schedule_cron(
        self,
        name: str,
        pipeline_or_func: Any,
        cron_expression: str,
        timezone: str | None = None,
        **policies: Any,
    ) -> ScheduleInfo:
        """Run at the times of a standard 5-field cron expression (Vixie semantics)."""
        return self._code_schedule(
            name, pipeline_or_func, "cron", {"expression": cron_expression}, timezone, policies
        )

    def schedule_daily(
        self,
        name: str,
        pipeline_func: Any,
        hour: int = 0,
        minute: int = 0,
        timezone: str | None = None,
        **policies: Any,
    ) -> ScheduleInfo:
        return self.schedule_cron(
            name, pipeline_func, f"{minute} {hour} * * *", timezone, **policies
        )

    def schedule_hourly(
        self,
        name: str,
        pipeline_func: Any,
        minute: int = 0,
        timezone: str | None = None,
        **policies: Any,
    ) -> ScheduleInfo:
        return self.schedule_cron(name, pipeline_func, f"{minute} * * * *", timezone, **policies)

    def schedule_interval(
        self,
        name: str,
        pipeline_func: Any,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
        timezone: str | None = None,
        **policies: Any,
    ) -> ScheduleInfo:
        total = interval_seconds({"hours": hours, "minutes": minutes, "seconds": seconds})
        return self._code_schedule(
            name, pipeline_func, "interval", {"seconds": total}, timezone, policies
        )

    def schedule_at(
        self,
        name: str,
        pipeline_func: Any,
        run_date: datetime | str,
        timezone: str | None = None,
        **policies: Any,
    ) -> ScheduleInfo:
        """Run once at ``run_date`` (naive times are read in ``timezone``)."""
        text = run_date.isoformat() if isinstance(run_date, datetime) else run_date
        return self._code_schedule(
            name, pipeline_func, "date", {"run_date": text}, timezone, policies
        )

    def add_job(
        self,
        target: Any,
        trigger: str = "cron",
        *,
        id: str | None = None,  # noqa: A002 - APScheduler's name for it
        name: str | None = None,
        replace_existing: bool = False,
        max_instances: int = 1,
        coalesce: bool = True,
        misfire_grace_time: float | None = None,
        jitter: float = 0,
        timezone: str | None = None,
        **trigger_args: Any,
    ) -> ScheduleInfo:
        """APScheduler-style scheduling: ``trigger`` is ``cron``, ``interval`` or ``date``.

        Cron fields follow standard cron, not APScheduler: ``day_of_week`` takes names
        (``mon-fri``) or a whole ``cron="..."`` expression; numbers are refused because
        APScheduler counts Monday as 0 and cron counts Sunday as 0.
        """
        job_name = id or name or _target_name(target)
        kind, fields = _aps_trigger(trigger, trigger_args)
        policies = {
            "max_instances": max_instances,
            "coalesce": coalesce,
            "misfire_grace_time": misfire_grace_time,
            "jitter": jitter,
            "overlap": "allow" if max_instances > 1 else "skip",
        }
        existing = self.store.get(job_name)
        schedule = self._definition(job_name, target, kind, fields, timezone, policies, "code")
        if (
            existing is not None
            and not replace_existing
            and existing.definition_hash() != schedule.definition_hash()
        ):
            raise JobExistsError(job_name)
        return self._upsert(schedule, existing, actor="code", surface="code")

    # --- schedules from chat, API and CLI ----------------------------------------------------

    def create_schedule(
        self,
        name: str,
        pipeline: str,
        *,
        cron: str | None = None,
        every: str | None = None,
        interval: Mapping[str, float] | None = None,
        timezone: str | None = None,
        policies: Policies | None = None,
        owner: Owner = "api",
        created_by: str | None = None,
    ) -> ScheduleInfo:
        """A new schedule of a configured pipeline; refuses names in use."""
        if pipeline not in self._targets:
            raise UnknownPipelineError(pipeline)
        kind, fields = _trigger_choice(cron, every, interval)
        schedule = make_schedule(
            name,
            pipeline,
            kind,
            fields,
            timezone=timezone or self.settings.timezone,
            policies=policies,
            owner=owner,
            created_by=created_by,
        )
        self.store.add(schedule)
        self._audit(created_by or owner, owner, "schedule", name, f"{kind} {fields}")
        self._changed(schedule)
        return self.get_schedule(name)

    def add_schedules(self, schedules: list[ScheduleDef]) -> None:
        """Add many validated definitions in one transaction (bulk loads, benchmarks)."""
        revision = self.store.add_many(schedules)
        runtime = self._runtime
        if runtime is None or revision is None:
            return

        def apply() -> None:
            runtime.apply_many(schedules)
            if runtime.revision == revision - 1:  # nothing but this change to read back
                runtime.revision = revision

        self._call_soon(apply)

    # --- reading --------------------------------------------------------------------------

    def list_schedules(
        self, *, after: str | None = None, limit: int | None = None
    ) -> list[ScheduleInfo]:
        """Schedules by name; with ``after``/``limit``, one page of them (read as a page).

        Definitions come from ``ListingCache`` (reread only when the store's revision
        moved), the last run of each from the ledger, the next run from the engine.
        """
        page = self._listing.page(after, limit)
        if after is None and limit is None:
            last = self.ledger.last_runs()
        else:
            last = self.ledger.last_runs([item.schedule.name for item in page])
        now = datetime.now(UTC)
        return [self._info(item, last.get(item.schedule.name), now) for item in page]

    def scheduled_pipelines(self) -> set[str]:
        """The pipelines some stored schedule runs (registered here or not)."""
        return {item.schedule.pipeline for item in self._listing.page(None, None)}

    def schedule_names(self) -> list[str]:
        """Every schedule's name, in the order ``list_schedules`` pages by."""
        return self.store.names()

    def count_schedules(self) -> int:
        """How many schedules are stored (one indexed count)."""
        return self.store.count()

    def upcoming(self, limit: int) -> tuple[list[ScheduleInfo], int]:
        """The ``limit`` schedules due soonest, and how many schedules there are in all.

        Enabled ones with a next run come first (soonest first), then enabled ones
        without one, then paused ones; names break ties. Last runs are read only for the
        schedules returned.
        """
        now = datetime.now(UTC)
        page = self._listing.page(None, None)
        chosen = sorted(((self._next_run(item, now), item) for item in page), key=_soonest_first)
        names = [item.schedule.name for _, item in chosen[:limit]]
        last = self.ledger.last_runs(names)
        infos = [self._info(item, last.get(item.schedule.name), now) for _, item in chosen[:limit]]
        return infos, len(page)

    def get_schedule(self, name: str) -> ScheduleInfo:
        schedule = self.store.get(name)
        if schedule is None:
            raise JobLookupError(name)
        history = self.ledger.history(schedule=name, limit=1)
        newest = history[0] if history else None
        last = (
            None
            if newest is None
            else LastRun(newest.started_at or newest.scheduled_for, newest.status)
        )
        return self._info(listed(schedule), last, datetime.now(UTC))

    def _next_run(self, item: Listed, now: datetime) -> datetime | None:
        s, trigger = item.schedule, item.trigger
        runtime = self._runtime
        if runtime is not None and runtime.engine.running and runtime.engine.has(s.name):
            return runtime.engine.next_run(s.name)
        # not scheduled here, or the engine has yet to take a change just made
        return trigger.next_fire(now) if s.enabled and trigger is not None else None

    def _info(self, item: Listed, last: LastRun | None, now: datetime) -> ScheduleInfo:
        s = item.schedule
        next_run = self._next_run(item, now)
        target = self._targets.get(s.pipeline)
        kept = self._infos.get(s.name)
        if (
            kept is not None
            and kept[0] is item
            and kept[1] is target
            and kept[2] == last
            and kept[3].next_run == next_run
        ):
            return kept[3]
        info = ScheduleInfo(
            name=s.name,
            pipeline=s.pipeline,
            type=s.kind,
            expression=item.expression,
            timezone=s.timezone,
            enabled=s.enabled,
            owner=s.owner,
            next_run=next_run,
            last_run=None if last is None else last.at,
            last_status=None if last is None else last.status,
            created_by=s.created_by,
            policies=s.policies,
            description=target.description if target is not None else "",
            bound=target is not None,
        )
        if len(self._infos) >= INFOS_KEPT:
            self._infos.clear()
        self._infos[s.name] = (item, target, last, info)
        return info

    def get_history(self, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Runs, newest first: of schedule ``name`` (or of the pipeline of that name)."""
        return [r.to_dict() for r in self.latest_runs(name, limit)]

    def latest_runs(self, name: str | None = None, limit: int = 50) -> list[RunRecord]:
        """``get_history`` as ``RunRecord``s."""
        if name is None:
            return self.ledger.history(limit=limit)
        return self.ledger.history(schedule=name, limit=limit) or self.ledger.history(
            pipeline=name, limit=limit
        )

    def get_runs(self, *, limit: int = 50, **filters: Unpack[RunFilters]) -> list[RunRecord]:
        """Runs matching every filter given, newest first; ``before`` (a run id) pages on."""
        return self.ledger.history(limit=limit, **filters)

    def run_keys(self, *, limit: int = 50, **filters: Unpack[RunFilters]) -> list[tuple[str, str]]:
        """``get_runs`` as (run id, status) pairs, for callers that keep finished runs."""
        return self.ledger.history_keys(limit=limit, **filters)

    def runs_by_id(self, run_ids: list[str]) -> dict[str, RunRecord]:
        """The runs of ``run_ids`` that exist, by id."""
        return self.ledger.get_many(run_ids)

    def preview(
        self,
        *,
        cron: str | None = None,
        every: str | None = None,
        timezone: str | None = None,
        count: int = 3,
        after: datetime | None = None,
    ) -> list[datetime]:
        """The next ``count`` fire times, by the very trigger that would fire them."""
        kind, fields = _trigger_choice(cron, every, None)
        schedule = make_schedule(
            "preview", "preview", kind, fields, timezone=timezone or self.settings.timezone
        )
        trigger = build_trigger(schedule)
        moment = after or datetime.now(UTC)
        times: list[datetime] = []
        while len(times) < count and (moment := trigger.next_fire(moment)) is not None:
            times.append(moment)
        return times

    # --- changing -------------------------------------------------------------------------

    def enable(self, name: str, *, actor: str = "code", surface: str = "code") -> ScheduleInfo:
        schedule = self.store.set_enabled(name, True)
        self._audit(actor, surface, "resume", name)
        self._changed(schedule)
        return self.get_schedule(name)

    def disable(self, name: str, *, actor: str = "code", surface: str = "code") -> ScheduleInfo:
        schedule = self.store.set_enabled(name, False)
        self._audit(actor, surface, "pause", name)
        self._changed(schedule)
        return self.get_schedule(name)

    resume_job = enable
    pause_job = disable

    def unschedule(self, name: str, *, actor: str = "code", surface: str = "code") -> None:
        """Remove a schedule; one owned by pipelines.yml can only be removed there."""
        schedule = self.store.get(name)
        if schedule is None:
            raise JobLookupError(name)
        if schedule.owner == "yaml" and surface != "yaml":
            raise ReadOnlyScheduleError(name, "pipelines.yml")
        self.store.remove(name)
        self._audit(actor, surface, "remove", name)
        self._dropped(name, schedule.pipeline)

    remove_job = unschedule

    def clear(self, *, actor: str = "code", surface: str = "code") -> int:
        """Remove every schedule not owned by pipelines.yml."""
        names = [s for s in self.store.all() if s.owner != "yaml"]
        count = self.store.clear(owners=("chat", "api", "code", "cli"))
        self._audit(actor, surface, "clear", "*", f"{count} schedule(s)")
        for schedule in names:
            self._dropped(schedule.name, schedule.pipeline)
        return count

    def sync_yaml(self, schedules: list[ScheduleDef]) -> SyncReport:
        """Make the store's pipelines.yml schedules exactly ``schedules``."""
        report = self.store.sync(schedules, owner="yaml")
        logger.info("YAML schedules synced: %s", report)
        if self._runtime is not None and (report.added or report.changed or report.removed):
            runtime = self._runtime
            self._call_soon(lambda: asyncio.ensure_future(runtime.sync_from_store()))
        return report

    def reload(self) -> SyncReport:
        """Re-read pipelines.yml: new targets, and its schedules synced into the store."""
        if self._yaml_loader is None:
            raise SchedulerError("no pipelines.yml source is configured")
        targets, schedules = self._yaml_loader()
        self._targets.update(targets)
        return self.sync_yaml(schedules)

    # --- running --------------------------------------------------------------------------

    async def arun(
        self, name: str, *, requested_by: str | None = None, trigger: str = "manual"
    ) -> RunRecord:
        """Run a schedule's pipeline (or a pipeline by name) now, through the overlap guard.

        Without a running scheduler in this process (the CLI), the run happens here,
        recorded in the same ledger.
        """
        schedule = await asyncio.to_thread(self.store.get, name)
        if schedule is not None:
            pipeline, policies = schedule.pipeline, schedule.policies
        elif name in self._targets:
            pipeline, policies = name, Policies()
        else:
            raise UnknownPipelineError(name)
        request = RunRequest(
            pipeline=pipeline,
            trigger=trigger,
            policies=policies,
            schedule=schedule.name if schedule is not None else None,
            requested_by=requested_by,
        )
        if requested_by:
            await asyncio.to_thread(self._audit, requested_by, trigger, "run", name)
        runtime = self._runtime
        if runtime is not None:
            record = await runtime.dispatcher.run(request)
            await self._written()
            return record
        ledger = Ledger(self._db, holder=self.ledger.holder)
        ledger.start()
        try:
            dispatcher = Dispatcher(ledger, self.resolve, self.events, executor=self._executor())
            try:
                return await dispatcher.run(request)
            finally:
                await dispatcher.aclose()
        finally:
            await ledger.stop()

    async def _written(self) -> None:
        """Wait (a little) until the rows queued so far are committed, so that a caller
        told a run has finished finds it finished in the history too. During a database
        outage the queue waits for the database; the caller does not."""
        try:
            await asyncio.wait_for(asyncio.shield(self.ledger.flush()), RESULT_WRITE_WAIT)
        except TimeoutError:
            logger.info("run result not written within %g s; it stays queued", RESULT_WRITE_WAIT)
        except StoreError:  # the ledger is stopping: it wrote the result directly
            pass

    def run_now(self, name: str, *, requested_by: str | None = None) -> RunRecord:
        """``arun`` for synchronous callers (not from the scheduler's own event loop)."""
        return self._call(self.arun(name, requested_by=requested_by))

    # --- health ---------------------------------------------------------------------------

    def health_check(self, last: int = 100) -> dict[str, Any]:
        """ok, degraded or down, with the figures behind the verdict."""
        runtime = self._runtime
        database: dict[str, Any] = {"url": redact_url(self.settings.database_url)}
        try:
            schedules = self.store.all()
            stats = self.ledger.stats(last)
            database["reachable"] = True
        except SchedulerError as exc:
            return {
                "status": "down",
                "database": {**database, "reachable": False, "error": str(exc)},
            }
        if runtime is None:
            return self._remote_health(schedules, stats.to_dict(), database)
        status, problems = self._verdict(runtime)
        next_due = self._next_due()
        return {
            "status": status,
            "role": self.role,
            "running": runtime.engine.running,
            "uptime_seconds": None
            if self._started_at is None
            else time.monotonic() - self._started_at,
            "jobs": {
                "total": len(schedules),
                "enabled": sum(s.enabled for s in schedules),
                "paused": sum(not s.enabled for s in schedules),
                "unbound": sorted({s.name for s in schedules if s.pipeline not in self._targets}),
                "invalid": dict(runtime.invalid) if runtime is not None else {},
            },
            "metrics": stats.to_dict(),
            "next_due": next_due,
            "running_runs": runtime.dispatcher.running() if runtime is not None else {},
            "engine_seconds_since_pass": None
            if runtime is None
            else runtime.engine.seconds_since_pass,
            "database": database,
            "problems": problems,
        }

    def readiness(self) -> dict[str, Any]:
        """``health_check``'s verdict and the figures ``/readyz`` needs, without reading
        whole tables: one indexed read tells whether the database answers."""
        runtime = self._runtime
        database: dict[str, Any] = {"url": redact_url(self.settings.database_url)}
        try:
            self.store.revision()
            database["reachable"] = True
        except SchedulerError as exc:
            database.update(reachable=False, error=str(exc))
        if runtime is None:
            status, problems = "down", ["the scheduler is not running in this process"]
        elif not database["reachable"]:
            status, problems = "down", [f"database unreachable: {database['error']}"]
        else:
            status, problems = self._verdict(runtime)
        return {
            "status": status,
            "role": self.role,
            "running": runtime is not None and runtime.engine.running,
            "engine_seconds_since_pass": None
            if runtime is None
            else runtime.engine.seconds_since_pass,
            "database": database,
            "problems": problems,
        }

    def _verdict(self, runtime: Runtime) -> tuple[str, list[str]]:
        """ok, degraded or down for a scheduler running here, and why."""
        stale = runtime.engine.seconds_since_pass > 60
        problems = [runtime.store_error] if runtime.store_error else []
        if not self.ledger.healthy:
            problems.append(f"ledger: {self.ledger.last_error}")
        if runtime.outage is not None and not problems:
            problems.append(f"firing paused: {runtime.outage}")
        if not runtime.engine.running:
            return "down", problems
        return ("degraded" if stale or problems else "ok"), problems

    def _heartbeat(self) -> tuple[float | None, list[str]]:
        """Age of the scheduler's heartbeat (None: none) and what is wrong with it."""
        beat = self.store.heartbeat()
        age = None if not beat else time.time() - beat
        if age is not None and age < 3 * self.settings.poll_interval + 5:
            return age, []
        if beat == 0:
            return age, ["the scheduler stopped cleanly and has not started since"]
        if beat is None:
            return age, ["no scheduler process has ever run on this database"]
        return age, [f"no scheduler heartbeat for {age:.0f} s (crashed or hung?)"]

    def status(self) -> str:
        """``health_check``'s ok, degraded or down, without reading whole tables."""
        runtime = self._runtime
        try:
            if runtime is None:
                return "down" if self._heartbeat()[1] else "ok"
            self.store.revision()
        except SchedulerError:
            return "down"
        return self._verdict(runtime)[0]

    def _remote_health(
        self, schedules: list[ScheduleDef], metrics: dict[str, Any], database: dict[str, Any]
    ) -> dict[str, Any]:
        """Health seen from another process (the CLI): judged by the scheduler's heartbeat."""
        age, problem = self._heartbeat()
        return {
            "status": "down" if problem else "ok",
            "role": self.role,
            "running": False,
            "scheduler_heartbeat_age_seconds": age,
            "jobs": {
                "total": len(schedules),
                "enabled": sum(s.enabled for s in schedules),
                "paused": sum(not s.enabled for s in schedules),
            },
            "metrics": metrics,
            "database": database,
            "problems": problem,
        }

    def _next_due(self) -> dict[str, Any] | None:
        runtime = self._runtime
        if runtime is None:
            return None
        upcoming = [(t, n) for n, t in runtime.engine.next_runs().items() if t is not None]
        if not upcoming:
            return None
        at, name = min(upcoming)
        return {"name": name, "at": at.isoformat()}

    def remember(self, key: str, value: int) -> None:
        """Keep a small integer in the database (e.g. the bot's synced command-set hash)."""
        self.store.set_meta(f"app:{key}", value)

    def recall(self, key: str) -> int | None:
        return self.store.get_meta(f"app:{key}")

    def audit(
        self, *, actor: str, surface: str, action: str, target: str, detail: str = ""
    ) -> None:
        """Record a change made through a surface (chat, API) in the audit trail."""
        self._audit(actor, surface, action, target, detail)

    def audit_trail(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.store.audit_trail(limit)

    def add_listener(self, callback: Listener, events: int = EVENT_ALL) -> None:
        self.events.add_listener(callback, events)

    def remove_listener(self, callback: Listener) -> None:
        self.events.remove_listener(callback)

    # --- lifecycle ------------------------------------------------------------------------

    role: str | None = None
    """``leader`` or ``standby`` with SCHEDULER_DISTRIBUTED (set by serve); None otherwise."""

    @property
    def running(self) -> bool:
        return self._runtime is not None and self._runtime.engine.running

    async def astart(
        self,
        *,
        leader_token: int | None = None,
        on_step_down: Callable[[str], None] | None = None,
    ) -> None:
        """Start on the running event loop (the bot's, or main_scheduler's).

        As the leader of several processes, pass ``on_step_down``: the fence is advanced
        (to at least ``leader_token``, the lease's fencing token) before anything is
        claimed, and ``on_step_down(reason)`` is called if the term must end (claims
        refused for a stale fence, or the database gone for longer than the lease TTL).
        """
        if self._runtime is not None:
            raise SchedulerError("the scheduler is running already")
        self._loop = asyncio.get_running_loop()
        runtime = Runtime(
            self.settings,
            self.store,
            self.ledger,
            self.resolve,
            self.events,
            leader_token=leader_token,
            on_step_down=on_step_down,
            executor=self._executor(),
        )
        self._runtime = runtime
        try:
            await runtime.start()
        except BaseException:
            self._runtime = None
            raise
        self._started_at = time.monotonic()

    async def astop(self, grace: float | None = None, *, step_down: bool = False) -> int:
        """Stop firing, let running runs finish within ``grace`` seconds, cancel the rest.

        ``step_down``: the process stays up as a standby, and results not yet written
        stay queued until the database takes them.
        """
        runtime = self._runtime
        if runtime is None:
            return 0
        cancelled = await runtime.stop(
            self.settings.shutdown_grace if grace is None else grace, keep_ledger=step_down
        )
        self._runtime = None
        return cancelled

    def halt(self) -> None:
        """Stop firing at once, on the loop (the lease is lost); ``astop`` follows."""
        if self._runtime is not None:
            self._runtime.halt()

    def start(self) -> None:
        """Start: on the running loop if there is one, else in a background thread."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._start_thread()
            return
        loop.create_task(self.astart(), name="pipebot-scheduler-start")

    def _start_thread(self) -> None:
        ready: Future[None] = Future()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:
                ready.set_exception(exc)
                loop.close()
                return
            ready.set_result(None)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=main, name="pipebot-scheduler", daemon=True)
        self._thread.start()
        ready.result()

    def stop(self, grace: float | None = None) -> None:
        """Stop the scheduler (blocks until stopped when it runs in a background thread)."""
        loop = self._loop
        if loop is None or self._runtime is None:
            return
        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(self.astop(grace), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join()
            self._thread = None
        else:
            loop.create_task(self.astop(grace))

    shutdown = stop

    # --- plumbing -------------------------------------------------------------------------

    def _code_schedule(
        self,
        name: str,
        target: Any,
        kind: str,
        fields: dict[str, Any],
        timezone: str | None,
        policies: Mapping[str, Any],
    ) -> ScheduleInfo:
        schedule = self._definition(name, target, kind, fields, timezone, policies, "code")
        return self._upsert(schedule, self.store.get(name), actor="code", surface="code")

    def _definition(
        self,
        name: str,
        target: Any,
        kind: str,
        fields: dict[str, Any],
        timezone: str | None,
        policies: Mapping[str, Any],
        owner: Owner,
    ) -> ScheduleDef:
        if isinstance(target, str):
            if target not in self._targets:
                raise UnknownPipelineError(target)
            pipeline = target
        elif isinstance(target, Pipeline):
            pipeline = target.name
            self.register(pipeline, target)
        else:
            pipeline = name  # a callable is bound to the schedule's own name
            self.register(name, target)
        try:
            policy = Policies(**policies)
        except TypeError as exc:
            raise InvalidScheduleError(f"unknown schedule option: {exc}") from None
        return make_schedule(
            name,
            pipeline,
            kind,
            fields,
            timezone=timezone or self.settings.timezone,
            policies=policy,
            owner=owner,
        )

    def _upsert(
        self, schedule: ScheduleDef, existing: ScheduleDef | None, *, actor: str, surface: str
    ) -> ScheduleInfo:
        if existing is None:
            self.store.add(schedule)
            self._audit(actor, surface, "schedule", schedule.name)
        elif existing.owner != schedule.owner:
            raise JobExistsError(schedule.name)
        elif existing.definition_hash() != schedule.definition_hash():
            self.store.replace(schedule)
            self._audit(actor, surface, "reschedule", schedule.name)
        else:
            return self.get_schedule(schedule.name)  # same definition: callable re-bound only
        self._changed(schedule)
        return self.get_schedule(schedule.name)

    def _audit(self, actor: str, surface: str, action: str, target: str, detail: str = "") -> None:
        self.store.audit(actor=actor, surface=surface, action=action, target=target, detail=detail)

    def _changed(self, schedule: ScheduleDef) -> None:
        runtime = self._runtime
        if runtime is not None:
            self._call_soon(lambda: runtime.apply(schedule))
        self.events.emit(JobEvent(EVENT_JOB_ADDED, schedule.name, schedule.pipeline))

    def _dropped(self, name: str, pipeline: str) -> None:
        runtime = self._runtime
        if runtime is not None:
            self._call_soon(lambda: runtime.drop(name))
        self.events.emit(JobEvent(EVENT_JOB_REMOVED, name, pipeline))

    def _call_soon(self, callback: Callable[[], Any]) -> None:
        loop = self._loop
        if loop is None:
            return
        if _on_loop(loop):
            callback()
        else:
            loop.call_soon_threadsafe(callback)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None or self._runtime is None:
            coro.close()
            raise SchedulerError("the scheduler is not running; call start() first")
        if _on_loop(loop):
            coro.close()
            raise SchedulerError("called on the scheduler's event loop: use 'await arun(...)'")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _as_target(target: Target | Pipeline | Callable[[], Any]) -> Target:
    if isinstance(target, Pipeline):
        return PipelineTarget(target)
    if hasattr(target, "run") and hasattr(target, "timeout"):
        return target  # type: ignore[return-value]
    if callable(target):
        return CallableTarget(target)
    raise SchedulerError(f"cannot schedule {type(target).__name__}: not a pipeline or callable")


def _target_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    if isinstance(target, Pipeline):
        return target.name
    return str(getattr(target, "__name__", "")) or uuid.uuid4().hex[:12]


def _trigger_choice(
    cron: str | None, every: str | None, interval: Mapping[str, float] | None
) -> tuple[str, dict[str, Any]]:
    from .triggers import parse_every

    given = [x for x in (cron, every, interval) if x is not None]
    if len(given) != 1:
        raise InvalidScheduleError("give exactly one of a cron expression or an interval")
    if cron is not None:
        return "cron", {"expression": cron}
    if every is not None:
        return "interval", {"seconds": int(parse_every(every).total_seconds())}
    assert interval is not None
    return "interval", {"seconds": interval_seconds(interval)}


def _aps_cron_expression(args: Mapping[str, Any]) -> str:
    """APScheduler's defaulting: unset fields after the first set one take their minimum."""
    order = ("month", "day", "day_of_week", "hour", "minute")
    minimum = {"hour": "0", "minute": "0"}
    values: dict[str, str] = {}
    seen = False
    for field_name in order:
        if field_name in args:
            seen = True
            values[field_name] = str(args[field_name])
        else:
            values[field_name] = minimum.get(field_name, "*") if seen else "*"
    return " ".join(values[f] for f in _APS_CRON_FIELDS)


def _aps_trigger(trigger: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if trigger == "cron":
        if "cron" in args:
            return "cron", {"expression": str(args.pop("cron"))}
        for bad in ("second", "week", "year", "start_date", "end_date"):
            if bad in args and not (bad == "second" and args[bad] in (0, "0")):
                raise InvalidScheduleError(f"cron field {bad!r} is not supported (5-field cron)")
        dow = args.get("day_of_week")
        if dow is not None and any(ch.isdigit() for ch in str(dow)):
            raise InvalidScheduleError(
                "day_of_week must use names (mon-fri): APScheduler numbers Monday 0, "
                "cron numbers Sunday 0, so numbers are ambiguous"
            )
        unknown = set(args) - set(_APS_CRON_FIELDS) - {"second"}
        if unknown:
            raise InvalidScheduleError(f"unknown cron field {sorted(unknown)[0]!r}")
        return "cron", {"expression": _aps_cron_expression(args)}
    if trigger == "interval":
        return "interval", {"seconds": interval_seconds(args)}
    if trigger == "date":
        run_date = args.get("run_date")
        if run_date is None:
            raise InvalidScheduleError("a date trigger needs run_date")
        text = run_date.isoformat() if isinstance(run_date, datetime) else str(run_date)
        return "date", {"run_date": text}
    raise InvalidScheduleError(f"unknown trigger {trigger!r} (cron, interval or date)")
