"""A scheduler process that runs one pipeline through the Celery executor, then exits.

    python -m tests.celery.scheduler_once PIPELINE

The tests kill it mid-run to play a scheduler that dies with a run on a worker. It
reads the environment as ``pipebot serve`` does (``SCHEDULER_EXECUTOR=celery`` ...).
"""

from __future__ import annotations

import asyncio
import os
import sys

from pipebot.project import config_path, load_project
from pipelines.db import get_engine
from scheduler import migrate
from scheduler.dispatch import Dispatcher, RunRequest
from scheduler.events import EventBus
from scheduler.executors import executor_from_env
from scheduler.ledger import Ledger
from scheduler.models import Policies
from scheduler.settings import SchedulerSettings


async def main(pipeline: str) -> int:
    settings = SchedulerSettings.from_env()
    targets = load_project(config_path(), settings).targets
    engine = get_engine(settings.database_url)
    migrate.upgrade(engine)
    ledger = Ledger(engine, holder=f"scheduler-once:{os.getpid()}")
    ledger.start()
    dispatcher = Dispatcher(ledger, targets.get, EventBus(), executor=executor_from_env(engine))
    try:
        record = await dispatcher.run(
            RunRequest(pipeline=pipeline, trigger="manual", policies=Policies())
        )
    finally:
        await dispatcher.drain(1)
        await ledger.stop()
    sys.stdout.write(f"{record.run_id} {record.status}\n")
    return 0 if record.status == "success" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
