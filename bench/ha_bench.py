"""Leader takeover time per lock backend, and (from bench/celery_bench.py) Celery throughput.

    PYTHONPATH=. python bench/ha_bench.py [--kills 10] [--ttl 5] [--backends postgres,redis,file]
                                          [--celery] [--celery-runs 1000]

Takeover: two ``main_scheduler.py`` processes (``SCHEDULER_DISTRIBUTED=true``) on a fresh
schema of the PostgreSQL at 127.0.0.1:5432 (db ``test``), a 1-second schedule. Each
round waits for one leader and one standby, sends the leader ``kill -9`` and measures
from the kill to the standby's "leader: scheduler started" log line (scheduler running:
fence advanced, abandoned runs marked, catch-up planned); the killed process is then
started again as the next standby. Printed: median, min and max of ``--kills`` rounds
per backend, and whether the median is within TTL + 1 s. The lock backends differ by
design: a killed process's PostgreSQL session and its ``flock`` end with it, so those
leases are free at once; a Redis key lives until its TTL runs out.

Celery (``--celery``): runs bench/celery_bench.py (owned by the Celery executor work)
and prints its table: runs/second through the Celery executor with 2 workers against
the local executor.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
LEADER = "leader: scheduler started"
STANDBY = "standby: waiting"
PREFIXES = ("SCHEDULER_", "PIPEBOT_", "PIPELINES_", "DISCORD_", "API_", "LOG_", "PYTHON_DOTENV")


class Node:
    """One scheduler process with its log in ``folder``."""

    def __init__(self, folder: Path, index: int, env: dict[str, str]) -> None:
        self.log_path = folder / f"node-{index}.log"
        with self.log_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "main_scheduler.py")],
                cwd=folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def lines(self, needle: str) -> list[str]:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [line for line in text.splitlines() if needle in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _stamp(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def takeover_times(backend: str, kills: int, ttl: float) -> list[float]:
    schema = f"hab_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    folder = Path(tempfile.mkdtemp(prefix=f"ha-bench-{backend}-"))
    (folder / "pipelines.yml").write_text(
        textwrap.dedent("""
        pipelines:
          ticker:
            schedule: {interval: {seconds: 1}}
            chain:
              - class: pipelines.transforms.sources.StaticItems
                kwargs: {items: [1]}
        """),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    env.update(
        PYTHONPATH=str(REPO),
        PYTHON_DOTENV_DISABLED="1",
        PIPELINES_CONFIG=str(folder / "pipelines.yml"),
        SCHEDULER_DB_URL=f"postgresql+psycopg://postgres@127.0.0.1:5432/test"
        f"?options=-csearch_path%3D{schema}&application_name={schema}",
        SCHEDULER_TIMEZONE="UTC",
        SCHEDULER_DISTRIBUTED="true",
        SCHEDULER_LOCK_BACKEND=backend,
        SCHEDULER_LEASE_SECONDS=str(ttl),
        SCHEDULER_REDIS_URL=REDIS_URL,
        SCHEDULER_LOCK_NAME=f"pipebot-bench-{schema}",
        SCHEDULER_LOCK_FILE=str(folder / "scheduler.lease"),
        DISCORD_TOKEN="",
        API_PORT="0",
        LOG_LEVEL="INFO",
        LOG_FORMAT="text",
    )
    nodes: list[Node] = []
    times: list[float] = []
    try:
        leader = Node(folder, 0, env)
        nodes.append(leader)
        _wait(lambda: leader.lines(LEADER), 30, f"{backend}: the first leader")
        for round_ in range(kills):
            standby = Node(folder, len(nodes), env)
            nodes.append(standby)
            _wait(lambda s=standby: s.lines(STANDBY), 30, f"{backend}: a standby")  # type: ignore[misc]
            time.sleep(1.5)  # a couple of runs by the leader
            killed_at = time.time()
            leader.process.kill()
            leader.process.wait()
            _wait(lambda s=standby: s.lines(LEADER), ttl + 30, f"{backend}: takeover")  # type: ignore[misc]
            took = _stamp(standby.lines(LEADER)[0]) - killed_at
            times.append(took)
            print(f"  {backend} kill {round_ + 1:2d}: takeover {took:.3f}s", flush=True)
            leader = standby
    finally:
        for node in nodes:
            node.stop()
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return times


# --- Celery executor throughput: bench/celery_bench.py (the Celery executor's own bench) ---


def celery_throughput(runs: int) -> int:
    """Run bench/celery_bench.py, if present, and pass its table through; its exit code."""
    script = REPO / "bench" / "celery_bench.py"
    if not script.exists():
        print("celery: bench/celery_bench.py is not here; skipped")
        return 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script), "--runs", str(runs)], env=env, check=False, cwd=REPO
    )
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--backends", default="postgres,redis,file")
    parser.add_argument("--celery", action="store_true", help="also run bench/celery_bench.py")
    parser.add_argument("--celery-runs", type=int, default=1000)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for backend in args.backends.split(","):
        print(f"{backend}: {args.kills} leader kills, TTL {args.ttl:g}s", flush=True)
        results[backend] = takeover_times(backend, args.kills, args.ttl)
    print()
    print(f"takeover after kill -9 (lease TTL {args.ttl:g}s; aim: under TTL + 1 s)")
    print(f"{'backend':<10}{'median':>9}{'min':>9}{'max':>9}  within TTL+1")
    for backend, times in results.items():
        median = statistics.median(times)
        ok = "yes" if median <= args.ttl + 1 else "NO"
        print(f"{backend:<10}{median:>8.2f}s{min(times):>8.2f}s{max(times):>8.2f}s  {ok}")
    if args.celery:
        print()
        return celery_throughput(args.celery_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
