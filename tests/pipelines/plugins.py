"""Plugin classes the config and registry tests import through the registry."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pipelines.core import Transform

IMPORTED: list[str] = []
"""Modules with an import-time side effect append their name here when imported."""

FORBIDDEN = "tests.pipelines.forbidden_plugin"
"""A module with an import-time side effect (it appends to ``IMPORTED``)."""


def unload_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fixture body: ``FORBIDDEN`` unloaded before and after; yields the list it appends to."""
    imported: list[str] = []
    monkeypatch.setattr(sys.modules[__name__], "IMPORTED", imported)
    monkeypatch.delitem(sys.modules, FORBIDDEN, raising=False)
    yield imported
    sys.modules.pop(FORBIDDEN, None)


NOT_A_CLASS = 42


class Numbers(Transform):
    """A source: 1..count."""

    def __init__(self, count: int = 3) -> None:
        self.count = count

    def produce(self) -> Iterator[int]:
        yield from range(1, self.count + 1)


class Double(Transform):
    blocking = False

    def process(self, item: int) -> int:
        return item * 2


class Label(Transform):
    """Needs ``prefix``; ``sep`` is optional."""

    blocking = False

    def __init__(self, prefix: str, sep: str = ":") -> None:
        self.prefix = prefix
        self.sep = sep

    def process(self, item: Any) -> str:
        return f"{self.prefix}{self.sep}{item}"


class Options(Transform):
    """Takes any keyword argument."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    async def stream(self, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for item in items:
            yield item


class PositionalOnly(Transform):
    """Its one parameter cannot be given by name."""

    def __init__(self, value: int, /) -> None:
        self.value = value

    def process(self, item: Any) -> Any:
        return item


class Plain:
    """Follows no Transform style."""


class TwoStyles(Transform):
    def produce(self) -> Iterator[int]:
        yield 1

    def process(self, item: int) -> int:
        return item


def helper() -> None:
    """A function, not a class."""
