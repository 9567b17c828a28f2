"""Standard (Vixie/cronie/Kubernetes) cron expressions with time-zone aware fire times.

Syntax: five fields ``minute hour day-of-month month day-of-week`` with ``*``, lists
``a,b``, ranges ``a-b`` and steps ``*/n`` / ``a-b/n``; month names ``jan``-``dec`` and
day names ``sun``-``sat`` (any case); day-of-week 0 and 7 are both Sunday. Macros:
``@hourly @daily @midnight @weekly @monthly @yearly @annually``. Day-of-month and
day-of-week combine as in Vixie cron: if either field starts with ``*`` a day must
match both, otherwise a day matches if it matches either. Extensions of Quartz and
croniter (``L W # ? H``, seconds, years, ``a/n``) are rejected, and so is an
expression that can never fire (``0 0 30 2 *``).

Daylight saving time. Fire times are computed from wall-clock times in the schedule's
zone and returned as aware datetimes **in UTC** (so comparing and subtracting them is
by instant). Which wall-clock behaviour applies depends on the hour field:

* **Fixed hours** (the hour field has neither ``*`` nor ``/``, e.g. ``30 2 * * *``):
  the schedule names local times of day, and each fires once per matching day. A
  local time skipped by a spring-forward gap fires shifted forward by the gap (RFC
  5545; zoneinfo ``fold=0``), a local time repeated on fall-back night fires at its
  first occurrence only, and local times that land on the same instant fire once.
* **Elapsed time** (the hour field is ``*`` or a step, e.g. ``*/30 * * * *``): the
  schedule fires whenever the wall clock shows a matching time, so times skipped by a
  gap do not fire and times shown twice on fall-back night fire twice.

The search jumps by fields (month, day, then hour and minute inside a day), so sparse
schedules cost the same as dense ones. It assumes a zone changes its UTC offset at
most once per local day, which holds for every zone in the tz database since 1900.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler.errors import InvalidScheduleError

__all__ = ["MACROS", "CronExpression"]

MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The supported ``@`` macros and the five fields each stands for."""

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_WORDS = tuple(calendar.month_name[1:])
_DAY_WORDS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")

_VALIDITY_START = date(2000, 1, 1)
_VALIDITY_END = date(2028, 1, 1)
"""28 years hold every (month, day, weekday) combination the Gregorian calendar has."""

_SEARCH_YEARS = 100
_ONE_DAY = timedelta(days=1)
_LATEST_DAY = date(9999, 12, 30)
_NUMBER = re.compile(r"[0-9]+")
_EXTENSIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\?"), "'?' is a Quartz extension, not standard cron; use '*'"),
    (re.compile(r"#"), "'#' (nth weekday of the month) is a Quartz/croniter extension"),
    (re.compile(r"(?i)(?<![a-z])L"), "'L' (last day) is a Quartz/croniter extension"),
    (re.compile(r"(?i)(?<![a-z])W(?![a-z])|[0-9]W"), "'W' (nearest weekday) is a Quartz extension"),
    (re.compile(r"(?i)(?<![a-z])H(?![a-z])"), "'H' (hashed value) is a Jenkins/croniter extension"),
)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    size: int
    names: tuple[str, ...] = ()
    """Value names, index ``i`` meaning ``low + i``."""


_MINUTE = _Field("minute", 0, 59, 60)
_HOUR = _Field("hour", 0, 23, 24)
_DOM = _Field("day-of-month", 1, 31, 31)
_MONTH = _Field("month", 1, 12, 12, _MONTH_NAMES)
_DOW = _Field("day-of-week", 0, 7, 7, _DAY_NAMES)
_FIELDS = (_MINUTE, _HOUR, _DOM, _MONTH, _DOW)


class _Problem(Exception):
    """What is wrong with one field; wrapped into InvalidScheduleError by ``parse``."""


def _parse_value(token: str, spec: _Field) -> int:
    if token == "":
        raise _Problem(f"{spec.name} field has a range with a missing value")
    if _NUMBER.fullmatch(token):
        value = int(token)
    elif token.lower() in spec.names:
        value = spec.low + spec.names.index(token.lower())
    elif spec.names:
        raise _Problem(
            f"{spec.name} value {token!r} is not a number or a name ({', '.join(spec.names)})"
        )
    else:
        raise _Problem(f"{spec.name} value {token!r} is not a number")
    if not spec.low <= value <= spec.high:
        raise _Problem(f"{spec.name} value {value} out of range {spec.low}-{spec.high}")
    return value


def _parse_step(token: str, spec: _Field) -> int:
    if not _NUMBER.fullmatch(token):
        raise _Problem(f"{spec.name} step {token!r} is not a number")
    step = int(token)
    if step == 0:
        raise _Problem(f"{spec.name} step 0 is not allowed (use 1 or more)")
    if step > spec.size:
        raise _Problem(
            f"{spec.name} step {step} is larger than the field's range {spec.low}-{spec.high}"
        )
    return step


def _parse_element(element: str, spec: _Field) -> range:
    if element == "":
        raise _Problem(f"{spec.name} field has an empty list element")
    body, slash, step_text = element.partition("/")
    step = _parse_step(step_text, spec) if slash else 1
    if body == "*":
        return range(spec.low, spec.high + 1, step)
    low_text, dash, high_text = body.partition("-")
    low = _parse_value(low_text, spec)
    if not dash:
        if slash:
            raise _Problem(
                f"{spec.name} {element!r} is ambiguous: write {low}-{spec.high}/{step_text}, "
                f"e.g. 5-59/10"
            )
        return range(low, low + 1)
    high = _parse_value(high_text, spec)
    if low > high:
        raise _Problem(f"{spec.name} range {body!r} is reversed (write the lower value first)")
    return range(low, high + 1, step)


def _parse_field(text: str, spec: _Field) -> frozenset[int]:
    for pattern, message in _EXTENSIONS:
        if pattern.search(text):
            raise _Problem(f"{spec.name} {text!r}: {message}")
    values: set[int] = set()
    for element in text.split(","):
        values.update(_parse_element(element, spec))
    if spec is _DOW and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


def _split(text: str) -> list[str]:
    """The five field texts of ``text`` (macros expanded); raises _Problem."""
    parts = text.split()
    if not parts:
        raise _Problem("empty expression")
    if parts[0].startswith("@"):
        macro = parts[0].lower()
        if macro == "@reboot":
            raise _Problem("@reboot is not a time schedule (it means 'when cron starts')")
        if macro not in MACROS or len(parts) > 1:
            raise _Problem(f"unknown macro {text!r} (known: {', '.join(MACROS)})")
        return MACROS[macro].split()
    if len(parts) != 5:
        extra = "; seconds and year fields are not supported" if len(parts) > 5 else ""
        raise _Problem(
            f"{len(parts)} fields given, standard cron has 5 "
            f"(minute hour day-of-month month day-of-week){extra}"
        )
    return parts


def _mask(values: frozenset[int]) -> int:
    return sum(1 << value for value in values)


_CACHE_LIMIT = 4096
"""Entries per memo below; a full memo is emptied (the values are cheap to recompute)."""
_parsed_fields: dict[tuple[str, str], tuple[tuple[int, ...], int]] = {}


def _field(text: str, spec: _Field) -> tuple[tuple[int, ...], int]:
    """(sorted values, bit mask) of one field, shared by every expression using it."""
    key = (text, spec.name)
    found = _parsed_fields.get(key)
    if found is None:
        values = _parse_field(text, spec)
        found = (tuple(sorted(values)), _mask(values))
        if len(_parsed_fields) >= _CACHE_LIMIT:
            _parsed_fields.clear()
        _parsed_fields[key] = found
    return found


def _spec_values(texts: list[str]) -> dict[str, object]:
    """The parsed fields of an expression, in the shapes the search needs (see
    ``CronExpression``'s attributes); raises _Problem."""
    fields = [_field(text, spec) for text, spec in zip(texts, _FIELDS, strict=True)]
    minutes, hours, doms, months, dows = fields
    both = texts[2].startswith("*") or texts[4].startswith("*")
    return {
        "minutes": minutes[0],
        "hours": hours[0],
        "doms": doms[0],
        "dom_mask": doms[1],
        "month_mask": months[1],
        "dow_mask": dows[1],
        "both_days": both,
        "any_dow": both and len(dows[0]) == 7,
        "elapsed": "*" in texts[1] or "/" in texts[1],
    }


_day_fields_fire: dict[tuple[int, int, int, bool], bool] = {}


def _ever_fires(spec: CronExpression) -> bool:
    """Whether some calendar date matches the day-of-month, month and day-of-week fields."""
    key = (spec.dom_mask, spec.month_mask, spec.dow_mask, spec.both_days)
    fires = _day_fields_fire.get(key)
    if fires is None:
        fires = spec.next_day(_VALIDITY_START, _VALIDITY_END) is not None
        if len(_day_fields_fire) >= _CACHE_LIMIT:
            _day_fields_fire.clear()
        _day_fields_fire[key] = fires
    return fires


def _month_length(year: int, month: int) -> int:
    if month == 2:
        return 29 if calendar.isleap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _offset(tz: ZoneInfo, wall: datetime) -> timedelta:
    offset = tz.utcoffset(wall)
    if offset is None:  # pragma: no cover - ZoneInfo always knows its offset
        raise ValueError(f"time zone {tz} has no UTC offset for {wall}")
    return offset


def _wall_floor(wall: datetime, day: date) -> tuple[int, int] | None:
    """(hour, minute) to search strictly after on ``day`` for walls later than ``wall``.

    None means no time on ``day`` is later than ``wall``.
    """
    if wall.date() < day:
        return -1, -1
    if wall.date() > day:
        return None
    return wall.hour, wall.minute


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed five-field cron expression; construct with ``parse`` or directly.

    Results of ``next_after`` and ``iter_after`` are aware datetimes in UTC.
    """

    text: str
    """The expression as given (whitespace collapsed; macros kept)."""
    # The parsed fields, in the shapes the search needs (set by __post_init__; kept on
    # the expression itself rather than in an object of their own, to stay small).
    minutes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    hours: tuple[int, ...] = field(init=False, repr=False, compare=False)
    doms: tuple[int, ...] = field(init=False, repr=False, compare=False)
    dom_mask: int = field(init=False, repr=False, compare=False)
    month_mask: int = field(init=False, repr=False, compare=False)
    dow_mask: int = field(init=False, repr=False, compare=False)
    both_days: bool = field(init=False, repr=False, compare=False)
    """A day must match day-of-month AND day-of-week (one of them starts with ``*``)."""
    any_dow: bool = field(init=False, repr=False, compare=False)
    """Day-of-week is ``*``: only day-of-month decides (so dates can be looked up)."""
    elapsed: bool = field(init=False, repr=False, compare=False)
    """The hour field is ``*`` or a step (see the module's DST rule)."""

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InvalidScheduleError(f"cron expression must be text, got {self.text!r}")
        text = " ".join(self.text.split())
        try:
            texts = _split(text)
            values = _spec_values(texts)
        except _Problem as problem:
            raise InvalidScheduleError(f'cron "{text}": {problem}') from None
        for name, value in values.items():
            object.__setattr__(self, name, value)
        if not _ever_fires(self):
            raise InvalidScheduleError(
                f'cron "{text}": never fires (no calendar date has day-of-month '
                f'"{texts[2]}" in month "{texts[3]}" with day-of-week "{texts[4]}")'
            )
        if text != self.text:
            object.__setattr__(self, "text", text)

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Parse ``text``; raises InvalidScheduleError naming the bad field and why."""
        return cls(text)

    def __str__(self) -> str:
        return self.text

    @property
    def fields(self) -> tuple[str, str, str, str, str]:
        """The five field texts (macros expanded)."""
        minute, hour, dom, month, dow = _split(self.text)
        return minute, hour, dom, month, dow

    @property
    def follows_elapsed_time(self) -> bool:
        """True if the hour field is ``*`` or a step (see the module's DST rule)."""
        return self.elapsed

    def matches(self, wall: datetime) -> bool:
        """Whether a wall-clock time (seconds ignored) matches all five fields."""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and bool(self.month_mask >> wall.month & 1)
            and self.day_matches(wall.day, (wall.weekday() + 1) % 7)
        )

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime:
        """The first fire time strictly after the aware ``after``, as an aware UTC datetime.

        Raises InvalidScheduleError if there is none before the year 9999.
        """
        found = self.first_after(after, tz)
        if found is None:
            raise InvalidScheduleError(f'cron "{self.text}": no fire time after {after}')
        return found

    def first_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        """``next_after``, or None when there is no fire time before the year 9999."""
        return self._next_utc(_utc(after), tz)

    def iter_after(self, after: datetime, tz: ZoneInfo) -> Iterator[datetime]:
        """Fire times strictly after ``after``, in increasing order (aware, UTC)."""
        current: datetime | None = _utc(after)
        while current is not None:
            current = self._next_utc(current, tz)
            if current is not None:
                yield current

    def describe(self) -> str:
        """The schedule in plain words, e.g. ``at 09:00, Monday to Friday``."""
        return _describe(self, self.fields)

    # -- days and times -------------------------------------------------------------

    def day_matches(self, day: int, dow: int) -> bool:
        """Whether day-of-month ``day`` falling on weekday ``dow`` (0 = Sunday) matches."""
        dom_ok = bool(self.dom_mask >> day & 1)
        dow_ok = bool(self.dow_mask >> dow & 1)
        return dom_ok and dow_ok if self.both_days else dom_ok or dow_ok

    def first_day_in_month(self, year: int, month: int, start: int) -> int | None:
        """The first matching day >= ``start`` of a month, or None."""
        length = _month_length(year, month)
        if self.any_dow:
            index = bisect_left(self.doms, start)
            if index < len(self.doms) and self.doms[index] <= length:
                return self.doms[index]
            return None
        first_weekday = date(year, month, 1).weekday()
        for day in range(start, length + 1):
            if self.day_matches(day, (first_weekday + day) % 7):
                return day
        return None

    def next_day(self, start: date, limit: date) -> date | None:
        """The first matching date in ``[start, limit)``, or None."""
        year, month, day = start.year, start.month, start.day
        while date(year, month, 1) < limit:
            if self.month_mask >> month & 1:
                found = self.first_day_in_month(year, month, day)
                if found is not None:
                    result = date(year, month, found)
                    return result if result < limit else None
            day = 1
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return None

    def time_after(self, hour: int, minute: int) -> tuple[int, int] | None:
        """The first matching (hour, minute) strictly after the given one, or None."""
        index = bisect_left(self.hours, hour)
        if index < len(self.hours) and self.hours[index] == hour:
            later = bisect_right(self.minutes, minute)
            if later < len(self.minutes):
                return hour, self.minutes[later]
            index += 1
        if index < len(self.hours):
            return self.hours[index], self.minutes[0]
        return None

    def times_after(self, hour: int, minute: int) -> Iterator[tuple[int, int]]:
        """All matching (hour, minute) strictly after the given one, in order."""
        for each_hour in self.hours[bisect_left(self.hours, hour) :]:
            start = bisect_right(self.minutes, minute) if each_hour == hour else 0
            for each_minute in self.minutes[start:]:
                yield each_hour, each_minute

    # -- search -------------------------------------------------------------------

    def _next_utc(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        """First fire instant strictly after ``after`` (both aware, in UTC).

        The search computes in aware UTC datetimes throughout: with one ``tzinfo``
        they compare and subtract as fast as naive ones, and no conversion is needed
        on the way in or out (``replace(tzinfo=...)`` costs a microsecond a call).
        """
        try:
            return self._search(after, tz)
        except OverflowError:  # the search ran into year 1 or 9999
            return None

    def _search(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        local_day = after.astimezone(tz).date()
        limit = min(date(min(local_day.year + _SEARCH_YEARS, 9999), 1, 1), _LATEST_DAY)
        # The day before can still fire later than `after` if its offset changes.
        before = local_day - _ONE_DAY
        if _plain_offset(before, tz) is not None:
            found = self._search_plain(after, local_day, limit, tz)
            if found is not None:
                return found
            day: date | None = local_day
        else:
            day = before
        best: datetime | None = None
        while day is not None and day < limit:
            day = self.next_day(day, limit)
            if day is None or (best is not None and _day_floor(day, tz) >= best):
                break
            found = self._first_on_day(day, after, tz)
            day = day + _ONE_DAY
            if found is not None and (best is None or found < best):
                best = found
                if _day_floor(day, tz) >= best:
                    break  # no later wall date fires before `best`
                # Wall dates from two days after `best` start later than `best`.
                limit = min(limit, best.date() + 2 * _ONE_DAY)
        return best

    def _search_plain(
        self, after: datetime, local_day: date, limit: date, tz: ZoneInfo
    ) -> datetime | None:
        """The common case, without the DST search: ``after``'s local day and the next
        matching one keep one UTC offset all day. None means "not that simple".

        The first time of a day with one offset is that day's earliest fire instant,
        and comes before every fire time of later days (see ``_day_floor``).
        """
        offset = _plain_offset(local_day, tz)
        if offset is None:
            return None
        if self.month_mask >> local_day.month & 1 and self.day_matches(
            local_day.day, (local_day.weekday() + 1) % 7
        ):
            wall = after + offset
            time_of_day = self.time_after(wall.hour, wall.minute)
            if time_of_day is not None:
                hour, minute = time_of_day
                year, month, mday = local_day.year, local_day.month, local_day.day
                return datetime(year, month, mday, hour, minute, tzinfo=UTC) - offset
        day = self.next_day(local_day + _ONE_DAY, limit)
        if day is None:
            return None
        offset = _plain_offset(day, tz)
        if offset is None:
            return None
        hour, minute = self.hours[0], self.minutes[0]
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - offset

    def _first_on_day(self, day: date, after: datetime, tz: ZoneInfo) -> datetime | None:
        """First fire instant strictly after ``after`` among local date ``day``'s times."""
        offset = _plain_offset(day, tz)
        if offset is not None:
            return self._first_plain(day, after, offset)
        midnight = datetime(day.year, day.month, day.day)
        offsets = [
            _offset(tz, wall.replace(fold=fold))
            for wall in (midnight, midnight + _ONE_DAY)
            for fold in (0, 1)
        ]
        return self._first_on_transition_day(day, after, tz, min(offsets), max(offsets))

    def _first_plain(self, day: date, after: datetime, offset: timedelta) -> datetime | None:
        """Like ``_first_on_day`` for a day whose UTC offset is ``offset`` throughout."""
        floor = _wall_floor(after + offset, day)
        found = None if floor is None else self.time_after(*floor)
        if found is None:
            return None
        hour, minute = found
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - offset

    def _first_on_transition_day(
        self, day: date, after: datetime, tz: ZoneInfo, low: timedelta, high: timedelta
    ) -> datetime | None:
        """Like ``_first_on_day`` for a day whose UTC offset changes (between low, high)."""
        floor = _wall_floor(after + low, day)
        if floor is None:
            return None
        best: datetime | None = None
        for hour, minute in self.times_after(*floor):
            wall = datetime(day.year, day.month, day.day, hour, minute)
            if best is not None and wall.replace(tzinfo=UTC) - high >= best:
                break
            for instant in self._instants(wall, tz):
                if instant > after and (best is None or instant < best):
                    best = instant
        return best

    def _instants(self, wall: datetime, tz: ZoneInfo) -> tuple[datetime, ...]:
        """The instants (aware, UTC) at which the naive local wall time ``wall`` fires."""
        as_utc = wall.replace(tzinfo=UTC)
        first = as_utc - _offset(tz, wall)
        second = as_utc - _offset(tz, wall.replace(fold=1))
        if not self.follows_elapsed_time or first == second:
            return (first,)  # fixed hours: fold=0 is the first occurrence or the gap shift
        if first < second:
            return first, second  # shown twice on fall-back night
        return ()  # skipped by a spring-forward gap


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got naive {moment}")
    return moment.astimezone(UTC)


_day_offsets: dict[tuple[ZoneInfo, date], tuple[timedelta | None, datetime]] = {}


def _day_facts(day: date, tz: ZoneInfo) -> tuple[timedelta | None, datetime]:
    """``(_plain_offset, _day_floor)`` of a local date, memoised: fire-time searches of
    many schedules look at the same few days."""
    key = (tz, day)
    facts = _day_offsets.get(key)
    if facts is None:
        facts = (_compute_plain_offset(day, tz), _compute_day_floor(day, tz))
        if len(_day_offsets) >= _CACHE_LIMIT:
            _day_offsets.clear()
        _day_offsets[key] = facts
    return facts


def _plain_offset(day: date, tz: ZoneInfo) -> timedelta | None:
    """The UTC offset of local date ``day`` if it does not change during the day, else None."""
    return _day_facts(day, tz)[0]


def _day_floor(day: date, tz: ZoneInfo) -> datetime:
    """An instant (aware, UTC) no later than any fire time of a wall date >= ``day``."""
    return _day_facts(day, tz)[1]


def _compute_plain_offset(day: date, tz: ZoneInfo) -> timedelta | None:
    """Relies on a zone changing its offset at most once a day, so that comparing this
    midnight with the next (both occurrences, in case it falls in a gap) suffices.
    """
    midnight = datetime(day.year, day.month, day.day)
    next_midnight = midnight + _ONE_DAY
    offset = _offset(tz, midnight)
    if offset == _offset(tz, next_midnight) == _offset(tz, next_midnight.replace(fold=1)):
        return offset
    return None


def _compute_day_floor(day: date, tz: ZoneInfo) -> datetime:
    midnight = datetime(day.year, day.month, day.day)
    latest = max(_offset(tz, midnight), _offset(tz, midnight.replace(fold=1)))
    return midnight.replace(tzinfo=UTC) - latest


# -- describe -----------------------------------------------------------------------


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted ``values`` as (first, last) pairs."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and runs[-1][1] == value - 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _list_words(values: Sequence[int], words: Sequence[str] | None = None) -> str:
    """``1 to 5``, ``Monday to Friday``, ``1, 15 and 20`` for sorted ``values``."""

    def name(value: int) -> str:
        return words[value] if words is not None else str(value)

    step = values[1] - values[0] if len(values) > 1 else 0
    if (
        len(values) >= 6
        and step > 1
        and list(values) == list(range(values[0], values[-1] + 1, step))
    ):
        return f"{name(values[0])}, {name(values[1])}, ..., {name(values[-1])}"
    parts = []
    for first, last in _runs(values):
        if last - first >= 2:
            parts.append(f"{name(first)} to {name(last)}")
        else:
            parts.extend(name(value) for value in range(first, last + 1))
    return _join(parts)


def _step_of(values: Sequence[int], size: int) -> int | None:
    """n if ``values`` are exactly 0, n, 2n, ... below ``size`` (n = 1 for all values)."""
    if len(values) < 2 or values[0] != 0:
        return 1 if len(values) == size else None
    step = values[1] - values[0]
    return step if tuple(values) == tuple(range(0, size, step)) else None


def _describe_hours(hours: Sequence[int]) -> str:
    step = _step_of(hours, 24)
    if step == 1:
        return "of every hour"
    if step is not None:
        return f"of every {step} hours"
    return f"in hour{'s' if len(hours) > 1 else ''} {_list_words(hours)}"


def _describe_time(spec: CronExpression) -> str:
    minute_step = _step_of(spec.minutes, 60)
    if minute_step is not None:
        every = "every minute" if minute_step == 1 else f"every {minute_step} minutes"
        hours = _describe_hours(spec.hours)
        return every if hours == "of every hour" else f"{every} {hours.replace('of ', 'in ')}"
    hour_step = _step_of(spec.hours, 24)
    if hour_step is None and len(spec.hours) * len(spec.minutes) <= 6:
        times = [f"{hour:02d}:{minute:02d}" for hour in spec.hours for minute in spec.minutes]
        return f"at {_join(times)}"
    noun = "minute" if len(spec.minutes) == 1 else "minutes"
    return f"at {noun} {_list_words(spec.minutes)} {_describe_hours(spec.hours)}"


def _describe_weekdays(dows: Sequence[int]) -> str:
    # Monday-first order so that 5-7 reads "Friday to Sunday".
    monday_first = sorted((dow - 1) % 7 for dow in dows)
    words = _DAY_WORDS[1:] + _DAY_WORDS[:1]
    return _list_words(monday_first, words)


def _describe_days(spec: CronExpression, texts: Sequence[str]) -> str:
    dows = [dow for dow in range(7) if spec.dow_mask >> dow & 1]
    dom_words = _list_words(spec.doms)
    dom_part = f"on day{'s' if len(spec.doms) > 1 else ''} {dom_words} of the month"
    dow_part = _describe_weekdays(dows)
    if texts[2] == "*" and texts[4] == "*":
        return "every day"
    if texts[2] == "*":
        return dow_part if " to " in dow_part else f"on {dow_part}"
    if texts[4] == "*":
        return dom_part
    if spec.both_days:
        return f"{dom_part}, if that is a {dow_part.replace(' and ', ' or ')}"
    return f"{dom_part} and on {dow_part}"


def _describe(spec: CronExpression, texts: Sequence[str]) -> str:
    text = _describe_time(spec)
    days = _describe_days(spec, texts)
    months = [month for month in range(1, 13) if spec.month_mask >> month & 1]
    fixed_time = text.startswith("at ") and ":" in text
    if days != "every day" or fixed_time or len(months) < 12:
        text = f"{text}, {days}"
    if len(months) < 12:
        text += f", in {_list_words([m - 1 for m in months], _MONTH_WORDS)}"
    return text
