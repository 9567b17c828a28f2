"""Several real ``main_scheduler.py`` processes on one store, and what they left behind.

Each node is a subprocess with a hermetic environment (``PYTHON_DOTENV_DISABLED=1``,
every variable the project reads set here), its log in the test's directory. A node's
role is read from its log: the last of "leader: scheduler started" / "standby: ...".
The run ledger is read straight from PostgreSQL; the ``Stamp`` transform's file tells
which process really executed which instant.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from tests.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_PREFIXES = ("SCHEDULER_", "PIPEBOT_", "PIPELINES_", "DISCORD_", "API_", "LOG_", "PYTHON_DOTENV")
LEADER_LINE = "leader: scheduler started"
STANDBY_LINES = ("standby: waiting", "standby again")
SHUTDOWN_GRACE = 3.0
T = TypeVar("T")


def ticker_yml(stamps: Path, *, every: int = 1, slow_startup: float = 0.0) -> str:
    """``ticker`` every ``every`` seconds; with ``slow_startup``, ``slow`` runs once at start."""
    text = f"""
    allowed_modules: [tests.ha.plugins, tests.entry_plugins]
    pipelines:
      ticker:
        schedule: {{interval: {{seconds: {every}}}}}
        chain:
          - class: tests.entry_plugins.Count
            kwargs: {{n: 1}}
          - class: tests.ha.plugins.Stamp
            kwargs: {{path: "{stamps}"}}
    """
    if slow_startup:
        text += f"""
      slow:
        chain:
          - class: tests.entry_plugins.Count
            kwargs: {{n: 1}}
          - class: tests.ha.plugins.Stamp
            kwargs: {{path: "{stamps}", seconds: {slow_startup}}}
    """
    return textwrap.dedent(text).lstrip()


def log_time(line: str) -> float:
    """Epoch seconds of a text-format log line (``2026-01-02 10:00:00,123 ...``, local)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


@dataclass
class Node:
    """One ``main_scheduler.py`` process."""

    index: int
    process: subprocess.Popen[bytes]
    log_path: Path
    paused: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.log().splitlines() if needle in line]

    def role(self) -> str | None:
        """``leader`` or ``standby`` by the newest role line of the log."""
        role = None
        for line in self.log().splitlines():
            if LEADER_LINE in line:
                role = "leader"
            elif any(mark in line for mark in STANDBY_LINES):
                role = "standby"
        return role

    def terms(self) -> int:
        return len(self.lines(LEADER_LINE))

    def kill(self) -> float:
        """SIGKILL; returns the epoch time it was sent."""
        at = time.time()
        self.process.kill()
        self.process.wait(timeout=10)
        return at

    def pause(self) -> float:
        at = time.time()
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True
        return at

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> int:
        """SIGTERM; the exit code (the process must stop within the grace)."""
        if self.paused:
            self.resume()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=SHUTDOWN_GRACE + 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"node {self.index} still running after SIGTERM:\n{self.log()[-3000:]}")


@dataclass
class Cluster:
    """Scheduler processes sharing one PostgreSQL store."""

    root: Path
    database_url: str
    env: dict[str, str]
    nodes: list[Node] = field(default_factory=list)

    @property
    def stamps(self) -> Path:
        return self.root / "stamps.log"

    def write(self, pipelines: str) -> None:
        (self.root / "pipelines.yml").write_text(pipelines, encoding="utf-8")

    def start(self, **extra: str) -> Node:
        index = len(self.nodes)
        log_path = self.root / f"node-{index}.log"
        with (self.root / f"node-{index}.out").open("wb") as out, log_path.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, str(REPO_ROOT / "main_scheduler.py")],
                cwd=self.root,
                env={**self.env, **extra},
                stdout=out,
                stderr=err,
            )
        node = Node(index, process, log_path)
        self.nodes.append(node)
        return node

    def logs(self) -> str:
        return "\n".join(
            f"--- node {n.index} (pid {n.pid}):\n{n.log()[-3000:]}" for n in self.nodes
        )

    def wait(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        return wait_for(check, timeout, what, context=self.logs)

    def leaders(self) -> list[Node]:
        return [n for n in self.nodes if n.alive and not n.paused and n.role() == "leader"]

    def wait_leader(self, timeout: float = 20.0) -> Node:
        return self.wait(lambda: _one(self.leaders()), timeout, "one leader")

    def wait_standby(self, node: Node, timeout: float = 20.0) -> None:
        self.wait(lambda: node.role() == "standby", timeout, f"node {node.index} on standby")

    def takeover(self, since: float, exclude: Node, timeout: float) -> tuple[Node, float]:
        """The node that became leader after ``since`` (epoch) and how long it took."""

        def found() -> tuple[Node, float] | None:
            for node in self.nodes:
                if node is exclude or not node.alive:
                    continue
                times = [log_time(line) for line in node.lines(LEADER_LINE)]
                after = [t for t in times if t >= since]
                if after:
                    return node, after[0] - since
            return None

        return self.wait(found, timeout, f"a takeover after node {exclude.index} went away")

    def stop_all(self) -> None:
        """Standbys first (so none takes over at the end), then the leader."""
        for node in sorted(self.nodes, key=lambda n: n.role() == "leader"):
            if node.alive:
                code = node.stop()
                assert code == 0, f"node {node.index} exited {code}:\n{node.log()[-3000:]}"

    def reap(self) -> None:
        for node in self.nodes:
            if node.alive:
                if node.paused:
                    node.resume()
                node.process.kill()
                node.process.wait(timeout=10)

    # --- what the nodes left behind ---------------------------------------------------------

    def runs(self, schedule: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM runs"
        params: tuple[Any, ...] = ()
        if schedule is not None:
            query += " WHERE schedule = %s"
            params = (schedule,)
        with psycopg.connect(_conninfo(self.database_url), autocommit=True) as conn:
            cursor = conn.execute(query + " ORDER BY scheduled_for, started_at", params)
            names = [c.name for c in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def executions(self) -> list[tuple[int, str, str]]:
        """(pid, scheduled_for or "-", trigger) of every run that really executed."""
        if not self.stamps.exists():
            return []
        found = []
        for line in self.stamps.read_text(encoding="utf-8").splitlines():
            pid, instant, trigger = line.split()
            found.append((int(pid), instant, trigger))
        return found


def _one(nodes: list[Node]) -> Node | None:
    return nodes[0] if len(nodes) == 1 else None


def _conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def build_env(root: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(APP_PREFIXES)}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        PYTHONUNBUFFERED="1",
        PYTHON_DOTENV_DISABLED="1",
        PIPELINES_CONFIG=str(root / "pipelines.yml"),
        SCHEDULER_DB_URL=database_url,
        SCHEDULER_TIMEZONE="UTC",
        SCHEDULER_POLL_SECONDS="0.5",
        SCHEDULER_SHUTDOWN_GRACE=str(SHUTDOWN_GRACE),
        SCHEDULER_MODE="scheduler",
        SCHEDULER_DISTRIBUTED="true",
        DISCORD_TOKEN="",
        API_PORT="0",
        LOG_LEVEL="INFO",
        LOG_FORMAT="text",
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def cluster(root: Path, database_url: str, **extra: str) -> Iterator[Cluster]:
    made = Cluster(root, database_url, build_env(root, database_url, **extra))
    try:
        yield made
    finally:
        made.reap()


# --- judging the ledger ---------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    instants: list[datetime]
    ran: list[datetime]
    largest_gap: float


def judge(cluster: Cluster, schedule: str = "ticker", *, holes: bool = False) -> Verdict:
    """Every instant of ``schedule`` in the ledger exactly once, none executed twice.

    Checks: the claimed instants are consecutive seconds with no hole (an instant is
    either run or recorded as missed, never lost), no instant was executed by two
    processes (the stamps), every successful row was executed once, and nothing
    executed without a row. ``holes``: the schedule was paused, so holes are expected.
    Returns the largest gap between instants that ran.
    """
    rows = cluster.runs(schedule)
    instants = [row["scheduled_for"].astimezone(UTC) for row in rows]
    assert len(instants) == len(set(instants)), "an instant was claimed twice"
    assert instants, cluster.logs()
    missing = [
        (a, b)
        for a, b in zip(instants, instants[1:], strict=False)
        if b - a != timedelta(seconds=1)
    ]
    assert holes or not missing, f"instants missing from the ledger: {missing[:5]}"
    executed = Counter(
        instant for _, instant, trigger in cluster.executions() if trigger != "startup"
    )
    twice = [instant for instant, count in executed.items() if count > 1]
    assert not twice, f"instants executed more than once: {twice}"
    by_instant = {row["scheduled_for"].astimezone(UTC).isoformat(): row for row in rows}
    unknown = [instant for instant in executed if instant not in by_instant]
    assert not unknown, f"executed without a ledger row: {unknown}"
    for pid, instant, trigger in cluster.executions():
        if trigger != "startup":
            holder = str(by_instant[instant]["holder"])
            assert holder.rsplit(":", 2)[1] == str(pid), f"{instant} ran in {pid}, not {holder}"
    for instant, row in by_instant.items():
        if row["status"] == "success":
            assert executed[instant] == 1, f"{instant} succeeded but was not executed"
        if row["status"] in ("missed", "skipped"):
            assert executed[instant] == 0, f"{instant} is {row['status']} yet executed"
    ran = sorted(datetime.fromisoformat(instant) for instant in executed)
    gaps = [(b - a).total_seconds() for a, b in zip(ran, ran[1:], strict=False)]
    return Verdict(instants, ran, max(gaps, default=0.0))
