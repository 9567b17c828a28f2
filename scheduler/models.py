"""Plain data the scheduler stores and reports: schedules, runs, health.

Schedules are data rows, never pickles: a trigger is stored as its kind plus
JSON-able fields, and a target as a pipeline name (or the name a code callable is
registered under).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol, TypedDict, get_args

Owner = Literal["yaml", "chat", "api", "code", "cli"]
Overlap = Literal["skip", "buffer_one", "cancel_other", "allow"]
Catchup = Literal["latest", "all", "none"]
Trigger = Literal["schedule", "manual", "startup", "api", "chat", "catchup", "cli"]
RunStatus = Literal[
    "running", "success", "failed", "timeout", "skipped", "missed", "abandoned", "cancelled"
]

OWNERS: tuple[str, ...] = get_args(Owner)
OVERLAPS: tuple[str, ...] = get_args(Overlap)
CATCHUPS: tuple[str, ...] = get_args(Catchup)
FINAL_STATUSES = frozenset(get_args(RunStatus)) - {"running"}
FAILURE_STATUSES = ("failed", "timeout", "abandoned")
"""Statuses that mean a run went wrong (alerts, the status page's failures)."""
_DEFINITION_JSON = json.JSONEncoder(sort_keys=True, default=str)
"""``json.dumps(..., sort_keys=True, default=str)`` without an encoder per call."""
CATCHUP_CAP = 100
"""Most missed instants run again with ``catchup: all``."""


class FireTimes(Protocol):
    """What the engine needs of a trigger: the next fire time strictly after a moment."""

    def next_fire(self, after: datetime) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class Policies:
    """How a schedule behaves when runs overlap, are missed or hang."""

    overlap: Overlap = "skip"
    catchup: Catchup = "latest"
    coalesce: bool = True
    misfire_grace_time: float | None = None
    """Seconds a run may start late; None: no limit (late runs still run)."""
    jitter: float = 0.0
    timeout: float | None = None
    max_instances: int = 1


_POLICY_FIELDS = tuple(f.name for f in dataclass_fields(Policies))


@dataclass(frozen=True, slots=True)
class ScheduleDef:
    """A schedule as stored: what runs, when, how, and who owns it."""

    name: str
    pipeline: str
    kind: Literal["cron", "interval", "date"]
    fields: dict[str, Any]
    """The trigger's own fields, e.g. ``{"expression": "0 9 * * 1-5"}``."""
    timezone: str
    policies: Policies = field(default_factory=Policies)
    owner: Owner = "code"
    enabled: bool = True
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def definition(self) -> dict[str, Any]:
        """What the schedule means (not who made it or when), for change detection."""
        return {
            "pipeline": self.pipeline,
            "kind": self.kind,
            "fields": self.fields,
            "timezone": self.timezone,
            "policies": {name: getattr(self.policies, name) for name in _POLICY_FIELDS},
        }

    def definition_hash(self) -> str:
        text = _DEFINITION_JSON.encode(self.definition())
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as listed: its definition plus what the engine and ledger know."""

    name: str
    pipeline: str
    type: str
    expression: str
    timezone: str
    enabled: bool
    owner: str
    next_run: datetime | None
    last_run: datetime | None
    last_status: str | None
    created_by: str | None
    policies: Policies
    description: str = ""
    bound: bool = True
    """False when the target (a code callable) is not registered in this process yet."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("next_run", "last_run"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data


class RunFilters(TypedDict, total=False):
    """Filters of a run history read; every one given must match (None: not filtered)."""

    schedule: str | None
    pipeline: str | None
    status: str | None
    since: datetime | None
    """Started at or after this moment."""
    before: str | None
    """A run id: only runs after it in newest-first order (the next page)."""


class LastRun(NamedTuple):
    """When a schedule's newest run started (or was due, if it never started), and how it
    ended."""

    at: datetime | None
    status: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of the run ledger."""

    run_id: str
    schedule: str | None
    pipeline: str
    trigger: str
    status: str
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    requested_by: str | None = None
    error: str | None = None
    items: tuple[int, ...] = ()
    stages: tuple[str, ...] = ()

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def success(self) -> bool:
        return self.status == "success"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("scheduled_for", "started_at", "finished_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        data["items"] = list(self.items)
        data["stages"] = list(self.stages)
        data["duration_seconds"] = self.duration
        data["success"] = self.success
        return data
