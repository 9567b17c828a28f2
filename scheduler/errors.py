"""Exceptions raised by the scheduler package.

SchedulerError
├── InvalidScheduleError   a cron expression, interval, date or time zone cannot be used
├── JobLookupError         no schedule has the given name
├── JobExistsError         a schedule with that name exists already
├── ReadOnlyScheduleError  the schedule is owned by pipelines.yml and cannot be changed there
├── UnknownPipelineError   a schedule names a pipeline that is not configured
├── StoreError             the schedule store or run ledger could not be read or written
└── SettingsError          an environment variable has a value that cannot be used
"""

from __future__ import annotations


class SchedulerError(Exception):
    """Root of every error raised by ``scheduler``."""


class InvalidScheduleError(SchedulerError, ValueError):
    """A schedule definition (cron, interval, date, time zone, policy) is not valid."""


class JobLookupError(SchedulerError, KeyError):
    """No schedule has the given name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schedule named {name!r}")

    def __str__(self) -> str:
        return str(self.args[0])


class JobExistsError(SchedulerError):
    """A schedule with the given name exists already."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a schedule named {name!r} exists already")


class ReadOnlyScheduleError(SchedulerError):
    """The schedule belongs to pipelines.yml; change it there, or pause it."""

    def __init__(self, name: str, owner: str) -> None:
        self.name = name
        self.owner = owner
        super().__init__(
            f"schedule {name!r} is owned by {owner}; edit pipelines.yml to change it, or pause it"
        )


class UnknownPipelineError(SchedulerError, KeyError):
    """A schedule or run names a pipeline that is not configured."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no pipeline named {name!r}")

    def __str__(self) -> str:
        return str(self.args[0])


class StoreError(SchedulerError):
    """The schedule store or run ledger could not be read or written."""


class SettingsError(SchedulerError):
    """An environment variable is missing or has a value that cannot be used."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")
