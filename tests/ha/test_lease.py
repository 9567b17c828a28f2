"""Each lease backend against its real server: one holder, loss noticed, takeover.

No timing is asserted: waits are bounded polls, and "still waiting" is checked after
several of the standby's own poll intervals.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg
import pytest
import redis

from scheduler.lease import Lease, LeaseError, lease_name, lock_file, open_lease
from scheduler.settings import SchedulerSettings

from .conftest import PG_SERVER

pytestmark = pytest.mark.postgres
TTL = 1.0
BACKENDS = ["postgres", pytest.param("redis", marks=pytest.mark.redis), "file"]


@pytest.fixture
def settings_for(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[str], SchedulerSettings]:
    def make(backend: str) -> SchedulerSettings:
        url = f"sqlite:///{tmp_path / 'pipebot.db'}"
        redis_url = "redis://127.0.0.1:6379/0"
        if backend == "postgres":
            url = request.getfixturevalue("pg_url")
        if backend == "redis":
            redis_url = request.getfixturevalue("redis_url")
        return SchedulerSettings(
            database_url=url,
            distributed=True,
            lock_backend=backend,  # type: ignore[arg-type]
            lease_seconds=TTL,
            redis_url=redis_url,
            lock_name=f"pipebot-test-{uuid.uuid4().hex[:12]}" if backend == "redis" else None,
        )

    return make


@pytest.fixture
async def leases() -> AsyncIterator[list[Lease]]:
    made: list[Lease] = []
    yield made
    for lease in made:
        await lease.release()


async def _still_waiting(task: asyncio.Task[int | None], lease: Lease) -> bool:
    await asyncio.sleep(max(0.5, 5 * getattr(lease, "poll", 0.1)))
    return not task.done()


async def _bounded(awaitable: asyncio.Task[int | None], seconds: float = 15) -> int | None:
    return await asyncio.wait_for(awaitable, seconds)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_one_holder_at_a_time(
    backend: str, settings_for: Callable[[str], SchedulerSettings], leases: list[Lease]
) -> None:
    settings = settings_for(backend)
    first, second = open_lease(settings), open_lease(settings)
    leases += [first, second]
    assert first.backend == backend
    token = await first.acquire()
    assert first.held
    waiting = asyncio.create_task(second.acquire())
    assert await _still_waiting(waiting, second)
    await first.release()
    assert not first.held
    next_token = await _bounded(waiting)
    assert second.held
    if backend == "postgres":
        assert token is None and next_token is None  # the store's fence counter is used
    else:
        assert token is not None and next_token is not None and next_token > token


@pytest.mark.parametrize("backend", BACKENDS)
async def test_lost_lease_is_reported_and_can_be_taken(
    backend: str,
    settings_for: Callable[[str], SchedulerSettings],
    leases: list[Lease],
    tmp_path: Path,
) -> None:
    settings = settings_for(backend)
    holder = open_lease(settings)
    leases.append(holder)
    await holder.acquire()
    lost: list[str] = []
    holder.watch(lost.append)
    if backend == "postgres":  # the holder's session is terminated
        schema = settings.database_url.rsplit("application_name=", 1)[1]
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (schema,),
            )
    elif backend == "redis":  # someone else owns the key now
        client = redis.Redis.from_url(settings.redis_url)
        client.set(f"{lease_name(settings)}:lease", "someone-else", px=60_000)
        client.close()
    else:  # the lock file was replaced
        path = lock_file(settings)
        os.unlink(path)
        path.write_text("")
    for _ in range(150):
        if lost:
            break
        await asyncio.sleep(0.1)
    assert len(lost) == 1 and not holder.held, lost
    if backend == "redis":
        return  # the other owner's key stays until it expires
    successor = open_lease(settings)
    leases.append(successor)
    await _bounded(asyncio.create_task(successor.acquire()))
    assert successor.held


@pytest.mark.parametrize("backend", ["postgres", pytest.param("redis", marks=pytest.mark.redis)])
async def test_holder_that_stops_renewing_loses_the_lease(
    backend: str, settings_for: Callable[[str], SchedulerSettings], leases: list[Lease]
) -> None:
    """A paused or hung holder (no renewals) is replaced: the server expires its lease."""
    settings = settings_for(backend)
    frozen, standby = open_lease(settings), open_lease(settings)
    leases += [frozen, standby]
    await frozen.acquire()  # never watched: nothing renews it
    await _bounded(asyncio.create_task(standby.acquire()))
    assert standby.held


async def test_cancelled_acquire_holds_nothing(
    settings_for: Callable[[str], SchedulerSettings], leases: list[Lease]
) -> None:
    settings = settings_for("postgres")
    holder, impatient, third = (open_lease(settings) for _ in range(3))
    leases += [holder, impatient, third]
    await holder.acquire()
    waiting = asyncio.create_task(impatient.acquire())
    assert await _still_waiting(waiting, impatient)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not impatient.held
    await holder.release()
    await _bounded(asyncio.create_task(third.acquire()))
    assert third.held


def test_backend_without_its_driver_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    monkeypatch.delitem(sys.modules, "scheduler.lease_redis", raising=False)
    settings = SchedulerSettings(distributed=True, lock_backend="redis")
    with pytest.raises(
        LeaseError, match=r"needs the redis package \(pip install 'pipebot\[redis\]'\)"
    ):
        open_lease(settings)
