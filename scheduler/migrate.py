"""Apply the scheduler's Alembic migrations to a database (at every start).

Several processes may start on one fresh database at once (two instances, the CLI next to
a starting scheduler). Migrations are therefore serialised: a transaction-scoped advisory
lock on PostgreSQL, an exclusive ``fcntl`` lock on a file beside a SQLite database. A
database already at the newest revision is recognised without taking any lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from pipelines.db import redact_url

from .errors import StoreError

logger = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")
ADVISORY_KEY = 0x706970656D6967  # "pipemig": the PostgreSQL lock migrations take


def upgrade(engine: Engine) -> None:
    """Bring the database at ``engine`` to the newest schema; safe to call every start."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        with engine.connect() as connection:
            if _current(connection) == head:
                return
        with _file_lock(engine), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_KEY}
                )
            if _current(connection) != head:  # another process may have done it meanwhile
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                logger.info("database schema upgraded to %s", head)
    except SQLAlchemyError as exc:
        where = redact_url(engine.url.render_as_string(hide_password=False))
        raise StoreError(
            f"cannot migrate database {where}: {exc.__class__.__name__}: {exc}"
        ) from exc


def _current(connection: Connection) -> str | None:
    revision: str | None = MigrationContext.configure(connection).get_current_revision()
    return revision


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.migrate.lock`` for a SQLite file database."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
