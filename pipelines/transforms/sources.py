"""Small sources for tests, examples and benchmarks."""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..core import Transform

logger = logging.getLogger(__name__)


class StaticItems(Transform):
    """Emit a fixed list of items (a fresh deep copy each run, so runs never share them)."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)

    async def produce(self) -> AsyncIterator[Any]:
        for item in copy.deepcopy(self.items):
            yield item


class Range(Transform):
    """Emit the integers ``start, start + 1, ...``: ``count`` of them."""

    def __init__(self, count: int, start: int = 0) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self.count = count
        self.start = start

    async def produce(self) -> AsyncIterator[int]:
        for number in range(self.start, self.start + self.count):
            yield number
