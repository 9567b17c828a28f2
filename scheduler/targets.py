"""What a schedule runs: a configured pipeline or a callable registered in code.

The scheduler knows targets by name only; the composition root registers them.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pipelines.pipeline import Pipeline, RunOptions


@dataclass(frozen=True)
class Outcome:
    """How a run ended, in the ledger's terms."""

    status: str
    error: str | None = None
    items: tuple[int, ...] = ()
    stages: tuple[str, ...] = ()
    recorded: bool = False
    """The result is in the ledger already (written by a remote worker or the executor)."""
    finished_at: datetime | None = None
    """When it ended, if known; otherwise the dispatcher takes the time it learns of it."""


class Target(Protocol):
    """Something the scheduler can run by name."""

    @property
    def description(self) -> str: ...

    @property
    def timeout(self) -> float | None: ...

    async def run(self, options: RunOptions) -> Outcome: ...


class PipelineTarget:
    """Runs a configured pipeline; the pipeline reports its own failures and timeouts."""

    def __init__(self, pipeline: Pipeline, description: str = "") -> None:
        self.pipeline = pipeline
        self.description = description or pipeline.description
        self.timeout = pipeline.timeout

    async def run(self, options: RunOptions) -> Outcome:
        result = await self.pipeline.run(options)
        return Outcome(
            status=result.status,
            error=None if result.failure is None else str(result.failure),
            items=result.items,
            stages=result.stage_names,
        )


_callable_threads = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pipebot-job")


class CallableTarget:
    """Runs a function given in code (sync in a worker thread, or a coroutine function).

    A sync function cannot be interrupted: on timeout the run is recorded as timed out
    and the scheduler moves on, while the thread finishes in the background.
    """

    def __init__(self, func: Callable[[], Any], description: str = "") -> None:
        self.func = func
        self.description = description or (inspect.getdoc(func) or "").split("\n")[0]
        self.timeout: float | None = None
        self._coroutine = inspect.iscoroutinefunction(func)

    async def run(self, options: RunOptions) -> Outcome:
        timeout = options.timeout
        try:
            if timeout is None:  # no deadline: no timeout context to build per run
                await self._call()
            else:
                async with asyncio.timeout(timeout):
                    await self._call()
        except TimeoutError:
            return Outcome(status="timeout", error=f"run exceeded {timeout}s")
        except Exception as exc:
            return Outcome(status="failed", error=f"{type(exc).__name__}: {exc}")
        return Outcome(status="success")

    async def _call(self) -> None:
        if self._coroutine:
            await self.func()
        else:
            await asyncio.get_running_loop().run_in_executor(_callable_threads, self.func)
