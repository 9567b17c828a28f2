"""Wake the active scheduler when the schedules change: PostgreSQL ``LISTEN``.

``ScheduleStore._bump`` sends a NOTIFY on ``CHANGES_CHANNEL`` (payload: the schema of
the store) in the transaction that changes the schedules, so the scheduler re-reads
them as soon as the change commits, whichever process made it. This only speeds things
up: the runtime still polls the revision every ``SCHEDULER_POLL_SECONDS``, so a lost
connection or a missed notification delays a change by at most one poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from .lease_postgres import conninfo
from .store import CHANGES_CHANNEL

logger = logging.getLogger(__name__)
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
WAIT = 5.0
"""Seconds one wait for notifications lasts before the connection is checked again."""


class ChangeListener:
    """Calls ``on_change`` (on the event loop) for every schedule change notified."""

    def __init__(self, database_url: str, on_change: Callable[[], None]) -> None:
        self._conninfo = conninfo(database_url)
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self.listening = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pipebot-listen")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        delay, failures = RETRY_FIRST, 0
        while True:
            try:
                await self._listen()
            except psycopg.Error as exc:
                if self.listening:
                    delay, failures = RETRY_FIRST, 0
                failures += 1
                if failures == 1:
                    text = str(exc).strip().splitlines()
                    logger.warning(
                        "not listening for schedule changes (polling instead): %s: %s",
                        type(exc).__name__,
                        text[0] if text else "",
                    )
            self.listening = False
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=10
        )
        async with conn:
            cursor = await conn.execute("SELECT current_schema()")
            row = await cursor.fetchone()
            schema = str(row[0]) if row else ""
            await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
            self.listening = True
            logger.debug("listening for schedule changes on %s", CHANGES_CHANNEL)
            self._on_change()  # whatever changed while nobody listened
            while True:
                async for notice in conn.notifies(timeout=WAIT):
                    if notice.payload in ("", schema):
                        self._on_change()
                await conn.execute("SELECT 1")  # a dead connection raises here
