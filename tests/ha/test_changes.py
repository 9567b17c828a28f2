"""Changes from another process reach the active scheduler at once (PostgreSQL NOTIFY).

The schedulers here poll the store only every 60 s or more, so a change that arrives
sooner can only have come through ``LISTEN``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings

from .cluster import cluster, judge, ticker_yml

pytestmark = pytest.mark.postgres
REACH = 5.0
"""Seconds within which a change must reach the active scheduler."""


async def test_change_by_another_process_wakes_the_scheduler(pg_url: str) -> None:
    settings = SchedulerSettings(database_url=pg_url, timezone="UTC", poll_interval=120)
    active = PipelineScheduler(settings)
    active.register("job", lambda: None)
    await active.astart()
    try:
        elsewhere = PipelineScheduler(settings)  # the CLI or a standby: not running
        elsewhere.register("job", lambda: None)
        await asyncio.to_thread(elsewhere.create_schedule, "nightly", "job", cron="0 3 * * *")
        runtime = active._runtime
        assert runtime is not None
        for _ in range(int(REACH * 20)):
            if "nightly" in runtime.defs:
                break
            await asyncio.sleep(0.05)
        assert "nightly" in runtime.defs
        assert active.get_schedule("nightly").next_run is not None
        await asyncio.to_thread(elsewhere.disable, "nightly")
        for _ in range(int(REACH * 20)):
            if not runtime.defs["nightly"].enabled:
                break
            await asyncio.sleep(0.05)
        assert not runtime.defs["nightly"].enabled
        assert active.get_schedule("nightly").next_run is None
    finally:
        await active.astop()


@pytest.mark.slow
def test_cli_pause_reaches_the_leader(pg_url: str, tmp_path: Path) -> None:
    with cluster(tmp_path, pg_url, SCHEDULER_POLL_SECONDS="60") as c:
        c.write(ticker_yml(c.stamps))
        c.start()
        c.wait_leader()
        time.sleep(1.0)

        def cli(*args: str) -> float:
            done = subprocess.run(
                [sys.executable, "-m", "pipebot.cli", *args],
                cwd=tmp_path,
                env=c.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            return time.time()

        paused_at = cli("jobs", "pause", "ticker")
        time.sleep(REACH + 1.5)
        last = max(r["started_at"].timestamp() for r in c.runs("ticker"))
        assert last <= paused_at + REACH, f"claimed {last - paused_at:.1f}s after the pause"
        resumed_at = cli("jobs", "resume", "ticker")
        c.wait(
            lambda: any(r["started_at"].timestamp() > resumed_at for r in c.runs("ticker")),
            REACH + 1,
            "a run after the resume",
        )
        c.stop_all()
        judge(c, holes=True)  # paused instants are not recorded
