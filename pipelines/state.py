"""Persistence for transforms: stage state between runs and seen keys for deduplication.

Two tables in the database shared with the scheduler, created on first use with
``MetaData.create_all(checkfirst=True)`` (the scheduler's Alembic migrations do not
manage them):

- ``pipeline_state(pipeline, stage_index, state, updated_at)``: each stage's
  ``context.state`` as JSON text, one row per stage.
- ``seen_keys(scope, key_hash, first_seen)``: hashes of keys ``Deduplicate`` has let
  through, unique on ``(scope, key_hash)``.

Writes are single statements that are safe against concurrent runs: an upsert for
state, ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` for keys, so of two runs that
offer the same key at the same time exactly one is told it is new. SQLite and
PostgreSQL are supported. Every method blocks: call them from a worker thread.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from .db import get_engine, redact_url
from .errors import PipelineError

logger = logging.getLogger(__name__)

metadata = MetaData()

pipeline_state = Table(
    "pipeline_state",
    metadata,
    Column("pipeline", String(200), nullable=False),
    Column("stage_index", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("pipeline", "stage_index", name="pk_pipeline_state"),
)

seen_keys = Table(
    "seen_keys",
    metadata,
    Column("scope", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("scope", "key_hash", name="pk_seen_keys"),
    sqlite_with_rowid=False,  # one B-tree instead of table + index: smaller, faster
)

_INSERTS: dict[str, Callable[[Table], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()
"""Engines whose tables this process has already created or found."""
_ready_lock = threading.Lock()


class StateStoreError(PipelineError):
    """The state store cannot be used with this database or cannot store a value."""


class SqlStateStore:
    """``StateStore`` of ``pipelines.pipeline`` plus the seen keys of ``Deduplicate``."""

    def __init__(self, database_url: str) -> None:
        dialect = make_url(database_url).get_backend_name()
        insert = _INSERTS.get(dialect)
        if insert is None:
            raise StateStoreError(
                f"SqlStateStore supports SQLite and PostgreSQL, not {dialect} "
                f"({redact_url(database_url)})"
            )
        self._url = database_url
        self._insert = insert
        self._engine: Engine = get_engine(database_url)

    def __repr__(self) -> str:
        return f"SqlStateStore({redact_url(self._url)!r})"

    def ensure_tables(self) -> None:
        """Create the tables if they are missing (once per engine and process)."""
        with _ready_lock:
            if self._engine in _ready:
                return
            try:
                metadata.create_all(self._engine, checkfirst=True)
            except (OperationalError, ProgrammingError):
                # Another process created them between the check and the CREATE.
                metadata.create_all(self._engine, checkfirst=True)
            _ready.add(self._engine)

    # StateStore protocol

    def load_state(self, pipeline: str, stage_index: int) -> dict[str, Any]:
        """The state saved for one stage, or an empty dict."""
        self.ensure_tables()
        query = select(pipeline_state.c.state).where(
            pipeline_state.c.pipeline == pipeline, pipeline_state.c.stage_index == stage_index
        )
        with self._engine.connect() as conn:
            text = conn.execute(query).scalar_one_or_none()
        if text is None:
            return {}
        loaded = json.loads(text)
        return loaded if isinstance(loaded, dict) else {}

    def save_state(self, pipeline: str, stage_index: int, state: dict[str, Any]) -> None:
        """Replace the state of one stage; ``state`` must be JSON-serialisable."""
        try:
            text = json.dumps(state, ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise StateStoreError(
                f"state of stage {stage_index} of pipeline {pipeline!r} "
                f"is not JSON-serialisable: {exc}"
            ) from exc
        self.ensure_tables()
        now = datetime.now(UTC)
        statement = self._insert(pipeline_state).values(
            pipeline=pipeline, stage_index=stage_index, state=text, updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=[pipeline_state.c.pipeline, pipeline_state.c.stage_index],
            set_={"state": text, "updated_at": now},
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    # Seen keys

    def claim_keys(self, scope: str, key_hashes: Collection[str]) -> set[str]:
        """Record ``key_hashes`` as seen in ``scope``; return those not seen before.

        One statement per call (SQLAlchemy may page very large calls); concurrent
        callers offering the same hash: exactly one gets it back as new.
        """
        unique = set(key_hashes)
        if not unique:
            return set()
        self.ensure_tables()
        now = datetime.now(UTC)
        rows = [{"scope": scope, "key_hash": h, "first_seen": now} for h in unique]
        statement = self._insert(seen_keys).on_conflict_do_nothing().returning(seen_keys.c.key_hash)
        with self._engine.begin() as conn:
            return set(conn.execute(statement, rows).scalars())

    def seen_count(self, scope: str) -> int:
        """How many keys ``scope`` has seen."""
        self.ensure_tables()
        query = select(func.count()).select_from(seen_keys).where(seen_keys.c.scope == scope)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def forget_keys(self, scope: str) -> int:
        """Forget every key of ``scope`` (so its items pass again); return how many."""
        self.ensure_tables()
        with self._engine.begin() as conn:
            result = conn.execute(delete(seen_keys).where(seen_keys.c.scope == scope))
        return int(result.rowcount)
