"""The run ledger on real databases: claims, results, reads, maintenance and outages."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, create_engine, event, text, update
from sqlalchemy.engine import make_url

from pipelines.db import get_engine
from scheduler.errors import StoreError
from scheduler.ledger import Ledger, MissedRun
from scheduler.migrate import upgrade
from scheduler.tables import runs

BASE = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
HOLDER = "host:1:aaaa"


def instant(i: int) -> datetime:
    return BASE + timedelta(minutes=i)


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = get_engine(db_url)
    upgrade(engine)
    return engine


@pytest.fixture
async def ledger(engine: Engine) -> AsyncIterator[Ledger]:
    ledger = Ledger(engine, holder=HOLDER)
    ledger.start()
    yield ledger
    await ledger.stop()


def set_started(engine: Engine, run_id: str, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == run_id).values(started_at=at))


# --- claims ---------------------------------------------------------------------------------


async def test_claim_once(ledger: Ledger) -> None:
    run_id = await ledger.claim(schedule="s", pipeline="p", scheduled_for=instant(0), fence=7)
    assert run_id is not None and len(run_id) == 32
    assert await ledger.claim(schedule="s", pipeline="p", scheduled_for=instant(0)) is None
    # the same instant seen through another zone is the same instant
    other = instant(0).astimezone(timezone(timedelta(hours=2)))
    assert await ledger.claim(schedule="s", pipeline="p", scheduled_for=other) is None
    assert await ledger.claim(schedule="t", pipeline="p", scheduled_for=instant(0)) is not None
    record = ledger.get(run_id)
    assert record is not None
    assert (record.status, record.schedule, record.scheduled_for) == ("running", "s", instant(0))
    assert record.started_at is not None and record.started_at.tzinfo is UTC


async def test_two_processes_claim_each_instant_once(engine: Engine) -> None:
    first, second = Ledger(engine, holder="a:1:x"), Ledger(engine, holder="b:2:y")
    first.start()
    second.start()
    try:
        assert await first.claim(schedule="s", pipeline="p", scheduled_for=instant(0))
        assert await second.claim(schedule="s", pipeline="p", scheduled_for=instant(0)) is None
        claims = [
            ledger.claim(schedule="s", pipeline="p", scheduled_for=instant(i))
            for i in range(1, 501)
            for ledger in (first, second)
        ]
        results = await asyncio.gather(*claims)
    finally:
        await first.stop()
        await second.stop()
    won = [r for r in results if r is not None]
    assert len(won) == 500 and len(set(won)) == 500
    with engine.connect() as conn:
        count = conn.scalar(text("select count(*) from runs"))
    assert count == 501


async def test_ten_thousand_claims_in_few_transactions(ledger: Ledger, engine: Engine) -> None:
    """10,000 claims at once (5,000 instants, each claimed twice) resolve in a few batches."""
    claims = [
        ledger.claim(schedule=f"s{i % 10}", pipeline="p", scheduled_for=instant(i // 10))
        for _ in range(2)
        for i in range(5000)
    ]
    before = ledger.transactions
    results = await asyncio.gather(*claims)
    won = [r for r in results if r is not None]
    assert len(won) == 5000 and len(set(won)) == 5000
    assert results[:5000] == won  # the first claim of each instant wins
    assert ledger.transactions - before <= 20
    with engine.connect() as conn:
        assert conn.scalar(text("select count(*) from runs")) == 5000


async def test_claims_touch_the_database_off_the_event_loop(ledger: Ledger, engine: Engine) -> None:
    """No SQL of a claim runs on the loop's thread (bench/scheduler_bench.py measures stalls)."""
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    def note(*_: object) -> None:
        threads.add(threading.get_ident())

    event.listen(engine, "before_cursor_execute", note)
    try:
        results = await asyncio.gather(
            *(
                ledger.claim(schedule="s", pipeline="p", scheduled_for=instant(i))
                for i in range(500)
            )
        )
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert all(r is not None for r in results)
    assert threads and loop_thread not in threads


async def test_cancelled_claim_does_not_leave_a_running_row(ledger: Ledger) -> None:
    task = asyncio.ensure_future(ledger.claim(schedule="s", pipeline="p", scheduled_for=BASE))
    await asyncio.sleep(0)  # queued
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await ledger.flush()  # the claim committed, its result came back to nobody
    await ledger.flush()  # ... so the ledger closed the run
    [record] = ledger.history(schedule="s")
    assert record.status == "cancelled"
    assert ledger.running() == []


async def test_invalid_input_is_refused_at_once(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="naive"):
        await ledger.claim(schedule="s", pipeline="p", scheduled_for=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="final"):
        ledger.finish("x", status="running")
    with pytest.raises(ValueError, match="final"):
        await ledger.record(schedule="s", pipeline="p", scheduled_for=None, status="nope")


# --- results and reads ----------------------------------------------------------------------


async def test_claim_and_finish_round_trip(ledger: Ledger) -> None:
    run_id = await ledger.claim(schedule="s", pipeline="p", scheduled_for=BASE)
    assert run_id is not None
    ledger.finish(
        run_id, status="failed", error="x" * 5000, items=(3, 2, 0), stages=("fetch", "send")
    )
    await ledger.flush()
    [record] = ledger.history(schedule="s")
    assert record.run_id == run_id
    assert record.status == "failed"
    assert record.items == (3, 2, 0) and record.stages == ("fetch", "send")
    assert record.error is not None and len(record.error) == 2000 and record.error.endswith("…")
    assert record.duration is not None and record.duration >= 0
    assert record.to_dict()["success"] is False


async def test_finish_in_the_same_batch_as_its_claim(ledger: Ledger) -> None:
    run_id = await ledger.begin(pipeline="p", trigger="manual", run_id="f" * 32)
    claim = asyncio.ensure_future(ledger.claim(schedule="s", pipeline="p", scheduled_for=BASE))
    ledger.finish(run_id, status="success")
    await claim
    await ledger.flush()
    record = ledger.get(run_id)
    assert record is not None and record.status == "success"


async def test_begin_manual_runs_never_conflict(ledger: Ledger) -> None:
    ids = await asyncio.gather(
        *[ledger.begin(pipeline="p", trigger="manual", requested_by="ann") for _ in range(50)]
    )
    assert len(set(ids)) == 50
    mine = await ledger.begin(pipeline="p", trigger="api", schedule="s", run_id="a" * 32)
    assert mine == "a" * 32
    with pytest.raises(StoreError, match="exists already"):
        await ledger.begin(pipeline="p", trigger="api", run_id="a" * 32)
    assert len(ledger.running()) == 51
    assert len(ledger.history(pipeline="p", limit=100)) == 51


async def test_record_and_record_many(ledger: Ledger) -> None:
    claimed = await ledger.claim(schedule="s", pipeline="p", scheduled_for=instant(0))
    assert claimed is not None
    skipped = await ledger.record(
        schedule="s", pipeline="p", scheduled_for=instant(0), status="skipped", error="busy"
    )
    assert skipped is None  # that instant was claimed already
    skipped = await ledger.record(
        schedule="s", pipeline="p", scheduled_for=instant(1), status="skipped", error="busy"
    )
    assert skipped is not None
    manual = await ledger.record(
        schedule=None, pipeline="p", scheduled_for=None, status="skipped", requested_by="bob"
    )
    assert manual is not None
    missed = [MissedRun("s", "p", instant(i), reason="down") for i in range(0, 6)]
    assert await ledger.record_many(missed) == 4  # instants 0 and 1 were taken
    assert await ledger.record_many(missed) == 0
    assert await ledger.record_many([]) == 0
    rows = ledger.history(schedule="s", status="missed")
    assert len(rows) == 4
    assert all(r.error == "down" and r.finished_at == r.started_at for r in rows)
    record = ledger.get(skipped)
    assert record is not None and (record.status, record.error) == ("skipped", "busy")


async def test_last_claimed_and_last_runs(ledger: Ledger, engine: Engine) -> None:
    assert ledger.last_claimed("s") is None
    assert ledger.last_runs() == {}
    for i in (3, 1, 2):
        await ledger.claim(schedule="s", pipeline="p", scheduled_for=instant(i))
    missed = await ledger.record(
        schedule="t", pipeline="q", scheduled_for=instant(9), status="missed", error="x"
    )
    newest = await ledger.begin(pipeline="p", trigger="manual", schedule="s")
    assert ledger.last_claimed("s") == instant(3)
    assert ledger.last_claimed_all() == {"s": instant(3), "t": instant(9)}
    last = ledger.last_runs()
    rows = [ledger.get(run_id) for run_id in (newest, missed)]
    assert rows[0] is not None and rows[1] is not None
    assert last == {"s": (rows[0].started_at, "running"), "t": (rows[1].started_at, "missed")}
    assert ledger.last_runs([]) == {}


async def test_history_filters_and_pages(ledger: Ledger, engine: Engine) -> None:
    ids = []
    for i in range(7):
        run_id = await ledger.claim(schedule="s", pipeline="p", scheduled_for=instant(i))
        assert run_id is not None
        set_started(engine, run_id, instant(i))
        ids.append(run_id)
    ledger.finish(ids[0], status="success")
    await ledger.begin(pipeline="other", trigger="manual")
    await ledger.flush()
    assert [r.run_id for r in ledger.history(schedule="s")] == ids[::-1]
    page1 = ledger.history(schedule="s", limit=3)
    page2 = ledger.history(schedule="s", limit=3, before=page1[-1].run_id)
    assert [r.run_id for r in page1 + page2] == ids[::-1][:6]
    assert ledger.history(before="nope") == []
    assert [r.run_id for r in ledger.history(status="success")] == [ids[0]]
    assert len(ledger.history(since=instant(5), schedule="s")) == 2
    assert [r.pipeline for r in ledger.history(pipeline="other")] == ["other"]
    assert ledger.get("nope") is None


async def test_stats(ledger: Ledger) -> None:
    empty = ledger.stats()
    assert (empty.window, empty.success_rate, empty.last_failure) == (0, None, None)
    ids = [await ledger.begin(pipeline="p", trigger="manual") for _ in range(5)]
    for run_id, status in zip(
        ids, ["success", "success", "failed", "success", "timeout"], strict=True
    ):
        ledger.finish(run_id, status=status, error=None if status == "success" else status)
    await ledger.record(schedule="s", pipeline="p", scheduled_for=BASE, status="missed")
    await ledger.begin(pipeline="p", trigger="manual")
    await ledger.flush()
    stats = ledger.stats()
    assert (stats.window, stats.succeeded, stats.success_rate) == (5, 3, 0.6)
    assert stats.last_failure is not None and stats.last_failure.run_id == ids[4]
    assert stats.counts == {"success": 3, "failed": 1, "timeout": 1, "missed": 1, "running": 1}
    assert stats.mean_duration is not None
    assert ledger.stats(last=2).window == 2
    data = stats.to_dict()
    assert data["last_failure"]["status"] == "timeout" and data["success_rate"] == 0.6


# --- maintenance ----------------------------------------------------------------------------


async def test_mark_abandoned(engine: Engine, ledger: Ledger) -> None:
    other = Ledger(engine, holder="old:9:dead")
    other.start()
    try:
        theirs = await other.claim(schedule="s", pipeline="p", scheduled_for=BASE)
        done = await other.begin(pipeline="p", trigger="manual")
        other.finish(done, status="success")
    finally:
        await other.stop()
    mine = await ledger.begin(pipeline="p", trigger="manual")
    assert theirs is not None
    assert len(ledger.mark_abandoned(exclude_holder=HOLDER)) == 1
    record = ledger.get(theirs)
    assert record is not None and record.status == "abandoned"
    assert record.error == "process old:9:dead stopped before the run finished"
    assert record.finished_at is not None
    assert [r.run_id for r in ledger.running()] == [mine]
    assert ledger.get(done).status == "success"  # type: ignore[union-attr]
    assert len(ledger.mark_abandoned()) == 1  # without exclusion, this process's rows too
    assert ledger.running() == []


async def test_prune_by_age_and_by_rows(ledger: Ledger, engine: Engine) -> None:
    now = datetime.now(UTC)
    ids = []
    for i in range(10):
        run_id = await ledger.claim(schedule="s", pipeline="p", scheduled_for=instant(i))
        assert run_id is not None
        ledger.finish(run_id, status="success")
        ids.append(run_id)
    await ledger.flush()
    for age, run_id in enumerate(ids):  # ids[0] is 40 days old ... ids[9] 31 days old
        set_started(engine, run_id, now - timedelta(days=40 - age))
    hung = await ledger.begin(pipeline="p", trigger="manual")
    set_started(engine, hung, now - timedelta(days=100))
    assert ledger.prune(older_than_days=35.5, now=now) == 5
    assert ledger.prune(older_than_days=35.5, now=now) == 0
    assert ledger.prune(keep_rows=3, now=now) == 2  # 6 rows, the running one is kept
    left = {r.run_id for r in ledger.history(limit=100)}
    assert left == {hung, ids[9], ids[8], ids[7]}
    # the newest claim of a schedule survives everything: catch-up starts from it
    assert ledger.prune(older_than_days=0, keep_rows=0, now=now) == 2
    assert {r.run_id for r in ledger.history(limit=100)} == {hung, ids[9]}
    assert ledger.last_claimed("s") == instant(9)


# --- flush, stop, outages -------------------------------------------------------------------


async def test_flush_and_stop_write_everything(engine: Engine) -> None:
    ledger = Ledger(engine, holder=HOLDER, linger=0.05)
    ledger.finish("0" * 32, status="success")  # queued before start: written once started
    ledger.start()
    ids = [await ledger.begin(pipeline="p", trigger="manual") for _ in range(3)]
    for run_id in ids:
        ledger.finish(run_id, status="success")
    await ledger.flush()
    assert all(ledger.get(i).status == "success" for i in ids)  # type: ignore[union-attr]
    more = await ledger.begin(pipeline="p", trigger="manual")
    ledger.finish(more, status="failed", error="boom")
    await ledger.stop()
    record = ledger.get(more)
    assert record is not None and (record.status, record.error) == ("failed", "boom")
    with pytest.raises(StoreError, match="stopped"):
        await ledger.claim(schedule="s", pipeline="p", scheduled_for=BASE)
    ledger.finish(ids[0], status="cancelled")  # after stop: written directly
    assert ledger.get(ids[0]).status == "cancelled"  # type: ignore[union-attr]
    ledger.start()  # a ledger can start again
    assert await ledger.claim(schedule="s", pipeline="p", scheduled_for=BASE)
    await ledger.stop()


async def test_claim_before_start_is_refused(engine: Engine) -> None:
    ledger = Ledger(engine, holder=HOLDER)
    with pytest.raises(StoreError, match="not started"):
        await ledger.claim(schedule="s", pipeline="p", scheduled_for=BASE)


async def test_results_wait_out_a_locked_sqlite_file(sqlite_url: str) -> None:
    """Another process holds the write lock for ~1s: results land after it lets go."""
    engine = get_engine(sqlite_url)
    upgrade(engine)
    ledger = Ledger(engine, holder=HOLDER)
    ledger.start()
    try:
        await _finish_while_locked(ledger, sqlite_url)
    finally:
        await ledger.stop()
    assert len(ledger.history(status="success", limit=500)) == 200


async def _finish_while_locked(ledger: Ledger, db_url: str) -> None:
    ids = [await ledger.begin(pipeline="p", trigger="manual") for _ in range(200)]
    with _exclusive(db_url):
        for run_id in ids:
            ledger.finish(run_id, status="success", items=(1,))
        await asyncio.sleep(1.0)
        assert ledger.history(status="success") == []  # readers are not blocked (WAL)
    await ledger.flush()
    assert all(r.status == "success" and r.items == (1,) for r in ledger.history(limit=500))


async def test_outage_is_retried_until_written(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes fail for a while (lock timeout / dropped connection): nothing is lost."""
    caplog.set_level(logging.INFO, logger="scheduler.ledger")
    engine = get_engine(db_url)
    upgrade(engine)
    sqlite_file = engine.dialect.name == "sqlite"
    if sqlite_file:  # a busy timeout of 20ms: the lock turns into failures, not waits
        engine = create_engine(db_url, connect_args={"timeout": 0.02, "check_same_thread": False})
    ledger = Ledger(engine, holder=HOLDER)
    ledger.start()
    try:
        ids = [await ledger.begin(pipeline="p", trigger="manual") for _ in range(100)]
        outage = _exclusive(db_url) if sqlite_file else _dropped_connection(db_url)
        with outage:
            for run_id in ids:
                ledger.finish(run_id, status="success")
            pending = asyncio.ensure_future(
                ledger.claim(schedule="s", pipeline="p", scheduled_for=BASE)
            )
            await asyncio.to_thread(outage.disrupt)
            await _until(lambda: not ledger.healthy)
            await asyncio.sleep(0.3)
            assert not pending.done() and ledger.last_error
        assert await pending is not None
        await ledger.flush()
        assert ledger.healthy
    finally:
        await ledger.stop()
        if sqlite_file:
            engine.dispose()
    assert len(ledger.history(status="success", limit=500)) == 100
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "retrying" in warnings[0].getMessage()
    assert any("again after" in r.getMessage() for r in caplog.records)


async def test_stop_gives_up_after_its_timeout(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that never comes back cannot hold shutdown hostage."""
    db_url = sqlite_url
    upgrade(get_engine(db_url))
    engine = create_engine(db_url, connect_args={"timeout": 0.02, "check_same_thread": False})
    ledger = Ledger(engine, holder=HOLDER)
    ledger.start()
    try:
        run_id = await ledger.begin(pipeline="p", trigger="manual")
        with _exclusive(db_url):
            ledger.finish(run_id, status="success")
            pending = asyncio.ensure_future(
                ledger.claim(schedule="s", pipeline="p", scheduled_for=BASE)
            )
            await _until(lambda: not ledger.healthy)
            await ledger.stop(timeout=0.2)
            with pytest.raises(StoreError, match="stopped before writing"):
                await pending
        record = ledger.get(run_id)
    finally:
        engine.dispose()
    assert record is not None and record.status == "running"
    assert f"result of run {run_id} (success) could not be written" in caplog.text
    assert "gave up" in caplog.text


async def test_an_operation_that_cannot_be_written_fails_alone(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [await ledger.begin(pipeline="p", trigger="manual") for _ in range(3)]
    ledger.finish(ids[0], status="success")
    ledger.finish(ids[1], status="success", items=(object(),))  # type: ignore[arg-type]
    ledger.finish(ids[2], status="failed")
    claimed = await ledger.claim(schedule="s", pipeline="p", scheduled_for=BASE)
    await ledger.flush()
    assert claimed is not None
    statuses = [ledger.get(i).status for i in ids]  # type: ignore[union-attr]
    assert statuses == ["success", "running", "failed"]
    assert f"result of run {ids[1]} (success) could not be written" in caplog.text
    assert ledger.healthy


def test_reads_raise_store_error_without_the_password() -> None:
    engine = create_engine(
        "postgresql+psycopg://bob:hunter2@127.0.0.1:9/nowhere",
        connect_args={"connect_timeout": 2},
    )
    try:
        ledger = Ledger(engine, holder=HOLDER)
        with pytest.raises(StoreError) as info:
            ledger.history()
    finally:
        engine.dispose()
    message = str(info.value)
    assert "hunter2" not in message and "***" in message and "\n" not in message


# --- helpers --------------------------------------------------------------------------------


class _exclusive:
    """Hold SQLite's exclusive lock on the database file from another connection."""

    def __init__(self, db_url: str) -> None:
        self.path = make_url(db_url).database or ""

    def __enter__(self) -> None:
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def disrupt(self) -> None:
        """Nothing more: writers already fail on the lock."""

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


class _dropped_connection:
    """Lock ``runs`` in PostgreSQL, then kill the ledger's blocked connection."""

    def __init__(self, db_url: str) -> None:
        self.engine = create_engine(db_url)
        self.app = make_url(db_url).query["application_name"]

    def __enter__(self) -> None:
        self.conn = self.engine.connect()
        self.conn.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))

    def disrupt(self) -> None:
        """Kill the ledger's connection once it waits on the lock, mid-transaction."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.engine.connect() as admin:
                killed = admin.scalar(
                    text(
                        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                        "where application_name = :app and wait_event_type = 'Lock'"
                    ),
                    {"app": self.app},
                )
            if killed:
                return
            time.sleep(0.02)
        raise AssertionError("the ledger never blocked on the lock")

    def __exit__(self, *exc: object) -> None:
        self.conn.rollback()
        self.conn.close()
        self.engine.dispose()


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never came true"
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    yield
    assert not [t for t in threading.enumerate() if t.name == "pipebot-ledger"]
