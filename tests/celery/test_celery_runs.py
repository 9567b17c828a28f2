"""Runs executed by real Celery workers: manual and scheduled, overlap, timeouts, a kill -9."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.dispatch import AlreadyRunningError, Dispatcher, RunRequest
from scheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from scheduler.executors.celery import CeleryExecutor
from scheduler.models import Policies, RunRecord
from scheduler.schedules import make_schedule
from tests.waiting import eventually

from .conftest import LIVENESS, Harness, Project

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def rows_of(harness: Harness, schedule: str) -> dict[datetime, RunRecord]:
    """The ledger rows of ``schedule`` by instant."""
    rows = harness.ledger.history(schedule=schedule, limit=100)
    return {r.scheduled_for: r for r in rows if r.scheduled_for is not None}


async def test_manual_and_scheduled_runs_execute_on_the_worker(
    project: Project, harness: Harness
) -> None:
    worker = project.start_worker()

    record = await harness.dispatcher.run(
        RunRequest(pipeline="quick", trigger="manual", policies=Policies(), requested_by="ann")
    )

    assert (record.status, record.items, record.stages) == ("success", (3, 3), ("Range", "Record"))
    stored = harness.ledger.get(record.run_id)
    assert stored is not None and stored.status == "success" and stored.items == (3, 3)
    assert stored.requested_by == "ann"
    assert project.lines("quick") == [[str(worker.pid), record.run_id, "manual"]]
    assert [(e.code, e.run_id) for e in harness.events] == [(EVENT_JOB_EXECUTED, record.run_id)]

    schedule = make_schedule("tick", "quick", "interval", {"seconds": 60}, timezone="UTC")
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    second = first + timedelta(minutes=1)
    harness.dispatcher.fire(schedule, [first], datetime.now(UTC))
    harness.dispatcher.fire(schedule, [second], datetime.now(UTC))
    harness.dispatcher.fire(schedule, [first], datetime.now(UTC))  # claimed already: no run

    def both_done() -> bool:
        rows = rows_of(harness, "tick")
        return len(rows) == 2 and all(r.status == "success" for r in rows.values())

    await eventually(both_done, 20, "both scheduled runs to succeed", context=worker.log)
    rows = rows_of(harness, "tick")
    assert sorted(rows) == [first, second]
    ran = {line[1]: line for line in project.lines("quick")}
    assert len(ran) == len(project.lines("quick")) == 3  # nothing ran twice
    for row in rows.values():
        assert ran[row.run_id] == [str(worker.pid), row.run_id, "schedule"]
    assert str(os.getpid()) not in {line[0] for line in ran.values()}


async def test_overlap_policy_counts_runs_going_on_a_worker(
    project: Project, harness: Harness
) -> None:
    worker = project.start_worker()
    project.hold.touch()
    first = asyncio.create_task(
        harness.dispatcher.run(RunRequest(pipeline="gated", trigger="manual", policies=Policies()))
    )
    await eventually(
        lambda: project.lines("gated"), 20, "the worker to start it", context=worker.log
    )

    with pytest.raises(AlreadyRunningError):
        await harness.dispatcher.run(
            RunRequest(pipeline="gated", trigger="manual", policies=Policies(overlap="skip"))
        )
    assert [r.status for r in harness.ledger.history(status="skipped")] == ["skipped"]

    newer = asyncio.create_task(
        harness.dispatcher.run(
            RunRequest(
                pipeline="gated", trigger="manual", policies=Policies(overlap="cancel_other")
            )
        )
    )
    cancelled = await asyncio.wait_for(first, 20)
    assert cancelled.status == "cancelled"
    assert cancelled.error is not None and "cancel_other" in cancelled.error
    await eventually(lambda: len(project.lines("gated")) == 2, 20, "the newer run to start")
    await eventually(
        lambda: f"cancelling run {cancelled.run_id}" in worker.log(), 10, "the worker to cancel it"
    )
    project.hold.unlink()
    done = await asyncio.wait_for(newer, 20)

    assert done.status == "success"
    assert [line[1] for line in project.lines("gated")] == [cancelled.run_id, done.run_id]
    await harness.ledger.flush()
    kept = harness.ledger.get(cancelled.run_id)
    assert kept is not None and kept.status == "cancelled"  # the worker did not write over it


async def test_timeouts_on_the_worker_and_in_the_queue(project: Project, harness: Harness) -> None:
    worker = project.start_worker()
    on_worker = await harness.dispatcher.run(
        RunRequest(pipeline="sleepy", trigger="manual", policies=Policies())
    )
    assert on_worker.status == "timeout"
    assert on_worker.error is not None and "exceeded 1.0s" in on_worker.error
    assert project.lines("sleepy")[0][:2] == [str(worker.pid), on_worker.run_id]

    # no worker consumes this queue: the scheduler ends the run after timeout + grace
    idle = project.settings(queue=f"{project.queue}-idle")
    executor = CeleryExecutor(idle, harness.ledger.engine)
    dispatcher = Dispatcher(harness.ledger, harness.resolve, harness.bus, executor=executor)
    try:
        queued = await dispatcher.run(
            RunRequest(pipeline="quick", trigger="manual", policies=Policies(timeout=0.5))
        )
    finally:
        await dispatcher.aclose()
    assert queued.status == "timeout"
    assert queued.error is not None and "ended by the scheduler" in queued.error
    stored = harness.ledger.get(queued.run_id)
    assert stored is not None and stored.status == "timeout"

    late = project.start_worker(queue=idle.queue)  # it gets the message now: must not run it
    await eventually(
        lambda: f"run {queued.run_id} is timeout already: not run" in late.log(),
        20,
        "the late worker to drop the timed-out run",
        context=late.log,
    )
    assert project.lines("quick") == []


async def test_a_killed_worker_leaves_the_run_abandoned_and_the_next_run_happens(
    project: Project, harness: Harness
) -> None:
    doomed = project.start_worker()
    project.hold.touch()
    schedule = make_schedule("gate", "gated", "interval", {"seconds": 60}, timezone="UTC")
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    instants = [base + timedelta(minutes=n) for n in range(3)]

    harness.dispatcher.fire(schedule, [instants[0]], datetime.now(UTC))
    await eventually(lambda: project.lines("gated"), 20, "the run to start", context=doomed.log)
    harness.dispatcher.fire(schedule, [instants[1]], datetime.now(UTC))
    await eventually(
        lambda: rows_of(harness, "gate").get(instants[1]), 10, "the overlapping instant"
    )
    assert rows_of(harness, "gate")[instants[1]].status == "skipped"

    doomed.kill()
    killed_at = asyncio.get_running_loop().time()
    await eventually(
        lambda: rows_of(harness, "gate")[instants[0]].status == "abandoned",
        LIVENESS + 10,
        "the run of the killed worker to be abandoned",
    )
    took = asyncio.get_running_loop().time() - killed_at
    abandoned = rows_of(harness, "gate")[instants[0]]
    assert abandoned.error is not None and "stopped before the run finished" in abandoned.error
    assert took < LIVENESS + 5
    await eventually(
        lambda: any(e.status == "abandoned" for e in harness.events), 5, "the abandoned event"
    )
    event = next(e for e in harness.events if e.status == "abandoned")
    assert (event.code, event.run_id) == (EVENT_JOB_ERROR, abandoned.run_id)

    project.hold.unlink()
    survivor = project.start_worker(CELERY_VISIBILITY_TIMEOUT="2")
    harness.dispatcher.fire(schedule, [instants[2]], datetime.now(UTC))
    await eventually(
        lambda: (row := rows_of(harness, "gate").get(instants[2])) and row.status == "success",
        20,
        "the next scheduled run to succeed",
        context=survivor.log,
    )
    nxt = rows_of(harness, "gate")[instants[2]]
    assert [str(survivor.pid), nxt.run_id, "schedule"] in project.lines("gated")

    # the killed worker's message comes back after the visibility timeout: never run again
    await eventually(
        lambda: f"run {abandoned.run_id} is abandoned already: not run" in survivor.log(),
        20,
        "the redelivered message to be dropped",
        context=survivor.log,
    )
    assert [line[1] for line in project.lines("gated")] == [abandoned.run_id, nxt.run_id]
    statuses = {at: row.status for at, row in rows_of(harness, "gate").items()}
    assert statuses == {instants[0]: "abandoned", instants[1]: "skipped", instants[2]: "success"}


async def test_a_run_outliving_the_visibility_timeout_runs_once(
    project: Project, harness: Harness
) -> None:
    worker = project.start_worker(CELERY_VISIBILITY_TIMEOUT="1")
    project.hold.touch()
    run = asyncio.create_task(
        harness.dispatcher.run(RunRequest(pipeline="gated", trigger="manual", policies=Policies()))
    )
    await eventually(lambda: project.lines("gated"), 20, "the run to start", context=worker.log)
    await eventually(
        lambda: "duplicate dropped" in worker.log(),
        20,
        "the redelivered copy to be dropped",
        context=worker.log,
    )
    project.hold.unlink()
    record = await asyncio.wait_for(run, 20)

    assert record.status == "success"
    assert [line[1] for line in project.lines("gated")] == [record.run_id]


async def test_runs_of_a_stopped_scheduler_on_a_dead_worker_are_swept(
    project: Project, harness: Harness
) -> None:
    doomed = project.start_worker()
    project.hold.touch()
    with (project.root / "scheduler.log").open("wb") as out:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "tests.celery.scheduler_once", "gated"],
            cwd=project.root,
            env=project.env(SCHEDULER_EXECUTOR="celery"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await eventually(lambda: project.lines("gated"), 30, "the run to start", context=doomed.log)
    finally:
        scheduler.kill()
        scheduler.wait(timeout=10)
    orphan = project.lines("gated")[0][1]
    doomed.kill()

    project.start_worker()
    harness.executor.orphan_sweep = 0.3
    fresh = await harness.dispatcher.run(
        RunRequest(pipeline="quick", trigger="manual", policies=Policies())
    )
    assert fresh.status == "success"

    def swept() -> bool:
        row = harness.ledger.get(orphan)
        return row is not None and row.status == "abandoned"

    await eventually(swept, LIVENESS + 10, "the orphaned run to be abandoned")
    row = harness.ledger.get(orphan)
    assert row is not None and row.error is not None and "stopped before" in row.error
