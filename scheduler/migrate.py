"""Apply the scheduler's Alembic migrations to a database (at every start)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from pipelines.db import redact_url

from .errors import StoreError

logger = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")


def upgrade(engine: Engine) -> None:
    """Bring the database at ``engine`` to the newest schema; safe to call every start."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        where = redact_url(engine.url.render_as_string(hide_password=False))
        raise StoreError(
            f"cannot migrate database {where}: {exc.__class__.__name__}: {exc}"
        ) from exc
    logger.debug("database schema is current")
