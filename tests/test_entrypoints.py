"""The entry points through real subprocesses: ``main.py``, ``main_scheduler.py``, ``pipebot``.

Every process gets a pipelines.yml, a SQLite file and its working directory in the
test's ``tmp_path`` and an environment built here. python-dotenv searches for ``.env``
from the directory of the file that calls ``load_dotenv()`` (the repository), not from
the working directory, so ``PYTHON_DOTENV_DISABLED=1`` switches it off, and every
variable the project reads is set explicitly as well: a ``.env`` in the repository
cannot leak into these tests.

Waits are bounded polls (``wait_for``); long-running processes are reaped at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS = "tests.entry_plugins"
SHUTDOWN_GRACE = 3.0
COMMAND_TIMEOUT = 30.0
"""Seconds a one-shot command may take before the test fails."""
READY_LINE = "running the scheduler without the Discord bot"
"""Logged by ``serve`` once its signal handlers are installed."""
APP_PREFIXES = ("SCHEDULER_", "PIPEBOT_", "PIPELINES_", "DISCORD_", "API_", "LOG_", "PYTHON_DOTENV")
RESULT_LINE = re.compile(
    r"^(?P<mark>ok|FAIL)\s+(?P<name>\S+)\s+(?P<status>\w+)\s+items=(?P<items>\d+)\s+"
    r"(?P<duration>\d+\.\d+)s(?:\s+(?P<failure>.*))?$"
)
T = TypeVar("T")


# --- the project a test runs in ---------------------------------------------------------


def pipelines_yml(pipelines: str) -> str:
    """A pipelines.yml that may import the plugins of ``tests.entry_plugins``."""
    body = textwrap.indent(textwrap.dedent(pipelines).strip("\n"), "  ")
    return f"allowed_modules: [{PLUGINS}]\npipelines:\n{body}\n"


def build_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of every subprocess: hermetic, pointing into ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(APP_PREFIXES)}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        PYTHONUNBUFFERED="1",
        PYTHON_DOTENV_DISABLED="1",
        PIPELINES_CONFIG=str(tmp_path / "pipelines.yml"),
        SCHEDULER_DB_URL=f"sqlite:///{tmp_path / 'pipebot.db'}",
        SCHEDULER_TIMEZONE="UTC",
        SCHEDULER_POLL_SECONDS="0.5",
        SCHEDULER_SHUTDOWN_GRACE=str(SHUTDOWN_GRACE),
        SCHEDULER_MODE="scheduler",
        DISCORD_TOKEN="",
        API_PORT="0",
        LOG_LEVEL="INFO",
        LOG_FORMAT="text",
    )
    env.update(extra)
    return env


@dataclass
class Daemon:
    """A running ``main_scheduler.py`` with its output going to files."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Until the signal handlers are installed (SIGHUP would kill it before)."""
        wait_for(
            lambda: READY_LINE in self.log() or self.process.poll() is not None,
            timeout,
            f"main_scheduler.py (pid {self.pid}) to start",
            context=self.log,
        )
        assert self.process.poll() is None, f"main_scheduler.py exited early:\n{self.log()}"

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code; the process must exit within the grace."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=SHUTDOWN_GRACE + 5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pid {self.pid} still running {SHUTDOWN_GRACE + 5}s after {sig.name}")


@dataclass
class Project:
    """A pipelines.yml, a database and a working directory in ``tmp_path``."""

    root: Path
    env: dict[str, str]
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.root / "pipelines.yml"

    @property
    def database(self) -> Path:
        return self.root / "pipebot.db"

    def write(self, pipelines: str) -> None:
        self.config.write_text(pipelines_yml(pipelines), encoding="utf-8")

    def run(
        self, *args: str | Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python ARGS`` to completion in the project."""
        return subprocess.run(
            [sys.executable, *map(str, args)],
            cwd=self.root,
            env=self.env if env is None else env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def main(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(REPO_ROOT / "main.py", *args, env=env)

    def main_scheduler(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(REPO_ROOT / "main_scheduler.py", *args, env=env)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "pipebot.cli", *args)

    def cli_many(self, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
        """Several independent CLI commands at once (they take a second each to start)."""
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            return list(pool.map(lambda command: self.cli(*command), commands))

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def start(self) -> Daemon:
        """Start ``main_scheduler.py``; it is killed at teardown if a test leaves it running."""
        index = len(self.daemons)
        stdout, stderr = self.root / f"scheduler-{index}.out", self.root / f"scheduler-{index}.log"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, str(REPO_ROOT / "main_scheduler.py")],
                cwd=self.root,
                env=self.env,
                stdout=out,
                stderr=err,
            )
        daemon = Daemon(process, stdout, stderr)
        self.daemons.append(daemon)
        return daemon

    def wait(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        """``wait_for`` that shows the schedulers' logs when it times out."""
        return wait_for(check, timeout, what, context=self.logs)

    def logs(self) -> str:
        return "\n".join(f"--- pid {d.pid}:\n{d.log()[-4000:]}" for d in self.daemons)

    def runs(self, **where: str) -> list[dict[str, Any]]:
        """Rows of the run ledger matching ``where`` (column=value), oldest first."""
        return self._query("runs", "started_at, rowid", where)

    def schedules(self, **where: str) -> list[dict[str, Any]]:
        """Rows of the schedule store, by name."""
        return self._query("schedules", "name", where)

    def audit(self, **where: str) -> list[dict[str, Any]]:
        return self._query("audit", "id", where)

    def _query(self, table: str, order: str, where: dict[str, str]) -> list[dict[str, Any]]:
        if not self.database.exists():
            return []
        clause = " AND ".join(f'"{column}" = ?' for column in where) or "1"
        sql = f"SELECT * FROM {table} WHERE {clause} ORDER BY {order}"
        with contextlib.closing(sqlite3.connect(self.database, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            try:
                return [dict(row) for row in db.execute(sql, tuple(where.values()))]
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = Project(tmp_path, build_env(tmp_path))
    yield made
    for daemon in made.daemons:
        if daemon.process.poll() is None:
            daemon.process.kill()
        daemon.process.wait(timeout=COMMAND_TIMEOUT)


def results(stdout: str) -> dict[str, dict[str, str]]:
    """The per-pipeline lines of the one-shot runner, by pipeline name."""
    found: dict[str, dict[str, str]] = {}
    for line in stdout.splitlines():
        match = RESULT_LINE.match(line)
        if match is not None:
            assert match["name"] not in found, f"two lines for {match['name']}:\n{stdout}"
            found[match["name"]] = match.groupdict()
    return found


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


def job_names(jobs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(job["name"] for job in jobs)


def scheduled_after(rows: list[dict[str, Any]], moment: datetime) -> list[datetime]:
    """The ``scheduled_for`` instants of ``rows`` (stored as naive UTC) after ``moment``."""
    instants = sorted(
        datetime.fromisoformat(row["scheduled_for"]).replace(tzinfo=UTC)
        for row in rows
        if row["scheduled_for"] is not None
    )
    return [instant for instant in instants if instant > moment]


def startup_marks(path: Path) -> list[str]:
    """The pids of the start-up runs a ``Mark`` stage wrote to ``path``."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split()[0] for line in lines if line.endswith(" startup")]


# --- configurations -----------------------------------------------------------------------

GOOD = f"""
alpha:
  description: three numbers
  chain:
    - class: {PLUGINS}.Count
      kwargs: {{n: 3}}
beta:
  chain:
    - class: {PLUGINS}.Count
      kwargs: {{n: 2}}
dormant:
  enabled: false
  chain:
    - class: {PLUGINS}.Count
"""

ONE_FAILS = f"""
alpha:
  chain:
    - class: {PLUGINS}.Count
      kwargs: {{n: 3}}
broken:
  chain:
    - class: {PLUGINS}.Count
      kwargs: {{n: 2}}
    - class: {PLUGINS}.Fail
      kwargs: {{message: disk on fire}}
"""

TWO_INVALID = f"""
ok:
  chain:
    - class: {PLUGINS}.Count
first:
  chain:
    - class: {PLUGINS}.NoSuchStage
second:
  chain:
    - class: {PLUGINS}.Count
      kwargs: {{n: 1, colour: blue}}
"""

THREE_BAD_SCHEDULES = f"""
badcron:
  schedule: {{cron: "61 * * * *"}}
  chain:
    - class: {PLUGINS}.Count
badzone:
  schedule: {{every: 5m, timezone: Mars/Base}}
  chain:
    - class: {PLUGINS}.Count
badclass:
  schedule: {{every: 5m}}
  chain:
    - class: {PLUGINS}.Nowhere
"""


def ticker_and_boot(root: Path, ticker_schedule: str = "{interval: {seconds: 1}}") -> str:
    """``ticker`` on a schedule and ``boot`` without one (it runs once per start)."""
    return textwrap.dedent(f"""
    ticker:
      schedule: {ticker_schedule}
      chain:
        - class: {PLUGINS}.Count
          kwargs: {{n: 1}}
        - class: {PLUGINS}.Mark
          kwargs: {{path: "{root / "ticker.log"}"}}
    boot:
      chain:
        - class: {PLUGINS}.Count
        - class: {PLUGINS}.Mark
          kwargs: {{path: "{root / "boot.log"}"}}
    """)


# --- main.py: the one-shot runner ---------------------------------------------------------


def test_main_runs_every_enabled_pipeline_and_exits_0(project: Project) -> None:
    project.write(GOOD)
    with ThreadPoolExecutor(max_workers=2) as pool:
        plain = pool.submit(project.main)
        legacy_env = build_env(project.root, SCHEDULER_MODE="legacy")
        legacy = pool.submit(project.main_scheduler, env=legacy_env)
        bogus_env = build_env(project.root, SCHEDULER_MODE="bogus")
        bogus = project.main_scheduler(env=bogus_env)
    ran = plain.result()

    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = results(ran.stdout)
    assert sorted(lines) == ["alpha", "beta"], ran.stdout  # not the disabled one
    assert len(ran.stdout.splitlines()) == 2, ran.stdout
    assert (lines["alpha"]["mark"], lines["alpha"]["status"], lines["alpha"]["items"]) == (
        "ok",
        "success",
        "3",
    )
    assert (lines["beta"]["status"], lines["beta"]["items"]) == ("success", "2")
    assert all(float(line["duration"]) < COMMAND_TIMEOUT for line in lines.values())

    # SCHEDULER_MODE=legacy: main_scheduler.py behaves like main.py.
    as_legacy = legacy.result()
    assert as_legacy.returncode == 0, as_legacy.stdout + as_legacy.stderr
    same = {name: (r["mark"], r["status"], r["items"]) for name, r in lines.items()}
    assert {
        name: (r["mark"], r["status"], r["items"]) for name, r in results(as_legacy.stdout).items()
    } == same
    assert len(as_legacy.stdout.splitlines()) == 2, as_legacy.stdout

    assert bogus.returncode == 2, bogus.stdout + bogus.stderr
    line = one_line(bogus.stderr)
    assert "SCHEDULER_MODE" in line and "'bogus'" in line, line
    assert "Traceback" not in bogus.stderr


def test_main_exits_1_naming_the_failed_stage_and_runs_only_named(project: Project) -> None:
    project.write(ONE_FAILS)
    with ThreadPoolExecutor(max_workers=3) as pool:
        every, only, unknown = pool.map(
            lambda args: project.main(*args), [(), ("alpha",), ("alpha", "ghost")]
        )

    assert every.returncode == 1, every.stdout + every.stderr
    lines = results(every.stdout)
    assert sorted(lines) == ["alpha", "broken"], every.stdout
    assert lines["alpha"]["status"] == "success"
    failed = lines["broken"]
    assert (failed["mark"], failed["status"]) == ("FAIL", "failed"), failed
    assert "stage 1 (Fail)" in (failed["failure"] or ""), failed
    assert "RuntimeError: disk on fire" in (failed["failure"] or ""), failed

    assert only.returncode == 0, only.stdout + only.stderr
    assert sorted(results(only.stdout)) == ["alpha"], only.stdout

    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "ghost" in unknown.stderr and "no such pipeline" in unknown.stderr, unknown.stderr
    assert results(unknown.stdout) == {}, "nothing may run when a name is unknown"


def test_main_exits_2_listing_every_configuration_problem(project: Project) -> None:
    project.write(TWO_INVALID)

    ran = project.main()

    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert results(ran.stdout) == {}, "a bad configuration must run nothing"
    assert "2 problems" in ran.stderr, ran.stderr
    assert "pipelines.first" in ran.stderr and "NoSuchStage" in ran.stderr, ran.stderr
    assert "pipelines.second" in ran.stderr and "colour" in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr


def test_main_ctrl_c_cancels_the_run_and_exits_130(project: Project) -> None:
    started = project.root / "slow.started"
    project.write(
        f"""
        slow:
          chain:
            - class: {PLUGINS}.Count
              kwargs: {{n: 1}}
            - class: {PLUGINS}.Slow
              kwargs: {{seconds: 60, started: "{started}"}}
        """
    )
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "main.py")],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: started.exists() or process.poll() is not None, 15, "the slow stage")
        assert process.poll() is None, "main.py ended before the slow stage started"
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 130, stdout + stderr
    assert "interrupted" in stdout, stdout
    assert took < 5, f"main.py took {took:.1f}s to stop after SIGINT"
    assert "Traceback" not in stderr, stderr


# --- main_scheduler.py --------------------------------------------------------------------


def test_scheduler_runs_schedules_survives_restart_without_duplicates(project: Project) -> None:
    project.write(ticker_and_boot(project.root))
    down = project.cli("health", "--json")
    assert down.returncode == 1, down.stdout + down.stderr
    assert json.loads(down.stdout)["status"] == "down"

    first = project.start()
    first.wait_ready()
    project.wait(
        lambda: len(project.runs(schedule="ticker", status="success")) >= 3,
        15,
        "three successful runs of the interval pipeline",
    )
    listed, health = project.cli_many(("history", "--json"), ("health", "--json"))
    history = json.loads(listed.stdout)
    assert len([r for r in history if r["schedule"] == "ticker" and r["success"]]) >= 3, history
    assert health.returncode == 0, health.stdout + health.stderr
    assert json.loads(health.stdout)["status"] == "ok", health.stdout

    added = project.cli("jobs", "add", "extra", "--pipeline", "boot", "--every", "1h")
    assert added.returncode == 0, added.stdout + added.stderr
    jobs = {job["name"]: job for job in project.cli_json("jobs")}
    assert set(jobs) == {"ticker", "extra"}, jobs
    assert (jobs["ticker"]["owner"], jobs["extra"]["owner"]) == ("yaml", "cli")
    assert jobs["extra"]["expression"] == "every 1h"

    assert first.stop() == 0, first.log()
    assert startup_marks(project.root / "boot.log") == [str(first.pid)]

    second = project.start()
    second.wait_ready()
    project.wait(
        lambda: len(startup_marks(project.root / "boot.log")) >= 2,
        15,
        "the start-up run of the second process",
    )
    assert job_names(project.cli_json("jobs")) == Counter({"ticker": 1, "extra": 1})
    assert second.stop(signal.SIGINT) == 0, second.log()  # Ctrl-C stops it the same way

    assert startup_marks(project.root / "boot.log") == [str(first.pid), str(second.pid)]
    startup_runs = project.runs(pipeline="boot", trigger="startup")
    assert [run["status"] for run in startup_runs] == ["success", "success"], startup_runs
    assert project.runs(status="running") == [], "a clean stop leaves no run open"
    for daemon in (first, second):
        assert "Traceback" not in daemon.log(), daemon.log()
    stopped = project.cli("health", "--json")
    assert json.loads(stopped.stdout)["status"] == "down", "no scheduler runs after a clean stop"
    assert stopped.returncode == 1, stopped.stdout


def test_scheduler_killed_mid_run_marks_it_abandoned_and_fires_again(project: Project) -> None:
    project.write(
        f"""
        sleeper:
          schedule: {{interval: {{seconds: 2}}}}
          chain:
            - class: {PLUGINS}.Count
              kwargs: {{n: 1}}
            - class: {PLUGINS}.Slow
              kwargs: {{seconds: 5}}
        """
    )
    first = project.start()
    first.wait_ready()
    running = project.wait(
        lambda: project.runs(schedule="sleeper", status="running"), 10, "a running row"
    )
    assert len(running) == 1, running
    killed_run = running[0]["run_id"]

    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = project.start()
    second.wait_ready()
    abandoned = project.wait(
        lambda: [r for r in project.runs(run_id=killed_run) if r["status"] == "abandoned"],
        10,
        "the killed run to be marked abandoned",
    )[0]
    error = abandoned["error"] or ""
    assert f":{first.pid}:" in error and "stopped" in error, error
    assert job_names(project.cli_json("jobs")) == Counter({"sleeper": 1})
    project.wait(
        lambda: [
            r
            for r in project.runs(schedule="sleeper")
            if f":{second.pid}:" in (r["holder"] or "") and r["status"] in ("running", "success")
        ],
        10,
        "a run of the schedule in the restarted process",
    )

    assert second.stop() == 0, second.log()
    assert project.runs(status="running") == [], project.runs(status="running")
    assert "Traceback" not in second.log(), second.log()


def test_scheduler_reloads_on_sighup_and_refuses_a_broken_edit(project: Project) -> None:
    project.write(ticker_and_boot(project.root))
    daemon = project.start()
    daemon.wait_ready()

    edited = ticker_and_boot(project.root, ticker_schedule="{every: 2s}") + textwrap.dedent(
        f"""
        fresh:
          schedule: {{interval: {{minutes: 5}}}}
          chain:
            - class: {PLUGINS}.Count
        """
    )
    project.write(edited)
    daemon.process.send_signal(signal.SIGHUP)
    project.wait(lambda: "reloaded pipelines.yml" in daemon.log(), 5, "the reload to be logged")
    jobs = {job["name"]: job for job in project.cli_json("jobs")}
    assert set(jobs) == {"ticker", "fresh"}, jobs
    assert jobs["ticker"]["expression"] == "every 2s", jobs["ticker"]
    assert (jobs["fresh"]["expression"], jobs["fresh"]["owner"]) == ("every 5m", "yaml")
    # The running engine follows the new interval, not only the store.
    applied_at = datetime.now(UTC)

    def two_new_instants() -> list[datetime] | None:
        fired = scheduled_after(project.runs(schedule="ticker", trigger="schedule"), applied_at)
        return fired[:2] if len(fired) >= 2 else None

    instants = project.wait(two_new_instants, 8, "two runs of the reloaded schedule")
    assert instants[1] - instants[0] == timedelta(seconds=2), instants

    project.write(ticker_and_boot(project.root, ticker_schedule='{cron: "61 * * * *"}'))
    daemon.process.send_signal(signal.SIGHUP)
    refusal = project.wait(
        lambda: daemon.log().partition("reload refused")[2], 5, "the broken reload to be refused"
    )
    assert "pipelines.ticker.schedule" in refusal and "61" in refusal, refusal
    assert daemon.process.poll() is None, "a broken reload must not stop the scheduler"
    stored = {row["name"]: json.loads(row["fields"]) for row in project.schedules()}
    assert stored == {"ticker": {"seconds": 2}, "fresh": {"seconds": 300}}, stored
    seen = len(project.runs(schedule="ticker", status="success"))
    project.wait(
        lambda: len(project.runs(schedule="ticker", status="success")) > seen,
        6,
        "the old schedule to keep firing after the refused reload",
    )
    # The operator's next step after a refused reload: is the scheduler still fine?
    health = project.cli("health", "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    assert json.loads(health.stdout)["status"] == "ok", health.stdout

    assert daemon.stop() == 0, daemon.log()


def test_scheduler_refuses_to_start_with_every_problem_listed(project: Project) -> None:
    project.write(THREE_BAD_SCHEDULES)

    ran = project.main_scheduler()

    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "3 problems" in ran.stderr, ran.stderr
    for name, detail in (("badcron", "61"), ("badzone", "Mars/Base"), ("badclass", "Nowhere")):
        lines = [line for line in ran.stderr.splitlines() if f"pipelines.{name}" in line]
        assert len(lines) == 1 and detail in lines[0], (name, ran.stderr)
    assert "Traceback" not in ran.stderr
    assert project.runs() == [], "nothing may run"


# --- the pipebot CLI ----------------------------------------------------------------------


def test_cli_next_prints_exact_instants_and_refuses_a_bad_field(project: Project) -> None:
    good, bad = project.cli_many(
        (
            "next",
            "0 9 * * 1-5",
            "--tz",
            "Europe/Stockholm",
            "--count",
            "3",
            "--after",
            "2025-06-06T12:00:00+00:00",
            "--json",
        ),
        ("next", "0 9 * * 1-8"),
    )

    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["next"] == [
        "2025-06-09T07:00:00+00:00",  # Monday, 09:00 CEST
        "2025-06-10T07:00:00+00:00",
        "2025-06-11T07:00:00+00:00",
    ]
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "day-of-week" in one_line(bad.stderr), bad.stderr


def test_cli_manages_jobs_with_an_audit_trail(project: Project) -> None:
    project.write(
        f"""
        p:
          chain:
            - class: {PLUGINS}.Count
              kwargs: {{n: 2}}
        owned:
          schedule: {{cron: "0 3 * * *"}}
          chain:
            - class: {PLUGINS}.Count
        """
    )
    daemon = project.start()
    daemon.wait_ready()

    ghost, bad_cron, bad_zone, yaml_owned = project.cli_many(
        ("jobs", "remove", "ghost"),
        ("jobs", "add", "x", "--pipeline", "p", "--cron", "61 * * * *"),
        ("jobs", "add", "x", "--pipeline", "p", "--every", "5m", "--tz", "Mars/Base"),
        ("jobs", "remove", "owned"),
    )
    assert ghost.returncode == 2 and "no schedule named 'ghost'" in one_line(ghost.stderr)
    assert bad_cron.returncode == 2 and "61" in one_line(bad_cron.stderr), bad_cron.stderr
    assert bad_zone.returncode == 2 and "Mars/Base" in one_line(bad_zone.stderr), bad_zone.stderr
    assert yaml_owned.returncode == 2, yaml_owned.stderr
    assert "owned by pipelines.yml" in one_line(yaml_owned.stderr), yaml_owned.stderr

    def job(*args: str) -> str:
        done = project.cli("jobs", *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def fired(after: datetime) -> list[datetime]:
        return scheduled_after(project.runs(schedule="x", trigger="schedule"), after)

    assert job("add", "x", "--pipeline", "p", "--every", "1s").startswith("added x: every 1s")
    project.wait(lambda: fired(datetime.min.replace(tzinfo=UTC)), 5, "the live scheduler to fire x")

    job("pause", "x")
    paused_at = datetime.now(UTC)
    assert project.schedules(name="x")[0]["enabled"] == 0
    assert job("run", "x").startswith("p: success"), "the run's outcome is printed"
    history = project.cli_json("history", "x")
    by_cli = [r for r in history if r["trigger"] == "cli"]
    assert [(r["status"], r["items"]) for r in by_cli] == [("success", [2])], history
    assert fired(paused_at + timedelta(seconds=1.5)) == [], "a paused job must not fire"

    job("resume", "x")
    resumed_at = datetime.now(UTC)
    assert project.schedules(name="x")[0]["enabled"] == 1
    project.wait(lambda: fired(resumed_at), 5, "the resumed job to fire again")

    removed = project.cli("jobs", "remove", "x")
    assert removed.returncode == 0, removed.stderr
    assert [row["name"] for row in project.schedules()] == ["owned"]
    trail = project.audit(target="x")
    assert [(row["action"], row["actor"]) for row in trail] == [
        ("schedule", "cli"),
        ("pause", "cli"),
        ("run", "cli"),
        ("resume", "cli"),
        ("remove", "cli"),
    ], trail
    assert daemon.stop() == 0, daemon.log()


def test_cli_commands_started_together_on_a_fresh_database(project: Project) -> None:
    """A monitoring probe may well run while the first process creates the schema."""
    project.write(GOOD)

    listed = project.cli_many(*[("jobs", "--json")] * 4)

    for result in listed:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == []


def test_cli_validate_lists_every_problem(project: Project, tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(pipelines_yml(GOOD), encoding="utf-8")
    bad = tmp_path / "bad.yml"
    bad.write_text(pipelines_yml(TWO_INVALID + THREE_BAD_SCHEDULES), encoding="utf-8")

    fine, broken = project.cli_many(
        ("--config", str(good), "validate"), ("--config", str(bad), "validate")
    )

    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert one_line(fine.stdout) == f"{good}: ok"
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert "5 problems" in broken.stderr, broken.stderr
    for name in ("first", "second", "badcron", "badzone", "badclass"):
        assert f"pipelines.{name}" in broken.stderr, (name, broken.stderr)


def test_cli_sync_commands_needs_a_token_and_says_so(project: Project) -> None:
    project.write(GOOD)

    result = project.cli("sync-commands")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "DISCORD_TOKEN: is not set" in result.stderr
    assert "Traceback" not in result.stderr
