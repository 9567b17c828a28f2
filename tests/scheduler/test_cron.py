"""scheduler.cron: the standard cron language, its error messages and fire times in UTC.

DST behaviour is in test_dst.py; random-input properties in test_cron_properties.py.
"""

from __future__ import annotations

import ast
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from scheduler.cron import MACROS, CronExpression
from scheduler.errors import InvalidScheduleError, SchedulerError

UTC_ZONE = ZoneInfo("UTC")
SUNDAY = datetime(2025, 6, 1, tzinfo=UTC)  # 2025-06-01 is a Sunday
SCHEDULER = Path(__file__).resolve().parents[2] / "scheduler"


def fires(expression: str, start: datetime, count: int, tz: ZoneInfo = UTC_ZONE) -> list[str]:
    cron = CronExpression.parse(expression)
    return [f"{d:%a %Y-%m-%d %H:%M}" for d in itertools.islice(cron.iter_after(start, tz), count)]


def weekdays(expression: str, start: datetime = SUNDAY, count: int = 7) -> list[str]:
    cron = CronExpression.parse(expression)
    return [f"{d:%a}" for d in itertools.islice(cron.iter_after(start, UTC_ZONE), count)]


# -- 1. five fields, Vixie meaning ------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 9 * * 1-5", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue"]),
        ("0 9 * * mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue"]),
        ("0 9 * * MON-Fri", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue"]),
        ("0 2 * * 0", ["Sun"] * 7),
        ("0 2 * * 7", ["Sun"] * 7),
        ("0 2 * * sun", ["Sun"] * 7),
        ("0 2 * * SUN", ["Sun"] * 7),
        ("0 0 * * 5-7", ["Fri", "Sat", "Sun", "Fri", "Sat", "Sun", "Fri"]),
        ("0 0 * * fri-sat,0", ["Fri", "Sat", "Sun", "Fri", "Sat", "Sun", "Fri"]),
        ("0 0 * * 0-7", ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
        ("0 0 * * 1-7/2", ["Mon", "Wed", "Fri", "Sun", "Mon", "Wed", "Fri"]),
        ("0 0 * * */2", ["Tue", "Thu", "Sat", "Sun", "Tue", "Thu", "Sat"]),
        ("0 0 * * 6,0", ["Sat", "Sun", "Sat", "Sun", "Sat", "Sun", "Sat"]),
    ],
)
def test_day_of_week_numbering_is_vixie(expression: str, expected: list[str]) -> None:
    assert weekdays(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/15 * * * *", ["Sun 2025-06-01 00:15", "Sun 2025-06-01 00:30", "Sun 2025-06-01 00:45"]),
        (
            "5-59/20 * * * *",
            ["Sun 2025-06-01 00:05", "Sun 2025-06-01 00:25", "Sun 2025-06-01 00:45"],
        ),
        (
            "0,30 8-9 * * *",
            ["Sun 2025-06-01 08:00", "Sun 2025-06-01 08:30", "Sun 2025-06-01 09:00"],
        ),
        ("0 */6 * * *", ["Sun 2025-06-01 06:00", "Sun 2025-06-01 12:00", "Sun 2025-06-01 18:00"]),
        (
            "0 0-23/8 * * *",
            ["Sun 2025-06-01 08:00", "Sun 2025-06-01 16:00", "Mon 2025-06-02 00:00"],
        ),
        (
            "0 0 1 jan,jul *",
            ["Tue 2025-07-01 00:00", "Thu 2026-01-01 00:00", "Wed 2026-07-01 00:00"],
        ),
        (
            "0 0 1 JAN-MAR/2 *",
            ["Thu 2026-01-01 00:00", "Sun 2026-03-01 00:00", "Fri 2027-01-01 00:00"],
        ),
        ("0 0 31 * *", ["Thu 2025-07-31 00:00", "Sun 2025-08-31 00:00", "Fri 2025-10-31 00:00"]),
        ("0 0 29 2 *", ["Tue 2028-02-29 00:00", "Sun 2032-02-29 00:00", "Fri 2036-02-29 00:00"]),
        ("59 23 31 12 *", ["Wed 2025-12-31 23:59", "Thu 2026-12-31 23:59", "Fri 2027-12-31 23:59"]),
        ("00 09 01 06 *", ["Sun 2025-06-01 09:00", "Mon 2026-06-01 09:00", "Tue 2027-06-01 09:00"]),
        (
            "  0\t9  * *   1 ",
            ["Mon 2025-06-02 09:00", "Mon 2025-06-09 09:00", "Mon 2025-06-16 09:00"],
        ),
    ],
)
def test_fields_lists_ranges_steps_and_names(expression: str, expected: list[str]) -> None:
    assert fires(expression, SUNDAY, 3) == expected


def test_text_keeps_macros_and_collapses_whitespace() -> None:
    assert CronExpression.parse("  0\t9  * *   1 ").text == "0 9 * * 1"
    assert CronExpression.parse("@daily").text == "@daily"
    assert CronExpression.parse("@daily").fields == ("0", "0", "*", "*", "*")
    assert str(CronExpression.parse("*/5 * * * *")) == "*/5 * * * *"
    assert CronExpression("0 9 * * 1-5") == CronExpression.parse("0 9 * * 1-5")


def test_next_after_is_strictly_after_and_accepts_any_aware_datetime() -> None:
    cron = CronExpression.parse("0 9 * * *")
    at_nine = datetime(2025, 6, 2, 9, tzinfo=UTC)
    assert cron.next_after(at_nine, UTC_ZONE) == datetime(2025, 6, 3, 9, tzinfo=UTC)
    just_before = at_nine - timedelta(microseconds=1)
    assert cron.next_after(just_before, UTC_ZONE) == at_nine
    in_tokyo = at_nine.astimezone(ZoneInfo("Asia/Tokyo")) - timedelta(seconds=30)
    assert cron.next_after(in_tokyo, UTC_ZONE) == at_nine
    assert cron.next_after(at_nine, UTC_ZONE).tzinfo is UTC


def test_expression_must_be_text() -> None:
    with pytest.raises(InvalidScheduleError, match="cron expression must be text, got 5"):
        CronExpression.parse(5)  # type: ignore[arg-type]


def test_next_after_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        CronExpression.parse("* * * * *").next_after(datetime(2025, 1, 1), UTC_ZONE)


def test_next_after_at_the_end_of_time() -> None:
    cron = CronExpression.parse("0 0 1 1 *")
    with pytest.raises(InvalidScheduleError, match="no fire time"):
        cron.next_after(datetime(9999, 6, 1, tzinfo=UTC), UTC_ZONE)
    assert list(cron.iter_after(datetime(9999, 6, 1, tzinfo=UTC), UTC_ZONE)) == []


# -- 2. day-of-month / day-of-week OR rule ----------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # both restricted: either matches (1st of the month OR any Monday)
        ("0 0 1 * 1", ["Sun 01", "Mon 02", "Mon 09", "Mon 16", "Mon 23", "Mon 30", "Tue 01"]),
        ("0 0 13 * 5", ["Fri 06", "Fri 13", "Fri 20", "Fri 27", "Fri 04", "Fri 11", "Sun 13"]),
        # day-of-week starts with '*': both must match; '*' matches every day
        ("0 0 1 * *", ["Sun 01", "Tue 01", "Fri 01", "Mon 01", "Wed 01", "Sat 01", "Mon 01"]),
        # day-of-month starts with '*' (even with a step): both must match
        ("0 0 * * 1", ["Mon 02", "Mon 09", "Mon 16", "Mon 23", "Mon 30", "Mon 07", "Mon 14"]),
        ("0 0 */2 * 1", ["Mon 09", "Mon 23", "Mon 07", "Mon 21", "Mon 11", "Mon 25", "Mon 01"]),
        ("0 0 1-31/2 * 1", ["Sun 01", "Mon 02", "Tue 03", "Thu 05", "Sat 07", "Mon 09", "Wed 11"]),
        ("0 0 15 * */3", ["Sun 15", "Wed 15", "Sat 15", "Sun 15", "Sun 15", "Wed 15", "Wed 15"]),
    ],
)
def test_day_of_month_and_day_of_week_combine_as_in_vixie(
    expression: str, expected: list[str]
) -> None:
    start = SUNDAY - timedelta(minutes=1)
    cron = CronExpression.parse(expression)
    got = [f"{d:%a %d}" for d in itertools.islice(cron.iter_after(start, UTC_ZONE), 7)]
    assert got == expected


# -- 3. macros -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("macro", "fields"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_fire_like_their_fields(macro: str, fields: str) -> None:
    assert MACROS[macro.lower()] == fields
    assert fires(macro, SUNDAY, 5) == fires(fields, SUNDAY, 5)


def test_reboot_is_not_a_time_schedule() -> None:
    with pytest.raises(InvalidScheduleError, match="@reboot is not a time schedule"):
        CronExpression.parse("@reboot")


# -- 4. rejected input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 9 * * 1-8", 'cron "0 9 * * 1-8": day-of-week value 8 out of range 0-7'),
        ("", 'cron "": empty expression'),
        ("   ", 'cron "": empty expression'),
        ("0 0 9 * * 1", "6 fields given, standard cron has 5 "),
        ("0 0 9 * * 1", "seconds and year fields are not supported"),
        ("0 0 9 * * 1 2025", "7 fields given, standard cron has 5"),
        ("0 9 * *", "4 fields given, standard cron has 5"),
        ("60 * * * *", "minute value 60 out of range 0-59"),
        ("0 24 * * *", "hour value 24 out of range 0-23"),
        ("0 0 0 * *", "day-of-month value 0 out of range 1-31"),
        ("0 0 32 * *", "day-of-month value 32 out of range 1-31"),
        ("0 0 * 13 *", "month value 13 out of range 1-12"),
        ("0 0 * 0 *", "month value 0 out of range 1-12"),
        ("*/0 * * * *", "minute step 0 is not allowed"),
        ("0 0-23/0 * * *", "hour step 0 is not allowed"),
        ("*/90 * * * *", "minute step 90 is larger than the field's range 0-59"),
        ("0 5-1 * * *", "hour range '5-1' is reversed"),
        ("0 0 * * sat-sun", "day-of-week range 'sat-sun' is reversed"),
        ("0 0,,12 * * *", "hour field has an empty list element"),
        ("0, * * * *", "minute field has an empty list element"),
        ("0 0 * * monday", "day-of-week value 'monday' is not a number or a name"),
        ("0 0 * sept *", "month value 'sept' is not a number or a name"),
        ("0 0 * * mon-", "day-of-week field has a range with a missing value"),
        ("0 -1 * * *", "hour field has a range with a missing value"),
        ("jan * * * *", "minute value 'jan' is not a number"),
        ("1.5 * * * *", "minute value '1.5' is not a number"),
        ("*/x * * * *", "minute step 'x' is not a number"),
        ("0 0 L * *", "'L' (last day) is a Quartz/croniter extension"),
        ("0 0 * * 5L", "'L' (last day) is a Quartz/croniter extension"),
        ("0 0 LW * *", "'L' (last day) is a Quartz/croniter extension"),
        ("0 0 15W * *", "'W' (nearest weekday) is a Quartz extension"),
        ("0 0 * * 1#2", "'#' (nth weekday of the month) is a Quartz/croniter extension"),
        ("0 0 ? * 1", "'?' is a Quartz extension, not standard cron; use '*'"),
        ("H * * * *", "'H' (hashed value) is a Jenkins/croniter extension"),
        ("H(0-29)/10 * * * *", "'H' (hashed value) is a Jenkins/croniter extension"),
        ("5/10 * * * *", "minute '5/10' is ambiguous: write 5-59/10, e.g. 5-59/10"),
        ("0 2/3 * * *", "hour '2/3' is ambiguous: write 2-23/3"),
        ("0 0 0 0 0", "day-of-month value 0 out of range 1-31"),
        ("@every 5m", "unknown macro '@every 5m'"),
        ("@daily 9", "unknown macro '@daily 9'"),
        ("@weekdays", "unknown macro '@weekdays' (known: @yearly, @annually"),
        ("0 0 30 2 *", 'cron "0 0 30 2 *": never fires'),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 31 feb */2", "never fires"),
    ],
)
def test_invalid_expressions_are_rejected_with_a_clear_message(
    expression: str, message: str
) -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        CronExpression.parse(expression)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert isinstance(caught.value, SchedulerError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "expression",
    ["0 0 29 2 *", "0 0 29 2 1", "0 0 30 2 1", "0 0 29 2 */7", "0 0 31 */2 *", "0 0 * 2 0"],
)
def test_rare_but_possible_schedules_are_accepted(expression: str) -> None:
    cron = CronExpression.parse(expression)
    first = cron.next_after(datetime(2088, 3, 1, tzinfo=UTC), UTC_ZONE)
    assert cron.matches(first.replace(tzinfo=None))


def test_feb_29_on_a_sunday_across_the_2100_gap() -> None:
    cron = CronExpression.parse("0 0 29 2 */7")  # */7 of 0-7: Sunday only
    got = [f"{d:%Y-%m-%d}" for d in itertools.islice(cron.iter_after(SUNDAY, UTC_ZONE), 4)]
    assert got == ["2032-02-29", "2060-02-29", "2088-02-29", "2128-02-29"]


# -- describe and elapsed-time mode -----------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 9 * * 1-5", "at 09:00, Monday to Friday"),
        ("*/30 * * * *", "every 30 minutes"),
        ("* * * * *", "every minute"),
        ("*/15 9-17 * * 1-5", "every 15 minutes in hours 9 to 17, Monday to Friday"),
        ("@hourly", "at minute 0 of every hour"),
        ("15,45 * * * *", "at minutes 15 and 45 of every hour"),
        ("0 */2 * * *", "at minute 0 of every 2 hours"),
        ("@daily", "at 00:00, every day"),
        ("30 2 * * 0", "at 02:30, on Sunday"),
        ("0 0 * * 5-7", "at 00:00, Friday to Sunday"),
        ("0 9,17 * * mon,wed,fri", "at 09:00 and 17:00, on Monday, Wednesday and Friday"),
        ("0 2 1 * *", "at 02:00, on day 1 of the month"),
        ("0 0 1 * 1", "at 00:00, on day 1 of the month and on Monday"),
        ("0 0 */2 * 1", "at 00:00, on days 1, 3, ..., 31 of the month, if that is a Monday"),
        ("@yearly", "at 00:00, on day 1 of the month, in January"),
        ("0 12 * 6-8 *", "at 12:00, every day, in June to August"),
        ("0 9-17 * * *", "at minute 0 in hours 9 to 17"),
    ],
)
def test_describe_in_plain_words(expression: str, words: str) -> None:
    assert CronExpression.parse(expression).describe() == words


@pytest.mark.parametrize(
    ("expression", "elapsed"),
    [
        ("30 2 * * *", False),
        ("0 9,17 * * *", False),
        ("0 9-17 * * *", False),
        ("@daily", False),
        ("@weekly", False),
        ("*/30 * * * *", True),
        ("0 */2 * * *", True),
        ("0 0-23/3 * * *", True),
        ("0 9-17/2 * * *", True),
        ("@hourly", True),
    ],
)
def test_follows_elapsed_time_depends_on_the_hour_field(expression: str, elapsed: bool) -> None:
    assert CronExpression.parse(expression).follows_elapsed_time is elapsed


# -- far jumps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 0 29 2 *", "2025-01-01T00:00", "2028-02-29T00:00"),
        ("@yearly", "2025-06-01T00:00", "2026-01-01T00:00"),
        ("0 9 * * 1-5", "2025-01-03T09:00", "2025-01-06T09:00"),
    ],
)
def test_next_after_finds_distant_instants(expression: str, after: str, expected: str) -> None:
    """Instants years away come out exact (bench/scheduler_bench.py measures the speed)."""
    tz = ZoneInfo("Europe/Stockholm")
    found = CronExpression.parse(expression).next_after(
        datetime.fromisoformat(after).replace(tzinfo=tz), tz
    )
    assert found == datetime.fromisoformat(expected).replace(tzinfo=tz)


# -- why we have our own interpreter ----------------------------------------------------
# These asserts pin down where the libraries we depend on read cron differently.


def aps_fires(expression: str, start: datetime, count: int, tz: str = "UTC") -> list[datetime]:
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(expression, timezone=tz)
    out: list[datetime] = []
    previous = None
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, start)
        out.append(fire)
        previous, start = fire, fire + timedelta(microseconds=1)
    return out


def test_apscheduler_from_crontab_numbers_weekdays_from_monday() -> None:
    got = [f"{d:%a}" for d in aps_fires("0 9 * * 1-5", SUNDAY, 5)]
    assert got == ["Tue", "Wed", "Thu", "Fri", "Sat"]  # we: Mon..Fri
    assert weekdays("0 9 * * 1-5", count=5) == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert [f"{d:%a}" for d in aps_fires("0 2 * * 0", SUNDAY, 2)] == ["Mon", "Mon"]  # we: Sun
    with pytest.raises(ValueError):
        aps_fires("0 2 * * 7", SUNDAY, 1)  # we: Sunday


def test_apscheduler_from_crontab_requires_both_day_fields() -> None:
    got = [f"{d:%a %d %b %Y}" for d in aps_fires("0 0 1 * 1", SUNDAY, 2)]
    assert got == ["Tue 01 Jul 2025", "Tue 01 Sep 2026"]  # the 1st AND a "1" (Tuesday)


def test_apscheduler_fires_twice_on_fall_back_night() -> None:
    start = datetime(2025, 10, 25, 12, tzinfo=UTC)
    got = aps_fires("30 2 * * *", start, 2, "Europe/Stockholm")
    assert [d.astimezone(UTC) for d in got] == [
        datetime(2025, 10, 26, 0, 30, tzinfo=UTC),
        datetime(2025, 10, 26, 1, 30, tzinfo=UTC),  # we: once, at 00:30Z
    ]


def test_croniter_ors_a_stepped_day_of_month_with_day_of_week() -> None:
    from croniter import croniter

    it = croniter("0 0 */2 * 1", datetime(2025, 1, 1))
    got = [f"{it.get_next(datetime):%a %d}" for _ in range(3)]
    assert got == ["Fri 03", "Sun 05", "Mon 06"]  # Vixie: odd days that are Mondays
    ours = CronExpression.parse("0 0 */2 * 1").iter_after(
        datetime(2025, 1, 1, tzinfo=UTC), UTC_ZONE
    )
    assert [f"{d:%a %d}" for d in itertools.islice(ours, 3)] == ["Mon 13", "Mon 27", "Mon 03"]


def test_croniter_reads_a_one_value_range_as_every_value() -> None:
    from croniter import croniter

    assert croniter.expand("0 0 2-2 * *")[0][2] == ["*"]
    it = croniter("0 0 2-2 * *", datetime(2025, 1, 1))
    assert [f"{it.get_next(datetime):%d %b}" for _ in range(3)] == ["02 Jan", "03 Jan", "04 Jan"]
    ours = CronExpression.parse("0 0 2-2 * *").iter_after(
        datetime(2025, 1, 1, tzinfo=UTC), UTC_ZONE
    )
    assert [f"{d:%d %b}" for d in itertools.islice(ours, 3)] == ["02 Jan", "02 Feb", "02 Mar"]


def test_croniter_does_not_shift_a_local_time_skipped_by_dst() -> None:
    from croniter import croniter

    tz = ZoneInfo("Europe/Stockholm")
    it = croniter("30 2 * * *", datetime(2025, 3, 29, 12, tzinfo=tz))
    assert it.get_next(datetime).astimezone(UTC) == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    ours = CronExpression.parse("30 2 * * *").next_after(datetime(2025, 3, 29, 12, tzinfo=tz), tz)
    assert ours == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)  # 03:30 local: shifted by the gap


@pytest.mark.parametrize(
    "expression", ["5/10 * * * *", "0 0 L * *", "0 0 * * 1#2", "*/90 * * * *", "0 0 * * sat-sun"]
)
def test_croniter_accepts_what_we_reject(expression: str) -> None:
    from croniter import croniter

    assert croniter.is_valid(expression)
    with pytest.raises(InvalidScheduleError):
        CronExpression.parse(expression)


def test_croniter_accepts_a_seconds_field() -> None:
    from croniter import croniter

    assert croniter.is_valid("0 0 9 * * 1", second_at_beginning=True)
    with pytest.raises(InvalidScheduleError, match="6 fields"):
        CronExpression.parse("0 0 9 * * 1")


@pytest.mark.parametrize(
    "expression",
    [
        "0 9 * * 1-5",
        "*/15 * * * *",
        "5-59/20 0-23/3 1,15 jan-jun *",
        "0 0 * * 5-7",
        "0 0 1 * 1",
        "0 0 * * */2",
        "@monthly",
    ],
)
def test_croniter_agrees_in_utc_where_the_day_rule_agrees(expression: str) -> None:
    from croniter import croniter

    start = datetime(2025, 1, 1, 0, 7)
    it = croniter(expression, start)
    theirs = [it.get_next(datetime) for _ in range(50)]
    ours = itertools.islice(
        CronExpression.parse(expression).iter_after(start.replace(tzinfo=UTC), UTC_ZONE), 50
    )
    assert [d.replace(tzinfo=None) for d in ours] == theirs


# -- module hygiene ---------------------------------------------------------------------


@pytest.mark.parametrize("module", ["cron.py", "triggers.py"])
def test_scheduler_cron_and_triggers_do_not_import_apscheduler_or_pytz(module: str) -> None:
    tree = ast.parse((SCHEDULER / module).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & {"apscheduler", "pytz", "dateutil"}
