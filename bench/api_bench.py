"""HTTP API throughput and latency while the scheduler fires 100 jobs a second.

    PYTHONPATH=. python bench/api_bench.py [--repeat 3] [--duration 10] [--concurrency 16]
        [--rate 500] [--schedules 10000] [--rows 1000000] [--db PATH] [--only TEXT] [--profile]

A SQLite file (temporary, or ``--db``: seeded if it does not exist, reused if it does;
each server start records the ticks it missed while down, so a reused file grows by
about 100 rows per second between runs: re-seed before figures you compare) gets
``--schedules`` cron schedules (daily, so they do not fire during the run) through
``PipelineScheduler.add_schedules`` and ``--rows`` history rows bulk-inserted with
SQLAlchemy Core into ``runs``. Each repeat starts a fresh server process set up as
``pipebot serve`` does it (API started before the scheduler, one event loop, a 32-thread
default executor, young-generation GC threshold 50,000, ``gc.freeze()``) that also has
100 interval schedules of 1 s, each its own trivial async pipeline: 100 fires a second.
The parent measures with a loopback aiohttp client: ``--concurrency`` workers for
``--duration`` seconds per endpoint (after 1 s of warm-up), then counts the fires the
ledger recorded in that window, and reads the server's CPU time: ``cpu ms/req`` is the
server's CPU per request, the figure that moves least when other processes share the
machine (``client ms``: the client's). Figures are medians over ``--repeat`` servers.
Then each endpoint is offered ``--rate`` requests a second, open loop (a request when it
is due, whatever the answers), for ``--duration`` seconds: latency at a given load,
counted from when each request was due. ``--only`` keeps the endpoints whose label
contains TEXT. ``--profile`` adds cProfile of the work behind the endpoints (in this
process, no HTTP, no running engine).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from _common import median, percentile, run_id_of, seed_history  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from api.app import start_api, stop_api  # noqa: E402
from api.runs import RunJsonCache  # noqa: E402
from api.schedules import LIST_DEFAULT, schedule_json_text, schedule_page  # noqa: E402
from api.settings import ApiSettings, ApiToken  # noqa: E402
from pipelines.db import get_engine  # noqa: E402
from pipelines.secret import Secret  # noqa: E402
from scheduler.models import Policies  # noqa: E402
from scheduler.schedules import make_schedule  # noqa: E402
from scheduler.service import PipelineScheduler  # noqa: E402
from scheduler.settings import SchedulerSettings  # noqa: E402
from scheduler.tables import runs  # noqa: E402

TOKEN = "bench-" + uuid.uuid4().hex
TICKERS = 100
PIPELINES = [f"pipe-{i:02d}" for i in range(20)]
WARM_UP = 1.0
PACED_CONNECTIONS = 64
WORKER_THREADS = 32
GC_YOUNG_THRESHOLD = 50_000
"""As ``pipebot.serve.WORKER_THREADS`` and ``GC_YOUNG_THRESHOLD`` (not imported: that would
import the bot)."""


def settings_for(db: Path) -> SchedulerSettings:
    return SchedulerSettings(
        database_url=f"sqlite:///{db}",
        timezone="UTC",
        history_days=None,  # keep every seeded row: no retention pass at start
        history_rows=None,
    )


async def _noop() -> None:
    return None


def register(scheduler: PipelineScheduler) -> None:
    for name in PIPELINES:
        scheduler.register(name, _noop)
    for i in range(TICKERS):
        scheduler.register(f"tick-{i:03d}", _noop)


# --- seeding -------------------------------------------------------------------------------


def seed(db: Path, schedules: int, rows: int) -> dict[str, float]:
    """Schedules through the facade, history rows straight into ``runs``."""
    started = time.perf_counter()
    scheduler = PipelineScheduler(settings_for(db))
    register(scheduler)
    defs = [
        make_schedule(
            f"job-{i:05d}",
            PIPELINES[i % len(PIPELINES)],
            "cron",
            {"expression": f"{i % 60} {(i // 60) % 24} * * *"},
            timezone="UTC",
            owner="api",
            created_by="bench",
        )
        for i in range(schedules)
    ]
    ticks = [
        make_schedule(
            f"tick-{i:03d}",
            f"tick-{i:03d}",
            "interval",
            {"seconds": 1},
            timezone="UTC",
            policies=Policies(catchup="none"),
            owner="api",
        )
        for i in range(TICKERS)
    ]
    scheduler.add_schedules(defs + ticks)
    after_schedules = time.perf_counter()
    seed_history(scheduler.settings.database_url, schedules, rows, PIPELINES)
    return {
        "schedules_s": after_schedules - started,
        "rows_s": time.perf_counter() - after_schedules,
    }


def deep_run_id(db: Path, rows: int) -> str:
    """The id of a run about half-way down the history (for a cursor page)."""
    return run_id_of(rows // 2)


def fires_between(db: Path, since: datetime, until: datetime) -> int:
    engine = get_engine(f"sqlite:///{db}")
    query = select(func.count()).where(
        runs.c.pipeline.like("tick-%"),
        runs.c.status == "success",
        runs.c.started_at >= since,
        runs.c.started_at < until,
    )
    with engine.connect() as conn:
        return int(conn.scalar(query) or 0)


# --- the server process --------------------------------------------------------------------


async def serve(db: Path) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=WORKER_THREADS))
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    scheduler = PipelineScheduler(settings_for(db))
    register(scheduler)
    tokens = (ApiToken("bench", Secret(os.environ["API_BENCH_TOKEN"])),)
    runner = await start_api(scheduler, ApiSettings(port=0, tokens=tokens))
    await scheduler.astart()
    gc.freeze()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
    await stop.wait()
    await stop_api(runner)
    await scheduler.astop(grace=2)


@dataclass
class Server:
    db: Path
    process: subprocess.Popen[str] = field(init=False)
    base: str = field(init=False)

    def __enter__(self) -> Server:
        env = {**os.environ, "API_BENCH_TOKEN": TOKEN}
        command = [sys.executable, __file__, "--serve", str(self.db)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the server process did not start")
        self.base = f"http://127.0.0.1:{json.loads(line)['port']}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the client ----------------------------------------------------------------------------


async def load(server: Server, path: str, concurrency: int, duration: float) -> dict[str, Any]:
    """``concurrency`` workers GET ``path`` for ``duration`` s (after a warm-up)."""
    base = server.base
    latencies: list[float] = []
    sizes: list[int] = []
    errors = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        begin = time.perf_counter()
        measure_from = begin + WARM_UP
        deadline = measure_from + duration

        async def worker() -> None:
            nonlocal errors
            while (sent := time.perf_counter()) < deadline:
                async with session.get(base + path, headers=headers) as response:
                    body = await response.read()
                    ok = response.status == 200
                done = time.perf_counter()
                if sent >= measure_from:
                    latencies.append(done - sent)
                    sizes.append(len(body))
                    errors += not ok

        window_start = datetime.now(UTC) + timedelta(seconds=WARM_UP)
        cpu: list[float] = []
        client_cpu: list[float] = []

        async def cpu_marks() -> None:
            await asyncio.sleep(max(measure_from - time.perf_counter(), 0.0))
            cpu.append(server.cpu_seconds())
            client_cpu.append(time.process_time())

        await asyncio.gather(cpu_marks(), *(worker() for _ in range(concurrency)))
        cpu.append(server.cpu_seconds())
        client_cpu.append(time.process_time())
        window_end = datetime.now(UTC)
        elapsed = time.perf_counter() - measure_from
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "rps": len(ordered) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": _ms(percentile(ordered, 0.50)),
        "p99_ms": _ms(percentile(ordered, 0.99)),
        "max_ms": _ms(ordered[-1] if ordered else None),
        "kb": (sum(sizes) / len(sizes) / 1024) if sizes else 0.0,
        "cpu_ms": (cpu[1] - cpu[0]) * 1000 / len(ordered) if ordered else None,
        "client_cpu_ms": (client_cpu[1] - client_cpu[0]) * 1000 / len(ordered) if ordered else None,
        "errors": errors,
        "window": (window_start, window_end),
    }


async def paced(server: Server, path: str, rate: float, duration: float) -> dict[str, Any]:
    """Open loop: a request every ``1/rate`` s whatever the answers (as wrk2 does).

    Each latency counts from when its request was due, not from when the client got
    round to sending it, so a slow server cannot hide its queue by slowing the client.
    """
    headers = {"Authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=PACED_CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(due: float, measured: bool) -> None:
            nonlocal errors
            async with session.get(server.base + path, headers=headers) as response:
                await response.read()
                ok = response.status == 200
            if measured:
                latencies.append(time.perf_counter() - due)
                errors += not ok

        begin = time.perf_counter()
        measure_from = begin + WARM_UP
        tasks = []
        for n in range(int((WARM_UP + duration) * rate)):
            due = begin + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due, due >= measure_from)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - measure_from
    ordered = sorted(latencies)
    return {
        "paced_rps": len(ordered) / elapsed if elapsed > 0 else 0.0,
        "paced_p50_ms": _ms(percentile(ordered, 0.50)),
        "paced_p99_ms": _ms(percentile(ordered, 0.99)),
        "paced_errors": errors,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# --- profiling -----------------------------------------------------------------------------


def profile(db: Path, rows: int) -> None:
    """cProfile of the work behind each endpoint, as the handlers do it (no HTTP)."""
    scheduler = PipelineScheduler(settings_for(db))
    register(scheduler)

    cache = RunJsonCache()

    def schedules(after: str | None) -> str:
        page = schedule_page(scheduler, after, LIST_DEFAULT + 1)
        return ", ".join(schedule_json_text(i) for i in page)

    def runs_page(**filters: Any) -> str:  # as RunViews._page: ids first, rows not kept
        keys = scheduler.run_keys(limit=101, **filters)
        records = scheduler.runs_by_id([r for r, _ in keys if not cache.has(r)])
        return ", ".join(
            cache.text(records[r]) if r in records else cache.get(r) or "" for r, _ in keys
        )

    work: dict[str, Callable[[], str]] = {
        "GET /api/schedules": lambda: schedules(None),
        "GET /api/runs?limit=100": lambda: runs_page(),
        "GET /api/runs?limit=100&before=<deep>": lambda: runs_page(before=deep_run_id(db, rows)),
        "GET /api/runs?limit=100&status=failed": lambda: runs_page(status="failed"),
    }
    for label, call in work.items():
        call()  # warm the caches and the pool
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.runcall(call)
        took = time.perf_counter() - started
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(14)
        print(f"\n--- cProfile: {label}: {took * 1000:.0f} ms (under the profiler)")
        lines = [line for line in text.getvalue().splitlines() if line.strip()]
        print("\n".join(lines[3:]))


# --- the parent ----------------------------------------------------------------------------


def scenarios(rows: int, db: Path, only: str | None) -> list[tuple[str, str]]:
    every = [
        ("schedules, first page", "/api/schedules"),
        ("schedules, mid page", "/api/schedules?after=job-05000"),
        ("runs, first page", "/api/runs?limit=100"),
        ("runs, deep cursor page", f"/api/runs?limit=100&before={deep_run_id(db, rows)}"),
        ("runs, failed only", "/api/runs?limit=100&status=failed"),
    ]
    return [(label, path) for label, path in every if only is None or only in label]


def run_all(args: argparse.Namespace, db: Path) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for round_no in range(1, args.repeat + 1):
        with Server(db) as server:
            time.sleep(2.0)  # the tickers settle into their one-second rhythm
            for label, path in scenarios(args.rows, db, args.only):
                figures = asyncio.run(load(server, path, args.concurrency, args.duration))
                since, until = figures.pop("window")
                seconds = (until - since).total_seconds()
                figures["fires_per_s"] = fires_between(db, since, until) / seconds
                if args.rate:
                    figures.update(asyncio.run(paced(server, path, args.rate, args.duration)))
                results.setdefault(label, []).append(figures)
                print(
                    f"  run {round_no}: {label:<24} {figures['rps']:8.1f} req/s  "
                    f"p50 {_fmt(figures['p50_ms'])} ms  p99 {_fmt(figures['p99_ms'])} ms  "
                    f"cpu {_fmt(figures['cpu_ms'])} ms/req (client "
                    f"{_fmt(figures['client_cpu_ms'])})  fires {figures['fires_per_s']:.0f}/s"
                    + (
                        f"  | at {args.rate:g} req/s: p50 {_fmt(figures['paced_p50_ms'])} ms"
                        f"  p99 {_fmt(figures['paced_p99_ms'])} ms"
                        if args.rate
                        else ""
                    ),
                    flush=True,
                )
    return results


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(results: dict[str, list[dict[str, Any]]]) -> None:
    header = (
        f"{'endpoint':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'KiB':>9}{'cpu ms/req':>11}{'client ms':>10}{'fires/s':>9}{'errors':>8}"
    )
    print("\n" + header)
    print("-" * len(header))
    for label, runs_ in results.items():

        def med(key: str, runs_: list[dict[str, Any]] = runs_) -> float | None:
            return median(r[key] for r in runs_)

        print(
            f"{label:<26}{_fmt(med('rps')):>9}{_fmt(med('p50_ms')):>9}{_fmt(med('p99_ms')):>9}"
            f"{_fmt(med('max_ms')):>9}{_fmt(med('kb')):>9}{_fmt(med('cpu_ms')):>11}"
            f"{_fmt(med('client_cpu_ms')):>10}"
            f"{_fmt(med('fires_per_s')):>9}"
            f"{sum(r['errors'] for r in runs_):>8}"
        )
    paced_runs = [r for runs_ in results.values() for r in runs_ if "paced_p99_ms" in r]
    if not paced_runs:
        return
    header = f"{'open loop, offered rate':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    print("\n" + header)
    print("-" * len(header))
    for label, runs_ in results.items():
        print(
            f"{label:<26}{_fmt(median(r['paced_rps'] for r in runs_)):>9}"
            f"{_fmt(median(r['paced_p50_ms'] for r in runs_)):>9}"
            f"{_fmt(median(r['paced_p99_ms'] for r in runs_)):>9}"
            f"{sum(r['paced_errors'] for r in runs_):>8}"
        )


def parent_main(args: argparse.Namespace) -> None:
    print(
        f"API benchmark: {args.schedules:,} schedules, {args.rows:,} history rows, "
        f"{TICKERS} tickers at 1 s, {args.concurrency} clients x {args.duration:g} s, "
        f"repeat {args.repeat} (medians); python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="pipebot-api-bench-") as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "pipebot.db"
        if db.exists():
            print(f"reusing {db} (seeded before with the same --schedules and --rows?)")
        else:
            took = seed(db, args.schedules, args.rows)
            print(
                f"seeded in {took['schedules_s']:.1f} s (schedules) + {took['rows_s']:.1f} s "
                "(rows)",
                flush=True,
            )
        results = run_all(args, db)
        print_table(results)
        if args.profile:
            profile(db, args.rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="servers (runs) per figure")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per endpoint")
    parser.add_argument("--concurrency", type=int, default=16, help="client workers")
    parser.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="then offer this many requests/s, open loop, and report latency (0: skip)",
    )
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000, help="history rows")
    parser.add_argument("--db", help="SQLite file to seed once and reuse (default: temporary)")
    parser.add_argument("--only", help="only the endpoints whose label contains this")
    parser.add_argument("--profile", action="store_true", help="cProfile each endpoint's work")
    parser.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        asyncio.run(serve(Path(arguments.serve)))
    else:
        parent_main(arguments)
