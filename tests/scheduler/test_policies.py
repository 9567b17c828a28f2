"""Misfire, coalesce and catch-up decisions, with time as an argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.models import CATCHUP_CAP, Policies
from scheduler.policies import (
    MISSED_ROWS_CAP,
    judge_due,
    latest_at_or_before,
    plan_catchup,
    recent_instants,
)
from scheduler.triggers import CronTrigger, IntervalTrigger

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_on_time_instant_runs() -> None:
    plan = judge_due([at(0)], at(0.2), Policies(misfire_grace_time=1))
    assert plan.run == (at(0),) and plan.missed == ()


def test_late_instant_is_missed_with_reason() -> None:
    plan = judge_due([at(0)], at(5), Policies(misfire_grace_time=1))
    assert plan.run == ()
    assert plan.missed[0][0] == at(0)
    assert "late by 5.0s (misfire_grace_time 1s)" in plan.missed[0][1]


def test_no_grace_limit_runs_however_late() -> None:
    assert judge_due([at(0)], at(3600), Policies()).run == (at(0),)


def test_burst_judged_when_noticed_not_when_dispatched() -> None:
    # 10,000 instants found due at one pass: each is judged by the pass time only.
    instants = [at(0)] * 3
    plan = judge_due(instants, at(0.01), Policies(misfire_grace_time=1))
    assert len(plan.run) == 1  # coalesced to one


def test_coalesce_runs_latest_and_records_the_rest() -> None:
    plan = judge_due([at(0), at(60), at(120)], at(121), Policies(coalesce=True))
    assert plan.run == (at(120),)
    assert [t for t, _ in plan.missed] == [at(0), at(60)]
    plan = judge_due([at(0), at(60), at(120)], at(121), Policies(coalesce=False))
    assert plan.run == (at(0), at(60), at(120))


def every(seconds: int) -> IntervalTrigger:
    return IntervalTrigger(seconds=seconds)


@pytest.mark.parametrize(
    ("policy", "runs", "missed"),
    [("latest", 1, 9), ("all", 10, 0), ("none", 0, 10)],
)
def test_catchup_policies(policy: str, runs: int, missed: int) -> None:
    plan = plan_catchup(every(60), policy, at(0), at(600))  # type: ignore[arg-type]
    assert len(plan.run) == runs
    assert len(plan.missed) == missed
    if runs:
        assert plan.run[-1] == at(600)
    assert sorted([*plan.run, *(t for t, _ in plan.missed)]) == [at(60 * k) for k in range(1, 11)]


def test_catchup_all_is_capped_and_the_rest_recorded() -> None:
    plan = plan_catchup(every(1), "all", at(0), at(500))
    assert len(plan.run) == CATCHUP_CAP
    assert plan.run[0] == at(401) and plan.run[-1] == at(500)
    assert len(plan.missed) == 400
    assert all("newest 100" in reason for _, reason in plan.missed)


def test_long_downtime_is_bounded_and_flagged() -> None:
    plan = plan_catchup(every(1), "latest", at(0), at(86_400))
    assert plan.run == (at(86_400),)
    assert len(plan.missed) == MISSED_ROWS_CAP and plan.truncated


def test_nothing_to_catch_up() -> None:
    assert plan_catchup(every(3600), "latest", at(0), at(10)).run == ()


def test_latest_found_without_walking_a_sparse_schedule() -> None:
    yearly = CronTrigger(expression="0 0 1 1 *", timezone="UTC")
    since = datetime(2001, 1, 1, tzinfo=UTC)
    latest = latest_at_or_before(yearly, datetime(2025, 6, 1, tzinfo=UTC), since)
    assert latest == datetime(2025, 1, 1, tzinfo=UTC)


def test_recent_instants_are_oldest_first() -> None:
    assert recent_instants(every(60), at(0), at(300), 3) == [at(180), at(240), at(300)]
