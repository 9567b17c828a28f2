"""Shared fixtures for the transform and sink tests: run a chain, collect what comes out."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import pytest

from pipelines.core import RunResult, Transform
from pipelines.pipeline import Pipeline, StageSpec


class Collect(Transform):
    """Appends every item to the list it is given and passes it on."""

    blocking = False

    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def process(self, item: Any) -> Any:
        self.into.append(item)
        return item


Stage = type | tuple[type, Mapping[str, Any]]


class RunChain(Protocol):
    def __call__(
        self, *stages: Stage, name: str = ..., database_url: str | None = ..., timeout: float = ...
    ) -> Awaitable[tuple[RunResult, list[Any]]]: ...


@pytest.fixture
def run_chain() -> RunChain:
    """``await run_chain(Cls, (Cls, kwargs), ...)``: the run's result and the items out."""

    async def run(
        *stages: Stage, name: str = "test", database_url: str | None = None, timeout: float = 30
    ) -> tuple[RunResult, list[Any]]:
        out: list[Any] = []
        specs = [StageSpec(s) if isinstance(s, type) else StageSpec(s[0], s[1]) for s in stages]
        specs.append(StageSpec(Collect, {"into": out}))
        pipeline = Pipeline(name, tuple(specs), timeout=timeout, database_url=database_url)
        return await pipeline.run(), out

    return run
