"""Trigger value objects: when a schedule fires, as plain, comparable, storable data.

Three kinds, each a frozen dataclass with ``kind``, ``expression``, ``timezone``,
``next_fire(after)``, ``describe()`` and ``to_dict()``/``from_dict()``:

* ``CronTrigger("0 9 * * 1-5", "Europe/Stockholm")``: standard cron in a time zone,
  with the DST rule described in ``scheduler.cron``.
* ``IntervalTrigger(900, "UTC", start)``: at ``start + k * interval`` in elapsed (UTC)
  time, unaffected by DST. Without ``start`` the grid is anchored at the Unix epoch,
  so ``every 15m`` fires at :00, :15, :30 and :45 UTC.
* ``DateTrigger(run_date, "UTC")``: once.

``next_fire`` takes an aware datetime and returns the first fire time strictly after
it as an aware UTC datetime, or None if the trigger will not fire again. Naive
datetimes given as ``start`` or ``run_date`` are read in the trigger's time zone
(``fold=0``); both are kept in UTC. Nothing here imports APScheduler.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, TypeAlias, overload
from zoneinfo import ZoneInfo

from scheduler.cron import CronExpression
from scheduler.errors import InvalidScheduleError

__all__ = [
    "CronTrigger",
    "DateTrigger",
    "IntervalTrigger",
    "Trigger",
    "TriggerKind",
    "format_every",
    "load_zone",
    "make_trigger",
    "parse_every",
]

TriggerKind: TypeAlias = Literal["cron", "interval", "date"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LONGEST = 1000 * 366 * 86400
_UNITS = (("d", 86400, "day"), ("h", 3600, "hour"), ("m", 60, "minute"), ("s", 1, "second"))
_EVERY = re.compile(r"(?:every\s+)?((?:[0-9]+\s*[a-z]+\s*)+)", re.IGNORECASE)
_PART = re.compile(r"([0-9]+)\s*([a-z]+)", re.IGNORECASE)


def load_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; raises InvalidScheduleError if there is none."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidScheduleError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        raise InvalidScheduleError(f"unknown time zone {name!r}") from None


def parse_every(text: str) -> timedelta:
    """``"15m"``, ``"every 15m"``, ``"1h30m"``, ``"45s"``, ``"1d"`` as a timedelta.

    Units d, h, m, s, largest first, each at most once; the total must be >= 1 second.
    """
    match = _EVERY.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidScheduleError(
            f"interval {text!r}: expected a duration like '15m', 'every 1h30m' or '45s'"
        )
    seconds = 0
    previous = -1
    letters = [unit for unit, _, _ in _UNITS]
    for number, unit in _PART.findall(match.group(1)):
        index = letters.index(unit.lower()) if unit.lower() in letters else -1
        if index < 0:
            raise InvalidScheduleError(f"interval {text!r}: unknown unit {unit!r} (use d, h, m, s)")
        if index <= previous:
            raise InvalidScheduleError(
                f"interval {text!r}: units must go from largest to smallest, each once"
            )
        previous = index
        seconds += int(number) * _UNITS[index][1]
    if seconds < 1:
        raise InvalidScheduleError(f"interval {text!r}: must be at least 1 second")
    if seconds > _LONGEST:
        raise InvalidScheduleError(f"interval {text!r}: longer than 1000 years")
    return timedelta(seconds=seconds)


def format_every(seconds: int) -> str:
    """The compact form of an interval, e.g. ``every 1h30m``; inverse of parse_every."""
    parts = []
    for unit, size, _ in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "every " + "".join(parts)


def _words_every(seconds: int) -> str:
    parts = []
    for _, size, word in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {word}{'s' if count > 1 else ''}")
    return "every " + " ".join(parts)


def _aware_utc(moment: datetime, tz: ZoneInfo, what: str) -> datetime:
    """``moment`` in UTC, reading a naive one in ``tz`` (fold=0)."""
    if not isinstance(moment, datetime):
        raise InvalidScheduleError(f"{what} must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=tz, fold=0)
    return moment.astimezone(UTC)


def _after_utc(after: datetime) -> datetime:
    if after.tzinfo is UTC:
        return after
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got naive {after}")
    return after.astimezone(UTC)


def _parse_moment(value: object, what: str) -> datetime | None:
    """A datetime, None, or an ISO 8601 string from stored data, as a datetime or None."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise InvalidScheduleError(f"{what} must be a date-time, got {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidScheduleError(f"{what} {value!r} is not an ISO 8601 date-time") from None


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """Fires on a standard five-field cron expression in an IANA time zone."""

    kind: ClassVar[Literal["cron"]] = "cron"
    expression: str
    """The cron text, whitespace collapsed, e.g. ``0 9 * * 1-5`` or ``@daily``."""
    timezone: str = "UTC"
    _cron: CronExpression = field(init=False, repr=False, compare=False)
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cron = CronExpression.parse(self.expression)
        object.__setattr__(self, "_tz", load_zone(self.timezone))
        object.__setattr__(self, "_cron", cron)
        object.__setattr__(self, "expression", cron.text)

    @property
    def cron(self) -> CronExpression:
        """The parsed expression."""
        return self._cron

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (aware, UTC)."""
        return self._cron.first_after(after, self._tz)

    def describe(self) -> str:
        """E.g. ``at 09:00, Monday to Friday (Europe/Stockholm)``."""
        return f"{self._cron.describe()} ({self.timezone})"

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data; ``make_trigger(**data)`` rebuilds the trigger."""
        return {"kind": self.kind, "expression": self.expression, "timezone": self.timezone}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CronTrigger:
        """Rebuild from ``to_dict`` data; raises InvalidScheduleError if it is not valid."""
        return _make_cron(_fields_of(cls.kind, data))

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True, slots=True)
class IntervalTrigger:
    """Fires every ``seconds`` of elapsed time at ``start + k * seconds`` (k >= 0)."""

    kind: ClassVar[Literal["interval"]] = "interval"
    seconds: int
    timezone: str = "UTC"
    start: datetime | None = None
    """First fire time (kept in UTC); None anchors the grid at the Unix epoch."""
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int):
            raise InvalidScheduleError(f"interval {self.seconds!r}: must be whole seconds")
        if self.seconds < 1:
            raise InvalidScheduleError(f"interval {self.seconds}s: must be at least 1 second")
        if self.seconds > _LONGEST:
            raise InvalidScheduleError(f"interval {self.seconds}s: longer than 1000 years")
        tz = load_zone(self.timezone)
        object.__setattr__(self, "_tz", tz)
        if self.start is not None:
            object.__setattr__(self, "start", _aware_utc(self.start, tz, "interval start"))

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @property
    def expression(self) -> str:
        """E.g. ``every 1h30m``."""
        return format_every(self.seconds)

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (aware, UTC)."""
        anchor = self.start or _EPOCH
        moment = _after_utc(after)
        if moment < anchor:
            return anchor
        steps = (moment - anchor) // self.interval + 1
        try:
            return anchor + steps * self.interval
        except OverflowError:
            return None

    def describe(self) -> str:
        """E.g. ``every 15 minutes`` or ``every 1 hour from 2025-01-01 09:00 (Europe/Oslo)``."""
        text = _words_every(self.seconds)
        if self.start is None:
            return text
        return f"{text} from {self.start.astimezone(self._tz):%Y-%m-%d %H:%M:%S} ({self.timezone})"

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data; ``make_trigger(**data)`` rebuilds the trigger."""
        return {
            "kind": self.kind,
            "seconds": self.seconds,
            "timezone": self.timezone,
            "start": None if self.start is None else self.start.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IntervalTrigger:
        """Rebuild from ``to_dict`` data; raises InvalidScheduleError if it is not valid."""
        return _make_interval(_fields_of(cls.kind, data))

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True, slots=True)
class DateTrigger:
    """Fires once, at ``run_date`` (kept in UTC)."""

    kind: ClassVar[Literal["date"]] = "date"
    run_date: datetime
    timezone: str = "UTC"
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tz = load_zone(self.timezone)
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "run_date", _aware_utc(self.run_date, tz, "run_date"))

    @property
    def expression(self) -> str:
        """E.g. ``at 2025-12-31T23:59:59+01:00`` (local time of the trigger's zone)."""
        return f"at {self.run_date.astimezone(self._tz).isoformat()}"

    def next_fire(self, after: datetime) -> datetime | None:
        """``run_date`` if it is strictly after ``after``, else None."""
        return self.run_date if self.run_date > _after_utc(after) else None

    def describe(self) -> str:
        """E.g. ``once at 2025-12-31 23:59:59 CET (Europe/Stockholm)``."""
        local = self.run_date.astimezone(self._tz)
        return f"once at {local:%Y-%m-%d %H:%M:%S %Z} ({self.timezone})"

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data; ``make_trigger(**data)`` rebuilds the trigger."""
        return {"kind": self.kind, "run_date": self.run_date.isoformat(), "timezone": self.timezone}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DateTrigger:
        """Rebuild from ``to_dict`` data; raises InvalidScheduleError if it is not valid."""
        return _make_date(_fields_of(cls.kind, data))

    def __str__(self) -> str:
        return self.describe()


Trigger: TypeAlias = CronTrigger | IntervalTrigger | DateTrigger

_FIELDS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required fields, optional fields)
    "cron": (frozenset({"expression"}), frozenset({"timezone"})),
    "interval": (frozenset(), frozenset({"seconds", "every", "timezone", "start"})),
    "date": (frozenset({"run_date"}), frozenset({"timezone"})),
}


def _check_fields(kind: str, fields: Mapping[str, Any]) -> None:
    required, optional = _FIELDS[kind]
    missing = sorted(required - fields.keys())
    unknown = sorted(fields.keys() - required - optional)
    if missing:
        raise InvalidScheduleError(f"{kind} trigger: missing field {missing[0]!r}")
    if unknown:
        raise InvalidScheduleError(f"{kind} trigger: unknown field {unknown[0]!r}")


def _interval_seconds(fields: Mapping[str, Any]) -> int:
    if ("seconds" in fields) == ("every" in fields):
        raise InvalidScheduleError("interval trigger: give exactly one of 'seconds' or 'every'")
    if "every" in fields:
        return int(parse_every(fields["every"]).total_seconds())
    seconds: int = fields["seconds"]
    return seconds


def _make_cron(fields: Mapping[str, Any]) -> CronTrigger:
    _check_fields("cron", fields)
    return CronTrigger(fields["expression"], fields.get("timezone", "UTC"))


def _make_interval(fields: Mapping[str, Any]) -> IntervalTrigger:
    _check_fields("interval", fields)
    start = _parse_moment(fields.get("start"), "interval start")
    return IntervalTrigger(_interval_seconds(fields), fields.get("timezone", "UTC"), start)


def _make_date(fields: Mapping[str, Any]) -> DateTrigger:
    _check_fields("date", fields)
    run_date = _parse_moment(fields["run_date"], "run_date")
    if run_date is None:
        raise InvalidScheduleError("date trigger: run_date must be a date-time, got None")
    return DateTrigger(run_date, fields.get("timezone", "UTC"))


_MAKERS: Mapping[str, Callable[[Mapping[str, Any]], Trigger]] = {
    "cron": _make_cron,
    "interval": _make_interval,
    "date": _make_date,
}


@overload
def make_trigger(kind: Literal["cron"], **fields: Any) -> CronTrigger: ...
@overload
def make_trigger(kind: Literal["interval"], **fields: Any) -> IntervalTrigger: ...
@overload
def make_trigger(kind: Literal["date"], **fields: Any) -> DateTrigger: ...
@overload
def make_trigger(kind: str, **fields: Any) -> Trigger: ...
def make_trigger(kind: str, **fields: Any) -> Trigger:
    """Build a trigger from plain data, e.g. ``make_trigger(**trigger.to_dict())``.

    ``cron``: expression, timezone. ``interval``: seconds (or every="15m"), timezone,
    start. ``date``: run_date, timezone. Date-times may be datetimes or ISO 8601 text.
    """
    maker = _MAKERS.get(kind)
    if maker is None:
        raise InvalidScheduleError(f"unknown trigger kind {kind!r} (use cron, interval or date)")
    return maker(fields)


def _fields_of(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without its ``kind``, which must be ``kind`` if present."""
    fields = dict(data)
    given = fields.pop("kind", kind)
    if given != kind:
        raise InvalidScheduleError(f"expected a {kind} trigger, got kind {given!r}")
    return fields
