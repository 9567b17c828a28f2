"""The facade with ``SCHEDULER_EXECUTOR=celery``: what serve and the bot use, end to end."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from pipebot.project import load_project
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings
from tests.waiting import eventually

from .conftest import Project

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def celery_env(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_EXECUTOR", "celery")
    monkeypatch.setenv("CELERY_BROKER_URL", project.broker)
    monkeypatch.setenv("CELERY_QUEUE", project.queue)
    monkeypatch.setenv("CELERY_POLL_SECONDS", "0.2")


@pytest.mark.usefixtures("celery_env")
async def test_the_running_facade_sends_scheduled_and_manual_runs_to_the_worker(
    project: Project,
) -> None:
    worker = project.start_worker()
    settings = SchedulerSettings(database_url=project.url, timezone="UTC", poll_interval=0.5)
    scheduler = PipelineScheduler(settings, targets=load_project(project.config, settings).targets)
    await scheduler.astart()
    try:
        manual = await scheduler.arun("quick", requested_by="ann")
        soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        scheduler.schedule_at("once", "quick", run_date=soon)

        def fired() -> bool:
            rows = scheduler.get_history("once", limit=5)
            return any(row["status"] == "success" for row in rows)

        await eventually(fired, 20, "the scheduled run to succeed", context=worker.log)
    finally:
        await scheduler.astop()

    assert manual.status == "success" and manual.items == (3, 3)
    ran = {line[1]: line[0] for line in project.lines("quick")}
    assert ran[manual.run_id] == str(worker.pid)
    scheduled = next(r for r in scheduler.get_history("once", limit=5) if r["status"] == "success")
    assert ran[scheduled["run_id"]] == str(worker.pid) != str(os.getpid())
