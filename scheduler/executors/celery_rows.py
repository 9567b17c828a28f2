"""The ledger-row writes of remote runs: taking a claimed row, closing it once.

The scheduler claims a row (``running``, its own holder) before it sends the run. The
worker that gets the message *takes* it (holder becomes the worker's); whoever closes
the row first wins, by a conditional UPDATE on ``status = 'running'``:

- the worker, with the run's outcome (only while it still holds the row);
- the scheduler, with ``timeout`` when the run's deadline passed, or ``abandoned``
  when the worker holding it stopped sending heartbeats.

The loser reads the winner's outcome; a result is never written over another.
Blocking calls: run them in a thread. Database errors raise ``StoreError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreError
from ..ledger import CHUNK_ROWS, ERROR_CHARS
from ..tables import runs
from ..targets import Outcome
from .celery_app import WORKER_PREFIX

T = TypeVar("T")

_TAKE = (
    update(runs)
    .where(
        runs.c.run_id == bindparam("b_run_id"),
        runs.c.status == "running",
        or_(runs.c.holder.is_(None), runs.c.holder.not_like(f"{WORKER_PREFIX}%")),
    )
    .values(holder=bindparam("b_holder"))
)
_RESULT = {
    "status": bindparam("b_status"),
    "finished_at": bindparam("b_finished_at", type_=runs.c.finished_at.type),
    "error": bindparam("b_error"),
    "items": bindparam("b_items"),
    "stages": bindparam("b_stages"),
}
_CLOSE = (
    update(runs)
    .where(runs.c.run_id == bindparam("b_run_id"), runs.c.status == "running")
    .values(**_RESULT)
)
_CLOSE_HELD = (
    update(runs)
    .where(
        runs.c.run_id == bindparam("b_run_id"),
        runs.c.status == "running",
        runs.c.holder == bindparam("b_holder"),
    )
    .values(**_RESULT)
)
_STATES = select(
    runs.c.run_id,
    runs.c.status,
    runs.c.holder,
    runs.c.finished_at,
    runs.c.error,
    runs.c["items"],
    runs.c.stages,
).where(runs.c.run_id.in_(bindparam("b_ids", expanding=True)))

_HELD = select(runs.c.run_id, runs.c.holder).where(
    runs.c.status == "running", runs.c.holder.like(f"{WORKER_PREFIX}%")
)


@dataclass(frozen=True)
class RowState:
    """A run row as the executor sees it."""

    run_id: str
    status: str
    holder: str | None
    outcome: Outcome
    """For a final row, its outcome (``recorded``); meaningless while ``running``."""

    @property
    def final(self) -> bool:
        return self.status != "running"

    @property
    def on_worker(self) -> bool:
        return self.holder is not None and self.holder.startswith(WORKER_PREFIX)


def take(engine: Engine, run_id: str, holder: str) -> bool:
    """Make ``holder`` (a worker) hold a ``running`` row no other worker took."""
    return _write(engine, f"take run {run_id}", lambda conn: take_in(conn, run_id, holder))


def close(engine: Engine, run_id: str, outcome: Outcome, *, holder: str | None = None) -> bool:
    """Write ``outcome`` if the row is still ``running`` (and held by ``holder`` if given).

    Returns False when someone closed it first (or the row does not exist).
    """
    return _write(
        engine, f"close run {run_id}", lambda conn: close_in(conn, run_id, outcome, holder)
    )


def states(engine: Engine, run_ids: Iterable[str]) -> dict[str, RowState]:
    """The rows of ``run_ids`` that exist, by run id."""
    ids = list(run_ids)
    try:
        with engine.connect() as conn:
            return states_in(conn, ids)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read runs: {describe(exc)}") from exc


def held_by_workers(engine: Engine) -> dict[str, str]:
    """Holders of the ``running`` rows workers took, by run id."""
    try:
        with engine.connect() as conn:
            return {run_id: holder for run_id, holder in conn.execute(_HELD)}
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read running runs: {describe(exc)}") from exc


def take_in(conn: Connection, run_id: str, holder: str) -> bool:
    """``take`` inside a transaction the caller commits."""
    params = {"b_run_id": run_id, "b_holder": holder}
    return bool(conn.execute(_TAKE, params).rowcount == 1)


def close_in(conn: Connection, run_id: str, outcome: Outcome, holder: str | None) -> bool:
    """``close`` inside a transaction the caller commits."""
    if outcome.finished_at is None:
        raise ValueError("a remote outcome needs its finished_at")
    params = {
        "b_run_id": run_id,
        "b_holder": holder,
        "b_status": outcome.status,
        "b_finished_at": outcome.finished_at,
        "b_error": _clip(outcome.error),
        "b_items": json.dumps(list(outcome.items)),
        "b_stages": json.dumps(list(outcome.stages)),
    }
    statement = _CLOSE if holder is None else _CLOSE_HELD
    return bool(conn.execute(statement, params).rowcount == 1)


def states_in(conn: Connection, run_ids: list[str]) -> dict[str, RowState]:
    """``states`` on an open connection."""
    found: dict[str, RowState] = {}
    for start in range(0, len(run_ids), CHUNK_ROWS):
        chunk = run_ids[start : start + CHUNK_ROWS]
        for row in conn.execute(_STATES, {"b_ids": chunk}):
            found[row.run_id] = _state(row)
    return found


def _state(row: Any) -> RowState:
    finished: datetime | None = row.finished_at
    outcome = Outcome(
        status=row.status,
        error=row.error,
        items=tuple(json.loads(row.items)) if row.items else (),
        stages=tuple(json.loads(row.stages)) if row.stages else (),
        recorded=True,
        finished_at=finished,
    )
    return RowState(row.run_id, row.status, row.holder, outcome)


def _write(engine: Engine, action: str, work: Callable[[Connection], T]) -> T:
    try:
        with engine.begin() as conn:
            return work(conn)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot {action}: {describe(exc)}") from exc


def _clip(error: str | None) -> str | None:
    if error is None or len(error) <= ERROR_CHARS:
        return error
    return error[: ERROR_CHARS - 1] + "…"


def describe(exc: BaseException) -> str:
    """One line: the driver's exception type and the first line of its message."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"[:300]
