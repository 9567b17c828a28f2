"""pipebot's scheduler beside plain APScheduler 3.11 on SQLite; prints one compact table.

    PYTHONPATH=. python bench/scheduler_bench.py [--repeat 3] [--jobs 1000,10000] [--quick]

Every figure comes from a fresh subprocess (``--scenario ...`` prints one JSON line),
so start-up and RSS are clean and neither side warms the other; the sides alternate
and each figure is the median of ``--repeat`` runs ("ran" is the worst run). The
``pb/APS`` column is pipebot's figure over APScheduler's (below 1: pipebot is faster);
the last line sums up the aims and those ratios. ``--quick`` (1,000 schedules and
jobs, one run, < 1 minute) is a smoke test, not a measurement.

* cron: the next fire time after a fixed instant of 10 expressions in UTC and
  Europe/Stockholm: pipebot's ``CronTrigger.next_fire`` against APScheduler's
  ``CronTrigger.get_next_fire_time``; the median over the 20 cases of microseconds a call.
* add: ``--schedules`` (10,000) distinct cron expressions (day-of-week by name, which
  both read alike), validated and stored. pipebot: ``make_schedule`` +
  ``PipelineScheduler.add_schedules``. APScheduler: ``CronTrigger.from_crontab`` +
  ``add_job`` into its ``SQLAlchemyJobStore``. "store only": no engine running
  (APScheduler writes its pending jobs in ``start(paused=True)``, which is timed);
  "while running": into a started scheduler, the engine's own bookkeeping included
  (APScheduler only with ``--aps-running-add``: 10,000 one-row commits plus a wake-up
  each take about a minute a run).
* start-up with those schedules persisted: constructor + start + the first engine pass,
  and the RSS it adds; KB per schedule is against the same start-up with none. The
  sides do different work here: pipebot loads every schedule into its in-memory
  timetable, APScheduler's ``SQLAlchemyJobStore`` loads none (it queries the due ones
  each pass), so no ratio is shown. pipebot's RSS includes SQLite's page cache of the
  pooled connection that read the schedules (at most 2 MB a connection).
* burst: N one-off jobs due at one instant ``--lead`` seconds ahead (pipebot: ``date``
  schedules, added while running; APScheduler: ``DateTrigger`` jobs). Lateness is each
  job's start minus that instant (its max is the last start); the stall is the longest
  event-loop stall from the end of the set-up until all ran (pipebot's stall while
  ``add_schedules`` fed its engine is shown apart). APScheduler runs with
  ``misfire_grace_time=None`` and, except with ``--quick``, again with its default (1 s).

Both sides keep their own SQLite settings: pipebot WAL with ``synchronous=NORMAL``,
APScheduler SQLAlchemy's defaults (rollback journal, ``synchronous=FULL``). Only the
set-up of an APScheduler burst (not measured) writes with ``synchronous=OFF``, so that
10,000 one-row commits take seconds instead of a quarter of a minute. The machine's
load average is printed first and last: on a busy machine, rerun. ``--gc-threshold N``
sets the cyclic garbage collector's first threshold in both sides' processes (CPython's
default is 700; a 10,000-job burst allocates enough to trigger several full collections
at that setting, each a stall of 50-300 ms). "CPU used" is the process's CPU time (all
threads) from the due instant until every job had run: a figure that a busy machine
disturbs less than the wall-clock ones.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import StallMonitor, median, peak_rss_kb, percentile, rss_kb  # noqa: E402
from apscheduler.events import (  # noqa: E402
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # noqa: E402
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # noqa: E402
from apscheduler.triggers.cron import CronTrigger as ApsCronTrigger  # noqa: E402
from apscheduler.triggers.date import DateTrigger as ApsDateTrigger  # noqa: E402
from sqlalchemy import event, func, select  # noqa: E402

from pipelines.db import dispose_engine  # noqa: E402
from scheduler import EVENT_JOB_ERROR as PB_JOB_ERROR  # noqa: E402
from scheduler import EVENT_JOB_EXECUTED as PB_JOB_EXECUTED  # noqa: E402
from scheduler import EVENT_JOB_MISSED as PB_JOB_MISSED  # noqa: E402
from scheduler import JobEvent, PipelineScheduler, SchedulerSettings  # noqa: E402
from scheduler.schedules import make_schedule  # noqa: E402
from scheduler.triggers import CronTrigger as PbCronTrigger  # noqa: E402

SIDES = ("pipebot", "aps")
SHUTDOWN_GRACE = 5.0
BURST_TIMEOUT = 30.0
"""Seconds after the due instant a burst may take before the run gives up waiting."""
CHILD_TIMEOUT = 300.0
STARTS: list[float] = []
"""Wall-clock start of every burst job in this process (appended by the job itself)."""
CPU_AT: dict[str, float] = {}
"""Process CPU seconds at the due instant ("due") and once all jobs ran ("done")."""


# --- the jobs (module level, so APScheduler can pickle references to them) ------------------


async def noop(index: int = 0) -> None:
    """Does nothing (the target of the cron schedules)."""


async def record_start(index: int) -> None:
    """A burst job: notes when it started."""
    STARTS.append(time.time())


WEEKDAYS = ("*", "mon-fri", "sat,sun", "mon", "tue-thu", "mon,wed,fri", "fri")
"""Day-of-week fields by name: names mean the same to both (numbers do not)."""


def cron_expression(index: int) -> str:
    """Varied cron expressions, all distinct for the first 10,080 indexes."""
    weekday = WEEKDAYS[index // 1440 % len(WEEKDAYS)]
    return f"{index % 60} {index // 60 % 24} * * {weekday}"


def sqlite_url(directory: str, name: str) -> str:
    return f"sqlite:///{Path(directory) / name}"


def pipebot_settings(directory: str) -> SchedulerSettings:
    return SchedulerSettings(database_url=sqlite_url(directory, "pipebot.db"), timezone="UTC")


class _SetupPragma:
    """``synchronous=OFF`` on new connections while ``fast`` (APScheduler burst set-up)."""

    def __init__(self) -> None:
        self.fast = False

    def __call__(self, dbapi_connection: Any, _record: Any) -> None:
        if self.fast:
            dbapi_connection.execute("PRAGMA synchronous=OFF")


def aps_scheduler(directory: str) -> tuple[AsyncIOScheduler, SQLAlchemyJobStore]:
    store = SQLAlchemyJobStore(url=sqlite_url(directory, "aps.db"))
    return AsyncIOScheduler(jobstores={"default": store}, timezone=UTC), store


async def aps_stop(scheduler: AsyncIOScheduler, store: SQLAlchemyJobStore) -> None:
    if scheduler.running:
        scheduler.shutdown(wait=False)
    await asyncio.sleep(0.05)  # AsyncIOScheduler shuts down in a loop callback
    store.engine.dispose()


def aps_count(store: SQLAlchemyJobStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(store.jobs_t)) or 0)


# --- scenario: add ------------------------------------------------------------------------


async def pipebot_add(directory: str, count: int, running: bool) -> dict[str, Any]:
    settings = pipebot_settings(directory)
    scheduler = PipelineScheduler(settings)
    scheduler.register("noop", noop)
    if running:
        await scheduler.astart()
    started = time.perf_counter()
    schedules = [
        make_schedule(
            f"s{i:05d}", "noop", "cron", {"expression": cron_expression(i)}, timezone="UTC"
        )
        for i in range(count)
    ]
    validated = time.perf_counter()
    scheduler.add_schedules(schedules)  # on the loop: the engine is updated before it returns
    await asyncio.sleep(0)
    done = time.perf_counter()
    stored = scheduler.store.count()
    if running:
        await scheduler.astop(SHUTDOWN_GRACE)
    dispose_engine(settings.database_url)
    return {
        "add_s": done - started,
        "validate_s": validated - started,
        "store_s": done - validated,
        "stored": stored,
    }


async def aps_add(directory: str, count: int, running: bool) -> dict[str, Any]:
    scheduler, store = aps_scheduler(directory)
    if running:
        scheduler.start()
    started = time.perf_counter()
    for i in range(count):
        trigger = ApsCronTrigger.from_crontab(cron_expression(i), timezone=UTC)
        scheduler.add_job(noop, trigger, args=(i,), id=f"s{i:05d}")
    if not running:
        scheduler.start(paused=True)  # writes the pending jobs to the job store
    await asyncio.sleep(0)  # the wake-ups each add_job queued on the loop
    done = time.perf_counter()
    stored = aps_count(store)
    await aps_stop(scheduler, store)
    return {"add_s": done - started, "stored": stored}


# --- scenario: start-up -------------------------------------------------------------------


def memory_before() -> tuple[int, int]:
    gc.collect()
    return rss_kb(), peak_rss_kb()


def memory_report(before: tuple[int, int]) -> dict[str, Any]:
    gc.collect()
    return {"rss_kb": rss_kb(), "rss_delta_kb": rss_kb() - before[0], "peak_kb": peak_rss_kb()}


async def pipebot_startup(directory: str) -> dict[str, Any]:
    settings = pipebot_settings(directory)
    before = memory_before()
    started = time.perf_counter()
    scheduler = PipelineScheduler(settings)
    scheduler.register("noop", noop)
    await scheduler.astart()
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    report = memory_report(before)
    runtime = scheduler._runtime  # a peek inside, to check what was loaded
    loaded = 0 if runtime is None else len(runtime.engine.names())
    await scheduler.astop(SHUTDOWN_GRACE)
    dispose_engine(settings.database_url)
    return {"start_s": elapsed, "loaded": loaded, **report}


async def aps_startup(directory: str) -> dict[str, Any]:
    before = memory_before()
    started = time.perf_counter()
    scheduler, store = aps_scheduler(directory)
    scheduler.start()
    await asyncio.sleep(0)  # the first pass over the job store (queued by start)
    elapsed = time.perf_counter() - started
    report = memory_report(before)
    loaded = aps_count(store)  # APScheduler leaves the jobs in the database
    await aps_stop(scheduler, store)
    return {"start_s": elapsed, "loaded": loaded, **report}


# --- scenario: burst ----------------------------------------------------------------------


class _Countdown:
    """Counts finished jobs (and misses); ``done`` is set once ``total`` are in."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.finished = 0
        self.missed = 0
        self.done = asyncio.Event()
        if total == 0:
            self.done.set()

    def add(self, missed: bool = False) -> None:
        self.finished += 1
        self.missed += missed
        if self.finished >= self.total and not self.done.is_set():
            CPU_AT["done"] = time.process_time()
            self.done.set()

    async def wait(self, deadline: float) -> bool:
        try:
            await asyncio.wait_for(self.done.wait(), max(0.0, deadline - time.time()))
        except TimeoutError:
            return False
        return True


def due_instant(seconds_ahead: float) -> float:
    """A whole second at least ``seconds_ahead`` from now (epoch seconds)."""
    return float(math.ceil(time.time() + seconds_ahead))


def note_cpu_at_due(due: float) -> None:
    """Sample the process CPU time at the due instant (for ``burst_cpu``)."""
    loop = asyncio.get_running_loop()
    loop.call_at(loop.time() + due - time.time(), _sample_due)


def _sample_due() -> None:
    CPU_AT["due"] = time.process_time()


def burst_cpu() -> float | None:
    """CPU seconds this process used from the due instant until all jobs ran (all threads)."""
    if "due" not in CPU_AT or "done" not in CPU_AT:
        return None
    return max(0.0, CPU_AT["done"] - CPU_AT["due"])


def lateness(starts: Sequence[float], due: float, expected: int) -> dict[str, Any]:
    late = sorted(start - due for start in starts)
    return {
        "ran": len(late),
        "expected": expected,
        "first_s": late[0] if late else None,
        "p50_s": percentile(late, 0.50),
        "p99_s": percentile(late, 0.99),
        "last_s": late[-1] if late else None,
    }


def add_burst(scheduler: PipelineScheduler, count: int, run_date: str) -> None:
    """Validate and add the burst schedules (in a worker thread, as a bulk load would)."""
    schedules = [
        make_schedule(f"b{i:05d}", f"t{i:05d}", "date", {"run_date": run_date}, timezone="UTC")
        for i in range(count)
    ]
    scheduler.add_schedules(schedules)


async def pipebot_burst(directory: str, count: int, lead: float) -> dict[str, Any]:
    settings = pipebot_settings(directory)
    scheduler = PipelineScheduler(settings)
    for i in range(count):
        scheduler.register(f"t{i:05d}", partial(record_start, i))
    countdown = _Countdown(count)

    def on_event(job_event: JobEvent) -> None:
        countdown.add(missed=job_event.code == PB_JOB_MISSED)

    scheduler.add_listener(on_event, PB_JOB_EXECUTED | PB_JOB_ERROR | PB_JOB_MISSED)
    await scheduler.astart()
    monitor = StallMonitor()
    monitor.start()
    due = due_instant(lead)
    run_date = datetime.fromtimestamp(due, UTC).isoformat()
    setup_started = time.perf_counter()
    await asyncio.to_thread(add_burst, scheduler, count, run_date)  # the engine is fed on the loop
    setup_s = time.perf_counter() - setup_started
    setup_stall = await monitor.next_window()
    slack = due - time.time()
    note_cpu_at_due(due)
    completed = await countdown.wait(due + BURST_TIMEOUT)
    stall = await monitor.stop()
    await scheduler.ledger.flush()
    stats = await asyncio.to_thread(scheduler.ledger.stats, 1)
    await scheduler.astop(SHUTDOWN_GRACE)
    dispose_engine(settings.database_url)
    return {
        **lateness(STARTS, due, count),
        "cpu_s": burst_cpu(),
        "completed": completed,
        "missed": countdown.missed,
        "stall_ms": stall * 1000,
        "setup_s": setup_s,
        "setup_stall_ms": setup_stall * 1000,
        "slack_s": slack,
        "ledger_success": stats.counts.get("success", 0),
    }


def aps_add_burst(
    scheduler: AsyncIOScheduler, count: int, due: datetime, default_grace: bool
) -> None:
    options: dict[str, Any] = {} if default_grace else {"misfire_grace_time": None}
    for i in range(count):
        trigger = ApsDateTrigger(run_date=due, timezone=UTC)
        scheduler.add_job(record_start, trigger, args=(i,), id=f"b{i:05d}", **options)


def aps_seconds_per_add(scheduler: AsyncIOScheduler, sample: int = 100) -> float:
    """How long one add_job takes here (a calibration sample, removed again)."""
    far = datetime.fromtimestamp(due_instant(86_400), UTC)
    started = time.perf_counter()
    for i in range(sample):
        scheduler.add_job(noop, ApsDateTrigger(run_date=far, timezone=UTC), id=f"cal{i}")
    elapsed = time.perf_counter() - started
    scheduler.remove_all_jobs()
    return elapsed / sample


async def aps_burst(directory: str, count: int, lead: float, default_grace: bool) -> dict[str, Any]:
    scheduler, store = aps_scheduler(directory)
    pragma = _SetupPragma()
    event.listen(store.engine, "connect", pragma)
    countdown = _Countdown(count)

    def on_event(job_event: JobExecutionEvent) -> None:
        countdown.add(missed=job_event.code in (EVENT_JOB_MISSED, EVENT_JOB_MAX_INSTANCES))

    scheduler.add_listener(
        on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
    )
    pragma.fast = True
    scheduler.start(paused=True)  # add_job writes to the store at once, nothing fires yet
    monitor = StallMonitor()
    monitor.start()
    estimate = aps_seconds_per_add(scheduler) * count * 1.5
    due = due_instant(lead + estimate)
    setup_started = time.perf_counter()
    aps_add_burst(scheduler, count, datetime.fromtimestamp(due, UTC), default_grace)
    pragma.fast = False
    store.engine.dispose()  # from here on, SQLAlchemy's default synchronous=FULL again
    scheduler.resume()
    setup_s = time.perf_counter() - setup_started
    setup_stall = await monitor.next_window()
    slack = due - time.time()
    note_cpu_at_due(due)
    completed = await countdown.wait(due + BURST_TIMEOUT)
    stall = await monitor.stop()
    await aps_stop(scheduler, store)
    return {
        **lateness(STARTS, due, count),
        "cpu_s": burst_cpu(),
        "completed": completed,
        "missed": countdown.missed,
        "stall_ms": stall * 1000,
        "setup_s": setup_s,
        "setup_stall_ms": setup_stall * 1000,
        "slack_s": slack,
    }


# --- scenario: cron arithmetic -----------------------------------------------------------

CRON_SAMPLES = (
    "*/5 * * * *",
    "0 9 * * mon-fri",
    "30 2 * * *",
    "0 0 1 * *",
    "15 14 1,15 * *",
    "0 */2 * * *",
    "45 23 * * sun",
    "0 12 * jan,jul *",
    "5 4 * * sat,sun",
    "0 0 29 2 *",
)
CRON_ZONES = ("UTC", "Europe/Stockholm")
CRON_NOW = datetime(2025, 6, 15, 10, 30, 17, tzinfo=UTC)
"""A fixed instant, so both sides and every run compute the same fire times."""


def per_call_us(call: Any, number: int = 2000, repeat: int = 5) -> float:
    """Microseconds per call: the best of ``repeat`` timings of ``number`` calls."""
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, time.perf_counter() - started)
    return best / number * 1e6


def cron_next(side: str) -> dict[str, Any]:
    """The next fire time after ``CRON_NOW`` of every sample in every zone, timed."""
    timings = []
    for zone in CRON_ZONES:
        for expression in CRON_SAMPLES:
            if side == "pipebot":
                ours = PbCronTrigger(expression, zone)
                call = partial(ours.next_fire, CRON_NOW)
            else:
                theirs = ApsCronTrigger.from_crontab(expression, timezone=ZoneInfo(zone))
                call = partial(theirs.get_next_fire_time, None, CRON_NOW)
            if call() is None:
                raise SystemExit(f"{side}: {expression} ({zone}) has no next fire time")
            timings.append(per_call_us(call))
    return {"next_us": median(timings), "worst_us": max(timings), "cases": len(timings)}


# --- the child process --------------------------------------------------------------------


async def run_scenario(args: argparse.Namespace) -> dict[str, Any]:
    await asyncio.sleep(0)
    pipebot = args.side == "pipebot"
    if args.scenario == "add":
        running = args.mode == "running"
        add = pipebot_add if pipebot else aps_add
        return await add(args.dir, args.count, running)
    if args.scenario == "startup":
        return await (pipebot_startup if pipebot else aps_startup)(args.dir)
    if args.scenario == "cron":
        return cron_next(args.side)
    if pipebot:
        return await pipebot_burst(args.dir, args.count, args.lead)
    return await aps_burst(args.dir, args.count, args.lead, args.grace == "default")


def child_main(args: argparse.Namespace) -> None:
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    # Both sides log warnings (APScheduler one per missed job) to a real, discarded stream.
    with open(os.devnull, "w") as discard:
        logging.basicConfig(level=logging.WARNING, stream=discard)
        result = asyncio.run(run_scenario(args))
    print(json.dumps(result))


# --- the parent: plan, run, tabulate ------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One scenario, run for each side in each repeat."""

    key: str
    argv: tuple[str, ...]
    folder: str
    sides: tuple[str, ...] = SIDES


def plan(
    schedules: int, jobs: Sequence[int], aps_running_add: bool, aps_default_grace: bool
) -> list[Step]:
    running_sides = SIDES if aps_running_add else ("pipebot",)
    steps = [
        Step("cron", ("cron",), "cron"),
        Step("add_store", ("add", "--count", str(schedules), "--mode", "store"), "full"),
        Step("startup", ("startup",), "full"),
        Step("add_empty", ("add", "--count", "0", "--mode", "store"), "empty"),
        Step("startup_empty", ("startup",), "empty"),
        Step(
            "add_running",
            ("add", "--count", str(schedules), "--mode", "running"),
            "running",
            running_sides,
        ),
    ]
    for n in jobs:
        burst = ("burst", "--count", str(n))
        steps.append(Step(f"burst{n}", (*burst, "--grace", "none"), f"burst{n}"))
        if aps_default_grace:
            grace = ("aps",)
            steps.append(
                Step(f"burst{n}_grace", (*burst, "--grace", "default"), f"burst{n}g", grace)
            )
    return steps


Results = dict[tuple[str, str], list[dict[str, Any]]]


def run_child(
    step: Step, side: str, root: Path, lead: float, extra: Sequence[str]
) -> dict[str, Any]:
    folder = root / side / step.folder
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--scenario", *step.argv]
    command += ["--side", side, "--dir", str(folder), "--lead", str(lead), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        print(f"\n{step.key} ({side}) crashed with exit code {done.returncode}:", file=sys.stderr)
        print(done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(1)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_all(steps: list[Step], repeat: int, lead: float, extra: Sequence[str]) -> Results:
    results: Results = {}
    for round_no in range(1, repeat + 1):
        with tempfile.TemporaryDirectory(prefix="pipebot-bench-") as tmp:
            for step in steps:
                for side in step.sides:
                    started = time.perf_counter()
                    result = run_child(step, side, Path(tmp), lead, extra)
                    results.setdefault((step.key, side), []).append(result)
                    took = time.perf_counter() - started
                    print(f"  round {round_no}: {step.key:<16} {side:<8} {took:6.1f}s", flush=True)
    return results


def figure(results: Results, key: str, side: str, field: str) -> float | None:
    return median(run.get(field) for run in results.get((key, side), []))


def worst(results: Results, key: str, side: str, field: str) -> float | None:
    values = [run[field] for run in results.get((key, side), []) if run.get(field) is not None]
    return min(values) if values else None


@dataclass(frozen=True)
class Row:
    label: str
    pipebot: float | None
    aps: float | None
    unit: str
    aim: float | None = None
    """pipebot's aim: the figure must be at most this."""
    at_least: bool = False
    """The aim is a minimum instead (jobs that ran)."""
    short: str = ""
    """Its name in the summary line (rows without one stay out of it)."""
    comparable: bool = True
    """False where APScheduler does something else (it loads no jobs at start-up)."""


def rss_per_schedule(results: Results, side: str, schedules: int) -> float | None:
    full = figure(results, "startup", side, "rss_delta_kb")
    empty = figure(results, "startup_empty", side, "rss_delta_kb")
    if full is None or empty is None or schedules == 0:
        return None
    return (full - empty) / schedules


def scale(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def setup_rows(results: Results, schedules: int) -> list[Row]:
    def pair(key: str, field: str) -> tuple[float | None, float | None]:
        return figure(results, key, "pipebot", field), figure(results, key, "aps", field)

    n = f"{schedules:,}"
    rss_pb, rss_aps = pair("startup", "rss_delta_kb")
    return [
        Row("cron next fire time (median of 20)", *pair("cron", "next_us"), "us",
            short="cron next"),
        Row(f"add {n} cron, store only", *pair("add_store", "add_s"), "s", 0.5,
            short="add"),
        Row("  of which validation", figure(results, "add_store", "pipebot", "validate_s"),
            None, "s"),
        Row(f"add {n} cron, while running", *pair("add_running", "add_s"), "s", 0.5,
            short="add running"),
        Row(f"start-up, {n} persisted", *pair("startup", "start_s"), "s", 1.0,
            short="start-up", comparable=False),
        Row("start-up, none persisted", *pair("startup_empty", "start_s"), "s"),
        Row(f"RSS added by start-up, {n}", scale(rss_pb, 1 / 1024), scale(rss_aps, 1 / 1024),
            "MB", comparable=False),
        Row("RSS per schedule (vs none)", rss_per_schedule(results, "pipebot", schedules),
            rss_per_schedule(results, "aps", schedules), "KB", 1.0, short="RSS/schedule",
            comparable=False),
    ]  # fmt: skip


def burst_rows(results: Results, n: int) -> list[Row]:
    key, head, short = f"burst{n}", f"{n:,} due at once:", f"{n // 1000}k burst"

    def pair(field: str, factor: float = 1.0) -> tuple[float | None, float | None]:
        return (
            scale(figure(results, key, "pipebot", field), factor),
            scale(figure(results, key, "aps", field), factor),
        )

    return [
        Row(f"{head} ran (worst run)", worst(results, key, "pipebot", "ran"),
            worst(results, key, "aps", "ran"), "jobs", n, at_least=True, short=f"{short} ran"),
        Row("  ran, APScheduler default grace 1 s", None,
            worst(results, f"{key}_grace", "aps", "ran"), "jobs"),
        Row("  last start after due (lateness max)", *pair("last_s"), "s", 1.0,
            short=f"{short} last start"),
        Row("  lateness p50", *pair("p50_s"), "s"),
        Row("  lateness p99", *pair("p99_s"), "s"),
        Row("  CPU used from due until all ran", *pair("cpu_s"), "s"),
        Row("  longest event-loop stall", *pair("stall_ms"), "ms", 250.0,
            short=f"{short} stall"),
        Row("  stall while adding them (set-up)", figure(results, key, "pipebot",
            "setup_stall_ms"), None, "ms"),
        Row("  stall, APScheduler default grace", None,
            figure(results, f"{key}_grace", "aps", "stall_ms"), "ms"),
        Row("  success rows in the ledger", worst(results, key, "pipebot", "ledger_success"),
            None, "rows", n, at_least=True),
    ]  # fmt: skip


def show(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("jobs", "rows") or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def verdict(row: Row) -> str:
    if row.aim is None:
        return ""
    if row.pipebot is None:
        return "missing"
    limit = show(row.aim, row.unit)
    if row.at_least:
        return f">= {limit} " + ("ok" if row.pipebot >= row.aim else "MISSED")
    return f"<= {limit} " + ("ok" if row.pipebot <= row.aim else "MISSED")


def ratio(row: Row) -> str:
    """pipebot's figure over APScheduler's (below 1: pipebot is faster or smaller)."""
    if row.pipebot is None or row.aps is None or row.unit in ("jobs", "rows"):
        return ""
    if not row.comparable or row.pipebot < 0 or row.aps <= 0:
        return ""
    share = row.pipebot / row.aps
    return f"{share:.0f}x" if share >= 10 else f"{share:.2g}x"


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'scenario':<42}{'unit':>5}{'pipebot':>11}{'APScheduler':>13}{'pb/APS':>9}  aim")
    for row in rows:
        print(
            f"{row.label:<42}{row.unit:>5}{show(row.pipebot, row.unit):>11}"
            f"{show(row.aps, row.unit):>13}{ratio(row):>9}  {verdict(row)}"
        )


def notes_of(results: Results) -> list[str]:
    notes = []
    for (key, side), runs in sorted(results.items()):
        for run in runs:
            if run.get("slack_s") is not None and run["slack_s"] < 0.5:
                notes.append(f"{key} ({side}): set-up ended {run['slack_s']:.2f}s before due")
            if run.get("stored") == 0 and key != "add_empty":
                notes.append(f"{key} ({side}): nothing was stored")
            if key == "startup" and not run.get("loaded"):
                notes.append(f"{key} ({side}): no schedule was loaded")
    return sorted(set(notes))


def summary(rows: list[Row]) -> str:
    """One line: aims met, the pb/APS ratios of the headline figures, what missed."""
    aimed = [row for row in rows if row.aim is not None]
    missed = [row.short or row.label.strip() for row in aimed if not verdict(row).endswith("ok")]
    headline = [f"{row.short} {ratio(row)}" for row in rows if row.short and ratio(row)]
    line = f"summary: {len(aimed) - len(missed)}/{len(aimed)} aims met"
    if headline:
        line += "; pb/APS: " + ", ".join(headline)
    if missed:
        line += "; MISSED: " + ", ".join(missed)
    return line


def load_average() -> str:
    return "/".join(f"{load:.1f}" for load in os.getloadavg())


def parent_main(args: argparse.Namespace) -> None:
    jobs = [1000] if args.quick else [int(n) for n in args.jobs.split(",") if n.strip()]
    repeat = 1 if args.quick else args.repeat
    schedules = 1000 if args.quick else args.schedules
    print(
        f"scheduler benchmark: {schedules:,} schedules, bursts of {', '.join(map(str, jobs))}, "
        f"repeat {repeat} (medians); python {platform.python_version()}, "
        f"APScheduler {version('APScheduler')}, SQLAlchemy {version('SQLAlchemy')}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPU(s), load {load_average()}, "
        f"GC threshold {args.gc_threshold or gc.get_threshold()[0]}",
        flush=True,
    )
    started = time.perf_counter()
    steps = plan(schedules, jobs, args.aps_running_add, aps_default_grace=not args.quick)
    extra = ["--gc-threshold", str(args.gc_threshold)] if args.gc_threshold else []
    results = run_all(steps, repeat, args.lead, extra)
    rows = setup_rows(results, schedules)
    for n in jobs:
        rows += burst_rows(results, n)
    print_table(rows)
    for note in notes_of(results):
        print(f"note: {note}")
    total = time.perf_counter() - started
    print(
        f"\npb/APS: pipebot's figure over APScheduler's (below 1: pipebot faster or smaller). "
        f"Total time {total:.0f}s, load average now {load_average()}."
    )
    line = summary(rows)
    if args.quick:
        line += " (--quick: a smoke test at 1,000; the aims are for 10,000)"
    print(line)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--jobs", default="1000,10000", help="burst sizes, comma-separated")
    parser.add_argument("--schedules", type=int, default=10_000, help="schedules to add/load")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,000 schedules and jobs, one run, no default-grace APScheduler run (< 1 min)",
    )
    parser.add_argument(
        "--aps-running-add",
        action="store_true",
        help="also time APScheduler adding into a running scheduler (slow: a minute a run)",
    )
    parser.add_argument("--lead", type=float, default=3.0, help="seconds from set-up to due")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=0,
        help="both sides: the cyclic GC's first threshold (0: CPython's default, 700)",
    )
    child = parser.add_argument_group("one scenario in this process (used by the parent)")
    child.add_argument("--scenario", choices=("add", "startup", "burst", "cron"))
    child.add_argument("--side", choices=SIDES, default="pipebot")
    child.add_argument("--dir", help="the folder of the SQLite files")
    child.add_argument("--count", type=int, default=0)
    child.add_argument("--mode", choices=("store", "running"), default="store")
    child.add_argument("--grace", choices=("none", "default"), default="none")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.scenario is None:
        parent_main(arguments)
    else:
        if arguments.dir is None:
            raise SystemExit("--scenario needs --dir")
        child_main(arguments)
