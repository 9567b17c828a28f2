"""GET /metrics over real HTTP, fed by real runs of a real scheduler on a SQLite file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import METRICS_KEY, set_discord_connected, setup_metrics, watch_discord
from scheduler.dispatch import AlreadyRunningError
from scheduler.errors import StoreError
from scheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from scheduler.models import Policies
from scheduler.service import PipelineScheduler

from .live import close_scheduler, fetch, make_scheduler, serve

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def scheduler(tmp_path: Path) -> AsyncIterator[PipelineScheduler]:
    sched = make_scheduler(tmp_path)
    sched.register("ok", _ok)
    sched.register("boom", _boom)
    sched.register("slow", _slow)
    yield sched
    await close_scheduler(sched)


async def _ok() -> None:
    await asyncio.sleep(0.01)


async def _boom() -> None:
    raise RuntimeError("exploded")


async def _slow() -> None:
    await asyncio.sleep(0.6)


def metrics_app(scheduler: PipelineScheduler) -> web.Application:
    app = web.Application()
    setup_metrics(app, scheduler)
    return app


async def scrape(base: str) -> Samples:
    status, content_type, body = await fetch(f"{base}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_runs_by_status_duration_and_last_success(scheduler: PipelineScheduler) -> None:
    await scheduler.astart()
    async with serve(metrics_app(scheduler)) as base:
        before = time.time()
        await scheduler.arun("ok")
        await scheduler.arun("ok")
        await scheduler.arun("boom")
        samples = await scrape(base)
    assert value(samples, "pipebot_runs_total", pipeline="ok", status="success") == 2
    assert value(samples, "pipebot_runs_total", pipeline="boom", status="failed") == 1
    assert value(samples, "pipebot_run_duration_seconds_count", pipeline="ok") == 2
    assert value(samples, "pipebot_run_duration_seconds_bucket", pipeline="ok", le="+Inf") == 2
    assert 0 < (value(samples, "pipebot_run_duration_seconds_sum", pipeline="ok") or 0) < 5
    last = value(samples, "pipebot_last_success_timestamp_seconds", pipeline="ok")
    assert last is not None and before <= last <= time.time()
    assert value(samples, "pipebot_last_success_timestamp_seconds", pipeline="boom") is None
    # manual runs have no scheduled time: no lateness
    assert value(samples, "pipebot_run_lateness_seconds_count", pipeline="ok") is None


async def test_timeout_counts_as_its_own_status(scheduler: PipelineScheduler) -> None:
    scheduler.create_schedule(
        "slow-s", "slow", cron="0 0 1 1 *", policies=Policies(timeout=0.1), owner="code"
    )
    await scheduler.astart()
    async with serve(metrics_app(scheduler)) as base:
        record = await scheduler.arun("slow-s")
        samples = await scrape(base)
    assert record.status == "timeout"
    assert value(samples, "pipebot_runs_total", pipeline="slow", status="timeout") == 1


async def test_scheduled_runs_observe_lateness(scheduler: PipelineScheduler) -> None:
    scheduler.create_schedule("tick", "ok", every="1s", owner="code")
    app = metrics_app(scheduler)
    async with serve(app) as base:
        await scheduler.astart()
        registry = app[METRICS_KEY].registry
        name, labels = "pipebot_run_lateness_seconds_count", {"pipeline": "ok"}
        await wait_for(lambda: registry.get_sample_value(name, labels))  # not a catch-up run
        samples = await scrape(base)
    count = value(samples, "pipebot_run_lateness_seconds_count", pipeline="ok")
    assert count is not None and count >= 1
    late = value(samples, "pipebot_run_lateness_seconds_sum", pipeline="ok")
    assert late is not None and 0 <= late / count < 2


async def test_missed_instants_are_counted(tmp_path: Path) -> None:
    first = make_scheduler(tmp_path)
    first.schedule_interval("ghost", lambda: None, seconds=1)  # bound in `first` only
    await close_scheduler(first)
    second = make_scheduler(tmp_path)  # nothing registered under "ghost": instants missed
    app = metrics_app(second)
    try:
        async with serve(app) as base:
            await second.astart()
            registry = app[METRICS_KEY].registry
            labels = {"pipeline": "ghost"}
            await wait_for(lambda: registry.get_sample_value("pipebot_runs_missed_total", labels))
            samples = await scrape(base)
    finally:
        await close_scheduler(second)
    assert (value(samples, "pipebot_runs_missed_total", pipeline="ghost") or 0) >= 1
    assert value(samples, "pipebot_runs_total", pipeline="ghost", status="missed") is None


async def test_schedules_by_state_are_read_at_scrape_time(scheduler: PipelineScheduler) -> None:
    scheduler.create_schedule("a", "ok", cron="0 9 * * *", owner="code")
    scheduler.create_schedule("b", "ok", cron="0 10 * * *", owner="code")
    async with serve(metrics_app(scheduler)) as base:
        samples = await scrape(base)
        assert value(samples, "pipebot_schedules", state="enabled") == 2
        assert value(samples, "pipebot_schedules", state="paused") == 0
        scheduler.disable("a")
        samples = await scrape(base)
    assert value(samples, "pipebot_schedules", state="enabled") == 1
    assert value(samples, "pipebot_schedules", state="paused") == 1
    assert value(samples, "pipebot_database_up") == 1


async def test_scrape_answers_when_the_store_is_down(
    scheduler: PipelineScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> None:
        raise StoreError("cannot read schedules (test): disk gone")

    monkeypatch.setattr(scheduler, "list_schedules", down)
    async with serve(metrics_app(scheduler)) as base:
        samples = await scrape(base)
    assert value(samples, "pipebot_database_up") == 0
    assert value(samples, "pipebot_schedules", state="enabled") is None


async def test_last_success_is_seeded_from_the_ledger_at_startup(
    scheduler: PipelineScheduler,
) -> None:
    record = await scheduler.arun("ok")  # before the app exists: no listener saw it
    async with serve(metrics_app(scheduler)) as base:
        samples = await scrape(base)
    assert record.finished_at is not None
    assert value(samples, "pipebot_last_success_timestamp_seconds", pipeline="ok") == pytest.approx(
        record.finished_at.timestamp()
    )
    assert value(samples, "pipebot_runs_total", pipeline="ok", status="success") is None


async def test_event_loop_lag_is_measured(scheduler: PipelineScheduler) -> None:
    async with serve(metrics_app(scheduler)) as base:
        await asyncio.sleep(0.05)  # the sampler is inside its sleep now
        time.sleep(0.8)  # block the loop across the whole sample
        await asyncio.sleep(0.6)  # the late sample, then a prompt one: the gauge keeps the worst
        samples = await scrape(base)
    lag = value(samples, "pipebot_event_loop_lag_seconds")
    assert lag is not None and 0.25 <= lag < 2


async def test_cleanup_stops_the_sampler_and_the_listener(scheduler: PipelineScheduler) -> None:
    app = metrics_app(scheduler)
    async with serve(app):
        pass
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "pipebot-loop-lag"]
    await scheduler.arun("ok")
    text = app[METRICS_KEY].exposition().decode()
    assert 'pipebot_runs_total{pipeline="ok"' not in text


async def test_discord_gauge_appears_once_the_bot_reports(scheduler: PipelineScheduler) -> None:
    app = metrics_app(scheduler)
    async with serve(app) as base:
        assert value(await scrape(base), "pipebot_discord_connected") is None
        set_discord_connected(app, True)
        assert value(await scrape(base), "pipebot_discord_connected") == 1
        set_discord_connected(app[METRICS_KEY], False)
        assert value(await scrape(base), "pipebot_discord_connected") == 0


async def test_discord_probe_is_read_at_each_scrape(scheduler: PipelineScheduler) -> None:
    """The hook the composition root uses: a callable looking at its bot, read per scrape."""
    app = metrics_app(scheduler)
    gateway = {"up": False}
    async with serve(app) as base:
        set_discord_connected(app, True)  # a probe, once set, wins over a pushed state
        watch_discord(app, lambda: gateway["up"])
        assert value(await scrape(base), "pipebot_discord_connected") == 0
        gateway["up"] = True
        assert value(await scrape(base), "pipebot_discord_connected") == 1
        del gateway["up"]  # a probe that raises reads as disconnected, the scrape still works
        broken = await scrape(base)
        assert value(broken, "pipebot_discord_connected") == 0
        assert value(broken, "pipebot_database_up") == 1
        watch_discord(app, None)
        assert value(await scrape(base), "pipebot_discord_connected") == 1  # the pushed state


async def test_each_app_has_its_own_registry(scheduler: PipelineScheduler) -> None:
    first, second = metrics_app(scheduler), metrics_app(scheduler)
    async with serve(first) as one, serve(second) as two:
        await scheduler.arun("ok")
        for base in (one, two):
            samples = await scrape(base)
            assert value(samples, "pipebot_runs_total", pipeline="ok", status="success") == 1


async def test_each_not_run_counter_follows_its_event(scheduler: PipelineScheduler) -> None:
    """The listener's contract: skipped from EVENT_JOB_MAX_INSTANCES, abandoned from
    EVENT_JOB_ERROR with that status, missed from EVENT_JOB_MISSED; a failure is a run."""
    async with serve(metrics_app(scheduler)) as base:
        for _ in range(2):
            scheduler.events.emit(JobEvent(EVENT_JOB_MAX_INSTANCES, "s", "ok", "r1", "skipped"))
        scheduler.events.emit(JobEvent(EVENT_JOB_ERROR, "s", "ok", "r2", "abandoned"))
        scheduler.events.emit(JobEvent(EVENT_JOB_MISSED, "s", "ok", None, "missed"))
        scheduler.events.emit(JobEvent(EVENT_JOB_ERROR, "s", "ok", "r3", "failed"))  # no record
        samples = await scrape(base)
    assert value(samples, "pipebot_runs_skipped_total", pipeline="ok") == 2
    assert value(samples, "pipebot_runs_abandoned_total", pipeline="ok") == 1
    assert value(samples, "pipebot_runs_missed_total", pipeline="ok") == 1
    assert value(samples, "pipebot_runs_total", pipeline="ok", status="failed") is None


async def test_a_real_skipped_run_is_counted(scheduler: PipelineScheduler) -> None:
    await scheduler.astart()
    async with serve(metrics_app(scheduler)) as base:
        first = asyncio.create_task(scheduler.arun("slow"))
        await asyncio.sleep(0.1)
        with pytest.raises(AlreadyRunningError):
            await scheduler.arun("slow")
        await first
        samples = await scrape(base)
    assert value(samples, "pipebot_runs_skipped_total", pipeline="slow") == 1
    assert value(samples, "pipebot_runs_total", pipeline="slow", status="success") == 1


async def test_runs_abandoned_by_a_dead_process_are_counted(tmp_path: Path) -> None:
    dead = make_scheduler(tmp_path)
    dead.ledger.start()
    await dead.ledger.begin(pipeline="ok", trigger="manual")  # never finished
    await dead.ledger.stop()
    await close_scheduler(dead)
    fresh = make_scheduler(tmp_path)
    app = metrics_app(fresh)  # set up before astart, as serve() must do
    try:
        await fresh.astart()
        assert [r.status for r in fresh.ledger.history(pipeline="ok")] == ["abandoned"]
        async with serve(app) as base:
            samples = await scrape(base)
    finally:
        await close_scheduler(fresh)
    assert value(samples, "pipebot_runs_abandoned_total", pipeline="ok") == 1
    assert value(samples, "pipebot_runs_total", pipeline="ok", status="abandoned") is None
