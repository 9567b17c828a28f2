"""HTTP API throughput and latency while the scheduler fires 100 jobs a second.

    PYTHONPATH=. python bench/api_bench.py [--repeat 3] [--duration 10] [--concurrency 16]
                                           [--schedules 10000] [--rows 1000000] [--profile]

One temporary SQLite file gets ``--schedules`` cron schedules (daily, so they do not
fire during the run) through ``PipelineScheduler.add_schedules`` and ``--rows`` history
rows bulk-inserted with SQLAlchemy Core into ``runs``. Each repeat starts a fresh server
process (scheduler + API on one event loop, as ``pipebot serve`` runs them) that also
has 100 interval schedules of 1 s, each its own trivial async pipeline: 100 fires a
second. The parent measures with a loopback aiohttp client: ``--concurrency`` workers
for ``--duration`` seconds per endpoint (after 1 s of warm-up), then counts the fires
the ledger recorded in that window. Figures are medians over ``--repeat`` servers.
``--profile`` adds cProfile of the work behind the two slow paths (in this process).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from _common import median, percentile  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from api.app import start_api, stop_api  # noqa: E402
from api.runs import run_json  # noqa: E402
from api.schedules import schedule_json  # noqa: E402
from api.settings import ApiSettings, ApiToken  # noqa: E402
from pipelines.db import get_engine  # noqa: E402
from pipelines.secret import Secret
from scheduler.models import Policies  # noqa: E402
from scheduler.schedules import make_schedule  # noqa: E402
from scheduler.service import PipelineScheduler  # noqa: E402
from scheduler.settings import SchedulerSettings  # noqa: E402
from scheduler.tables import runs  # noqa: E402

TOKEN = "bench-" + uuid.uuid4().hex
TICKERS = 100
PIPELINES = [f"pipe-{i:02d}" for i in range(20)]
CHUNK = 20_000
WARM_UP = 1.0


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
    engine = get_engine(scheduler.settings.database_url)
    newest = datetime.now(UTC) - timedelta(minutes=5)
    statuses = ["success"] * 90 + ["failed"] * 7 + ["skipped"] * 3
    with engine.begin() as conn:
        for start in range(0, rows, CHUNK):
            batch = []
            for n in range(start, min(start + CHUNK, rows)):
                at = newest - timedelta(seconds=rows - n)
                status = statuses[n % len(statuses)]
                batch.append(
                    {
                        "run_id": uuid.UUID(int=n + 1, version=4).hex,
                        "schedule": f"job-{n % schedules:05d}",
                        "pipeline": PIPELINES[n % len(PIPELINES)],
                        "trigger": "schedule",
                        "status": status,
                        "scheduled_for": at,
                        "started_at": at,
                        "finished_at": at + timedelta(milliseconds=250),
                        "requested_by": None,
                        "error": "RuntimeError: upstream 503" if status == "failed" else None,
                        "items": "[12]",
                        "stages": None,
                        "holder": "bench",
                        "fence": None,
                    }
                )
            conn.execute(insert(runs), batch)
    return {
        "schedules_s": after_schedules - started,
        "rows_s": time.perf_counter() - after_schedules,
    }


def deep_run_id(db: Path, rows: int) -> str:
    """The id of a run about half-way down the history (for a cursor page)."""
    return uuid.UUID(int=rows // 2 + 1, version=4).hex


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
    scheduler = PipelineScheduler(settings_for(db))
    register(scheduler)
    tokens = (ApiToken("bench", Secret(os.environ["API_BENCH_TOKEN"])),)
    runner = await start_api(scheduler, ApiSettings(port=0, tokens=tokens))
    await scheduler.astart()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
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


# --- the client ----------------------------------------------------------------------------


async def load(base: str, path: str, concurrency: int, duration: float) -> dict[str, Any]:
    """``concurrency`` workers GET ``path`` for ``duration`` s (after a warm-up)."""
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
        await asyncio.gather(*(worker() for _ in range(concurrency)))
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
        "errors": errors,
        "window": (window_start, window_end),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# --- profiling -----------------------------------------------------------------------------


def profile(db: Path) -> None:
    """cProfile of a full schedule list and a run page, as the handlers do them."""
    scheduler = PipelineScheduler(settings_for(db))
    register(scheduler)
    work = {
        "GET /api/schedules (full list)": lambda: json.dumps(
            {"schedules": [schedule_json(i) for i in scheduler.list_schedules()]}
        ),
        "GET /api/runs?limit=100": lambda: json.dumps(
            {"runs": [run_json(r) for r in scheduler.ledger.history(limit=101)]}
        ),
    }
    for label, call in work.items():
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


def scenarios(rows: int, db: Path) -> list[tuple[str, str]]:
    return [
        ("schedules, full list", "/api/schedules"),
        ("schedules, first page", "/api/schedules?limit=100"),
        ("runs, first page", "/api/runs?limit=100"),
        ("runs, deep cursor page", f"/api/runs?limit=100&before={deep_run_id(db, rows)}"),
    ]


def run_all(args: argparse.Namespace, db: Path) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for round_no in range(1, args.repeat + 1):
        with Server(db) as server:
            time.sleep(2.0)  # the tickers settle into their one-second rhythm
            for label, path in scenarios(args.rows, db):
                figures = asyncio.run(load(server.base, path, args.concurrency, args.duration))
                since, until = figures.pop("window")
                seconds = (until - since).total_seconds()
                figures["fires_per_s"] = fires_between(db, since, until) / seconds
                results.setdefault(label, []).append(figures)
                print(
                    f"  run {round_no}: {label:<24} {figures['rps']:8.1f} req/s  "
                    f"p99 {_fmt(figures['p99_ms'])} ms  fires {figures['fires_per_s']:.0f}/s",
                    flush=True,
                )
    return results


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(results: dict[str, list[dict[str, Any]]]) -> None:
    header = (
        f"{'endpoint':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'KiB':>9}{'fires/s':>9}{'errors':>8}"
    )
    print("\n" + header)
    print("-" * len(header))
    for label, runs_ in results.items():

        def med(key: str, runs_: list[dict[str, Any]] = runs_) -> float | None:
            return median(r[key] for r in runs_)

        print(
            f"{label:<26}{_fmt(med('rps')):>9}{_fmt(med('p50_ms')):>9}{_fmt(med('p99_ms')):>9}"
            f"{_fmt(med('max_ms')):>9}{_fmt(med('kb')):>9}{_fmt(med('fires_per_s')):>9}"
            f"{sum(r['errors'] for r in runs_):>8}"
        )


def parent_main(args: argparse.Namespace) -> None:
    print(
        f"API benchmark: {args.schedules:,} schedules, {args.rows:,} history rows, "
        f"{TICKERS} tickers at 1 s, {args.concurrency} clients x {args.duration:g} s, "
        f"repeat {args.repeat} (medians); python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPU(s)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="pipebot-api-bench-") as tmp:
        db = Path(tmp) / "pipebot.db"
        took = seed(db, args.schedules, args.rows)
        print(
            f"seeded in {took['schedules_s']:.1f} s (schedules) + {took['rows_s']:.1f} s (rows)",
            flush=True,
        )
        results = run_all(args, db)
        print_table(results)
        if args.profile:
            profile(db)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="servers (runs) per figure")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per endpoint")
    parser.add_argument("--concurrency", type=int, default=16, help="client workers")
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000, help="history rows")
    parser.add_argument("--profile", action="store_true", help="cProfile the slow paths")
    parser.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        asyncio.run(serve(Path(arguments.serve)))
    else:
        parent_main(arguments)
