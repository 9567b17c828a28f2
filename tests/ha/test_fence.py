"""The run ledger's fence: a leader whose term ended cannot claim, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from pipelines.db import get_engine
from scheduler.ledger import Ledger
from scheduler.migrate import upgrade

BASE = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def at(i: int) -> datetime:
    return BASE + timedelta(seconds=i)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'pipebot.db'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    engine = get_engine(url)
    upgrade(engine)
    yield engine


@pytest.fixture
async def pair(engine: Engine) -> AsyncIterator[tuple[Ledger, Ledger]]:
    old, new = Ledger(engine, holder="a:1:x"), Ledger(engine, holder="b:2:y")
    old.start()
    new.start()
    yield old, new
    await old.stop()
    await new.stop()


async def test_claims_of_an_ended_term_are_refused(pair: tuple[Ledger, Ledger]) -> None:
    old, new = pair
    fenced: list[str] = []
    old.on_fenced = lambda: fenced.append("old")
    new.on_fenced = lambda: fenced.append("new")
    first = old.advance_fence(idle_limit=5)
    assert await old.claim(schedule="s", pipeline="p", scheduled_for=at(0))
    second = new.advance_fence(idle_limit=5)
    assert second > first
    assert await old.claim(schedule="s", pipeline="p", scheduled_for=at(1)) is None
    assert fenced == ["old"]
    assert await old.record_many([]) == 0
    run_id = await new.claim(schedule="s", pipeline="p", scheduled_for=at(1))
    assert run_id is not None
    record = new.get(run_id)
    assert record is not None and record.status == "running"
    assert new.stored_fence() == second
    assert fenced == ["old"]
    # results and unscheduled runs are never fenced: a run already claimed ends properly
    old.finish(run_id, status="success")
    assert await old.begin(pipeline="p", trigger="manual")
    await old.flush()
    assert (new.get(run_id) or record).status == "success"


async def test_backend_token_raises_the_fence(pair: tuple[Ledger, Ledger]) -> None:
    old, new = pair
    assert old.advance_fence() >= 1
    assert new.advance_fence(41) == 41  # a Redis INCR token above the stored value wins
    assert old.advance_fence() == 42  # and the counter goes on from there
    assert await new.claim(schedule="s", pipeline="p", scheduled_for=at(0)) is None


async def test_revoked_term_claims_nothing(pair: tuple[Ledger, Ledger]) -> None:
    leader, _ = pair
    leader.advance_fence()
    assert await leader.claim(schedule="s", pipeline="p", scheduled_for=at(0))
    leader.revoke_fence()
    assert await leader.claim(schedule="s", pipeline="p", scheduled_for=at(1)) is None
    leader.advance_fence()  # a new term
    assert await leader.claim(schedule="s", pipeline="p", scheduled_for=at(1))


async def test_sqlite_database_is_locked_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    upgrade(engine)
    ledger = Ledger(engine, holder="a:1:x")
    health: list[bool] = []
    ledger.on_health = health.append
    ledger.start()
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        pending = ledger.claim(schedule="s", pipeline="p", scheduled_for=at(0))
        released = threading.Event()

        def release_when_failing() -> None:
            while ledger.healthy and not released.wait(0.01):
                pass
            blocker.execute("COMMIT")

        thread = threading.Thread(target=release_when_failing)
        thread.start()
        run_id = await pending
        released.set()
        thread.join()
    finally:
        blocker.close()
    assert run_id is not None
    assert ledger.last_error is not None and "locked" in ledger.last_error
    assert health == [False, True] and ledger.healthy
    await ledger.stop()
    engine.dispose()
