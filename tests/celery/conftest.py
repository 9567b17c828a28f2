"""Real Celery workers (``python -m pipebot.worker`` subprocesses) on the real Redis broker.

Every test gets its own queue name (so workers of other tests never take its runs), a
SQLite ledger in ``tmp_path`` shared by the test's scheduler side and its workers, and
a pipelines.yml importing ``tests.celery.plugins``. The scheduler side is the real
``Dispatcher`` with a ``CeleryExecutor`` on the test's event loop.

Redis at 127.0.0.1:6379 missing: the tests skip saying so, except under ``CI=true``,
where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from pipebot.project import load_project
from pipelines.db import dispose_engine, get_engine
from scheduler import migrate
from scheduler.dispatch import Dispatcher
from scheduler.events import EventBus, JobEvent
from scheduler.executors.celery import CeleryExecutor
from scheduler.executors.celery_settings import CelerySettings
from scheduler.ledger import Ledger
from scheduler.settings import SchedulerSettings
from scheduler.targets import Target
from tests.waiting import wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"
REPO_ROOT = Path(__file__).resolve().parents[2]
LIVENESS = 2.0
"""CELERY_WORKER_LIVENESS of the test workers: a killed one counts as dead after this."""
APP_PREFIXES = ("SCHEDULER_", "PIPEBOT_", "PIPELINES_", "CELERY_", "DISCORD_", "API_", "LOG_")


@pytest.fixture(scope="session")
def broker() -> str:
    """The Redis URL, once it answers a PING."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis not reachable at 127.0.0.1:6379 (the Celery broker): {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    finally:
        client.close()
    return REDIS_URL


@dataclass
class Worker:
    """A running ``python -m pipebot.worker`` with its output in a file."""

    process: subprocess.Popen[bytes]
    logfile: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.logfile.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker (its whole process group) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Project:
    """pipelines.yml, the ledger and the queue of one test; starts workers for it."""

    root: Path
    queue: str
    broker: str
    workers: list[Worker] = field(default_factory=list)
    queues: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.root / 'pipebot.db'}"

    @property
    def config(self) -> Path:
        return self.root / "pipelines.yml"

    @property
    def hold(self) -> Path:
        """While this file exists, ``gated`` runs wait."""
        return self.root / "hold"

    def lines(self, name: str) -> list[list[str]]:
        """The ``<pid> <run id> <trigger>`` lines a pipeline's plugin wrote."""
        path = self.root / f"{name}.log"
        if not path.exists():
            return []
        return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]

    def settings(self, **changes: Any) -> CelerySettings:
        """The scheduler side's settings: short liveness, grace and polls."""
        values: dict[str, Any] = {
            "executor": "celery",
            "broker_url": self.broker,
            "queue": self.queue,
            "liveness": LIVENESS,
            "timeout_grace": 0.5,
            "poll_interval": 0.2,
        }
        values.update(changes)
        return CelerySettings(**values)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(APP_PREFIXES)}
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            PYTHONUNBUFFERED="1",
            PYTHON_DOTENV_DISABLED="1",
            PIPELINES_CONFIG=str(self.config),
            SCHEDULER_DB_URL=self.url,
            SCHEDULER_TIMEZONE="UTC",
            CELERY_BROKER_URL=self.broker,
            CELERY_QUEUE=self.queue,
            CELERY_WORKER_LIVENESS=str(LIVENESS),
            LOG_LEVEL="INFO",
            LOG_FORMAT="text",
        )
        env.update(extra)
        return env

    def start_worker(self, *, queue: str | None = None, **extra: str) -> Worker:
        """Start a worker (its own process group) and wait until Celery consumes."""
        n = len(self.workers)
        logfile = self.root / f"worker{n}.log"
        env = self.env(**extra)
        if queue is not None:
            env["CELERY_QUEUE"] = queue
        self.queues.add(env["CELERY_QUEUE"])
        with logfile.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipebot.worker", "--concurrency", "4"],
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(process, logfile)
        self.workers.append(worker)
        wait_for(
            lambda: " ready." in worker.log() or process.poll() is not None,
            30,
            f"worker {n} to start",
            context=worker.log,
        )
        assert process.poll() is None, f"worker {n} exited:\n{worker.log()}"
        return worker


PIPELINES = """\
allowed_modules: [tests.celery.plugins]
pipelines:
  quick:
    chain:
      - class: pipelines.transforms.sources.Range
        kwargs: {{count: 3}}
      - class: tests.celery.plugins.Record
        kwargs: {{path: "{root}/quick.log"}}
  gated:
    chain:
      - class: pipelines.transforms.sources.Range
        kwargs: {{count: 1}}
      - class: tests.celery.plugins.Gate
        kwargs: {{hold: "{root}/hold", log: "{root}/gated.log"}}
  sleepy:
    timeout: 1
    chain:
      - class: pipelines.transforms.sources.Range
        kwargs: {{count: 1}}
      - class: tests.celery.plugins.Gate
        kwargs: {{hold: "{root}/pipelines.yml", log: "{root}/sleepy.log"}}
"""


@pytest.fixture
def project(tmp_path: Path, broker: str) -> Iterator[Project]:
    project = Project(tmp_path, f"pipebot-test-{uuid.uuid4().hex[:12]}", broker)
    project.config.write_text(textwrap.dedent(PIPELINES.format(root=tmp_path)), encoding="utf-8")
    try:
        yield project
    finally:
        for worker in project.workers:
            worker.stop()
        for queue in project.queues | {project.queue}:
            drop_queue(broker, queue)
        dispose_engine(project.url)


@dataclass
class Harness:
    """The scheduler side: ledger, dispatcher with the Celery executor, captured events."""

    ledger: Ledger
    dispatcher: Dispatcher
    executor: CeleryExecutor
    events: list[JobEvent]
    resolve: Callable[[str], Target | None]
    bus: EventBus


@pytest.fixture
async def harness(project: Project) -> AsyncIterator[Harness]:
    settings = SchedulerSettings(database_url=project.url, timezone="UTC")
    engine = get_engine(project.url)
    migrate.upgrade(engine)
    targets = load_project(project.config, settings).targets
    ledger = Ledger(engine, holder="test-scheduler")
    ledger.start()
    bus = EventBus()
    seen: list[JobEvent] = []
    bus.add_listener(seen.append)
    executor = CeleryExecutor(project.settings(), engine)
    dispatcher = Dispatcher(ledger, targets.get, bus, executor=executor)
    try:
        yield Harness(ledger, dispatcher, executor, seen, targets.get, bus)
    finally:
        await dispatcher.drain(2)
        await ledger.stop()


def drop_queue(broker: str, queue: str) -> None:
    """Remove the queue and any unacknowledged messages of it left by killed workers."""
    client = redis.Redis.from_url(broker)
    try:
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        for tag, raw in client.hscan_iter("unacked"):
            with contextlib.suppress(ValueError, IndexError, TypeError):
                if json.loads(raw)[2] == queue:
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)
    finally:
        client.close()
