"""The Transform contract: every plugin style, context, hooks, failures, timeouts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pipelines.core import Transform
from pipelines.pipeline import Pipeline, RunOptions, StageSpec

SEEN: dict[str, Any] = {}


class SyncSource(Transform):
    def __init__(self, count: int = 5) -> None:
        self.count = count

    def produce(self) -> Iterator[int]:
        SEEN["source_thread"] = threading.current_thread().name
        yield from range(self.count)


class AsyncSource(Transform):
    def __init__(self, count: int = 5) -> None:
        self.count = count

    async def produce(self) -> AsyncIterator[int]:
        for i in range(self.count):
            yield i


class ListSource(Transform):
    async def produce(self) -> list[int]:
        return [1, 2, 3]


class SyncDouble(Transform):
    def process(self, item: int) -> int:
        SEEN["process_thread"] = threading.current_thread().name
        return item * 2


class InlineDouble(Transform):
    blocking = False

    def process(self, item: int) -> int:
        SEEN["inline_thread"] = threading.current_thread().name
        return item * 2


class AsyncDouble(Transform):
    async def process(self, item: int) -> int:
        await asyncio.sleep(0)
        return item * 2


class DropOdd(Transform):
    def process(self, item: int) -> int | None:
        return item if item % 2 == 0 else None


class SyncSplit(Transform):
    def process(self, item: int) -> Iterator[int]:
        yield item
        yield -item


class AsyncSplit(Transform):
    async def process(self, item: int) -> AsyncIterator[int]:
        yield item
        yield item + 100


class SyncRunningTotal(Transform):
    def stream(self, items: Iterator[int]) -> Iterator[int]:
        total = 0
        for item in items:
            total += item
            yield total


class AsyncPairs(Transform):
    async def stream(self, items: AsyncIterator[int]) -> AsyncIterator[tuple[int, int]]:
        previous = None
        async for item in items:
            if previous is not None:
                yield (previous, item)
            previous = item


class Explode(Transform):
    def __init__(self, at: int = 3) -> None:
        self.at = at

    def process(self, item: int) -> int:
        if item == self.at:
            raise ValueError(f"cannot handle {item}")
        return item


class Hooks(Transform):
    events: list[str] = []

    def setup(self) -> None:
        Hooks.events.append(f"setup:{self.context.stage_index}:{self.context.trigger}")

    async def process(self, item: int) -> int:
        return item

    async def teardown(self) -> None:
        Hooks.events.append("teardown")


class Counter(Transform):
    """Keeps a run counter in its state between runs."""

    def setup(self) -> None:
        self.context.state["runs"] = self.context.state.get("runs", 0) + 1

    def process(self, item: int) -> int:
        return item


class Hang(Transform):
    async def process(self, item: int) -> int:
        await asyncio.sleep(3600)
        return item


class Blocker(Transform):
    def process(self, item: int) -> int:
        time.sleep(0.3)
        return item


def pipeline(*stages: StageSpec, timeout: float | None = None) -> Pipeline:
    return Pipeline(name="test", stages=tuple(stages), timeout=timeout)


async def collect(*stages: StageSpec) -> list[Any]:
    out: list[Any] = []

    class Collect(Transform):
        blocking = False

        def process(self, item: Any) -> Any:
            out.append(item)
            return item

    result = await pipeline(*stages, StageSpec(Collect)).run()
    assert result.status == "success", result.failure
    return out


@pytest.mark.parametrize("source", [SyncSource, AsyncSource])
@pytest.mark.parametrize("double", [SyncDouble, InlineDouble, AsyncDouble])
async def test_per_item_styles_map_every_item(source: type, double: type) -> None:
    out = await collect(StageSpec(source, {"count": 600}), StageSpec(double))
    assert sorted(out) == [i * 2 for i in range(600)]


async def test_sync_code_runs_off_the_event_loop_unless_declared_quick() -> None:
    await collect(StageSpec(SyncSource), StageSpec(SyncDouble), StageSpec(InlineDouble))
    loop_thread = threading.current_thread().name
    assert SEEN["source_thread"] != loop_thread
    assert SEEN["process_thread"] != loop_thread
    assert SEEN["inline_thread"] == loop_thread


async def test_source_may_return_a_list() -> None:
    assert await collect(StageSpec(ListSource)) == [1, 2, 3]


async def test_none_drops_and_generators_fan_out() -> None:
    out = await collect(StageSpec(AsyncSource), StageSpec(DropOdd), StageSpec(SyncSplit))
    assert out == [0, 0, 2, -2, 4, -4]
    out = await collect(StageSpec(AsyncSource, {"count": 2}), StageSpec(AsyncSplit))
    assert out == [0, 100, 1, 101]


async def test_whole_stream_styles() -> None:
    assert await collect(StageSpec(AsyncSource), StageSpec(SyncRunningTotal)) == [0, 1, 3, 6, 10]
    pairs = await collect(StageSpec(SyncSource, {"count": 4}), StageSpec(AsyncPairs))
    assert pairs == [(0, 1), (1, 2), (2, 3)]


async def test_items_are_counted_per_stage() -> None:
    result = await pipeline(
        StageSpec(AsyncSource, {"count": 10}), StageSpec(DropOdd), StageSpec(SyncSplit)
    ).run()
    assert result.items == (10, 5, 10)
    assert result.stage_names == ("AsyncSource", "DropOdd", "SyncSplit")


@pytest.mark.parametrize(
    "stages",
    [
        (StageSpec(AsyncSource), StageSpec(Explode)),
        (StageSpec(SyncSource), StageSpec(Explode)),
        (StageSpec(AsyncSource), StageSpec(Explode), StageSpec(SyncRunningTotal)),
        (StageSpec(AsyncSource), StageSpec(Explode), StageSpec(AsyncPairs)),
    ],
)
async def test_failing_stage_is_reported_with_index_and_class(stages: tuple[StageSpec]) -> None:
    result = await pipeline(*stages).run()
    assert result.status == "failed"
    assert result.failure is not None
    assert (result.failure.stage_index, result.failure.class_name) == (1, "Explode")
    assert result.failure.error_type == "ValueError"
    assert "cannot handle 3" in str(result.failure)
    assert "stage 1 (Explode)" in result.summary()


async def test_constructor_error_is_a_stage_failure() -> None:
    result = await pipeline(StageSpec(AsyncSource), StageSpec(Explode, {"nope": 1})).run()
    assert result.status == "failed"
    assert result.failure is not None and result.failure.stage_index == 1


async def test_setup_and_teardown_wrap_the_run_even_on_failure() -> None:
    Hooks.events.clear()
    options = RunOptions(trigger="schedule")
    await pipeline(StageSpec(AsyncSource), StageSpec(Hooks)).run(options)
    assert Hooks.events == ["setup:1:schedule", "teardown"]
    Hooks.events.clear()
    result = await pipeline(StageSpec(AsyncSource), StageSpec(Hooks), StageSpec(Explode)).run()
    assert result.status == "failed"
    assert Hooks.events == ["setup:1:manual", "teardown"]


async def test_context_carries_run_identity() -> None:
    contexts = []

    class Peek(Transform):
        async def process(self, item: int) -> int:
            contexts.append(self.context)
            return item

    await pipeline(StageSpec(ListSource), StageSpec(Peek)).run(
        RunOptions(run_id="r-1", trigger="api", requested_by="ann")
    )
    ctx = contexts[0]
    assert (ctx.pipeline, ctx.run_id, ctx.trigger, ctx.requested_by) == (
        "test",
        "r-1",
        "api",
        "ann",
    )
    assert ctx.logger.name == "pipebot.run.test.1"


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[tuple[str, int], dict[str, Any]] = {}

    def load_state(self, pipeline: str, stage_index: int) -> dict[str, Any]:
        return dict(self.data.get((pipeline, stage_index), {}))

    def save_state(self, pipeline: str, stage_index: int, state: dict[str, Any]) -> None:
        self.data[(pipeline, stage_index)] = dict(state)


async def test_state_is_kept_between_runs_and_only_saved_on_success() -> None:
    store = MemoryStore()
    good = Pipeline("p", (StageSpec(ListSource), StageSpec(Counter)), state_store=store)
    await good.run()
    await good.run()
    assert store.data[("p", 1)] == {"runs": 2}
    bad = Pipeline(
        "p",
        (StageSpec(ListSource), StageSpec(Counter), StageSpec(Explode, {"at": 2})),
        state_store=store,
    )
    assert (await bad.run()).status == "failed"
    assert store.data[("p", 1)] == {"runs": 2}


async def test_timeout_cancels_a_hung_run() -> None:
    started = time.monotonic()
    result = await pipeline(StageSpec(ListSource), StageSpec(Hang), timeout=0.2).run()
    assert result.status == "timeout"
    assert time.monotonic() - started < 2


async def test_blocking_sync_code_does_not_stall_the_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    result = await pipeline(StageSpec(ListSource), StageSpec(Blocker)).run()
    task.cancel()
    assert result.status == "success"
    assert ticks >= 10  # the loop kept turning through 0.3 s of blocking work


async def test_cancellation_propagates_after_teardown() -> None:
    Hooks.events.clear()
    task = asyncio.create_task(
        pipeline(StageSpec(ListSource), StageSpec(Hooks), StageSpec(Hang)).run()
    )
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert Hooks.events[-1] == "teardown"


async def test_a_million_items_stream_in_bounded_memory() -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        result = await pipeline(
            StageSpec(AsyncSource, {"count": 1_000_000}), StageSpec(InlineDouble)
        ).run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.items == (1_000_000, 1_000_000)
    assert peak < 20 * 1024 * 1024  # chunks in flight, never the whole stream


class LateSource(Transform):
    def produce(self) -> Iterator[int]:
        yield 1


async def test_source_in_the_middle_is_a_stage_failure_not_a_crash() -> None:
    result = await pipeline(StageSpec(ListSource), StageSpec(LateSource)).run()
    assert result.status == "failed"
    assert result.failure is not None
    assert (result.failure.stage_index, result.failure.class_name) == (1, "LateSource")
    assert "must be the first stage" in result.failure.message


class SyncSinkSeesAbandon(Transform):
    """A sync whole-stream sink that records whether its input ended or was abandoned."""

    outcome: list[str] = []

    def stream(self, items: Iterator[int]) -> Iterator[int]:
        try:
            yield from items
        except Exception as exc:
            SyncSinkSeesAbandon.outcome.append(type(exc).__name__)
            raise
        SyncSinkSeesAbandon.outcome.append("ended")


async def test_sync_stream_is_told_when_its_run_is_abandoned() -> None:
    SyncSinkSeesAbandon.outcome.clear()
    await pipeline(StageSpec(AsyncSource, {"count": 3}), StageSpec(SyncSinkSeesAbandon)).run()
    assert SyncSinkSeesAbandon.outcome == ["ended"]
    SyncSinkSeesAbandon.outcome.clear()
    result = await pipeline(
        StageSpec(AsyncSource, {"count": 1_000_000}),  # far more than the stages buffer
        StageSpec(SyncSinkSeesAbandon),
        StageSpec(Explode, {"at": 1500}),
    ).run()
    assert result.status == "failed"
    for _ in range(200):  # the sink's thread notices the stop on its own schedule
        if SyncSinkSeesAbandon.outcome:
            break
        await asyncio.sleep(0.05)
    assert SyncSinkSeesAbandon.outcome != ["ended"]
