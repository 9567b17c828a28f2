"""The Transform contract, the run context and the result of a run.

A pipeline is a chain of Transform instances. Items stream from stage to stage as
async iterators, so memory stays bounded however many items pass. A Transform
implements exactly one of these styles (sync or ``async def`` alike):

- ``produce(self)``: a source; yields items from nothing (first stage only).
- ``process(self, item)``: per item; returns one item, ``None`` to drop it, or is a
  generator yielding any number of items.
- ``stream(self, items)``: the whole stream; an async generator over an async
  iterator, or a sync generator over a plain iterator (run in a worker thread).

``setup(self)`` and ``teardown(self)`` (sync or async) run around each run; teardown
runs even when the run fails. The runner sets ``self.context`` (a ``StageContext``)
before ``setup``. Sync code runs in a worker thread, never on the event loop, unless
the class declares ``blocking = False`` (quick, CPU-light per-item code).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

RunStatus = Literal["success", "failed", "timeout", "cancelled"]
STYLES = ("produce", "process", "stream")


class Transform:
    """Optional base class for plugins: documents the contract and holds the context.

    Subclass it and define one of ``produce``, ``process`` or ``stream``. Plain classes
    that follow the same duck-typed contract work too.
    """

    context: StageContext
    #: Items per chunk handed from stage to stage.
    chunk_size: ClassVar[int] = 256
    #: Whether sync hooks may block (I/O, long CPU): then they run in a worker thread.
    #: Declare False for quick, pure transforms (filters, maps) to run them inline.
    blocking: ClassVar[bool] = True


@dataclass
class StageContext:
    """What one stage knows about the run it is part of."""

    pipeline: str
    run_id: str
    trigger: str
    stage_index: int
    stage_name: str
    logger: logging.Logger
    state: dict[str, Any] = field(default_factory=dict)
    """Kept between runs of this pipeline (persisted when the runner has a state store)."""
    scheduled_for: datetime | None = None
    requested_by: str | None = None
    database_url: str | None = None
    """The database shared with the scheduler, for transforms that persist things."""


@dataclass(frozen=True)
class StageFailure:
    """Where and how a run failed."""

    stage_index: int
    class_name: str
    error_type: str
    message: str

    def __str__(self) -> str:
        return f"stage {self.stage_index} ({self.class_name}): {self.error_type}: {self.message}"


@dataclass(frozen=True)
class RunResult:
    """The outcome of one pipeline run."""

    pipeline: str
    run_id: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime
    items: tuple[int, ...]
    """Items that came out of each stage, in chain order."""
    stage_names: tuple[str, ...] = ()
    failure: StageFailure | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def items_out(self) -> int:
        return self.items[-1] if self.items else 0

    def summary(self) -> str:
        """One line for logs and terminals."""
        line = (
            f"{self.pipeline}: {self.status} items={self.items_out} duration={self.duration:.2f}s"
        )
        if self.failure is not None:
            line += f" error={self.failure}"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration": self.duration,
            "items": list(self.items),
            "stages": list(self.stage_names),
            "failure": None if self.failure is None else str(self.failure),
        }


def transform_style(cls: type) -> str | None:
    """Return the style a class implements (``produce``, ``process``, ``stream``) or None."""
    found = [name for name in STYLES if callable(getattr(cls, name, None))]
    return found[0] if len(found) == 1 else None


def stage_name(obj: object) -> str:
    return type(obj).__name__
