"""The ``postgres`` lease: a session advisory lock on a dedicated connection.

The lock lives as long as the session: the server releases it when the connection
dies (process killed, connection terminated, server restarted). The session's
``idle_session_timeout`` is the TTL, so the server also ends the session of a holder
that stops renewing (paused or hung) and a standby takes over. Renewal runs a query
that checks the lock is still granted to this session; a dead connection means the
lease is lost (it cannot be won back on a new connection). Standbys wait inside
``pg_advisory_lock`` with a short ``lock_timeout``, so they wake as soon as it is free.
Needs PostgreSQL 14 or newer for ``idle_session_timeout``; older servers only lose the
lease when the holder's connection ends.
"""

from __future__ import annotations

import hashlib
import logging
from typing import ClassVar

import psycopg
from psycopg import errors
from sqlalchemy.engine import make_url

from pipelines.db import normalise_url

from .lease import NOT_YET, NotYet, RenewingLease

logger = logging.getLogger(__name__)
WAIT_MS = 1000
"""How long one ``pg_advisory_lock`` call waits before it is tried again."""
_HELD = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1)"
)


def conninfo(database_url: str) -> str:
    """A libpq URI for a SQLAlchemy PostgreSQL URL (the password kept, never logged)."""
    url = make_url(normalise_url(database_url)).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class PostgresLease(RenewingLease):
    backend: ClassVar[str] = "postgres"

    def __init__(self, database_url: str, name: str, ttl: float) -> None:
        super().__init__(name, ttl)
        self._conninfo = conninfo(database_url)
        self.key = advisory_key(name)
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        self._ids = (unsigned >> 32, unsigned & 0xFFFFFFFF)  # as pg_locks shows them
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=max(2, int(self.ttl))
        )
        try:
            await conn.execute(f"SET lock_timeout = {WAIT_MS}")
            try:
                await conn.execute(f"SET idle_session_timeout = {int(self.ttl * 1000)}")
            except errors.UndefinedObject:
                logger.warning(
                    "PostgreSQL older than 14: a paused lease holder is not detected "
                    "(only a dead connection frees the lease)"
                )
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _try_acquire(self) -> int | None | NotYet:
        conn = await self._connection()
        try:
            await conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))
        except errors.LockNotAvailable:
            return NOT_YET
        return None  # no token: the store's fence counter is advanced instead

    async def _renew(self) -> bool:
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            cursor = await conn.execute(_HELD, self._ids)
            row = await cursor.fetchone()
        except psycopg.OperationalError:
            return False  # the session is gone, and the lock with it
        return bool(row and row[0])

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()  # ends the session: the server releases the lock
            except psycopg.Error:
                pass
