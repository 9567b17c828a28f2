"""The timing engine's timetable (APScheduler with our job store), and bulk add and load.

Real APScheduler on a real event loop, real SQLite files; instants a fraction of a
second ahead, waited for with a timeout (nothing asserts how long anything took).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from pipelines.db import dispose_engine, get_engine
from scheduler import migrate
from scheduler.engine import Engine
from scheduler.models import Policies, ScheduleDef
from scheduler.schedules import build_trigger, make_schedule
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings
from scheduler.store import ScheduleStore
from scheduler.tables import schedules
from scheduler.triggers import CronTrigger, DateTrigger, IntervalTrigger

Fired = list[tuple[str, list[datetime], datetime]]


@pytest.fixture
async def engine() -> AsyncIterator[tuple[Engine, Fired, asyncio.Event]]:
    fired: Fired = []
    changed = asyncio.Event()

    def on_fire(name: str, run_times: list[datetime], noticed_at: datetime) -> None:
        fired.append((name, run_times, noticed_at))
        changed.set()

    eng = Engine(on_fire, slice_size=500)
    eng.start()
    yield eng, fired, changed
    eng.shutdown()


async def until(changed: asyncio.Event, predicate: object, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not predicate():  # type: ignore[operator]
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(wait(), timeout)


def soon(seconds: float = 0.2) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_a_burst_is_handed_out_in_slices_judged_from_one_instant(
    engine: tuple[Engine, Fired, asyncio.Event],
) -> None:
    eng, fired, changed = engine
    due = soon()
    trigger = DateTrigger(due)
    eng.put_many([(f"b{i:04d}", trigger, due, False) for i in range(1_200)])
    assert eng.next_run("b0000") == due
    await until(changed, lambda: len(fired) == 1_200)
    assert sorted(name for name, _, _ in fired) == [f"b{i:04d}" for i in range(1_200)]
    assert {tuple(times) for _, times, _ in fired} == {(due,)}
    assert len({noticed for _, _, noticed in fired}) == 1  # the backlog keeps its start
    assert eng.names() == set()  # date triggers do not fire again
    await asyncio.sleep(0.05)
    assert len(fired) == 1_200  # and none fired twice


async def test_replaced_paused_and_removed_entries_fire_as_last_told(
    engine: tuple[Engine, Fired, asyncio.Event],
) -> None:
    eng, fired, changed = engine
    first, later = soon(0.15), soon(0.3)
    for _ in range(3_000):  # many replacements leave stale heap pairs behind
        eng.put("moved", DateTrigger(first), first=first, paused=False)
        eng.put("moved", DateTrigger(later), first=later, paused=False)
    eng.put("paused", DateTrigger(first), first=first, paused=True)
    eng.put("removed", DateTrigger(first), first=first, paused=False)
    eng.remove("removed")
    eng.put("never", DateTrigger(first), first=None, paused=False)
    assert eng.next_run("paused") is None
    assert eng.names() == {"moved", "paused"}
    await until(changed, lambda: len(fired) == 1)
    await asyncio.sleep(0.3)
    assert [(name, times) for name, times, _ in fired] == [("moved", [later])]
    assert eng.names() == {"paused"}


async def test_recurring_triggers_are_rescheduled_by_their_own_next_time(
    engine: tuple[Engine, Fired, asyncio.Event],
) -> None:
    eng, fired, changed = engine
    interval = IntervalTrigger(1, "UTC")
    first = interval.next_fire(datetime.now(UTC))
    assert first is not None
    eng.put("every-second", interval, first=first, paused=False)
    await until(changed, lambda: len(fired) == 2)
    assert fired[0][1] == [first]
    assert fired[1][1] == [first + timedelta(seconds=1)]
    assert eng.next_run("every-second") == first + timedelta(seconds=2)


async def test_apscheduler_sees_the_timetable_through_its_job_store(
    engine: tuple[Engine, Fired, asyncio.Event],
) -> None:
    eng, _, _ = engine
    far = datetime.now(UTC) + timedelta(days=1)
    cron = CronTrigger("0 9 * * *", "Europe/Stockholm")
    eng.put("cron", cron, first=cron.next_fire(datetime.now(UTC)), paused=False)
    eng.put("date", DateTrigger(far), first=far, paused=False)
    eng.put("paused", DateTrigger(far), first=far, paused=True)
    aps = eng._aps  # APScheduler's own API reads jobs back from the store
    jobs = aps.get_jobs()
    assert [job.id for job in jobs] == ["cron", "date", "paused"]
    assert jobs[-1].next_run_time is None
    job = aps.get_job("date")
    assert job is not None and job.next_run_time == far and "date" in repr(job)
    assert str(job.trigger) == DateTrigger(far).describe()


def test_store_hash_is_the_definition_hash(tmp_path: Path) -> None:
    definitions = [
        make_schedule("a", "p", "cron", {"expression": "0 9 * * 1-5"}, timezone="Europe/Oslo"),
        make_schedule("b", "p", "interval", {"seconds": 90}, timezone="UTC", owner="yaml"),
        make_schedule(
            "c",
            "q",
            "date",
            {"run_date": "2030-01-01T10:00:00"},
            timezone="UTC",
            policies=Policies(
                overlap="allow",
                catchup="all",
                coalesce=False,
                misfire_grace_time=2.5,
                jitter=1.0,
                timeout=30,
                max_instances=3,
            ),
            enabled=False,
        ),
    ]
    url = f"sqlite:///{tmp_path / 'pipebot.db'}"
    db = get_engine(url)
    migrate.upgrade(db)
    try:
        ScheduleStore(db).add_many(definitions)
        with db.connect() as conn:
            query = select(schedules.c.name, schedules.c.definition_hash)
            stored = {name: digest for name, digest in conn.execute(query)}
        loaded = {s.name: s for s in ScheduleStore(db).all()}
    finally:
        dispose_engine(url)
    for definition in definitions:
        assert stored[definition.name] == definition.definition_hash()
        assert loaded[definition.name].definition_hash() == definition.definition_hash()


def test_bulk_add_returns_the_revision_and_loads_back_shared_and_equal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pipebot.db'}"
    db = get_engine(url)
    migrate.upgrade(db)
    store = ScheduleStore(db)
    policies = Policies(overlap="buffer_one", timeout=60)
    added = [
        make_schedule(
            f"s{i:03d}", "p", "cron", {"expression": f"{i % 60} 9 * * *"}, timezone="UTC",
            policies=policies,
        )
        for i in range(120)
    ]  # fmt: skip
    try:
        first = store.add_many(added[:60])
        second = store.add_many(added[60:])
        assert first is not None and second == first + 1 == store.revision()
        assert store.add_many([]) is None
        loaded = store.all()
        assert [_definition(s) for s in loaded] == [_definition(s) for s in added]
        assert len({id(s.policies) for s in loaded}) == 1  # one object for equal policies
        assert len({id(s.created_at) for s in loaded[:60]}) == 1  # one object per instant
        for schedule in loaded:  # and each still builds the same trigger
            assert build_trigger(schedule) == build_trigger(added[int(schedule.name[1:])])
    finally:
        dispose_engine(url)


async def test_bulk_add_while_running_needs_no_reread(tmp_path: Path) -> None:
    settings = SchedulerSettings(
        database_url=f"sqlite:///{tmp_path / 'pipebot.db'}", timezone="UTC", poll_interval=0.2
    )
    sched = PipelineScheduler(settings)
    sched.register("p", lambda: None)
    await sched.astart()
    try:
        runtime = sched._runtime
        assert runtime is not None
        defs = [
            make_schedule(f"s{i}", "p", "interval", {"seconds": 3600}, timezone="UTC")
            for i in range(50)
        ]
        synced: list[int] = []
        resync = runtime.sync_from_store

        async def counted() -> None:
            synced.append(1)
            await resync()

        runtime.sync_from_store = counted  # type: ignore[method-assign]
        await asyncio.to_thread(sched.add_schedules, defs)
        await asyncio.sleep(0.6)  # a few watchdog polls
        assert runtime.engine.names() == {f"s{i}" for i in range(50)}
        assert runtime.revision == sched.store.revision()
        assert synced == []
    finally:
        await sched.astop(grace=1)
        dispose_engine(settings.database_url)


def _definition(schedule: ScheduleDef) -> tuple[object, ...]:
    return (schedule.name, schedule.enabled, schedule.owner, schedule.definition_hash())
