"""Fire times across DST changes: fixed local times vs elapsed time (see scheduler.cron).

Instants below are UTC. The brute-force section checks every minute around every offset
change of a year in zones with unusual rules against a literal reading of the rule.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.cron import CronExpression

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
APIA = ZoneInfo("Pacific/Apia")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of a local date.

    fold=0 is the first occurrence of a repeated midnight and, for a missing one, the
    end of the gap (exact for the gaps used here, which all begin at midnight).
    """
    midnight = datetime(day.year, day.month, day.day)
    return midnight.replace(tzinfo=tz, fold=0).astimezone(UTC)


def fires_between(expression: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Fire instants in [start, end)."""
    cron = CronExpression.parse(expression)
    moments = cron.iter_after(start - timedelta(microseconds=1), tz)
    return list(itertools.takewhile(lambda moment: moment < end, moments))


def fires_on(expression: str, tz: ZoneInfo, day: str) -> list[datetime]:
    """Fire instants of a local date."""
    local = date.fromisoformat(day)
    return fires_between(expression, tz, day_start(local, tz), day_start(local + timedelta(1), tz))


# -- the rule, on the documented cases -------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expression", "day", "expected"),
    [
        # fixed hours: a skipped local time is shifted forward by the gap ...
        ("Europe/Stockholm", "30 2 * * *", "2025-03-30", ["2025-03-30T01:30"]),
        ("America/New_York", "30 2 * * *", "2025-03-09", ["2025-03-09T07:30"]),
        # ... a repeated one fires at its first occurrence only ...
        ("Europe/Stockholm", "30 2 * * *", "2025-10-26", ["2025-10-26T00:30"]),
        ("America/New_York", "30 1 * * *", "2025-11-02", ["2025-11-02T05:30"]),
        # ... and two local times on one instant fire once (02:30 shifted == 03:30)
        ("Europe/Stockholm", "30 2,3 * * *", "2025-03-30", ["2025-03-30T01:30"]),
        (
            "Europe/Stockholm",
            "30 2,3 * * *",
            "2025-03-31",
            ["2025-03-31T00:30", "2025-03-31T01:30"],
        ),
        (
            "Europe/Stockholm",
            "*/20 2 * * *",
            "2025-03-30",
            ["2025-03-30T01:00", "2025-03-30T01:20", "2025-03-30T01:40"],
        ),
        (
            "Europe/Stockholm",
            "*/20 2 * * *",
            "2025-10-26",
            ["2025-10-26T00:00", "2025-10-26T00:20", "2025-10-26T00:40"],
        ),
        ("Europe/Stockholm", "0 1-3 * * *", "2025-03-30", ["2025-03-30T00:00", "2025-03-30T01:00"]),
        # elapsed time: skipped wall times do not fire, repeated ones fire twice
        ("Europe/Stockholm", "15 2-2/1 * * *", "2025-03-30", []),
        (
            "Europe/Stockholm",
            "15 2-2/1 * * *",
            "2025-10-26",
            ["2025-10-26T00:15", "2025-10-26T01:15"],
        ),
        (
            "America/New_York",
            "30 1-1/5 * * *",
            "2025-11-02",
            ["2025-11-02T05:30", "2025-11-02T06:30"],
        ),
        ("America/New_York", "30 2-2/5 * * *", "2025-03-09", []),
    ],
)
def test_fixed_and_elapsed_rule(zone: str, expression: str, day: str, expected: list[str]) -> None:
    assert fires_on(expression, ZoneInfo(zone), day) == [utc(text) for text in expected]


def test_elapsed_time_fires_twice_in_the_repeated_hour() -> None:
    got = fires_on("30 * * * *", STOCKHOLM, "2025-10-26")
    assert len(got) == 25
    at_two_thirty = [g for g in got if g.astimezone(STOCKHOLM).strftime("%H:%M") == "02:30"]
    assert at_two_thirty == [utc("2025-10-26T00:30"), utc("2025-10-26T01:30")]
    assert fires_on("15 0-23/2 * * *", STOCKHOLM, "2025-10-26")[1:3] == [
        utc("2025-10-26T00:15"),
        utc("2025-10-26T01:15"),
    ]


def test_elapsed_time_skips_the_missing_hour() -> None:
    got = fires_on("30 * * * *", STOCKHOLM, "2025-03-30")
    assert len(got) == 23
    assert "02" not in {g.astimezone(STOCKHOLM).strftime("%H") for g in got}
    assert got[:2] == [utc("2025-03-29T23:30"), utc("2025-03-30T00:30")]
    assert got[2] == utc("2025-03-30T01:30")  # 03:30 CEST


@pytest.mark.parametrize(
    ("expression", "day", "count"),
    [
        ("*/30 * * * *", "2025-03-30", 46),
        ("*/30 * * * *", "2025-10-26", 50),
        ("*/30 * * * *", "2025-06-15", 48),
        ("0 * * * *", "2025-03-30", 23),
        ("0 * * * *", "2025-10-26", 25),
        ("* * * * *", "2025-10-26", 1500),
        ("0 */3 * * *", "2025-10-26", 8),  # 00, 03, ... 21: 02:00-03:00 repeats, no match
        ("30 2 * * *", "2025-03-30", 1),
        ("30 2 * * *", "2025-10-26", 1),
    ],
)
def test_fires_per_local_day_in_stockholm(expression: str, day: str, count: int) -> None:
    got = fires_on(expression, STOCKHOLM, day)
    assert len(got) == count
    assert got == sorted(set(got))


def test_next_after_from_inside_the_repeated_hour() -> None:
    first_0245 = utc("2025-10-26T00:45")  # 02:45 CEST
    fixed = CronExpression.parse("30 2 * * *")
    assert fixed.next_after(first_0245, STOCKHOLM) == utc("2025-10-27T01:30")
    elapsed = CronExpression.parse("30 * * * *")
    assert elapsed.next_after(first_0245, STOCKHOLM) == utc("2025-10-26T01:30")
    second_0245 = utc("2025-10-26T01:45")  # 02:45 CET
    assert elapsed.next_after(second_0245, STOCKHOLM) == utc("2025-10-26T02:30")


def test_next_after_from_inside_a_shifted_gap_time() -> None:
    cron = CronExpression.parse("45 2 * * *")
    # 02:45 does not exist on 2025-03-30; it fires at 01:45Z (03:45 CEST).
    assert cron.next_after(utc("2025-03-30T01:10"), STOCKHOLM) == utc("2025-03-30T01:45")
    assert cron.next_after(utc("2025-03-30T01:45"), STOCKHOLM) == utc("2025-03-31T00:45")


# -- long schedules never skip or double a period ----------------------------------------


@pytest.mark.parametrize(
    ("zone", "expression", "wall"),
    [
        ("Europe/Stockholm", "0 2 1 * *", "02:00"),
        ("America/New_York", "0 2 1 * *", "02:00"),
        ("America/Havana", "0 0 1 * *", "00:00"),  # 2012-04-01 00:00 did not exist
        ("America/Havana", "30 0 1 * *", "00:30"),
        ("America/Santiago", "0 0 1 * *", "00:00"),
        ("Asia/Tehran", "0 0 22 * *", "00:00"),
    ],
)
def test_monthly_schedules_fire_once_a_month(zone: str, expression: str, wall: str) -> None:
    tz = ZoneInfo(zone)
    got = fires_between(expression, tz, utc("2005-01-01T00:00"), utc("2025-01-01T00:00"))
    months = [(g.astimezone(tz).year, g.astimezone(tz).month) for g in got]
    assert len(got) == 240
    assert len(set(months)) == 240
    hour, minute = map(int, wall.split(":"))
    late = [g.astimezone(tz) for g in got if g.astimezone(tz).strftime("%H:%M") != wall]
    # only a wall time that did not exist moves, and only forward by the gap
    assert all(0 < (t.hour - hour) * 60 + t.minute - minute <= 60 for t in late)
    assert all(t.replace(hour=hour, minute=minute, fold=0).dst() == timedelta(0) for t in late)


def test_havana_monthly_midnight_on_a_missing_midnight_fires_at_one() -> None:
    got = fires_between(
        "0 0 1 * *", ZoneInfo("America/Havana"), utc("2012-03-15"), utc("2012-04-15")
    )
    assert [g.astimezone(ZoneInfo("America/Havana")).isoformat() for g in got] == [
        "2012-04-01T01:00:00-04:00"
    ]


@pytest.mark.parametrize(
    ("zone", "expression"),
    [
        ("Europe/Stockholm", "30 2 * * 0"),
        ("America/New_York", "30 1 * * 0"),
        ("America/New_York", "30 2 * * 0"),
        ("Australia/Sydney", "30 2 * * 0"),
        ("America/Santiago", "0 0 * * 0"),  # Sunday midnight is skipped or repeated
        ("America/Santiago", "30 23 * * 6"),
    ],
)
def test_weekly_schedule_fires_once_every_week(zone: str, expression: str) -> None:
    tz = ZoneInfo(zone)
    got = fires_between(expression, tz, utc("2024-01-01T00:00"), utc("2027-01-01T00:00"))
    days = [g.astimezone(tz).date() for g in got]
    assert len({day.weekday() for day in days}) == 1
    assert len(days) == len(set(days)) == 156
    steps = {later - earlier for earlier, later in itertools.pairwise(got)}
    assert steps <= {timedelta(days=7), timedelta(days=7, hours=1), timedelta(days=7, hours=-1)}


# -- unusual zones -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "day", "expected"),
    [
        # 2025-04-06 02:00 +11 -> 01:30 +10:30; 2025-10-05 02:00 +10:30 -> 02:30 +11
        ("45 1 * * *", "2025-04-06", ["2025-04-05T14:45"]),
        ("15 2 * * *", "2025-10-05", ["2025-10-04T15:45"]),
        ("15 2,3 * * *", "2025-10-05", ["2025-10-04T15:45", "2025-10-04T16:15"]),
    ],
)
def test_lord_howe_half_hour_shift(expression: str, day: str, expected: list[str]) -> None:
    assert fires_on(expression, LORD_HOWE, day) == [utc(text) for text in expected]


@pytest.mark.parametrize(("day", "count"), [("2025-04-06", 49), ("2025-10-05", 47)])
def test_lord_howe_elapsed_counts(day: str, count: int) -> None:
    assert len(fires_on("*/30 * * * *", LORD_HOWE, day)) == count


def test_apia_skipped_a_whole_day_in_2011() -> None:
    # 2011-12-29 23:59:59 -10:00 was followed by 2011-12-31 00:00:00 +14:00.
    assert fires_on("0 9 * * *", APIA, "2011-12-29") == [utc("2011-12-29T19:00")]
    assert fires_on("0 9 * * *", APIA, "2011-12-31") == [utc("2011-12-30T19:00")]
    got = fires_between("0 9 * * *", APIA, utc("2011-12-29T00:00"), utc("2012-01-01T00:00"))
    assert got == [utc("2011-12-29T19:00"), utc("2011-12-30T19:00"), utc("2011-12-31T19:00")]
    hourly = fires_between("0 * * * *", APIA, utc("2011-12-29T00:00"), utc("2012-01-02T00:00"))
    assert {b - a for a, b in itertools.pairwise(hourly)} == {timedelta(hours=1)}
    yearly = CronExpression.parse("0 0 30 12 *").iter_after(utc("2011-06-01T00:00"), APIA)
    assert list(itertools.islice(yearly, 2)) == [utc("2011-12-30T10:00"), utc("2012-12-29T10:00")]
    elapsed = CronExpression.parse("*/30 * 30 12 *").next_after(utc("2011-06-01T00:00"), APIA)
    assert elapsed == utc("2012-12-29T10:00")


@pytest.mark.parametrize(
    ("zone", "year"),
    [
        ("Australia/Lord_Howe", 2025),
        ("Pacific/Apia", 2011),
        ("Pacific/Chatham", 2025),
        ("America/Santiago", 2025),
        ("Africa/Casablanca", 2025),
        ("Antarctica/Troll", 2025),
        ("Europe/Dublin", 2025),
        ("America/St_Johns", 2025),
    ],
)
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 0 * * *", "@hourly", "*/30 1-3 * * *"])
def test_unusual_zones_iterate_a_year_monotonically(zone: str, year: int, expression: str) -> None:
    tz = ZoneInfo(zone)
    start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    got = fires_between(expression, tz, start, end)
    assert all(a < b for a, b in itertools.pairwise(got))
    assert len(got) >= 364  # Apia had no 2011-12-30


# -- brute force: every minute around every offset change ----------------------------------

BRUTE_ZONES = [
    ("Europe/Stockholm", 2025),
    ("America/New_York", 2025),
    ("Australia/Lord_Howe", 2025),
    ("Pacific/Apia", 2011),
    ("America/Santiago", 2025),  # changes at 24:00: falls back across midnight
    ("America/Havana", 2012),  # springs forward at 00:00
    ("Asia/Tehran", 2021),  # 00:00 / 24:00 changes
    ("Africa/Casablanca", 2025),  # Ramadan: negative DST
    ("Europe/Dublin", 2025),  # negative DST in the tz database
    ("Antarctica/Troll", 2025),  # two-hour jump
    ("Pacific/Chatham", 2025),  # +12:45 / +13:45
    ("America/St_Johns", 2025),  # -03:30 / -02:30
    ("America/St_Johns", 1988),  # double DST; fell back two hours from 00:01 to 22:01
    ("America/Goose_Bay", 2005),  # fell back from 00:01 to 23:01 the day before
    ("Antarctica/Casey", 2010),  # fell back three hours from 02:00 to 23:00
]
BRUTE_EXPRESSIONS = [
    "30 2 * * *",
    "*/20 2 * * *",
    "0,30 0-3,23 * * *",
    "45 23 * * *",
    "0 0 * * *",
    "10 23,0 * * *",
    "*/30 * * * *",
    "0 * * * *",
    "*/7 */2 * * *",
    "15 0-23/3 * * *",
    "45 1 * * 0",
    "0 0 1 * 1",
]


@functools.cache
def offset_changes(tz: ZoneInfo, year: int) -> list[datetime]:
    """UTC instants in ``year`` at which ``tz`` changes its UTC offset."""

    def offset(moment: datetime) -> timedelta | None:
        return moment.astimezone(tz).utcoffset()

    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    step = timedelta(hours=6)
    while moment.year == year:
        low, high = moment, moment + step
        if offset(low) != offset(high):
            while high - low > timedelta(seconds=1):
                middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
                low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
            found.append(high)
        moment += step
    return found


def minutes(start: datetime, end: datetime) -> Iterator[datetime]:
    while start < end:
        yield start
        start += timedelta(minutes=1)


@functools.cache
def elapsed_clock(zone: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """(UTC instant, wall time shown) for every UTC minute of the window."""
    tz = ZoneInfo(zone)
    return [(t, t.astimezone(tz).replace(tzinfo=None)) for t in minutes(start, end)]


@functools.cache
def fixed_clock(zone: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """(UTC instant of fold=0, wall time) for every wall minute around the window."""
    tz = ZoneInfo(zone)
    walls = minutes(
        start.astimezone(tz).replace(tzinfo=None) - timedelta(days=1),
        end.astimezone(tz).replace(tzinfo=None) + timedelta(days=1),
    )
    return [(w.replace(tzinfo=tz, fold=0).astimezone(UTC), w) for w in walls]


def reference(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """The rule read literally, minute by minute."""
    cron = CronExpression.parse(expression)
    clock = (elapsed_clock if cron.follows_elapsed_time else fixed_clock)(zone, start, end)
    return sorted({t for t, wall in clock if start <= t < end and cron.matches(wall)})


@pytest.mark.parametrize(("zone", "year"), BRUTE_ZONES)
@pytest.mark.parametrize("expression", BRUTE_EXPRESSIONS)
def test_every_minute_around_every_offset_change(zone: str, year: int, expression: str) -> None:
    tz = ZoneInfo(zone)
    changes = offset_changes(tz, year)
    assert changes, f"{zone} has no offset change in {year}"
    for change in changes:
        start = (change - timedelta(hours=30)).replace(minute=0, second=0, microsecond=0)
        end = change + timedelta(hours=30)
        assert fires_between(expression, tz, start, end) == reference(expression, zone, start, end)
