"""Deduplicate and SqlStateStore on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from pipelines.core import Transform
from pipelines.db import dispose_engine, get_engine
from pipelines.pipeline import Pipeline, StageSpec
from pipelines.state import SqlStateStore, StateStoreError
from pipelines.transforms.dedupe import Deduplicate, key_hash
from pipelines.transforms.sources import Range, StaticItems

from .conftest import Collect, RunChain


def rows(*ids: int) -> list[dict[str, Any]]:
    return [{"id": i, "site": "a", "meta": {"n": i % 3}} for i in ids]


async def test_second_run_passes_only_new_items(db_url: str, run_chain: RunChain) -> None:
    first, out = await run_chain(
        (StaticItems, {"items": rows(1, 2, 3, 2, 1)}),
        (Deduplicate, {"key": "id"}),
        name="news",
        database_url=db_url,
    )
    assert first.ok, first.failure
    assert [r["id"] for r in out] == [1, 2, 3]
    assert first.items == (5, 3, 3)

    second, out = await run_chain(
        (StaticItems, {"items": rows(3, 4, 1, 5, 4)}),
        (Deduplicate, {"key": "id"}),
        name="news",
        database_url=db_url,
    )
    assert second.ok, second.failure
    assert [r["id"] for r in out] == [4, 5]
    assert SqlStateStore(db_url).seen_count("news") == 5


async def test_scopes_keep_keys_apart_unless_shared(db_url: str, run_chain: RunChain) -> None:
    dedupe = (Deduplicate, {"key": "id", "database_url": db_url})
    await run_chain((StaticItems, {"items": rows(1, 2)}), dedupe, name="one")
    _, out = await run_chain((StaticItems, {"items": rows(1, 2, 3)}), dedupe, name="two")
    assert [r["id"] for r in out] == [1, 2, 3]  # another pipeline: another scope

    shared = (Deduplicate, {"key": "id", "database_url": db_url, "scope": "shared"})
    await run_chain((StaticItems, {"items": rows(1)}), shared, name="one")
    _, out = await run_chain((StaticItems, {"items": rows(1, 2)}), shared, name="two")
    assert [r["id"] for r in out] == [2]
    assert SqlStateStore(db_url).forget_keys("shared") == 2
    _, out = await run_chain((StaticItems, {"items": rows(1, 2)}), shared, name="two")
    assert [r["id"] for r in out] == [1, 2]


async def test_compound_and_dotted_keys(tmp_path: Path, run_chain: RunChain) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    items = [
        {"site": "a", "page": {"id": 1}},
        {"site": "b", "page": {"id": 1}},
        {"site": "a", "page": {"id": 1}, "other": "ignored"},
        {"site": "a"},
        {"site": "a", "page": {"id": None}},
    ]
    result, out = await run_chain(
        (StaticItems, {"items": items}),
        (Deduplicate, {"key": ["site", "page.id"]}),
        database_url=url,
    )
    dispose_engine(url)
    assert result.ok, result.failure
    assert out == [items[0], items[1], items[3]]  # a missing field counts as null
    assert key_hash(items[0], ["site", "page.id"]) == key_hash(items[2], ["site", "page.id"])
    assert key_hash({"a": 1}, ["a"]) != key_hash({"a": "1"}, ["a"])


async def test_one_insert_per_batch_not_per_item(tmp_path: Path, run_chain: RunChain) -> None:
    url = f"sqlite:///{tmp_path / 'batch.db'}"
    inserts: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO SEEN_KEYS"):
            inserts.append(statement)

    engine = get_engine(url)
    event.listen(engine, "before_cursor_execute", count)
    try:
        result, out = await run_chain(
            (Range, {"count": 5000}),
            (Deduplicate, {"key": "", "batch": 500}),
            database_url=url,
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
        dispose_engine(url)
    assert result.ok, result.failure
    assert out == list(range(5000))
    assert 10 <= len(inserts) <= 40, len(inserts)


async def test_concurrent_runs_let_each_key_through_once(db_url: str, run_chain: RunChain) -> None:
    ids = list(range(300))

    async def one_run() -> list[Any]:
        result, out = await run_chain(
            (StaticItems, {"items": rows(*ids)}),
            (Deduplicate, {"key": "id", "scope": "race", "batch": 20}),
            database_url=db_url,
        )
        assert result.ok, result.failure
        return out

    outs = await asyncio.gather(*(one_run() for _ in range(4)))
    passed = sorted(r["id"] for out in outs for r in out)
    assert passed == ids


def test_claim_keys_from_many_threads_claims_each_key_once(db_url: str) -> None:
    store = SqlStateStore(db_url)
    store.ensure_tables()
    claimed: list[set[str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def worker(turn: int) -> None:
        mine: set[str] = set()
        barrier.wait()
        for n in range(10):  # every thread offers every key, batches in a rotated order
            start = (n + turn) % 10 * 100
            mine |= store.claim_keys("threads", [str(i) for i in range(start, start + 150)])
        with lock:
            claimed.append(mine)

    threads = [threading.Thread(target=worker, args=(turn,)) for turn in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [key for mine in claimed for key in mine]
    assert len(every) == len(set(every))
    assert set(every) == {str(i) for i in range(1050)}


async def test_without_a_database_keys_last_one_run(
    run_chain: RunChain, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        result, out = await run_chain(
            (StaticItems, {"items": rows(1, 1, 2)}), (Deduplicate, {"key": "id"}), name="mem"
        )
        assert result.ok, result.failure
        assert [r["id"] for r in out] == [1, 2]
    warnings = [r for r in caplog.records if "kept in memory" in r.getMessage()]
    assert len(warnings) == 2  # once per run, not per item


async def test_upstream_failure_passes_through(tmp_path: Path, run_chain: RunChain) -> None:
    class Boom(Transform):
        async def produce(self) -> Any:
            yield {"id": 1}
            raise RuntimeError("source broke")

    result, _ = await run_chain(
        Boom, (Deduplicate, {"key": "id"}), database_url=f"sqlite:///{tmp_path / 'b.db'}"
    )
    dispose_engine(f"sqlite:///{tmp_path / 'b.db'}")
    assert result.status == "failed"
    assert result.failure is not None
    assert (result.failure.stage_index, result.failure.class_name) == (0, "Boom")


def test_deduplicate_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="key"):
        Deduplicate(key=[])
    with pytest.raises(ValueError, match="batch"):
        Deduplicate(key="id", batch=0)
    assert "secret" not in repr(Deduplicate("id", database_url="postgresql://u:secret@h/db"))


def test_state_round_trip(db_url: str) -> None:
    store = SqlStateStore(db_url)
    assert store.load_state("p", 0) == {}
    store.save_state("p", 0, {"cursor": "2026-01-01", "seen": [1, 2], "ü": None})
    store.save_state("p", 1, {"other": True})
    assert store.load_state("p", 0) == {"cursor": "2026-01-01", "seen": [1, 2], "ü": None}
    store.save_state("p", 0, {"cursor": "2026-02-01"})
    assert store.load_state("p", 0) == {"cursor": "2026-02-01"}
    assert store.load_state("p", 1) == {"other": True}
    assert SqlStateStore(db_url).load_state("p", 0) == {"cursor": "2026-02-01"}
    with pytest.raises(StateStoreError, match="stage 0 of pipeline 'p' is not JSON"):
        store.save_state("p", 0, {"bad": object()})


class CountRuns(Transform):
    blocking = False

    def process(self, item: Any) -> Any:
        self.context.state["runs"] = self.context.state.get("runs", 0) + 1
        return item


async def test_pipeline_state_persists_between_runs(db_url: str) -> None:
    out: list[Any] = []
    pipeline = Pipeline(
        "stateful",
        (StageSpec(Range, {"count": 1}), StageSpec(CountRuns), StageSpec(Collect, {"into": out})),
        state_store=SqlStateStore(db_url),
    )
    for _ in range(3):
        result = await pipeline.run()
        assert result.ok, result.failure
    assert SqlStateStore(db_url).load_state("stateful", 1) == {"runs": 3}


def test_unsupported_databases_are_refused_and_passwords_never_shown() -> None:
    with pytest.raises(StateStoreError, match="SQLite and PostgreSQL, not mysql") as info:
        SqlStateStore("mysql://u:s3cret@localhost/db")
    assert "s3cret" not in str(info.value)
    url = "postgresql://u:s3cret@127.0.0.1:1/db"
    try:
        assert "s3cret" not in repr(SqlStateStore(url))
    finally:
        dispose_engine(url)
