"""scheduler.triggers: cron, interval and date triggers as plain, storable values."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler.errors import InvalidScheduleError
from scheduler.triggers import (
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    Trigger,
    format_every,
    load_zone,
    make_trigger,
    parse_every,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(trigger: Trigger, after: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    for _ in range(count):
        fire = trigger.next_fire(after)
        if fire is None:
            break
        out.append(fire)
        after = fire
    return out


# -- parse_every -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15m", 900),
        ("every 15m", 900),
        ("1h30m", 5400),
        ("45s", 45),
        ("1d", 86400),
        ("2d12h", 216000),
        ("1h 30m", 5400),
        ("Every 1H", 3600),
        ("  every   90m ", 5400),
        ("1h0m1s", 3601),
    ],
)
def test_parse_every(text: str, seconds: int) -> None:
    assert parse_every(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a duration like '15m', 'every 1h30m' or '45s'"),
        ("every", "expected a duration"),
        ("90", "expected a duration"),
        ("1.5h", "expected a duration"),
        ("-5m", "expected a duration"),
        ("15 minutes", "unknown unit 'minutes' (use d, h, m, s)"),
        ("3w", "unknown unit 'w'"),
        ("30m1h", "units must go from largest to smallest, each once"),
        ("1h1h", "units must go from largest to smallest, each once"),
        ("0s", "interval '0s': must be at least 1 second"),
        ("0h0m", "must be at least 1 second"),
        ("99999999999d", "longer than 1000 years"),
    ],
)
def test_parse_every_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidScheduleError, match="interval") as caught:
        parse_every(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(900, "every 15m"), (5400, "every 1h30m"), (45, "every 45s"), (90061, "every 1d1h1m1s")],
)
def test_format_every_is_the_inverse_of_parse_every(seconds: int, text: str) -> None:
    assert format_every(seconds) == text
    assert parse_every(text) == timedelta(seconds=seconds)


# -- time zones --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Mars/Base", "", "../etc/passwd", "Europe", "europe/stockholm"])
def test_unknown_time_zones_are_rejected(name: str) -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        load_zone(name)
    assert str(caught.value) == f"unknown time zone {name!r}"


@pytest.mark.parametrize(
    "build",
    [
        lambda: CronTrigger("0 9 * * *", "Mars/Base"),
        lambda: IntervalTrigger(60, "Mars/Base"),
        lambda: DateTrigger(datetime(2025, 1, 1, tzinfo=UTC), "Mars/Base"),
    ],
)
def test_every_trigger_checks_its_time_zone(build: Any) -> None:
    with pytest.raises(InvalidScheduleError, match=r"^unknown time zone 'Mars/Base'$"):
        build()


# -- CronTrigger -------------------------------------------------------------------------


def test_cron_trigger_fires_in_its_time_zone() -> None:
    trigger = CronTrigger("0 9 * * 1-5", "Europe/Stockholm")
    assert trigger.kind == "cron"
    assert trigger.expression == "0 9 * * 1-5"
    assert trigger.timezone == "Europe/Stockholm"
    got = fires(trigger, utc("2025-06-06T07:00"), 3)  # Friday 09:00 local, exactly
    assert got == [utc("2025-06-09T07:00"), utc("2025-06-10T07:00"), utc("2025-06-11T07:00")]
    assert all(fire.tzinfo is UTC for fire in got)


def test_cron_trigger_applies_the_dst_rule() -> None:
    trigger = CronTrigger("30 2 * * *", "Europe/Stockholm")
    assert fires(trigger, utc("2025-10-25T12:00"), 2) == [
        utc("2025-10-26T00:30"),
        utc("2025-10-27T01:30"),
    ]


def test_cron_trigger_normalises_whitespace_and_keeps_macros() -> None:
    assert CronTrigger("  0  9 * *\t1-5 ").expression == "0 9 * * 1-5"
    assert CronTrigger("@daily").expression == "@daily"
    assert CronTrigger("0  9 * * 1-5") == CronTrigger("0 9 * * 1-5")
    assert hash(CronTrigger("0  9 * * 1-5")) == hash(CronTrigger("0 9 * * 1-5"))
    assert CronTrigger("@daily").cron.fields == ("0", "0", "*", "*", "*")


def test_cron_trigger_rejects_bad_expressions() -> None:
    with pytest.raises(InvalidScheduleError, match=r'cron "0 9 \* \* 1-8": day-of-week value 8'):
        CronTrigger("0 9 * * 1-8", "UTC")


def test_cron_trigger_describe() -> None:
    trigger = CronTrigger("0 9 * * 1-5", "Europe/Stockholm")
    assert trigger.describe() == "at 09:00, Monday to Friday (Europe/Stockholm)"
    assert str(trigger) == trigger.describe()


def test_cron_trigger_returns_none_at_the_end_of_time() -> None:
    assert CronTrigger("@yearly").next_fire(datetime(9999, 6, 1, tzinfo=UTC)) is None


# -- IntervalTrigger -----------------------------------------------------------------------


def test_interval_without_start_is_anchored_at_the_epoch() -> None:
    trigger = IntervalTrigger(900)
    assert trigger.kind == "interval"
    assert trigger.expression == "every 15m"
    assert trigger.next_fire(utc("2025-06-06T12:07:30")) == utc("2025-06-06T12:15")
    assert trigger.next_fire(utc("2025-06-06T12:15")) == utc("2025-06-06T12:30")
    assert trigger.next_fire(utc("2025-06-06T12:14:59.999999")) == utc("2025-06-06T12:15")


def test_interval_with_start_fires_at_start_plus_k_intervals() -> None:
    start = utc("2025-01-01T09:00:10")
    trigger = IntervalTrigger(5400, "UTC", start)
    assert trigger.next_fire(utc("2024-12-31T00:00")) == start
    assert trigger.next_fire(start - timedelta(microseconds=1)) == start
    assert trigger.next_fire(start) == start + timedelta(minutes=90)
    assert trigger.next_fire(utc("2025-01-02T00:00")) == utc(
        "2025-01-02T00:00:10"
    )  # 09:00:10 + 10 x 90 min


def test_interval_follows_elapsed_time_across_dst() -> None:
    trigger = IntervalTrigger(3600, "Europe/Stockholm", datetime(2025, 3, 29, 0, 30))
    got = fires(trigger, utc("2025-03-29T00:00"), 48)
    assert {b - a for a, b in itertools.pairwise(got)} == {timedelta(hours=1)}
    local = [g.astimezone(STOCKHOLM).strftime("%H:%M") for g in got]
    assert local.count("02:30") == 1  # only on the 29th: 02:30 does not exist on the 30th


def test_interval_naive_start_is_read_in_the_trigger_zone() -> None:
    trigger = IntervalTrigger(60, "Europe/Stockholm", datetime(2025, 10, 26, 2, 30))
    assert trigger.start == utc("2025-10-26T00:30")  # fold=0: first 02:30
    assert trigger.start is not None and trigger.start.tzinfo is UTC
    aware = IntervalTrigger(
        60, "UTC", datetime(2025, 1, 1, 10, tzinfo=timezone(timedelta(hours=1)))
    )
    assert aware.start == utc("2025-01-01T09:00")


@pytest.mark.parametrize("seconds", [0, -5, 1.5, True, "60", None, 10**12])
def test_interval_must_be_at_least_one_whole_second(seconds: Any) -> None:
    with pytest.raises(InvalidScheduleError, match="interval"):
        IntervalTrigger(seconds)


def test_interval_describe() -> None:
    assert IntervalTrigger(900).describe() == "every 15 minutes"
    assert IntervalTrigger(5401).describe() == "every 1 hour 30 minutes 1 second"
    started = IntervalTrigger(86400, "Europe/Oslo", datetime(2025, 1, 1, 9))
    assert started.describe() == "every 1 day from 2025-01-01 09:00:00 (Europe/Oslo)"


# -- DateTrigger -------------------------------------------------------------------------


def test_date_trigger_fires_once() -> None:
    when = datetime(2025, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=1)))
    trigger = DateTrigger(when, "Europe/Stockholm")
    assert trigger.kind == "date"
    assert trigger.expression == "at 2025-12-31T23:59:59+01:00"
    assert trigger.next_fire(utc("2025-01-01T00:00")) == when
    assert trigger.next_fire(when - timedelta(microseconds=1)) == when
    assert trigger.next_fire(when) is None
    assert trigger.describe() == "once at 2025-12-31 23:59:59 CET (Europe/Stockholm)"


@pytest.mark.parametrize(
    ("wall", "instant"),
    [
        (datetime(2025, 6, 1, 12), "2025-06-01T10:00"),
        (datetime(2025, 10, 26, 2, 30), "2025-10-26T00:30"),  # repeated: first
        (datetime(2025, 3, 30, 2, 30), "2025-03-30T01:30"),  # missing: shifted to 03:30
    ],
)
def test_date_trigger_reads_a_naive_run_date_in_its_zone(wall: datetime, instant: str) -> None:
    trigger = DateTrigger(wall, "Europe/Stockholm")
    assert trigger.run_date == utc(instant)
    assert trigger.run_date.tzinfo is UTC


def test_date_triggers_on_the_two_sides_of_a_fold_differ() -> None:
    first = DateTrigger(datetime(2025, 10, 26, 2, 30, tzinfo=STOCKHOLM), "Europe/Stockholm")
    second = DateTrigger(
        datetime(2025, 10, 26, 2, 30, fold=1, tzinfo=STOCKHOLM), "Europe/Stockholm"
    )
    assert first != second
    assert first.expression == "at 2025-10-26T02:30:00+02:00"
    assert second.expression == "at 2025-10-26T02:30:00+01:00"


def test_date_trigger_needs_a_datetime() -> None:
    with pytest.raises(InvalidScheduleError, match="run_date must be a datetime"):
        DateTrigger("2025-01-01T00:00:00", "UTC")  # type: ignore[arg-type]


# -- common behaviour ----------------------------------------------------------------------

TRIGGERS: list[Trigger] = [
    CronTrigger("0 9 * * 1-5", "Europe/Stockholm"),
    CronTrigger("@hourly"),
    IntervalTrigger(900),
    IntervalTrigger(5400, "America/New_York", datetime(2025, 1, 1, 9, 0, 10)),
    DateTrigger(datetime(2025, 12, 31, 23, 59, 59), "Europe/Stockholm"),
]


@pytest.mark.parametrize("trigger", TRIGGERS, ids=str)
def test_round_trip_through_json(trigger: Trigger) -> None:
    data = json.loads(json.dumps(trigger.to_dict()))
    assert data["kind"] == trigger.kind
    assert data["timezone"] == trigger.timezone
    assert make_trigger(**data) == trigger
    assert type(trigger).from_dict(data) == trigger
    rebuilt = make_trigger(**data)
    moment = utc("2025-03-01T00:00")
    assert rebuilt.next_fire(moment) == trigger.next_fire(moment)
    assert rebuilt.expression == trigger.expression


@pytest.mark.parametrize("trigger", TRIGGERS, ids=str)
def test_triggers_are_frozen_and_strict_about_after(trigger: Trigger) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        trigger.timezone = "UTC"  # type: ignore[misc]
    with pytest.raises(ValueError, match="aware"):
        trigger.next_fire(datetime(2025, 1, 1))
    fire = trigger.next_fire(utc("2025-03-01T00:00"))
    assert fire is not None and fire > utc("2025-03-01T00:00")
    assert trigger.next_fire(fire) != fire


def test_make_trigger_accepts_plain_fields() -> None:
    assert make_trigger("cron", expression="0 9 * * 1-5") == CronTrigger("0 9 * * 1-5", "UTC")
    assert make_trigger("interval", every="every 15m", timezone="UTC") == IntervalTrigger(900)
    assert make_trigger("interval", seconds=60, start=None) == IntervalTrigger(60)
    assert make_trigger(
        "interval", seconds=60, start="2025-01-01T09:00", timezone="Europe/Oslo"
    ) == IntervalTrigger(60, "Europe/Oslo", datetime(2025, 1, 1, 9))
    assert make_trigger("date", run_date="2025-06-01T12:00:00+02:00") == DateTrigger(
        utc("2025-06-01T10:00")
    )


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("weekly", {}, "unknown trigger kind 'weekly' (use cron, interval or date)"),
        ("cron", {}, "cron trigger: missing field 'expression'"),
        ("cron", {"expression": "* * * * *", "jitter": 1}, "cron trigger: unknown field 'jitter'"),
        ("date", {"timezone": "UTC"}, "date trigger: missing field 'run_date'"),
        ("date", {"run_date": "tomorrow"}, "run_date 'tomorrow' is not an ISO 8601 date-time"),
        ("date", {"run_date": None}, "run_date must be a date-time"),
        ("date", {"run_date": 1735689600}, "run_date must be a date-time, got 1735689600"),
        ("interval", {}, "give exactly one of 'seconds' or 'every'"),
        ("interval", {"seconds": 60, "every": "1m"}, "give exactly one of 'seconds' or 'every'"),
        ("interval", {"every": "soon"}, "interval 'soon': expected a duration"),
        ("interval", {"seconds": 0}, "must be at least 1 second"),
        ("interval", {"seconds": 60, "start": "noon"}, "interval start 'noon' is not an ISO"),
        ("cron", {"expression": "0 9 * * *", "timezone": "Mars/Base"}, "unknown time zone"),
    ],
)
def test_make_trigger_rejects_bad_data(kind: str, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        make_trigger(kind, **fields)
    assert message in str(caught.value)


def test_from_dict_checks_the_kind() -> None:
    with pytest.raises(InvalidScheduleError, match="expected a cron trigger, got kind 'date'"):
        CronTrigger.from_dict({"kind": "date", "expression": "* * * * *"})
    assert CronTrigger.from_dict({"expression": "* * * * *"}) == CronTrigger("* * * * *")
