"""The scheduler's tables (SQLAlchemy Core). Alembic migrations create and evolve them.

- ``schedules``: one plain-data row per schedule (no pickles).
- ``runs``: the run ledger and history; ``(schedule, scheduled_for)`` is unique, so a
  scheduled instant is claimed once and can never run twice.
- ``audit``: who changed what, from which surface.
- ``meta``: counters such as ``schedules_revision``, bumped by every schedule change so
  other processes notice it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (naive text) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


metadata = MetaData()

schedules = Table(
    "schedules",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("pipeline", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("fields", Text, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("overlap", String(16), nullable=False),
    Column("catchup", String(16), nullable=False),
    Column("coalesce", Boolean, nullable=False),
    Column("misfire_grace_time", Float, nullable=True),
    Column("jitter", Float, nullable=False, default=0.0),
    Column("timeout", Float, nullable=True),
    Column("max_instances", Integer, nullable=False, default=1),
    Column("owner", String(8), nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("definition_hash", String(16), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("schedule", String(128), nullable=True),
    Column("pipeline", String(128), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("scheduled_for", UTCDateTime, nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("requested_by", String(128), nullable=True),
    Column("error", Text, nullable=True),
    Column("items", Text, nullable=True),
    Column("stages", Text, nullable=True),
    Column("holder", String(128), nullable=True),
    Column("fence", BigInteger, nullable=True),
    UniqueConstraint("schedule", "scheduled_for", name="uq_runs_claim"),
    Index("ix_runs_pipeline_started", "pipeline", "started_at"),
    Index("ix_runs_schedule_started", "schedule", "started_at"),
    Index("ix_runs_status_started", "status", "started_at"),
    Index("ix_runs_started", "started_at"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("surface", String(16), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(128), nullable=False),
    Column("detail", Text, nullable=True),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
