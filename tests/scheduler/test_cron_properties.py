"""Properties of CronExpression.next_after for random expressions, zones and moments."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scheduler.cron import CronExpression
from scheduler.errors import InvalidScheduleError

ZONES = sorted(
    name
    for name in available_timezones()
    if "/" in name and not name.startswith(("Etc/", "SystemV/", "US/", "posix", "right"))
)
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


@st.composite
def field(draw: st.DrawFn, low: int, high: int, names: list[str] | None = None) -> str:
    """One cron field: *, */n, a, a-b, a-b/n or a list of those; names sometimes."""

    def value(number: int) -> str:
        if names and draw(st.booleans()):
            return names[(number - low) % len(names)]
        return str(number)

    def element() -> str:
        kind = draw(st.sampled_from(["value", "range", "range-step", "star-step"]))
        a = draw(st.integers(low, high))
        b = draw(st.integers(a, high))
        step = draw(st.integers(1, max(1, high - low)))
        if kind == "value":
            return value(a)
        if kind == "range":
            return f"{value(a)}-{value(b)}"
        if kind == "range-step":
            return f"{value(a)}-{value(b)}/{step}"
        return f"*/{step}"

    if draw(st.integers(0, 3)) == 0:
        return "*"
    return ",".join(element() for _ in range(draw(st.integers(1, 3))))


@st.composite
def expressions(draw: st.DrawFn) -> CronExpression:
    text = " ".join(
        [
            draw(field(0, 59)),
            draw(field(0, 23)),
            draw(field(1, 31)),
            draw(field(1, 12, MONTHS)),
            draw(field(0, 7, DAYS)),
        ]
    )
    try:
        return CronExpression.parse(text)
    except InvalidScheduleError:  # e.g. a day-of-month/month pair that never fires
        assume(False)
        raise


moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1)).map(
    lambda moment: moment.replace(tzinfo=UTC)
)
zones = st.sampled_from(ZONES).map(ZoneInfo)


def is_fire_of(cron: CronExpression, fire: datetime, tz: ZoneInfo) -> bool:
    """``fire`` shows a matching wall time, or (fixed hours) is a skipped one shifted."""
    local = fire.astimezone(tz)
    if cron.matches(local.replace(tzinfo=None)) and local.second == 0:
        # fixed hours fire at the first occurrence of a repeated wall time only
        return cron.follows_elapsed_time or local.fold == 0
    if cron.follows_elapsed_time:
        return False
    # A wall time that did not exist fires at its fold=0 instant: find it by the offsets
    # in force up to a day before.
    for minutes in range(0, 24 * 60 + 1, 15):
        offset = (fire - timedelta(minutes=minutes)).astimezone(tz).utcoffset()
        assert offset is not None
        wall = (fire + offset).replace(tzinfo=None)
        if cron.matches(wall) and wall.replace(tzinfo=tz, fold=0).astimezone(UTC) == fire:
            return True
    return False


@PROPERTY_SETTINGS
@given(cron=expressions(), tz=zones, now=moments)
def test_next_after_is_a_matching_time_strictly_after(
    cron: CronExpression, tz: ZoneInfo, now: datetime
) -> None:
    fire = cron.next_after(now, tz)
    assert fire > now
    assert fire.tzinfo is UTC
    assert is_fire_of(cron, fire, tz), (cron.text, tz.key, now, fire)


@PROPERTY_SETTINGS
@given(
    cron=expressions(),
    tz=zones,
    now=moments,
    fractions=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=5),
)
def test_next_after_is_stable_until_the_fire(
    cron: CronExpression, tz: ZoneInfo, now: datetime, fractions: list[float]
) -> None:
    fire = cron.next_after(now, tz)
    for fraction in fractions:
        moment = now + (fire - now) * fraction
        if moment < fire:
            assert cron.next_after(moment, tz) == fire, (cron.text, tz.key, now, moment)
    assert cron.next_after(fire - timedelta(microseconds=1), tz) == fire


@PROPERTY_SETTINGS
@given(cron=expressions(), tz=zones, now=moments)
def test_fifty_fires_strictly_increase(cron: CronExpression, tz: ZoneInfo, now: datetime) -> None:
    got = list(itertools.islice(cron.iter_after(now, tz), 50))
    assert len(got) == 50
    assert all(earlier < later for earlier, later in itertools.pairwise(got))
    assert got[0] == cron.next_after(now, tz)


def has_one_value_range(text: str) -> bool:
    def number(token: str) -> int:
        token = token.lower()
        for names in (MONTHS, DAYS):
            if token in names:
                return names.index(token) + (1 if names is MONTHS else 0)
        return int(token)

    for element in text.split(","):
        low, dash, high = element.split("/")[0].partition("-")
        if dash and number(low) == number(high):
            return True
    return False


@settings(max_examples=60, deadline=None)
@given(cron=expressions(), now=moments)
def test_croniter_agrees_in_utc_where_its_day_rule_is_vixie(
    cron: CronExpression, now: datetime
) -> None:
    from croniter import croniter

    dom, dow = cron.fields[2], cron.fields[4]
    # Vixie ANDs the day fields if either text starts with '*'; croniter if either
    # expands to every value (so '*/2' ORs there, and '0,*/1' ANDs).
    expanded, _ = croniter.expand(cron.text)
    starred = dom.startswith("*") or dow.startswith("*")
    assume(starred == (expanded[2] == ["*"] or expanded[4] == ["*"]))
    # croniter 7 expands a one-value range such as 2-2 to '*' (see test_cron.py).
    assume(not any(has_one_value_range(text) for text in cron.fields))
    iterator = croniter(cron.text, now.replace(tzinfo=None))
    theirs = [iterator.get_next(datetime) for _ in range(10)]
    ours = [
        fire.replace(tzinfo=None)
        for fire in itertools.islice(cron.iter_after(now, ZoneInfo("UTC")), 10)
    ]
    assert ours == theirs
