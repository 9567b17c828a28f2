"""PipelineScheduler end to end: real SQLite file, real engine, short real intervals."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from scheduler.dispatch import AlreadyRunningError
from scheduler.errors import (
    InvalidScheduleError,
    JobExistsError,
    JobLookupError,
    ReadOnlyScheduleError,
    StoreError,
    UnknownPipelineError,
)
from scheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobEvent
from scheduler.models import Policies
from scheduler.schedules import make_schedule
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings
from scheduler.tables import schedules as schedules_table


@pytest.fixture
def settings(db_url: str) -> SchedulerSettings:
    """The same facade tests on a SQLite file and on PostgreSQL."""
    return SchedulerSettings(database_url=db_url, timezone="Europe/Stockholm", poll_interval=0.3)


@pytest.fixture
async def scheduler(settings: SchedulerSettings) -> AsyncIterator[PipelineScheduler]:
    sched = PipelineScheduler(settings)
    yield sched
    await sched.astop(grace=1)


def statuses(sched: PipelineScheduler, name: str) -> list[str]:
    return [row["status"] for row in sched.get_history(name, limit=200)]


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_interval_schedule_fires_and_records_history(scheduler: PipelineScheduler) -> None:
    calls: list[float] = []
    scheduler.schedule_interval("tick", lambda: calls.append(time.time()), seconds=1)
    await scheduler.astart()
    await wait_for(lambda: statuses(scheduler, "tick").count("success") >= 2, timeout=4)
    rows = scheduler.get_history("tick")
    assert rows[0]["trigger"] == "schedule"
    assert rows[0]["scheduled_for"] is not None
    assert len(calls) >= 2


async def test_bad_definitions_are_refused_with_one_clear_line(
    scheduler: PipelineScheduler,
) -> None:
    with pytest.raises(InvalidScheduleError, match="day-of-week"):
        scheduler.schedule_cron("bad", lambda: None, "0 9 * * 1-9")
    with pytest.raises(InvalidScheduleError, match="Mars/Base"):
        scheduler.schedule_cron("bad", lambda: None, "0 9 * * *", timezone="Mars/Base")
    with pytest.raises(UnknownPipelineError, match="nope"):
        scheduler.create_schedule("x", "nope", cron="* * * * *")
    with pytest.raises(JobLookupError, match="ghost"):
        scheduler.disable("ghost")
    assert scheduler.list_schedules() == []


async def test_seed_api_builds_standard_cron(scheduler: PipelineScheduler) -> None:
    info = scheduler.schedule_daily("d", lambda: None, hour=2, minute=30, timezone="UTC")
    assert (info.type, info.expression, info.timezone, info.owner) == (
        "cron",
        "30 2 * * *",
        "UTC",
        "code",
    )
    assert scheduler.schedule_hourly("h", lambda: None, minute=15).expression == "15 * * * *"
    job = scheduler.add_job(lambda: None, "cron", id="weekdays", hour=9, day_of_week="mon-fri")
    assert job.expression == "0 9 * * mon-fri"
    with pytest.raises(InvalidScheduleError, match="names"):
        scheduler.add_job(lambda: None, "cron", id="n", hour=9, day_of_week="1-5")
    at = scheduler.schedule_at("once", lambda: None, datetime(2031, 1, 1, 9, 0), timezone="UTC")
    assert at.next_run == datetime(2031, 1, 1, 9, 0, tzinfo=UTC)


async def test_schedules_survive_a_restart_and_callables_rebind(
    settings: SchedulerSettings,
) -> None:
    first = PipelineScheduler(settings)
    first.register("etl", lambda: None)
    first.create_schedule("chat-etl", "etl", cron="*/5 * * * *", owner="chat", created_by="ann")
    first.schedule_interval("lambda-job", lambda: None, minutes=10)
    second = PipelineScheduler(settings)
    listed = {s.name: s for s in second.list_schedules()}
    assert set(listed) == {"chat-etl", "lambda-job"}
    assert listed["chat-etl"].created_by == "ann"
    assert not listed["lambda-job"].bound  # reported, not deleted
    second.schedule_interval("lambda-job", lambda: None, minutes=10)  # same definition
    assert [s.bound for s in second.list_schedules() if s.name == "lambda-job"] == [True]
    assert len(second.list_schedules()) == 2  # registering again never duplicates


async def test_changing_code_definition_needs_replace_existing(
    scheduler: PipelineScheduler,
) -> None:
    scheduler.add_job(lambda: None, "interval", id="j", minutes=5)
    with pytest.raises(JobExistsError):
        scheduler.add_job(lambda: None, "interval", id="j", minutes=6)
    info = scheduler.add_job(lambda: None, "interval", id="j", minutes=6, replace_existing=True)
    assert info.expression == "every 6m"


async def test_yaml_sync_only_replaces_what_changed(scheduler: PipelineScheduler) -> None:
    scheduler.register("news", lambda: None)
    scheduler.register("books", lambda: None)
    yaml = [
        make_schedule(
            "news", "news", "cron", {"expression": "0 * * * *"}, timezone="UTC", owner="yaml"
        ),
        make_schedule(
            "books", "books", "cron", {"expression": "0 6 * * *"}, timezone="UTC", owner="yaml"
        ),
    ]
    assert scheduler.sync_yaml(yaml).added == ("news", "books")
    scheduler.create_schedule("mine", "news", every="15m", owner="chat")
    scheduler.disable("news", actor="ann", surface="chat")
    again = scheduler.sync_yaml(yaml)
    assert again.unchanged == ("news", "books") and not again.changed
    changed = [
        yaml[0],
        make_schedule(
            "books", "books", "cron", {"expression": "0 7 * * *"}, timezone="UTC", owner="yaml"
        ),
    ]
    assert scheduler.sync_yaml(changed).changed == ("books",)
    report = scheduler.sync_yaml(changed[:1])
    assert report.removed == ("books",)
    names = {s.name: s for s in scheduler.list_schedules()}
    assert set(names) == {"news", "mine"}
    assert names["news"].enabled is False  # a pause from chat survives a reload
    with pytest.raises(ReadOnlyScheduleError, match="pipelines.yml"):
        scheduler.unschedule("news", actor="ann", surface="chat")


async def test_overlap_skip_records_skipped_runs(scheduler: PipelineScheduler) -> None:
    async def slow() -> None:
        await asyncio.sleep(2.2)

    scheduler.schedule_interval("slow", slow, seconds=1)
    await scheduler.astart()
    await wait_for(lambda: "skipped" in statuses(scheduler, "slow"), timeout=5)
    with pytest.raises(AlreadyRunningError):
        await scheduler.arun("slow", requested_by="ann")


async def test_failing_and_hanging_jobs_leave_others_on_time(
    scheduler: PipelineScheduler,
) -> None:
    def boom() -> None:
        raise RuntimeError("disk full")

    async def hang() -> None:
        await asyncio.sleep(3600)

    def block() -> None:
        time.sleep(3)

    scheduler.schedule_interval("boom", boom, seconds=1)
    scheduler.schedule_interval("hang", hang, seconds=1, timeout=0.5)
    scheduler.schedule_interval("block", block, seconds=1, overlap="allow", max_instances=10)
    ok: list[float] = []
    scheduler.schedule_interval("ok", lambda: ok.append(time.time()), seconds=1)
    await scheduler.astart()
    await wait_for(lambda: statuses(scheduler, "ok").count("success") >= 3, timeout=6)
    assert "failed" in statuses(scheduler, "boom")
    assert scheduler.get_history("boom")[0]["error"] == "RuntimeError: disk full"
    assert "timeout" in statuses(scheduler, "hang")
    late = [
        (datetime.fromisoformat(r["started_at"]) - datetime.fromisoformat(r["scheduled_for"]))
        for r in scheduler.get_history("ok")
        if r["status"] == "success"
    ]
    assert max(late) < timedelta(seconds=0.5)


async def test_missed_runs_while_down_are_caught_up(settings: SchedulerSettings) -> None:
    sched = PipelineScheduler(settings)
    calls: list[int] = []
    sched.schedule_interval("every-min", lambda: calls.append(1), minutes=1, catchup="latest")
    long_ago = datetime.now(UTC) - timedelta(minutes=10, seconds=30)
    with sched.store.engine.begin() as conn:  # as if the process had been down 10 minutes
        conn.execute(update(schedules_table).values(created_at=long_ago, updated_at=long_ago))
    await sched.astart()
    try:
        await wait_for(lambda: "success" in statuses(sched, "every-min"))
        await sched.ledger.flush()
        rows = statuses(sched, "every-min")
        assert rows.count("success") == 1
        # minute boundaries (the interval's grid) that passed while it was down
        due = (int(datetime.now(UTC).timestamp()) // 60) - (int(long_ago.timestamp()) // 60)
        assert rows.count("missed") in (due - 1, due)  # the clock may cross a minute meanwhile
    finally:
        await sched.astop(grace=1)


async def test_changes_from_another_process_take_effect(scheduler: PipelineScheduler) -> None:
    hits: list[int] = []
    scheduler.register("job", lambda: hits.append(1))
    await scheduler.astart()
    other = PipelineScheduler(scheduler.settings)  # the CLI, in another process
    other.register("job", lambda: None)
    other.create_schedule("from-cli", "job", every="1s", owner="cli")
    await wait_for(lambda: len(hits) >= 1, timeout=5)
    other.disable("from-cli")
    await wait_for(lambda: scheduler.get_schedule("from-cli").next_run is None, timeout=5)


async def test_listeners_hear_outcomes(scheduler: PipelineScheduler) -> None:
    events: list[JobEvent] = []
    scheduler.add_listener(events.append, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.register("good", lambda: None)
    scheduler.register("bad", lambda: 1 / 0)
    await scheduler.astart()
    await scheduler.arun("good")
    record = await scheduler.arun("bad")
    assert record.status == "failed" and "ZeroDivisionError" in (record.error or "")
    assert [(e.code, e.pipeline) for e in events] == [
        (EVENT_JOB_EXECUTED, "good"),
        (EVENT_JOB_ERROR, "bad"),
    ]


async def test_health_check(scheduler: PipelineScheduler) -> None:
    scheduler.register("good", lambda: None)
    scheduler.schedule_interval("soon", lambda: None, hours=1)
    assert scheduler.health_check()["status"] == "down"
    await scheduler.astart()
    await scheduler.arun("good")
    await scheduler.ledger.flush()
    report = scheduler.health_check()
    assert report["status"] == "ok"
    assert report["jobs"]["total"] == 1
    assert report["database"]["reachable"] is True
    assert report["metrics"]["success_rate"] == 1.0
    assert report["next_due"]["name"] == "soon"


async def test_status_and_readiness_judge_as_health_check_does(
    scheduler: PipelineScheduler,
) -> None:
    """The light calls behind /readyz and the status page give the full report's verdict."""
    scheduler.register("good", lambda: None)
    assert scheduler.status() == scheduler.health_check()["status"] == "down"  # never started
    assert scheduler.readiness()["problems"] == ["the scheduler is not running in this process"]
    await scheduler.astart()
    assert scheduler.status() == scheduler.health_check()["status"] == "ok"
    ready = scheduler.readiness()
    assert (ready["status"], ready["running"], ready["problems"]) == ("ok", True, [])
    assert ready["database"]["reachable"] is True and ready["engine_seconds_since_pass"] < 5
    await scheduler.astop(grace=1)
    assert scheduler.status() == scheduler.health_check()["status"] == "down"  # clean stop


async def test_readiness_when_the_database_does_not_answer(
    scheduler: PipelineScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    await scheduler.astart()

    def down() -> int:
        raise StoreError("cannot read the schedule revision (sqlite:///x.db): disk I/O error")

    monkeypatch.setattr(scheduler.store, "revision", down)
    ready = scheduler.readiness()
    assert ready["status"] == "down" and ready["database"]["reachable"] is False
    assert ready["problems"] == [
        "database unreachable: cannot read the schedule revision (sqlite:///x.db): disk I/O error"
    ]
    assert scheduler.status() == "down"


async def test_upcoming_is_soonest_first_with_last_runs(scheduler: PipelineScheduler) -> None:
    scheduler.register("p", lambda: None)
    now = datetime.now(UTC).replace(microsecond=0)
    for name, hours in (("late", 3), ("early", 1), ("mid", 2)):
        scheduler.schedule_at(name, "p", now + timedelta(hours=hours))
    scheduler.schedule_interval("paused", "p", minutes=1)
    scheduler.disable("paused")
    await scheduler.astart()
    await scheduler.arun("mid")
    shown, total = await asyncio.to_thread(scheduler.upcoming, 3)
    assert total == 4 and [i.name for i in shown] == ["early", "mid", "late"]
    assert [i.last_status for i in shown] == [None, "success", None]
    everything, _ = await asyncio.to_thread(scheduler.upcoming, 10)
    assert [i.name for i in everything][-1] == "paused"


async def test_an_unchanged_schedule_is_listed_as_the_same_object(
    scheduler: PipelineScheduler,
) -> None:
    """The API keeps each listed schedule's JSON by object: a change must give a new one."""
    scheduler.register("p", lambda: None)
    for name in ("a", "b"):
        scheduler.schedule_interval(name, "p", hours=1)
    await scheduler.astart()

    def page() -> dict[str, Any]:
        return {i.name: i for i in scheduler.list_schedules(after=None, limit=10)}

    first = await asyncio.to_thread(page)
    again = await asyncio.to_thread(page)
    assert all(again[n] is first[n] for n in first)
    await scheduler.arun("a")
    ran = await asyncio.to_thread(page)
    assert ran["a"] is not first["a"] and ran["a"].last_status == "success"
    assert ran["b"] is first["b"]
    await asyncio.to_thread(scheduler.disable, "b")
    paused = await asyncio.to_thread(page)
    assert paused["b"] is not first["b"] and paused["b"].enabled is False


def test_sync_script_runs_scheduler_in_a_background_thread(
    settings: SchedulerSettings,
) -> None:
    sched = PipelineScheduler(settings)
    ran = threading.Event()
    sched.register("job", ran.set)
    sched.start()
    try:
        record = sched.run_now("job")
        assert record.status == "success" and ran.is_set()
        assert sched.running
    finally:
        sched.stop()
    assert not sched.running


@pytest.mark.parametrize("policy", ["skip", "buffer_one", "cancel_other", "allow"])
async def test_overlap_policies_for_manual_runs(scheduler: PipelineScheduler, policy: str) -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def work() -> None:
        started.append(1)
        await release.wait()

    scheduler.register("p", work)
    scheduler.create_schedule(
        "s",
        "p",
        every="1h",
        policies=Policies(overlap=policy, max_instances=2),  # type: ignore[arg-type]
    )
    await scheduler.astart()
    first = asyncio.create_task(scheduler.arun("s"))
    await wait_for(lambda: len(started) == 1)
    second = asyncio.create_task(scheduler.arun("s"))
    await asyncio.sleep(0.2)
    if policy == "skip":
        with pytest.raises(AlreadyRunningError):
            await second
        release.set()
        assert (await first).status == "success"
    elif policy == "buffer_one":
        assert len(started) == 1  # waits for the first
        with pytest.raises(AlreadyRunningError):
            await scheduler.arun("s")  # only one may wait
        release.set()
        assert [(await first).status, (await second).status] == ["success", "success"]
    elif policy == "cancel_other":
        record = await first
        assert record.status == "cancelled" and "cancel_other" in (record.error or "")
        release.set()
        assert (await second).status == "success"
    else:
        assert len(started) == 2  # side by side, up to max_instances
        with pytest.raises(AlreadyRunningError):
            await scheduler.arun("s")
        release.set()
        assert [(await first).status, (await second).status] == ["success", "success"]
    await scheduler.ledger.flush()
    if policy in ("skip", "buffer_one", "allow"):
        assert "skipped" in statuses(scheduler, "s")
