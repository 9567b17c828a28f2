"""Tiny Transform plugins the subprocess tests of the entry points run from pipelines.yml.

pipelines.yml imports them with ``allowed_modules: [tests.entry_plugins]``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.core import Transform


class Count(Transform):
    """A source: the numbers 1..n."""

    def __init__(self, n: int = 3) -> None:
        self.n = n

    def produce(self) -> Iterator[int]:
        yield from range(1, self.n + 1)


class Fail(Transform):
    """Raises on the first item it sees."""

    blocking = False

    def __init__(self, message: str = "boom") -> None:
        self.message = message

    def process(self, item: Any) -> Any:
        raise RuntimeError(self.message)


class Slow(Transform):
    """Sleeps ``seconds`` per item, on the event loop, so a cancelled run stops at once.

    With ``started``, it first creates that file: the test then knows a run is under way.
    """

    def __init__(self, seconds: float = 5.0, started: str | None = None) -> None:
        self.seconds = seconds
        self.started = started

    async def process(self, item: Any) -> Any:
        if self.started is not None:
            Path(self.started).touch()
        await asyncio.sleep(self.seconds)
        return item


class Mark(Transform):
    """Appends one line per run (at teardown) to the file ``path``: the tests count runs.

    The line is ``<pid> <trigger>``, so a test can tell start-up runs from scheduled ones.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, item: Any) -> Any:
        return item

    def teardown(self) -> None:
        with Path(self.path).open("a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {self.context.trigger}\n")
