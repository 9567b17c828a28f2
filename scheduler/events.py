"""Scheduler events and the listeners that receive them.

The codes are bit flags with the same values APScheduler 3 uses, so
``add_listener(callback, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)`` reads as it does there.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .models import RunRecord

logger = logging.getLogger(__name__)

EVENT_JOB_ADDED = 2**9
EVENT_JOB_REMOVED = 2**10
EVENT_JOB_MODIFIED = 2**11
EVENT_JOB_EXECUTED = 2**12
EVENT_JOB_ERROR = 2**13
EVENT_JOB_MISSED = 2**14
EVENT_JOB_MAX_INSTANCES = 2**16
"""A run was not started because another was still going (the overlap policy): ``skipped``."""
EVENT_ALL = (
    EVENT_JOB_ADDED
    | EVENT_JOB_REMOVED
    | EVENT_JOB_MODIFIED
    | EVENT_JOB_EXECUTED
    | EVENT_JOB_ERROR
    | EVENT_JOB_MISSED
    | EVENT_JOB_MAX_INSTANCES
)


@dataclass(frozen=True)
class JobEvent:
    """Something happened to a schedule or a run."""

    code: int
    schedule: str | None
    pipeline: str | None = None
    run_id: str | None = None
    status: str | None = None
    scheduled_for: datetime | None = None
    error: str | None = None
    record: RunRecord | None = None


Listener = Callable[[JobEvent], Any]


class EventBus:
    """Calls each listener whose mask matches; a failing listener is logged, never raised."""

    def __init__(self) -> None:
        self._listeners: list[tuple[Listener, int]] = []

    def add_listener(self, callback: Listener, mask: int = EVENT_ALL) -> None:
        self._listeners.append((callback, mask))

    def remove_listener(self, callback: Listener) -> None:
        self._listeners = [(c, m) for c, m in self._listeners if c is not callback]

    def emit(self, event: JobEvent) -> None:
        for callback, mask in list(self._listeners):
            if event.code & mask:
                self._call(callback, event)

    @staticmethod
    def _call(callback: Listener, event: JobEvent) -> None:
        try:
            result = callback(event)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                task.add_done_callback(_log_failure)
        except Exception:
            logger.exception("event listener %r failed", callback)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("event listener failed", exc_info=task.exception())
