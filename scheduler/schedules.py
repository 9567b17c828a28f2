"""Building and validating schedule definitions from YAML blocks and API arguments.

Every definition is checked by building its trigger with the very code that will fire
it, so an expression that validates is one that runs.

The ``schedule:`` block of a pipeline::

    schedule:
      cron: "0 9 * * 1-5"         # or interval: {hours, minutes, seconds}, or every: 15m
      timezone: Europe/Stockholm  # default SCHEDULER_TIMEZONE
      overlap: skip               # skip | buffer_one | cancel_other | allow
      catchup: latest             # latest | all | none
      coalesce: true
      misfire_grace_time: 300     # seconds; omit for no limit
      jitter: 0                   # seconds of random delay
      enabled: true
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from pipelines.errors import Problem

from .errors import InvalidScheduleError
from .models import CATCHUPS, OVERLAPS, Owner, Policies, ScheduleDef
from .triggers import make_trigger, parse_every

TRIGGER_KEYS = ("cron", "interval", "every", "at")
POLICY_KEYS = ("overlap", "catchup", "coalesce", "misfire_grace_time", "jitter", "max_instances")
BLOCK_KEYS = frozenset((*TRIGGER_KEYS, *POLICY_KEYS, "timezone", "enabled"))
INTERVAL_UNITS = ("weeks", "days", "hours", "minutes", "seconds")


def build_trigger(schedule: ScheduleDef) -> Any:
    """The trigger a definition fires by (raises ``InvalidScheduleError``)."""
    return make_trigger(schedule.kind, timezone=schedule.timezone, **schedule.fields)


def make_schedule(
    name: str,
    pipeline: str,
    kind: str,
    fields: Mapping[str, Any],
    *,
    timezone: str,
    policies: Policies | None = None,
    owner: Owner = "code",
    enabled: bool = True,
    created_by: str | None = None,
) -> ScheduleDef:
    """A validated definition: its trigger is built once here and must work."""
    if not name or len(name) > 128:
        raise InvalidScheduleError(f"schedule name must be 1 to 128 characters, got {name!r}")
    if kind not in ("cron", "interval", "date"):
        raise InvalidScheduleError(f"unknown trigger kind {kind!r} (cron, interval or date)")
    schedule = ScheduleDef(
        name=name,
        pipeline=pipeline,
        kind=kind,  # type: ignore[arg-type]
        fields=dict(fields),
        timezone=timezone,
        policies=check_policies(policies or Policies()),
        owner=owner,
        enabled=enabled,
        created_by=created_by,
    )
    build_trigger(schedule)
    return schedule


def check_policies(policies: Policies) -> Policies:
    if policies.overlap not in OVERLAPS:
        raise InvalidScheduleError(
            f"overlap must be one of {', '.join(OVERLAPS)}, got {policies.overlap!r}"
        )
    if policies.catchup not in CATCHUPS:
        raise InvalidScheduleError(
            f"catchup must be one of {', '.join(CATCHUPS)}, got {policies.catchup!r}"
        )
    for label, value in (
        ("misfire_grace_time", policies.misfire_grace_time),
        ("timeout", policies.timeout),
    ):
        if value is not None and value <= 0:
            raise InvalidScheduleError(f"{label} must be a positive number of seconds")
    if policies.jitter < 0:
        raise InvalidScheduleError("jitter must be zero or a positive number of seconds")
    if policies.max_instances < 1:
        raise InvalidScheduleError("max_instances must be at least 1")
    return _seconds_as_floats(policies)


def _seconds_as_floats(policies: Policies) -> Policies:
    """Seconds as floats, as the store gives them back, so that a definition made in code
    and the same one read from the store have one ``definition_hash``."""
    grace, timeout, jitter = policies.misfire_grace_time, policies.timeout, policies.jitter
    if all(type(value) is float for value in (grace, timeout, jitter) if value is not None):
        return policies
    return replace(
        policies,
        misfire_grace_time=None if grace is None else float(grace),
        timeout=None if timeout is None else float(timeout),
        jitter=float(jitter),
    )


def interval_seconds(spec: Mapping[str, Any]) -> int:
    """Total seconds of ``{weeks, days, hours, minutes, seconds}``."""
    unknown = set(spec) - set(INTERVAL_UNITS)
    if unknown:
        raise InvalidScheduleError(
            f"unknown interval unit {sorted(unknown)[0]!r} (use {', '.join(INTERVAL_UNITS)})"
        )
    factors = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
    total = 0.0
    for unit, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidScheduleError(f"interval {unit} must be a non-negative number")
        total += value * factors[unit]
    if total < 1 or total != int(total):
        raise InvalidScheduleError("an interval must be a whole number of seconds, at least 1")
    return int(total)


def trigger_from_block(block: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(kind, fields) from the trigger keys of a YAML ``schedule:`` block."""
    given = [k for k in TRIGGER_KEYS if k in block]
    if len(given) != 1:
        raise InvalidScheduleError(
            "needs exactly one of cron, interval, every or at"
            + (f" (found {', '.join(given)})" if given else "")
        )
    key = given[0]
    value = block[key]
    if key == "cron":
        if not isinstance(value, str):
            raise InvalidScheduleError('cron must be a quoted string, e.g. cron: "0 9 * * 1-5"')
        return "cron", {"expression": value}
    if key == "interval":
        if not isinstance(value, Mapping):
            raise InvalidScheduleError("interval must be a mapping of hours, minutes, seconds")
        return "interval", {"seconds": interval_seconds(value)}
    if key == "every":
        if not isinstance(value, str):
            raise InvalidScheduleError("every must be a duration such as 15m or 1h30m")
        return "interval", {"seconds": int(parse_every(value).total_seconds())}
    if not isinstance(value, datetime | str):
        raise InvalidScheduleError("at must be an ISO 8601 date and time")
    run_date = value if isinstance(value, datetime) else _iso(value)
    return "date", {"run_date": run_date.isoformat()}


def _iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidScheduleError(f"at: {text!r} is not an ISO 8601 date and time") from None


def policies_from_block(block: Mapping[str, Any], timeout: float | None) -> Policies:
    values: dict[str, Any] = {k: block[k] for k in POLICY_KEYS if k in block}
    for key in ("misfire_grace_time", "jitter"):
        if key in values and (
            isinstance(values[key], bool) or not isinstance(values[key], int | float | None)
        ):
            raise InvalidScheduleError(f"{key} must be a number of seconds")
    if "coalesce" in values and not isinstance(values["coalesce"], bool):
        raise InvalidScheduleError("coalesce must be true or false")
    if "max_instances" in values and (
        isinstance(values["max_instances"], bool) or not isinstance(values["max_instances"], int)
    ):
        raise InvalidScheduleError("max_instances must be a whole number")
    return check_policies(Policies(timeout=timeout, **values))


def schedule_from_block(
    pipeline: str, block: Mapping[str, Any], *, default_timezone: str, timeout: float | None
) -> ScheduleDef:
    """The definition of a pipeline's YAML ``schedule:`` block (named after the pipeline)."""
    unknown = sorted(set(block) - BLOCK_KEYS)
    if unknown:
        raise InvalidScheduleError(
            f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(BLOCK_KEYS))})"
        )
    kind, fields = trigger_from_block(block)
    timezone = block.get("timezone", default_timezone)
    if not isinstance(timezone, str):
        raise InvalidScheduleError("timezone must be an IANA name such as Europe/Stockholm")
    enabled = block.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidScheduleError("enabled must be true or false")
    return make_schedule(
        pipeline,
        pipeline,
        kind,
        fields,
        timezone=timezone,
        policies=policies_from_block(block, timeout),
        owner="yaml",
        enabled=enabled,
    )


def block_validator(default_timezone: str) -> Any:
    """A ``validate_schedule`` hook for the pipelines.yml loader."""

    def validate(pipeline: str, block: Any, path: str, line: int | None) -> list[Problem]:
        if not isinstance(block, Mapping):
            return [Problem(path, "must be a mapping", line)]
        try:
            schedule_from_block(pipeline, block, default_timezone=default_timezone, timeout=None)
        except InvalidScheduleError as exc:
            return [Problem(path, str(exc), line)]
        return []

    return validate
