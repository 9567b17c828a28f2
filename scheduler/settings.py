"""Scheduler settings from the environment (``.env`` is loaded by the entry points)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipelines.db import DEFAULT_DATABASE_URL

from .errors import SettingsError

DEFAULT_TIMEZONE = "Europe/Stockholm"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LockBackend = Literal["postgres", "redis", "file"]
LOCK_BACKENDS: tuple[str, ...] = get_args(LockBackend)


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
    distributed: bool = False
    """``SCHEDULER_DISTRIBUTED``: several processes, one active (it holds the lease)."""
    lock_backend: LockBackend = "file"
    """``SCHEDULER_LOCK_BACKEND``: postgres, redis or file (postgres on a PostgreSQL store)."""
    lease_seconds: float = 5.0
    """``SCHEDULER_LEASE_SECONDS``: a lease not renewed for this long is lost (the TTL)."""
    redis_url: str = DEFAULT_REDIS_URL
    """``SCHEDULER_REDIS_URL``: the Redis server of the ``redis`` lock backend."""
    lock_file: str | None = None
    """``SCHEDULER_LOCK_FILE``: the ``file`` lock (default: next to the SQLite file)."""
    lock_name: str | None = None
    """``SCHEDULER_LOCK_NAME``: what the lease is called (default: from the database URL)."""

    def __repr__(self) -> str:
        from pipelines.db import redact_url

        ha = ""
        if self.distributed:
            ha = (
                f", distributed=True, lock_backend={self.lock_backend!r}, "
                f"lease_seconds={self.lease_seconds}"
            )
            if self.lock_backend == "redis":
                ha += f", redis_url={redact_url(self.redis_url)!r}"
        return (
            f"SchedulerSettings(database_url={redact_url(self.database_url)!r}, "
            f"timezone={self.timezone!r}, shutdown_grace={self.shutdown_grace}{ha})"
        )

    @property
    def on_postgres(self) -> bool:
        """Whether the store is a PostgreSQL database."""
        return _is_postgres(self.database_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SchedulerSettings:
        env = os.environ if environ is None else environ
        timezone = env.get("SCHEDULER_TIMEZONE") or DEFAULT_TIMEZONE
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError("SCHEDULER_TIMEZONE", f"unknown time zone {timezone!r}") from None
        database_url = env.get("SCHEDULER_DB_URL") or DEFAULT_DATABASE_URL
        return cls(
            database_url=database_url,
            timezone=timezone,
            shutdown_grace=_number(env, "SCHEDULER_SHUTDOWN_GRACE", 30.0),
            poll_interval=_number(env, "SCHEDULER_POLL_SECONDS", 2.0),
            history_days=_optional(env, "SCHEDULER_HISTORY_DAYS", 90.0),
            history_rows=_optional_int(env, "SCHEDULER_HISTORY_ROWS"),
            distributed=_flag(env, "SCHEDULER_DISTRIBUTED"),
            lock_backend=_backend(env, database_url),
            lease_seconds=_number(env, "SCHEDULER_LEASE_SECONDS", 5.0),
            redis_url=env.get("SCHEDULER_REDIS_URL") or DEFAULT_REDIS_URL,
            lock_file=env.get("SCHEDULER_LOCK_FILE") or None,
            lock_name=env.get("SCHEDULER_LOCK_NAME") or None,
        )


def _is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(name, f"{raw!r} is not true or false")


def _backend(env: Mapping[str, str], database_url: str) -> LockBackend:
    raw = (env.get("SCHEDULER_LOCK_BACKEND") or "").strip().lower()
    if raw == "":
        return "postgres" if _is_postgres(database_url) else "file"
    if raw not in LOCK_BACKENDS:
        raise SettingsError(
            "SCHEDULER_LOCK_BACKEND", f"{raw!r} is not one of {', '.join(LOCK_BACKENDS)}"
        )
    if raw == "postgres" and not _is_postgres(database_url):
        raise SettingsError(
            "SCHEDULER_LOCK_BACKEND", "'postgres' needs SCHEDULER_DB_URL to be a PostgreSQL URL"
        )
    return cast(LockBackend, raw)


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
