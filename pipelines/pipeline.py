"""A runnable pipeline: a named chain of stage specifications.

``Pipeline`` holds classes and kwargs, not instances: every run builds fresh stage
instances, so two runs never share per-run state, and ``state`` (kept between runs)
lives in a ``StateStore`` instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from .core import RunResult, RunStatus, StageContext, StageFailure
from .errors import StageError
from .stages import StageCounter, chain

logger = logging.getLogger(__name__)


class StateStore(Protocol):
    """Keeps each stage's ``context.state`` between runs."""

    def load_state(self, pipeline: str, stage_index: int) -> dict[str, Any]: ...

    def save_state(self, pipeline: str, stage_index: int, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class StageSpec:
    """One stage of a chain: the class to build and the kwargs to build it with."""

    cls: type
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    class_path: str = ""

    @property
    def name(self) -> str:
        return self.cls.__name__

    def build(self) -> object:
        return self.cls(**dict(self.kwargs))


@dataclass(frozen=True)
class RunOptions:
    """How one run was asked for."""

    run_id: str | None = None
    trigger: str = "manual"
    scheduled_for: datetime | None = None
    requested_by: str | None = None
    timeout: float | None = None
    """Overrides the pipeline's own timeout when set."""


@dataclass(frozen=True)
class Pipeline:
    """A named chain of stages with its run policy."""

    name: str
    stages: tuple[StageSpec, ...]
    description: str = ""
    timeout: float | None = None
    state_store: StateStore | None = field(default=None, compare=False, repr=False)
    database_url: str | None = field(default=None, compare=False, repr=False)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.stages)

    async def run(self, options: RunOptions | None = None) -> RunResult:
        """Run the chain once; failures and timeouts are reported in the result.

        Cancellation (shutdown) propagates after teardown, so the caller records it.
        """
        opts = options or RunOptions()
        run_id = opts.run_id or uuid.uuid4().hex
        timeout = opts.timeout if opts.timeout is not None else self.timeout
        counter = StageCounter(len(self.stages))
        started = datetime.now(UTC)
        run = _Run(self, opts, run_id, counter)
        status: RunStatus = "success"
        failure: StageFailure | None = None
        try:
            async with asyncio.timeout(timeout):
                await run.execute()
        except TimeoutError:
            status = "timeout"
            failure = StageFailure(-1, self.name, "TimeoutError", f"run exceeded {timeout}s")
        except StageError as exc:
            status, failure = "failed", _failure(exc)
        if status == "success":
            await run.save_state()
        return RunResult(
            pipeline=self.name,
            run_id=run_id,
            status=status,
            started_at=started,
            finished_at=datetime.now(UTC),
            items=tuple(counter.items),
            stage_names=self.stage_names,
            failure=failure,
        )


def _failure(exc: StageError) -> StageFailure:
    original = exc.original
    return StageFailure(exc.index, exc.class_name, type(original).__name__, str(original))


class _Run:
    """The instances and contexts of one run, set up and torn down in order."""

    def __init__(
        self, pipeline: Pipeline, opts: RunOptions, run_id: str, counter: StageCounter
    ) -> None:
        self.pipeline = pipeline
        self.opts = opts
        self.run_id = run_id
        self.counter = counter
        self.instances: list[object] = []
        self.contexts: list[StageContext] = []

    async def execute(self) -> None:
        await self._build()
        ready = 0
        completed = False
        try:
            for index, instance in enumerate(self.instances):
                await _call_hook(instance, "setup", index)
                ready += 1
            output = chain(self.instances, self.counter)
            try:
                async for _ in output:
                    pass
            finally:
                await output.aclose()  # type: ignore[attr-defined]
            completed = True
        finally:
            # A teardown error fails an otherwise good run; after a failure it is only logged.
            await self._teardown(ready, raise_errors=completed)

    async def _build(self) -> None:
        store = self.pipeline.state_store
        for index, spec in enumerate(self.pipeline.stages):
            try:
                instance = spec.build()
            except Exception as exc:
                raise StageError(index, spec.name, exc) from exc
            state: dict[str, Any] = {}
            if store is not None:
                state = await asyncio.to_thread(store.load_state, self.pipeline.name, index)
            context = StageContext(
                pipeline=self.pipeline.name,
                run_id=self.run_id,
                trigger=self.opts.trigger,
                stage_index=index,
                stage_name=spec.name,
                logger=logging.getLogger(f"pipebot.run.{self.pipeline.name}.{index}"),
                state=state,
                scheduled_for=self.opts.scheduled_for,
                requested_by=self.opts.requested_by,
                database_url=self.pipeline.database_url,
            )
            try:
                instance.context = context  # type: ignore[attr-defined]
            except AttributeError:  # slotted or frozen plugin: it simply gets no context
                pass
            self.instances.append(instance)
            self.contexts.append(context)

    async def _teardown(self, ready: int, *, raise_errors: bool) -> None:
        errors: list[StageError] = []
        for index in reversed(range(ready)):
            try:
                await _call_hook(self.instances[index], "teardown", index)
            except StageError as exc:
                logger.error("pipeline %s: %s", self.pipeline.name, exc)
                errors.append(exc)
        if errors and raise_errors:
            raise errors[-1]

    async def save_state(self) -> None:
        store = self.pipeline.state_store
        if store is None:
            return
        for context in self.contexts:
            await asyncio.to_thread(
                store.save_state, self.pipeline.name, context.stage_index, context.state
            )


async def _call_hook(instance: object, name: str, index: int) -> None:
    hook = getattr(instance, name, None)
    if hook is None:
        return
    try:
        if inspect.iscoroutinefunction(hook):
            await hook()
        else:
            await asyncio.to_thread(hook)
    except Exception as exc:
        raise StageError(index, type(instance).__name__, exc) from exc
