"""Alembic environment: runs on the connection the scheduler hands over."""

from __future__ import annotations

from alembic import context

from scheduler.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through scheduler.migrate
    raise RuntimeError("run migrations through scheduler.migrate.upgrade()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
