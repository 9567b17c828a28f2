"""``Deduplicate``: drop items whose key was seen before, in this run or an earlier one.

Keys are the values of one or more fields (dotted paths allowed; ``""`` is the item
itself, for plain items such as URL strings), hashed as the sha256 of their JSON; a
missing field counts as null. Seen hashes live in the
``seen_keys`` table of ``pipelines.state`` per scope (default: the pipeline name),
so runs of the same scope share them. Items are checked in batches, one
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` per batch in a worker thread: an
item passes when its hash is newly inserted, so of two concurrent runs offering the
same key exactly one lets it through. A key counts as seen once it has passed here,
even if a later stage then fails.

Without a database (no ``database_url`` and none in the run context) the hashes are
kept in memory for the run only, and a warning says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from ..core import Transform
from ..state import SqlStateStore
from .extract import lookup

logger = logging.getLogger(__name__)

_END = object()


class _Failed:
    """An error raised while reading the input, handed to the consumer."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def key_hash(item: Any, keys: Sequence[str]) -> str:
    """The sha256 hex digest of the JSON list of ``item``'s values at ``keys``."""
    values = [lookup(item, key) for key in keys]
    text = json.dumps(
        values, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Deduplicate(Transform):
    """Let through only the first item of each key; see the module doc."""

    def __init__(
        self,
        key: str | Sequence[str],
        scope: str | None = None,
        database_url: str | None = None,
        batch: int = 500,
    ) -> None:
        keys = [key] if isinstance(key, str) else list(key)
        if not keys or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"key must be a field name or a list of them, got {key!r}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.keys = keys
        self.scope = scope
        self.database_url = database_url
        self.batch = batch
        self._store: SqlStateStore | None = None
        self._memory: set[str] = set()
        self._scope = scope or ""

    def __repr__(self) -> str:  # no database URL: it may carry a password
        return f"Deduplicate(key={self.keys!r}, scope={self.scope!r}, batch={self.batch})"

    async def setup(self) -> None:
        context = getattr(self, "context", None)
        self._scope = self.scope or (context.pipeline if context is not None else "")
        if not self._scope:
            raise ValueError("Deduplicate needs a scope outside a pipeline run")
        url = self.database_url or (context.database_url if context is not None else None)
        if url:
            store = SqlStateStore(url)
            await asyncio.to_thread(store.ensure_tables)
            self._store = store
        else:
            log = context.logger if context is not None else logger
            log.warning(
                "Deduplicate(scope=%r): no database_url, so seen keys are kept in memory "
                "for this run only",
                self._scope,
            )

    async def stream(self, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async with aclosing(ready_batches(items, self.batch)) as batches:
            async for batch in batches:
                for item in await self._keep_new(batch):
                    yield item

    async def _keep_new(self, batch: list[Any]) -> list[Any]:
        store = self._store
        if store is not None:
            return await asyncio.to_thread(self._claim, store, batch)
        hashes = [key_hash(item, self.keys) for item in batch]
        new = set(hashes) - self._memory
        self._memory |= new
        return _first_of_each(batch, hashes, new)

    def _claim(self, store: SqlStateStore, batch: list[Any]) -> list[Any]:
        hashes = [key_hash(item, self.keys) for item in batch]
        new = store.claim_keys(self._scope, hashes)
        return _first_of_each(batch, hashes, new)


def _first_of_each(batch: list[Any], hashes: list[str], new: set[str]) -> list[Any]:
    """The items whose hash is in ``new``, only the first of any repeated hash."""
    kept = []
    for item, digest in zip(batch, hashes, strict=True):
        if digest in new:
            new.discard(digest)
            kept.append(item)
    return kept


async def ready_batches(items: AsyncIterator[Any], size: int) -> AsyncGenerator[list[Any], None]:
    """Group ``items`` into lists of up to ``size``, waiting only for the first of each.

    A pump task reads ahead into a queue of ``size`` items, so a batch holds whatever
    has arrived: full batches while items flow, partial ones when the input goes
    quiet. Errors from ``items`` are raised unchanged. Close it (``aclosing``) to
    stop the pump.
    """
    waiting: asyncio.Queue[Any] = asyncio.Queue(maxsize=size)

    async def pump() -> None:
        try:
            async for item in items:
                await waiting.put(item)
            await waiting.put(_END)
        except Exception as exc:  # e.g. an upstream stage's error: handed on as it is
            await waiting.put(_Failed(exc))

    pumping = asyncio.create_task(pump())
    try:
        while True:
            batch, ended = await _next_batch(waiting, size)
            if batch:
                yield batch
            if ended:
                return
    finally:
        pumping.cancel()
        await asyncio.gather(pumping, return_exceptions=True)


async def _next_batch(waiting: asyncio.Queue[Any], size: int) -> tuple[list[Any], bool]:
    """Up to ``size`` queued items (waiting only for the first) and whether input ended."""
    batch: list[Any] = []
    entry = await waiting.get()
    while True:
        if entry is _END:
            return batch, True
        if isinstance(entry, _Failed):
            raise entry.error
        batch.append(entry)
        if len(batch) >= size or waiting.empty():
            return batch, False
        entry = waiting.get_nowait()
