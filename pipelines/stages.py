"""Adapters that turn each Transform style into one async stream of chunks.

Between stages items travel in chunks (non-empty lists), so the per-item cost is the
plugin's own call; plugins still see single items. Every adapter counts the items its
stage lets out, wraps exceptions raised by its own stage in ``StageError`` (errors
from upstream pass through untouched) and closes its upstream when it stops.

Sync plugin code runs in worker threads, never on the event loop: a sync ``process``
gets one thread hop per chunk (unless its class declares ``blocking = False``: quick,
CPU-light code such as a filter then runs inline, one chunk at a time), and a sync
generator (``produce`` or ``stream``) runs in a thread of its own bridged by bounded
queues. A chunk is handed on when it is full or
when its producer has gone quiet for ``FLUSH_AFTER`` seconds, so slow sources are not
held back. Queues are bounded, so memory stays bounded however many items pass.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from .core import Transform, transform_style
from .errors import StageError, TransformContractError

Chunks = AsyncIterator[list[Any]]
FLUSH_AFTER = 0.05
"""Seconds a partial chunk waits for more items before it is handed on."""
QUEUE_CHUNKS = 4
"""Chunks buffered between a producer and its consumer."""

_DONE = object()


class StageCounter:
    """Items out of each stage, readable while the run goes on."""

    def __init__(self, stages: int) -> None:
        self.items = [0] * stages


def _own_error(index: int, stage: object, exc: Exception) -> StageError:
    return StageError(index, type(stage).__name__, exc)


async def _no_chunks() -> Chunks:
    return
    yield  # pragma: no cover - makes this an async generator


def chain(stages: list[object], counter: StageCounter) -> Chunks:
    """Connect ``stages`` into one stream of the last stage's output chunks."""
    stream: Chunks = _no_chunks()
    for index, stage in enumerate(stages):
        try:
            stream = adapt(stage, index, stream, counter)
        except TransformContractError as exc:
            raise _own_error(index, stage, exc) from exc
    return stream


def adapt(stage: object, index: int, upstream: Chunks, counter: StageCounter) -> Chunks:
    """Return the stream of chunks that ``stage`` lets out."""
    style = transform_style(type(stage))
    if style is None:
        raise TransformContractError(
            f"{type(stage).__name__} must define exactly one of produce, process or stream"
        )
    method = getattr(stage, style)
    size = int(getattr(stage, "chunk_size", Transform.chunk_size))
    if style == "produce":
        if index != 0:
            raise TransformContractError(
                f"stage {index} ({type(stage).__name__}) is a source (produce) "
                "and must be the first stage"
            )
        if inspect.isasyncgenfunction(method) or inspect.iscoroutinefunction(method):
            items = _rechunk(lambda: _source_items(method), size)
        else:
            items = _ThreadBridge(method, size).chunks()
    elif style == "stream":
        if inspect.isasyncgenfunction(method):
            items = _rechunk(lambda: _stream_items(method(_flatten(upstream))), size)
        else:
            items = _thread_stream(method, upstream, size)
    elif inspect.isasyncgenfunction(method):
        items = _async_fanout(method, upstream)
    elif inspect.iscoroutinefunction(method):
        items = _async_process(method, upstream)
    else:
        items = _sync_process(method, upstream, bool(getattr(stage, "blocking", True)))
    return _counted(items, stage, index, counter, upstream)


async def _counted(
    items: Chunks, stage: object, index: int, counter: StageCounter, upstream: Chunks
) -> Chunks:
    counts = counter.items
    try:
        async for chunk in items:
            counts[index] += len(chunk)
            yield chunk
    except StageError:
        raise
    except Exception as exc:
        raise _own_error(index, stage, exc) from exc
    finally:
        await _aclose(items)
        await _aclose(upstream)


async def _aclose(items: AsyncIterator[Any]) -> None:
    close = getattr(items, "aclose", None)
    if close is not None:
        await close()


class RunAbandoned(Exception):
    """Raised inside a sync ``stream`` whose run stopped before its input ended."""


class _UpstreamError(Exception):
    """Carries an error raised upstream through a stage's own code unchanged."""

    def __init__(self, error: StageError) -> None:
        self.error = error


async def _flatten(chunks: Chunks) -> AsyncIterator[Any]:
    try:
        async for chunk in chunks:
            for item in chunk:
                yield item
    except StageError as exc:
        raise _UpstreamError(exc) from exc


async def _source_items(method: Callable[[], Any]) -> AsyncIterator[Any]:
    """The async iterable a source returns (awaiting it first when it is a coroutine)."""
    produced = method()
    if inspect.isawaitable(produced):
        produced = await produced
    if hasattr(produced, "__aiter__"):
        return produced  # type: ignore[no-any-return]
    return _iterate(produced)


async def _iterate(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def _stream_items(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    return items


class _Rechunker:
    """Groups an item stream into chunks, handing on a partial chunk when it goes quiet."""

    def __init__(self, open_items: Callable[[], Awaitable[AsyncIterator[Any]]], size: int) -> None:
        self._open = open_items
        self._size = size
        self._ready: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        self._partial: list[Any] = []
        self._items: AsyncIterator[Any] | None = None

    async def _fill(self) -> None:
        try:
            self._items = await self._open()
            async for item in self._items:
                self._partial.append(item)
                if len(self._partial) >= self._size:
                    await self._hand_on()
            if self._partial:
                await self._hand_on()
            await self._ready.put(_DONE)
        except Exception as exc:
            await self._ready.put(exc)

    async def _hand_on(self) -> None:
        full, self._partial = self._partial, []
        await self._ready.put(full)

    async def chunks(self) -> Chunks:
        filler = asyncio.create_task(self._fill())
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(self._ready.get(), FLUSH_AFTER)
                except TimeoutError:
                    if self._ready.empty() and self._partial:
                        chunk, self._partial = self._partial, []
                        yield chunk
                    continue
                if chunk is _DONE:
                    return
                yield _checked(chunk)
        finally:
            await _cancel(filler)
            if self._items is not None:
                await _aclose(self._items)


def _checked(chunk: Any) -> list[Any]:
    """A chunk from a queue, or the error that was sent in its place, raised."""
    if isinstance(chunk, _UpstreamError):
        raise chunk.error
    if isinstance(chunk, BaseException):
        raise chunk
    return chunk  # type: ignore[no-any-return]


def _rechunk(open_items: Callable[[], Awaitable[AsyncIterator[Any]]], size: int) -> Chunks:
    return _Rechunker(open_items, size).chunks()


async def _cancel(task: asyncio.Task[Any]) -> None:
    if not task.done():
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def _async_process(method: Callable[[Any], Any], upstream: Chunks) -> Chunks:
    async for chunk in upstream:
        out = []
        for item in chunk:
            result = await method(item)
            if result is not None:
                out.append(result)
        if out:
            yield out


async def _async_fanout(method: Callable[[Any], AsyncIterator[Any]], upstream: Chunks) -> Chunks:
    async for chunk in upstream:
        out = []
        for item in chunk:
            async for result in method(item):
                out.append(result)
        if out:
            yield out


async def _sync_process(method: Callable[[Any], Any], upstream: Chunks, blocking: bool) -> Chunks:
    if inspect.isgeneratorfunction(method):

        def apply(chunk: list[Any]) -> list[Any]:
            return [out for item in chunk for out in method(item)]

    else:

        def apply(chunk: list[Any]) -> list[Any]:
            return [out for item in chunk if (out := method(item)) is not None]

    async for chunk in upstream:
        out = await asyncio.to_thread(apply, chunk) if blocking else apply(chunk)
        if out:
            yield out


class _ThreadBridge:
    """Runs a sync iterable in its own thread and hands its items back in chunks."""

    def __init__(self, make_iter: Callable[[], Iterable[Any]], size: int) -> None:
        self._make_iter = make_iter
        self._size = size
        self._stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._out: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        self._thread = threading.Thread(target=self._work, name="pipebot-stage", daemon=True)

    def _put(self, value: Any) -> bool:
        future = asyncio.run_coroutine_threadsafe(self._out.put(value), self._loop)
        while True:
            try:
                future.result(timeout=0.1)
                return True
            except concurrent.futures.TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    return False
            except (concurrent.futures.CancelledError, RuntimeError):
                return False

    def _work(self) -> None:
        buffer: list[Any] = []
        started = time.monotonic()
        try:
            for item in self._make_iter():
                if self._stop.is_set():
                    return
                if not buffer:
                    started = time.monotonic()
                buffer.append(item)
                if len(buffer) >= self._size or time.monotonic() - started > FLUSH_AFTER:
                    if not self._put(buffer):
                        return
                    buffer = []
            if buffer and not self._put(buffer):
                return
            self._put(_DONE)
        except BaseException as exc:  # handed to the event loop and raised there
            self._put(exc)

    async def chunks(self) -> Chunks:
        self._thread.start()
        try:
            while True:
                chunk = await self._out.get()
                if chunk is _DONE:
                    return
                yield _checked(chunk)
        finally:
            self._stop.set()


class _InputFeed:
    """A blocking iterator over an async upstream, for a sync ``stream`` in a thread."""

    def __init__(self, upstream: Chunks) -> None:
        self._upstream = upstream
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.stop = threading.Event()

    async def pump(self) -> None:
        try:
            async for chunk in self._upstream:
                await asyncio.to_thread(self._offer, chunk)
            await asyncio.to_thread(self._offer, _DONE)
        except StageError as exc:
            await asyncio.to_thread(self._offer, _UpstreamError(exc))

    def _offer(self, value: Any) -> None:
        while not self.stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Any]:
        while not self.stop.is_set():
            try:
                chunk = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if chunk is _DONE:
                return
            if isinstance(chunk, BaseException):
                raise chunk
            yield from chunk
        # The run stopped early: say so, so a sink does not mistake it for the end of input.
        raise RunAbandoned("the run stopped before this stage's input ended")


async def _thread_stream(
    method: Callable[[Iterator[Any]], Iterable[Any]], upstream: Chunks, size: int
) -> Chunks:
    feed = _InputFeed(upstream)
    pump = asyncio.create_task(feed.pump())
    try:
        async for chunk in _ThreadBridge(lambda: method(iter(feed)), size).chunks():
            yield chunk
        await pump
    finally:
        feed.stop.set()
        await _cancel(pump)
