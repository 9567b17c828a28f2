"""``pipebot worker``: a Celery worker that runs pipelines.yml's pipelines for the scheduler.

    python -m pipebot.worker [--config PATH] [--concurrency N] [--name NAME]

It reads the same environment as the scheduler (``SCHEDULER_DB_URL``,
``PIPELINES_CONFIG``, ``CELERY_BROKER_URL``, ``CELERY_QUEUE`` ...; see
``scheduler.executors.celery_settings``) and needs ``CELERY_BROKER_URL`` whatever
``SCHEDULER_EXECUTOR`` says. pipelines.yml is validated before the worker connects: a
problem refuses to start (exit 2). SIGTERM (or Ctrl-C) lets running runs finish
(Celery's warm shutdown); SIGQUIT (or a second Ctrl-C) stops at once, and the
scheduler then records those runs ``abandoned``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis
from dotenv import load_dotenv

from pipelines.db import get_engine
from pipelines.errors import ConfigError
from scheduler import migrate
from scheduler.errors import SchedulerError, SettingsError
from scheduler.executors.celery_app import make_app
from scheduler.executors.celery_settings import CelerySettings
from scheduler.executors.celery_worker import WorkerRuntime
from scheduler.settings import SchedulerSettings

from .logs import configure_logging
from .project import config_path, load_project

logger = logging.getLogger(__name__)
EXIT_CONFIG = 2


def run_worker(
    settings: SchedulerSettings,
    path: Path,
    *,
    concurrency: int | None = None,
    name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Load pipelines.yml, then work the Celery queue until stopped; the exit code."""
    celery = CelerySettings.from_env(environ)
    if celery.broker_url is None:
        raise SettingsError("CELERY_BROKER_URL", "is required to run a worker")
    project = load_project(path, settings, environ)
    engine = get_engine(settings.database_url)
    migrate.upgrade(engine)
    host = socket.gethostname()
    runtime = WorkerRuntime(celery, engine, project.targets.get, hostname=host)
    app = make_app(celery)
    runtime.register(app)
    threads = concurrency or celery.concurrency
    logger.info(
        "worker for %s: %d pipeline(s), %d thread(s), queue %s on %s",
        path,
        len(project.targets),
        threads,
        celery.queue,
        celery.where,
    )
    try:
        runtime.start()
    except redis.RedisError as exc:
        raise SchedulerError(f"cannot reach the Celery broker at {celery.where}: {exc}") from None
    try:
        worker = app.Worker(
            hostname=f"{name or 'pipebot'}-{os.getpid()}@{host}",
            pool_cls="threads",
            concurrency=threads,
            queues=[celery.queue],
            loglevel=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
            quiet=True,
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
        )
        worker.start()
        code: int = worker.exitcode or 0
        return code
    finally:
        runtime.stop()
        app.close()


def main(argv: Sequence[str] | None = None) -> int:
    load_dotenv()
    configure_logging()
    parser = argparse.ArgumentParser(prog="pipebot worker", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="pipelines.yml (default: $PIPELINES_CONFIG)")
    parser.add_argument("--concurrency", type=int, help="runs at once (default: 8)")
    parser.add_argument("--name", help="worker name prefix (default: pipebot)")
    args = parser.parse_args(argv)
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be 1 or more")
    try:
        settings = SchedulerSettings.from_env()
        path = config_path(given=args.config)
        return run_worker(settings, path, concurrency=args.concurrency, name=args.name)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_CONFIG
    except SchedulerError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
