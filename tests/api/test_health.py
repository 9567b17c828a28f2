"""``/healthz``, ``/readyz`` and the scheduler health report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from api.app import start_api, stop_api
from api.health import public, readiness
from pipelines.db import dispose_engine
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings

from .conftest import Api, StartApi, read_only_settings, token_settings


async def test_healthz(api: StartApi) -> None:
    client = await api()
    reply = await client.get("/healthz", token=False)
    assert (reply.status, reply.json) == (200, {"status": "ok"})


async def test_readyz_green_while_running_red_once_stopped(
    api: StartApi, scheduler: PipelineScheduler
) -> None:
    client = await api()
    ready = await client.get("/readyz", token=False)
    assert ready.status == 200, ready.text
    assert ready.json["ready"] is True and ready.json["database_reachable"] is True
    await scheduler.astop(grace=1)
    stopped = await client.get("/readyz", token=False)
    assert stopped.status == 503
    assert stopped.json["ready"] is False
    assert "not running" in stopped.json["problems"][0]


async def test_readyz_red_when_the_engine_stalls(tmp_path: Path) -> None:
    """An engine that makes no pass for longer than the limit turns /readyz red."""
    url = f"sqlite:///{tmp_path / 'stall.db'}"
    sched = PipelineScheduler(SchedulerSettings(database_url=url, poll_interval=60))
    await sched.astart()
    runner = await start_api(sched, read_only_settings(ready_engine_seconds=0.5))
    try:
        async with aiohttp.ClientSession() as session:
            client = Api(f"http://127.0.0.1:{runner.addresses[0][1]}", session, token=None)
            assert (await client.get("/readyz")).status == 200
            await asyncio.sleep(0.7)  # no schedules, no watchdog wake-up for 60 s: no pass
            red = await client.get("/readyz")
        assert red.status == 503
        assert "last pass" in red.json["problems"][0]
        assert red.json["engine_seconds_since_pass"] > 0.5
    finally:
        await stop_api(runner)
        await sched.astop(grace=1)
        dispose_engine(url)


def test_readiness_judgement() -> None:
    good = {"running": True, "engine_seconds_since_pass": 1.0, "database": {"reachable": True}}
    assert readiness(good, 30) == []
    dead_db = {"status": "down", "database": {"reachable": False, "error": "locked"}}
    assert [p.split(":")[0] for p in readiness(dead_db, 30)] == [
        "database unreachable",
        "the scheduler is not running in this process",
    ]
    stale = {**good, "engine_seconds_since_pass": 61.0}
    assert "61 s ago" in readiness(stale, 30)[0]
    remote = {"running": False, "database": {"reachable": True}}
    assert readiness(remote, 30) == ["the scheduler is not running in this process"]


async def test_health_report_and_alias(api: StartApi) -> None:
    client = await api(token_settings())
    one = await client.get("/api/scheduler/health", token=False)
    two = await client.get("/api/schedules/health", token=False)
    assert one.status == two.status == 200
    assert one.json["status"] == "ok" and set(one.json) == set(two.json)
    assert one.json["database"]["reachable"] is True


async def test_health_report_masks_error_texts(api: StartApi, scheduler: PipelineScheduler) -> None:
    try:
        await scheduler.arun("boom")
    except Exception:  # noqa: BLE001 - a failed run is recorded, not raised
        pass
    client = await api()
    for _ in range(50):
        report = (await client.get("/api/scheduler/health", token=False)).json
        if report["metrics"]["last_failure"] is not None:
            break
        await asyncio.sleep(0.05)
    error = report["metrics"]["last_failure"]["error"]
    assert "upstream refused" in error and "hunter2" not in error


def test_public_redacts_nested_errors() -> None:
    data = {"a": [{"error": "password=swordfish"}], "error": None, "n": 1}
    assert public(data) == {"a": [{"error": "password=***"}], "error": None, "n": 1}
