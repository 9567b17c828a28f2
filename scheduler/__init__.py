"""pipebot's embedded scheduler: persisted schedules, a run ledger, standard cron."""

from __future__ import annotations

from .errors import (
    InvalidScheduleError,
    JobExistsError,
    JobLookupError,
    ReadOnlyScheduleError,
    SchedulerError,
    UnknownPipelineError,
)
from .events import (
    EVENT_ALL,
    EVENT_JOB_ADDED,
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_REMOVED,
    JobEvent,
)
from .models import Policies, RunRecord, ScheduleInfo
from .service import PipelineScheduler
from .settings import SchedulerSettings

__all__ = [
    "EVENT_ALL",
    "EVENT_JOB_ADDED",
    "EVENT_JOB_ERROR",
    "EVENT_JOB_EXECUTED",
    "EVENT_JOB_MAX_INSTANCES",
    "EVENT_JOB_MISSED",
    "EVENT_JOB_REMOVED",
    "InvalidScheduleError",
    "JobEvent",
    "JobExistsError",
    "JobLookupError",
    "PipelineScheduler",
    "Policies",
    "ReadOnlyScheduleError",
    "RunRecord",
    "ScheduleInfo",
    "SchedulerError",
    "SchedulerSettings",
    "UnknownPipelineError",
]
