"""The scheduler side when the broker cannot be reached (needs no Redis server)."""

from __future__ import annotations

from pathlib import Path

from pipebot.project import load_project
from pipelines.db import dispose_engine, get_engine
from scheduler import migrate
from scheduler.dispatch import Dispatcher, RunRequest
from scheduler.events import EVENT_JOB_ERROR, EventBus, JobEvent
from scheduler.executors.celery import CeleryExecutor
from scheduler.executors.celery_settings import CelerySettings
from scheduler.ledger import Ledger
from scheduler.models import Policies
from scheduler.settings import SchedulerSettings

from .test_settings import VALID


async def test_a_run_that_cannot_be_sent_is_recorded_failed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pipebot.db'}"
    (tmp_path / "pipelines.yml").write_text(VALID, encoding="utf-8")
    targets = load_project(tmp_path / "pipelines.yml", SchedulerSettings(database_url=url)).targets
    engine = get_engine(url)
    migrate.upgrade(engine)
    ledger = Ledger(engine, holder="test-scheduler")
    ledger.start()
    bus = EventBus()
    seen: list[JobEvent] = []
    bus.add_listener(seen.append)
    settings = CelerySettings(
        executor="celery", broker_url="redis://:hunter2@127.0.0.1:1/0", queue="nowhere"
    )
    dispatcher = Dispatcher(ledger, targets.get, bus, executor=CeleryExecutor(settings, engine))
    try:
        record = await dispatcher.run(
            RunRequest(pipeline="one", trigger="manual", policies=Policies())
        )
        await ledger.flush()
        stored = ledger.get(record.run_id)
    finally:
        await dispatcher.drain(1)
        await ledger.stop()
        dispose_engine(url)

    assert record.status == "failed"
    assert record.error is not None and record.error.startswith("could not send the run to Celery")
    assert "hunter2" not in record.error
    assert stored is not None and (stored.status, stored.error) == (record.status, record.error)
    assert [(e.code, e.status) for e in seen] == [(EVENT_JOB_ERROR, "failed")]
