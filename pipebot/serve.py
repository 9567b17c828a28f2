"""The long-running process: scheduler (and, with a token, the Discord bot) in one loop.

Start-up: pipelines.yml is validated (any problem refuses to start), its schedules
are synced into the store before anything fires, the scheduler starts (marking
abandoned runs and catching up missed instants), and pipelines without a schedule
run once. SIGTERM/SIGINT stop new runs, give running ones ``SCHEDULER_SHUTDOWN_GRACE``
seconds, cancel and record the rest, then exit 0. SIGHUP reloads pipelines.yml.
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

from api.app import start_api, stop_api
from api.settings import ApiSettings
from bot.app import PipeBot
from bot.runner import run_bot
from bot.settings import BotSettings
from scheduler.errors import SchedulerError
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings
from scheduler.targets import Target

from .project import Project, load_project

logger = logging.getLogger(__name__)
WORKER_THREADS = 32


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
    await asyncio.to_thread(scheduler.sync_yaml, project.schedules)
    api = await start_api(scheduler, api_settings) if api_settings.enabled else None
    await scheduler.astart()
    gc.freeze()  # start-up objects leave the collector's scans: shorter pauses under bursts
    await _log_schedules(scheduler)
    stop = stop or asyncio.Event()
    _install_signals(loop, stop, scheduler)
    startup = [asyncio.create_task(_startup_run(scheduler, name)) for name in project.unscheduled]
    bot = _start_bot(scheduler, bot_settings, stop)
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


def _start_bot(
    scheduler: PipelineScheduler, settings: BotSettings, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """The Discord bot on this loop, reconnecting with backoff; None without a token."""
    if settings.token is None:
        logger.info("DISCORD_TOKEN is not set: running the scheduler without the Discord bot")
        return None
    bot = PipeBot(scheduler, settings, start_scheduler=False)
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
