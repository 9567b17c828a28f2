"""The long-running process: scheduler (and, with a token, the Discord bot) in one loop.

Start-up: pipelines.yml is validated (any problem refuses to start), its schedules
are synced into the store before anything fires, the scheduler starts (marking
abandoned runs and catching up missed instants), and pipelines without a schedule
run once. SIGTERM/SIGINT stop new runs, give running ones ``SCHEDULER_SHUTDOWN_GRACE``
seconds, cancel and record the rest, then exit 0. SIGHUP reloads pipelines.yml.

With ``SCHEDULER_DISTRIBUTED=true`` several processes share one store and only the
holder of the lease (``scheduler.lease``) runs the scheduler and the Discord bot; the
others serve the API as standbys (changes go through the store) and wait for the
lease. A leader that loses its lease stops firing at once (engine shut down, claims
refused), closes its gateway session, lets running runs finish within the grace, and
goes back to standby in the same process: the API stays up, no supervisor is needed,
and the next term starts from a fresh runtime. SIGTERM hands over cleanly: runs are
drained and recorded first, then the lease is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from api.app import start_api, stop_api
from api.metrics import watch_discord
from api.settings import ApiSettings
from bot.app import PipeBot
from bot.runner import run_bot
from bot.settings import BotSettings
from scheduler.errors import SchedulerError
from scheduler.lease import Lease, open_lease
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings
from scheduler.targets import Target

from .project import Project, load_project

logger = logging.getLogger(__name__)
WORKER_THREADS = 32
GC_YOUNG_THRESHOLD = 50_000
STANDBY_RETRY = 1.0
"""Seconds a standby waits before trying again when it cannot start as the leader."""


def build_scheduler(
    settings: SchedulerSettings, path: Path, environ: Mapping[str, str] | None = None
) -> tuple[PipelineScheduler, Project]:
    """A scheduler with pipelines.yml's pipelines registered and its reload source set."""
    project = load_project(path, settings, environ)
    scheduler = PipelineScheduler(settings, targets=project.targets)

    def reload_source() -> tuple[dict[str, Target], list]:  # type: ignore[type-arg]
        fresh = load_project(path, settings, environ)
        return fresh.targets, fresh.schedules

    scheduler.set_yaml_source(reload_source)
    return scheduler, project


async def serve(
    settings: SchedulerSettings, path: Path, *, stop: asyncio.Event | None = None
) -> int:
    """Run until SIGTERM/SIGINT (or until ``stop`` is set, for embedding); the exit code."""
    bot_settings = BotSettings.from_env()  # bad settings refuse to start, before anything runs
    api_settings = ApiSettings.from_env()
    # Fewer young-generation collections: a burst of 10,000 runs spent 1.1-1.5 s of CPU in
    # the collector with the default 700 (bench/scheduler_bench.py --gc-threshold 50000).
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="pipebot")
    )
    scheduler, project = await asyncio.to_thread(build_scheduler, settings, path)
    logger.info(
        "loaded %s: %d pipeline(s), %d scheduled, %d to run once at start-up",
        path,
        len(project.targets),
        len(project.schedules),
        len(project.unscheduled),
    )
    if settings.distributed:
        lease = open_lease(settings)  # a missing driver refuses to start, before the API
        api = await start_api(scheduler, api_settings) if api_settings.enabled else None
        stop = stop or asyncio.Event()
        _install_signals(loop, stop, scheduler)
        try:
            await _serve_terms(scheduler, project, lease, bot_settings, stop, api)
        finally:
            if api is not None:
                await stop_api(api)
        logger.info("stopped")
        return 0
    await asyncio.to_thread(scheduler.sync_yaml, project.schedules)
    api = await start_api(scheduler, api_settings) if api_settings.enabled else None
    client = _new_bot(scheduler, bot_settings, api)  # before astart: it hears start-up alerts
    await scheduler.astart()
    gc.freeze()  # start-up objects leave the collector's scans: shorter pauses under bursts
    await _log_schedules(scheduler)
    stop = stop or asyncio.Event()
    _install_signals(loop, stop, scheduler)
    startup = [asyncio.create_task(_startup_run(scheduler, name)) for name in project.unscheduled]
    bot = _start_bot(client, bot_settings, stop)
    await stop.wait()
    logger.info("stopping: no new runs; waiting for running ones")
    if bot is not None:
        await bot  # run_bot closes the gateway session once ``stop`` is set
    cancelled = await scheduler.astop()
    for task in startup:
        task.cancel()
    await asyncio.gather(*startup, return_exceptions=True)
    if api is not None:
        await stop_api(api)
    logger.info("stopped (%d run(s) cancelled at shutdown)", cancelled)
    return 0


async def _serve_terms(
    scheduler: PipelineScheduler,
    project: Project,
    lease: Lease,
    bot_settings: BotSettings,
    stop: asyncio.Event,
    api: web.AppRunner | None,
) -> None:
    """Standby, leader, standby ... until ``stop`` is set."""
    startup: list[asyncio.Task[None]] = []
    terms = 0
    try:
        while not stop.is_set():
            scheduler.role = "standby"
            acquired, token = await _acquire(scheduler, lease, stop)
            if not acquired:
                break
            loss = _Loss(scheduler)
            lease.watch(loss.set)
            client = _new_bot(scheduler, bot_settings, api)  # a fresh client every term
            if not await _begin_term(scheduler, project, token, loss, first=terms == 0):
                if client is not None:
                    client.detach()
                await lease.release()
                await _sleep_unless(stop, STANDBY_RETRY)
                continue
            terms += 1
            if terms == 1:
                gc.freeze()
                await _log_schedules(scheduler)
                startup = [
                    asyncio.create_task(_startup_run(scheduler, name))
                    for name in project.unscheduled
                ]
            await _lead(scheduler, lease, client, bot_settings, stop, loss)
            if not loss.event.is_set():
                break  # stopped cleanly: runs drained, the ledger written
            # A leader that just lost its term lets the standbys go first: competing again
            # at once, it would often win the lease back from the process meant to replace it.
            await _sleep_unless(stop, lease.ttl)
    finally:
        for task in startup:
            task.cancel()
        await asyncio.gather(*startup, return_exceptions=True)
        await scheduler.astop()
        await scheduler.ledger.stop()
        await lease.release()
        scheduler.role = None


class _Loss:
    """The end of a leader term: lease lost or stepped down. Firing stops when it is set."""

    def __init__(self, scheduler: PipelineScheduler) -> None:
        self.scheduler = scheduler
        self.event = asyncio.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.scheduler.halt()  # before anything else can fire or claim
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


async def _acquire(
    scheduler: PipelineScheduler, lease: Lease, stop: asyncio.Event
) -> tuple[bool, int | None]:
    """Wait for the database, then for the lease; (False, None) when stopped first."""
    logger.info(
        "standby: waiting for the %s lease %s (TTL %gs)", lease.backend, lease.name, lease.ttl
    )
    failures = 0
    while not stop.is_set():
        try:
            await asyncio.to_thread(scheduler.store.revision)
            break
        except SchedulerError as exc:
            failures += 1
            if failures == 1:
                logger.warning("standby: database unreachable, not taking the lease: %s", exc)
            await _sleep_unless(stop, STANDBY_RETRY)
    acquiring = asyncio.create_task(lease.acquire(), name="pipebot-acquire")
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not acquiring.done() or stop.is_set():
        acquiring.cancel()
        await asyncio.gather(acquiring, return_exceptions=True)
        return False, None
    return True, acquiring.result()


async def _begin_term(
    scheduler: PipelineScheduler, project: Project, token: int | None, loss: _Loss, *, first: bool
) -> bool:
    """Sync pipelines.yml into the store and start the scheduler as the leader."""
    try:
        if first:
            await asyncio.to_thread(scheduler.sync_yaml, project.schedules)
        else:
            try:
                await asyncio.to_thread(scheduler.reload)
            except SchedulerError:
                raise
            except Exception as exc:  # a bad edit: keep what the store has
                problems = str(exc).replace("\n", "; ")
                logger.error("pipelines.yml not reloaded at takeover: %s", problems)
        await scheduler.astart(leader_token=token, on_step_down=loss.set)
    except SchedulerError as exc:
        logger.error("cannot start as the leader, standing by again: %s", exc)
        return False
    scheduler.role = "leader"
    logger.info("leader: scheduler started (fence %s)", scheduler.ledger.fence)
    return True


async def _lead(
    scheduler: PipelineScheduler,
    lease: Lease,
    client: PipeBot | None,
    bot_settings: BotSettings,
    stop: asyncio.Event,
    loss: _Loss,
) -> None:
    """One leader term: the bot runs until stopped or the term ends; then runs drain.

    A term that ended gives the lease up at once (its claims are fenced off already), so
    a standby need not wait for the drain; a clean stop releases it after the drain.
    """
    bot_stop = asyncio.Event()
    bot = _start_bot(client, bot_settings, bot_stop)
    ending = [asyncio.create_task(stop.wait()), asyncio.create_task(loss.event.wait())]
    await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
    for task in ending:
        task.cancel()
    if loss.event.is_set():
        logger.error("leadership lost (%s): firing stopped, stepping down", loss.reason)
        await lease.release()
    else:
        logger.info("stopping: no new runs; waiting for running ones")
    bot_stop.set()
    if bot is not None:
        await bot  # the gateway session closes: the next leader's bot answers alone
    cancelled = await scheduler.astop(step_down=loss.event.is_set())
    if loss.event.is_set():
        logger.info("standby again (%d run(s) cancelled at step-down)", cancelled)
    else:
        logger.info("scheduler stopped (%d run(s) cancelled at shutdown)", cancelled)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def _new_bot(
    scheduler: PipelineScheduler, settings: BotSettings, api: web.AppRunner | None
) -> PipeBot | None:
    """The Discord client (not connected yet), its state exported as a metric; None
    without a token."""
    if settings.token is None:
        return None
    bot = PipeBot(scheduler, settings, start_scheduler=False)
    if api is not None:
        watch_discord(api.app, bot.connection_probe())
    return bot


def _start_bot(
    bot: PipeBot | None, settings: BotSettings, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """Run ``bot`` on this loop until ``stop``, reconnecting with backoff."""
    if bot is None or settings.token is None:
        logger.info("DISCORD_TOKEN is not set: running the scheduler without the Discord bot")
        return None
    return asyncio.create_task(run_bot(bot, settings.token, stop=stop), name="pipebot-bot")


async def _log_schedules(scheduler: PipelineScheduler) -> None:
    for info in await asyncio.to_thread(scheduler.list_schedules):
        logger.info(
            "schedule %s (%s %s %s, owner %s): next run %s",
            info.name,
            info.type,
            info.expression,
            info.timezone,
            info.owner,
            _local(info.next_run, info.timezone),
        )


def _local(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return "none (paused or finished)"
    return moment.astimezone(ZoneInfo(timezone)).isoformat(timespec="seconds")


async def _startup_run(scheduler: PipelineScheduler, name: str) -> None:
    try:
        await scheduler.arun(name, trigger="startup")
    except SchedulerError as exc:
        logger.warning("start-up run of %s: %s", name, exc)


def _install_signals(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, scheduler: PipelineScheduler
) -> None:
    def reload() -> None:
        async def run() -> None:
            try:
                report = await asyncio.to_thread(scheduler.reload)
                logger.info("reloaded pipelines.yml: %s", report)
            except Exception as exc:  # a bad edit must not stop a running scheduler
                problems = str(exc).replace("\n", "; ")
                logger.error("reload refused, keeping the running configuration: %s", problems)

        loop.create_task(run())

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload)
