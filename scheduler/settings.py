"""Scheduler settings from the environment (``.env`` is loaded by the entry points)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipelines.db import DEFAULT_DATABASE_URL

from .errors import SettingsError

DEFAULT_TIMEZONE = "Europe/Stockholm"


@dataclass(frozen=True)
class SchedulerSettings:
    """How the scheduler runs; every field has an environment variable."""

    database_url: str = DEFAULT_DATABASE_URL
    """``SCHEDULER_DB_URL``: SQLite file by default, PostgreSQL for production."""
    timezone: str = DEFAULT_TIMEZONE
    """``SCHEDULER_TIMEZONE``: for schedules that name none."""
    shutdown_grace: float = 30.0
    """``SCHEDULER_SHUTDOWN_GRACE``: seconds running runs get at shutdown."""
    poll_interval: float = 2.0
    """``SCHEDULER_POLL_SECONDS``: watchdog period (engine wake-up, changes from others)."""
    history_days: float | None = 90.0
    """``SCHEDULER_HISTORY_DAYS``: history kept this long (empty: forever)."""
    history_rows: int | None = None
    """``SCHEDULER_HISTORY_ROWS``: at most this many history rows (empty: no limit)."""

    def __repr__(self) -> str:
        from pipelines.db import redact_url

        return (
            f"SchedulerSettings(database_url={redact_url(self.database_url)!r}, "
            f"timezone={self.timezone!r}, shutdown_grace={self.shutdown_grace})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SchedulerSettings:
        env = os.environ if environ is None else environ
        timezone = env.get("SCHEDULER_TIMEZONE") or DEFAULT_TIMEZONE
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError("SCHEDULER_TIMEZONE", f"unknown time zone {timezone!r}") from None
        return cls(
            database_url=env.get("SCHEDULER_DB_URL") or DEFAULT_DATABASE_URL,
            timezone=timezone,
            shutdown_grace=_number(env, "SCHEDULER_SHUTDOWN_GRACE", 30.0),
            poll_interval=_number(env, "SCHEDULER_POLL_SECONDS", 2.0),
            history_days=_optional(env, "SCHEDULER_HISTORY_DAYS", 90.0),
            history_rows=_optional_int(env, "SCHEDULER_HISTORY_ROWS"),
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    value = _optional(env, name, default)
    if value is None:
        raise SettingsError(name, "must be a positive number")
    return value


def _optional(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name)
    if raw is None:
        return default
    if raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"{raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(name, f"must be positive, got {raw!r}")
    return value


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    value = _optional(env, name, None)
    if value is not None and value != int(value):
        raise SettingsError(name, "must be a whole number")
    return None if value is None else int(value)
