"""Runs per second through the Celery executor (2 worker processes) against the local one.

    PYTHONPATH=. python bench/celery_bench.py [--runs 1000] [--repeat 3] [--concurrency 8]
                                              [--db sqlite|postgresql]

Both sides run the same trivial pipeline (one item through ``StaticItems``) through
``Dispatcher.run`` with ``overlap: allow``, all ``--runs`` submitted at once, on a fresh
ledger each: a SQLite file (WAL) or a fresh schema in the PostgreSQL database ``test``
at 127.0.0.1:5432 (``--db postgresql``; workers on other machines need PostgreSQL).
Local: the scheduler's event loop runs them. Celery: two
``python -m pipebot.worker`` processes (threads pool, ``--concurrency`` each) on the
Redis broker at ``--broker`` take the claimed rows, run them and write the results;
the scheduler learns of them by pub/sub. Also timed: ``--serial`` runs one after
another (the latency a single ``/run`` sees). Each figure is the median of
``--repeat`` rounds; per-run overhead is wall time per run, the ratio is Celery/local.
CPU ms/run is the CPU time the scheduler process and the workers spent on the burst.
The machine may be shared: read medians, not single rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from pipelines.db import dispose_engine, get_engine
from scheduler import migrate
from scheduler.dispatch import Dispatcher, Executor, RunRequest
from scheduler.events import EventBus
from scheduler.executors.celery import CeleryExecutor
from scheduler.executors.celery_app import ALIVE_PREFIX
from scheduler.executors.celery_settings import CelerySettings
from scheduler.ledger import Ledger
from scheduler.models import Policies
from scheduler.settings import SchedulerSettings

REPO = Path(__file__).resolve().parents[1]
PIPELINES = """\
pipelines:
  trivial:
    chain:
      - class: pipelines.transforms.sources.StaticItems
        kwargs: {items: [1]}
"""
WORKERS = 2
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Figures:
    """One round of one side."""

    def __init__(self, burst: float, serial: float, own_cpu: float, worker_cpu: float) -> None:
        self.burst = burst
        self.serial = serial
        self.own_cpu = own_cpu
        self.worker_cpu = worker_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--serial", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        redis.Redis.from_url(args.broker, socket_timeout=3).ping()
    except redis.RedisError as exc:
        print(f"Redis not reachable at {args.broker}: {exc}", file=sys.stderr)
        return 1
    results: dict[str, list[Figures]] = {"local": [], "celery": []}
    with tempfile.TemporaryDirectory(prefix="pipebot-celery-bench-") as tmp:
        root = Path(tmp)
        (root / "pipelines.yml").write_text(PIPELINES, encoding="utf-8")
        for round_no in range(args.repeat):
            for side in ("local", "celery"):
                folder = root / f"{side}-{round_no}"
                folder.mkdir()
                figures = asyncio.run(_round(side, folder, root / "pipelines.yml", args))
                results[side].append(figures)
                print(
                    f"round {round_no + 1} {side:<6}: {args.runs / figures.burst:6.0f} runs/s, "
                    f"serial {figures.serial * 1000:6.2f} ms/run, CPU ms/run: "
                    f"scheduler {figures.own_cpu / args.runs * 1000:.2f} "
                    f"workers {figures.worker_cpu / args.runs * 1000:.2f}",
                    flush=True,
                )
    _report(results, args)
    return 0


async def _round(side: str, folder: Path, config: Path, args: argparse.Namespace) -> Figures:
    """Seconds for ``--runs`` at once (and its CPU), seconds per run one after another."""
    url, schema = _database(args.db, folder)
    engine = get_engine(url)
    migrate.upgrade(engine)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        "SCHEDULER_EXECUTOR": "celery",
        "CELERY_BROKER_URL": args.broker,
        "CELERY_QUEUE": queue,
    }
    workers: list[subprocess.Popen[bytes]] = []
    executor: Executor | None = None
    if side == "celery":
        workers = _start_workers(folder, config, url, env, args.concurrency)
        executor = CeleryExecutor(CelerySettings.from_env(env), engine)
    from pipebot.project import load_project

    project = load_project(config, SchedulerSettings(database_url=url))
    ledger = Ledger(engine, holder="bench")
    ledger.start()
    dispatcher = Dispatcher(ledger, project.targets.get, EventBus(), executor=executor)
    policies = Policies(overlap="allow", max_instances=args.runs)
    request = RunRequest(pipeline="trivial", trigger="manual", policies=policies)
    try:
        await dispatcher.run(request)  # warm up: connections, subscription, first import
        cpu = _own_cpu(), _cpu(workers)
        started = time.perf_counter()
        records = await asyncio.gather(*(dispatcher.run(request) for _ in range(args.runs)))
        burst = time.perf_counter() - started
        own_cpu, worker_cpu = _own_cpu() - cpu[0], _cpu(workers) - cpu[1]
        started = time.perf_counter()
        for _ in range(args.serial):
            records.append(await dispatcher.run(request))
        serial = (time.perf_counter() - started) / args.serial
        bad = [r.status for r in records if r.status != "success"]
        if bad:
            raise SystemExit(f"{side}: {len(bad)} run(s) did not succeed: {set(bad)}")
        await ledger.flush()
        return Figures(burst, serial, own_cpu, worker_cpu)
    finally:
        await dispatcher.drain(5)
        await ledger.stop()
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        dispose_engine(url)
        _drop_queue(args.broker, queue)
        if schema is not None:
            _pg_admin(f'DROP SCHEMA "{schema}" CASCADE')


def _start_workers(
    folder: Path, config: Path, url: str, env: dict[str, str], concurrency: int
) -> list[subprocess.Popen[bytes]]:
    environ = {
        **os.environ,
        **env,
        "PYTHONPATH": str(REPO),
        "PYTHON_DOTENV_DISABLED": "1",
        "PIPELINES_CONFIG": str(config),
        "SCHEDULER_DB_URL": url,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
    }
    client = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    before = set(client.scan_iter(match=f"{ALIVE_PREFIX}*"))
    workers = []
    for n in range(WORKERS):
        log = (folder / f"worker{n}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "pipebot.worker", "--concurrency", str(concurrency)],
                cwd=folder,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 30
    while len(set(client.scan_iter(match=f"{ALIVE_PREFIX}*")) - before) < WORKERS:
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            raise SystemExit(f"workers did not start; see {folder}/worker*.log")
        time.sleep(0.1)
    time.sleep(1.0)  # the heartbeat is set just before Celery starts consuming
    client.close()
    return workers


def _database(kind: str, folder: Path) -> tuple[str, str | None]:
    """A URL of an empty database, and the PostgreSQL schema to drop afterwards."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'pipebot.db'}", None
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE SCHEMA "{schema}"')
    return f"{PG_URL}?options=-csearch_path%3D{schema}", schema


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu(workers: list[subprocess.Popen[bytes]]) -> float:
    """User + system seconds of the worker processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for worker in workers:
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _drop_queue(broker: str, queue: str) -> None:
    client = redis.Redis.from_url(broker)
    client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    client.close()


def _report(results: dict[str, list[Figures]], args: argparse.Namespace) -> None:
    medians = {
        side: {
            name: statistics.median(getattr(f, name) for f in rounds)
            for name in ("burst", "serial", "own_cpu", "worker_cpu")
        }
        for side, rounds in results.items()
    }
    runs = args.runs
    print()
    print(
        f"{runs} trivial runs at once on {args.db}, median of {args.repeat} round(s) "
        f"({WORKERS} workers x {args.concurrency} threads)"
    )
    print(
        f"{'':<8}{'runs/s':>8}{'ms/run':>8}{'serial ms/run':>15}{'CPU ms/run (sched+workers)':>29}"
    )
    for side, m in medians.items():
        print(
            f"{side:<8}{runs / m['burst']:>8.0f}{m['burst'] / runs * 1000:>8.2f}"
            f"{m['serial'] * 1000:>15.2f}"
            f"{m['own_cpu'] / runs * 1000:>17.2f} + {m['worker_cpu'] / runs * 1000:.2f}"
        )
    local, remote = medians["local"], medians["celery"]
    print(
        f"per-run overhead celery/local: {remote['burst'] / local['burst']:.2f}x at once, "
        f"{remote['serial'] / local['serial']:.2f}x one at a time"
    )


if __name__ == "__main__":
    sys.exit(main())
