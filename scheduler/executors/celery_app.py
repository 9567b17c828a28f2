"""The Celery app both sides build from ``CelerySettings``, and the names they share.

A run travels as one task ``pipebot.run`` whose id is the run id, with the pipeline's
name and JSON run options: the JSON serializer only (no pickles), no result backend
(the result is the ledger row), late acknowledgement (a message whose worker dies is
redelivered after the visibility timeout, and the redelivered copy only closes the row).

Redis keys and channels next to the broker's:

- ``pipebot:<queue>:done``: workers publish a run's outcome once its row is written.
- ``pipebot:<queue>:cancel``: the scheduler asks the worker holding a run to stop it.
- ``pipebot:alive:<holder>``: a worker process's heartbeat, with a TTL of its liveness.
"""

from __future__ import annotations

from typing import Any

from celery import Celery  # type: ignore[import-untyped]

from ..ledger import WORKER_HOLDER_PREFIX
from .celery_settings import CelerySettings

TASK_NAME = "pipebot.run"
ALIVE_PREFIX = "pipebot:alive:"
WORKER_PREFIX = WORKER_HOLDER_PREFIX
"""Holders (the ledger's ``holder`` column) of rows a worker has taken start with it."""


def make_app(settings: CelerySettings) -> Any:
    """A Celery app for ``settings`` (not the current app: nothing global is touched)."""
    app = Celery("pipebot", set_as_current=False)
    restore = min(60.0, max(1.0, settings.visibility_timeout / 4))
    app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": restore,
            "unacked_restore_throttle": 1,
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        task_default_queue=settings.queue,
        task_routes={TASK_NAME: {"queue": settings.queue}},
        task_send_sent_event=False,
        worker_send_task_events=False,
        worker_prefetch_multiplier=1,
        worker_enable_remote_control=False,  # no pidbox: runs are cancelled via pipebot's channel
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
        timezone="UTC",
    )
    return app


def done_channel(queue: str) -> str:
    return f"pipebot:{queue}:done"


def cancel_channel(queue: str) -> str:
    return f"pipebot:{queue}:cancel"


def alive_key(holder: str) -> str:
    return f"{ALIVE_PREFIX}{holder}"
