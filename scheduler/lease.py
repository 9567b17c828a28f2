"""The leader lease: several scheduler processes, one active.

A ``Lease`` is held by at most one process at a time. ``acquire`` waits until this
process holds it and returns a fencing token (or None when the backend has none);
``watch`` renews it in the background and calls ``on_lost`` once if it is lost;
``release`` gives it up. Backends, one small module each:

- ``postgres`` (``lease_postgres``): a session advisory lock on a dedicated connection.
  The server releases it when the connection dies; ``idle_session_timeout`` set to the
  TTL makes the server end the session of a holder that stops renewing (paused, hung).
- ``redis`` (``lease_redis``): ``SET NX PX`` with a random owner token, renewed and
  released by a compare-and-set script; ``INCR`` gives the fencing token.
- ``file`` (``lease_file``): an ``fcntl.flock`` lock on one host, released by the kernel
  when the process dies (a paused holder keeps it).

Whatever a lease says, the run ledger's unique claim is the guarantee that no instant
runs twice; the fencing token (see ``Ledger.advance_fence``) keeps a leader that lost its
lease from claiming anything once another one has taken over.

LeaseError (a SchedulerError)
└── raised for a backend that cannot be set up (missing driver, bad settings)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Final, Protocol

from sqlalchemy.engine import make_url

from pipelines.db import normalise_url

from .errors import SchedulerError
from .settings import SchedulerSettings

logger = logging.getLogger(__name__)

OnLost = Callable[[str], None]
"""Called once, on the event loop, with the reason the lease was lost."""


class LeaseError(SchedulerError):
    """A lease backend cannot be used (driver missing, unusable settings)."""


class Lease(Protocol):
    """One lease, held by at most one process at a time."""

    backend: ClassVar[str]
    name: str
    ttl: float

    async def acquire(self) -> int | None:
        """Wait until this process holds the lease; returns a fencing token or None.

        Cancel the caller to stop waiting; nothing is left held then.
        """

    def watch(self, on_lost: OnLost) -> None:
        """Renew in the background; call ``on_lost`` once when the lease is lost."""

    @property
    def held(self) -> bool:
        """Whether this process holds the lease now (as far as it knows)."""

    async def release(self) -> None:
        """Stop renewing and give the lease up (no-op when not held)."""


class RenewingLease(ABC):
    """What every backend shares: the acquire loop, the renew loop, release.

    A backend supplies ``_try_acquire`` (one attempt: a token, or ``NOT_YET``),
    ``_renew`` (True: still held; False: lost for sure; an exception: could not tell)
    and ``_close`` (drop connections, unlock). A renewal that cannot tell is retried
    until the TTL since the last good one runs out; then the lease counts as lost.
    """

    backend: ClassVar[str]
    retry_cap: ClassVar[float] = 2.0
    """Longest pause between attempts while the backend cannot be reached."""

    def __init__(self, name: str, ttl: float) -> None:
        self.name = name
        self.ttl = ttl
        self.renew_every = ttl / 3
        self.poll = min(0.25, ttl / 10)
        """Seconds between acquire attempts while another process holds the lease."""
        self._held = False
        self._watcher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, ttl={self.ttl})"

    @property
    def held(self) -> bool:
        return self._held

    async def acquire(self) -> int | None:
        failures = 0
        try:
            while True:
                try:
                    token = await self._try_acquire()
                except Exception as exc:  # backend down: keep trying, say so once
                    failures += 1
                    if failures == 1:
                        logger.warning(
                            "%s lease %s: cannot reach the backend, retrying: %s",
                            self.backend,
                            self.name,
                            _describe(exc),
                        )
                    await self._close()
                    await asyncio.sleep(_backoff(failures, self.poll, self.retry_cap))
                    continue
                if failures:
                    logger.info("%s lease %s: backend reachable again", self.backend, self.name)
                    failures = 0
                if token is not NOT_YET:
                    self._held = True
                    return token
                await asyncio.sleep(self.poll)
        except BaseException:
            if not self._held:
                await self._close()
            raise

    def watch(self, on_lost: OnLost) -> None:
        if self._watcher is not None:
            raise LeaseError("the lease is watched already")
        self._watcher = asyncio.create_task(self._renew_loop(on_lost), name="pipebot-lease")

    async def release(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        held, self._held = self._held, False
        if held:
            with contextlib.suppress(Exception):  # it expires or dies with the session anyway
                await self._release()
            logger.info("%s lease %s released", self.backend, self.name)
        await self._close()

    async def _renew_loop(self, on_lost: OnLost) -> None:
        loop = asyncio.get_running_loop()
        last_good = loop.time()
        reason = ""
        while True:
            await asyncio.sleep(self.renew_every if not reason else min(self.poll, 0.5))
            started = loop.time()
            if started - last_good >= self.ttl:
                reason = (
                    f"not renewed for {started - last_good:.1f}s "
                    "(process paused or event loop blocked)"
                )
                break
            try:
                held = await asyncio.wait_for(self._renew(), timeout=self.renew_every)
            except Exception as exc:  # could not tell: retry until the TTL runs out
                reason = f"renewal failed: {_describe(exc)}"
                if loop.time() - last_good >= self.ttl * 0.8:
                    break
                logger.warning("%s lease %s: %s; retrying", self.backend, self.name, reason)
                continue
            if not held:
                reason = "another process holds it or its connection is gone"
                break
            last_good, reason = started, ""
        self._held = False
        logger.error("%s lease %s lost: %s", self.backend, self.name, reason)
        with contextlib.suppress(Exception):
            await self._close()
        on_lost(reason)

    @abstractmethod
    async def _try_acquire(self) -> int | None | NotYet:
        """One attempt: the fencing token (None if the backend has none) or ``NOT_YET``."""

    @abstractmethod
    async def _renew(self) -> bool:
        """Whether the lease is still ours; raise when that cannot be told."""

    async def _release(self) -> None:
        """Give the lease up explicitly before ``_close`` (when closing is not enough)."""
        return None

    @abstractmethod
    async def _close(self) -> None:
        """Drop whatever holds the lease (connections, file descriptors)."""


class NotYet(enum.Enum):
    """The type of ``NOT_YET``."""

    NOT_YET = "not yet"


NOT_YET: Final = NotYet.NOT_YET
"""``_try_acquire``'s answer while another process holds the lease."""


def _backoff(failures: int, first: float, cap: float) -> float:
    return min(cap, first * 2.0 ** (failures - 1)) * random.uniform(0.8, 1.0)


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def lease_name(settings: SchedulerSettings) -> str:
    """What the lease is called: ``SCHEDULER_LOCK_NAME`` or one name per database."""
    if settings.lock_name:
        return settings.lock_name
    url = make_url(normalise_url(settings.database_url)).set(password=None)
    digest = hashlib.sha256(url.render_as_string().encode()).hexdigest()[:16]
    return f"pipebot-scheduler-{digest}"


def lock_file(settings: SchedulerSettings) -> Path:
    """Where the ``file`` backend locks: ``SCHEDULER_LOCK_FILE``, or beside the SQLite file."""
    if settings.lock_file:
        return Path(settings.lock_file)
    url = make_url(normalise_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(f"{url.database}.lease")
    return Path(f"{lease_name(settings)}.lease")


def open_lease(settings: SchedulerSettings) -> Lease:
    """The lease of ``settings.lock_backend`` (nothing is acquired yet)."""
    name, ttl = lease_name(settings), settings.lease_seconds
    backend = settings.lock_backend
    try:
        if backend == "postgres":
            from .lease_postgres import PostgresLease

            return PostgresLease(settings.database_url, name, ttl)
        if backend == "redis":
            from .lease_redis import RedisLease

            return RedisLease(settings.redis_url, name, ttl)
    except ImportError as exc:
        extra = "postgres" if backend == "postgres" else "redis"
        raise LeaseError(
            f"SCHEDULER_LOCK_BACKEND={backend} needs the {(exc.name or extra).split('.')[0]} "
            "package "
            f"(pip install 'pipebot[{extra}]')"
        ) from None
    from .lease_file import FileLease

    return FileLease(lock_file(settings), name, ttl)
