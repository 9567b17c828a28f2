"""Pure decisions about due instants: misfire, coalesce and catch-up after downtime.

Time is an argument here, never read from a clock, so every rule is testable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .models import CATCHUP_CAP, Catchup, FireTimes, Policies

MISSED_ROWS_CAP = 1_000
"""Most missed instants written row by row for one schedule at one start."""
_LOOKBACK = (
    timedelta(minutes=1),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=32),
    timedelta(days=366),
    timedelta(days=366 * 5),
    timedelta(days=366 * 30),
)


@dataclass(frozen=True)
class Plan:
    """Which scheduled instants to run, and which to record as missed (with why)."""

    run: tuple[datetime, ...] = ()
    missed: tuple[tuple[datetime, str], ...] = ()
    truncated: bool = False
    """More instants were missed than ``MISSED_ROWS_CAP``; only the oldest are listed."""


def judge_due(run_times: Sequence[datetime], noticed_at: datetime, policies: Policies) -> Plan:
    """Decide what to do with instants the engine found due at ``noticed_at``.

    Lateness is judged when the engine noticed the instant, not when a queued burst
    got round to it, so a burst the scheduler itself queued is never a misfire.
    """
    grace = policies.misfire_grace_time
    missed: list[tuple[datetime, str]] = []
    on_time: list[datetime] = []
    for instant in run_times:
        late = (noticed_at - instant).total_seconds()
        if grace is not None and late > grace:
            missed.append((instant, f"late by {late:.1f}s (misfire_grace_time {grace:g}s)"))
        else:
            on_time.append(instant)
    if policies.coalesce and len(on_time) > 1:
        missed.extend((t, "coalesced into the run at the latest instant") for t in on_time[:-1])
        on_time = on_time[-1:]
    return Plan(run=tuple(on_time), missed=tuple(sorted(missed)))


def latest_at_or_before(trigger: FireTimes, now: datetime, since: datetime) -> datetime | None:
    """The last fire time in ``(since, now]``, found without walking every instant."""
    recent = recent_instants(trigger, since, now, 1)
    return recent[-1] if recent else None


def recent_instants(
    trigger: FireTimes, since: datetime, until: datetime, count: int
) -> list[datetime]:
    """Up to ``count`` newest fire times in ``(since, until]``, oldest first.

    Looks back through growing windows, so a long downtime of a frequent schedule costs
    about as many trigger steps as the first window that holds ``count`` instants.
    """
    for back in _LOOKBACK:
        start = max(since, until - back)
        window: deque[datetime] = deque(maxlen=count)
        current = start
        while (instant := trigger.next_fire(current)) is not None and instant <= until:
            window.append(instant)
            current = instant
        if len(window) == count or start == since:
            return list(window)
    return list(window)


def instants_between(
    trigger: FireTimes, since: datetime, until: datetime, limit: int
) -> tuple[list[datetime], bool]:
    """Up to ``limit`` fire times in ``(since, until]``; the flag says whether more exist."""
    found: list[datetime] = []
    current = since
    while (instant := trigger.next_fire(current)) is not None and instant <= until:
        if len(found) == limit:
            return found, True
        found.append(instant)
        current = instant
    return found, False


def plan_catchup(trigger: FireTimes, policy: Catchup, since: datetime, now: datetime) -> Plan:
    """Instants that fell due in ``(since, now]`` while the scheduler was not running.

    ``latest`` runs the newest one, ``all`` the newest ``CATCHUP_CAP`` in order, ``none``
    nothing; every instant not run is listed as missed.
    """
    if policy == "none":
        missed, truncated = instants_between(trigger, since, now, MISSED_ROWS_CAP)
        return _plan((), missed, "missed while not running (catchup: none)", truncated)
    run = recent_instants(trigger, since, now, CATCHUP_CAP if policy == "all" else 1)
    if not run:
        return Plan()
    before_first = run[0] - timedelta(microseconds=1)
    missed, truncated = instants_between(trigger, since, before_first, MISSED_ROWS_CAP)
    reason = (
        f"missed while not running; catch-up runs only the newest {CATCHUP_CAP}"
        if policy == "all"
        else "missed while not running; catch-up runs only the newest (catchup: latest)"
    )
    return _plan(tuple(run), missed, reason, truncated)


def _plan(run: tuple[datetime, ...], missed: list[datetime], reason: str, truncated: bool) -> Plan:
    return Plan(run=run, missed=tuple((t, reason) for t in missed), truncated=truncated)
