"""SCHEDULER_DISTRIBUTED and the lease settings: defaults, bad values, no secrets in reprs."""

from __future__ import annotations

import pytest

from scheduler.errors import SettingsError
from scheduler.lease import lease_name, lock_file
from scheduler.settings import SchedulerSettings

PG = "postgresql://app:hunter2@db.example:5432/pipebot"


def test_defaults_follow_the_store() -> None:
    single = SchedulerSettings.from_env({})
    assert (single.distributed, single.lock_backend, single.lease_seconds) == (False, "file", 5.0)
    on_pg = SchedulerSettings.from_env({"SCHEDULER_DB_URL": PG, "SCHEDULER_DISTRIBUTED": "true"})
    assert (on_pg.distributed, on_pg.lock_backend) == (True, "postgres")
    chosen = SchedulerSettings.from_env(
        {
            "SCHEDULER_DB_URL": PG,
            "SCHEDULER_DISTRIBUTED": "yes",
            "SCHEDULER_LOCK_BACKEND": "Redis",
            "SCHEDULER_LEASE_SECONDS": "2.5",
            "SCHEDULER_REDIS_URL": "redis://:s3cret@cache:6379/2",
        }
    )
    assert (chosen.lock_backend, chosen.lease_seconds) == ("redis", 2.5)
    assert chosen.redis_url == "redis://:s3cret@cache:6379/2"
    shown = repr(chosen)
    assert "hunter2" not in shown and "s3cret" not in shown and "lock_backend='redis'" in shown


@pytest.mark.parametrize(
    ("env", "variable", "problem"),
    [
        ({"SCHEDULER_DISTRIBUTED": "maybe"}, "SCHEDULER_DISTRIBUTED", "is not true or false"),
        ({"SCHEDULER_LOCK_BACKEND": "zookeeper"}, "SCHEDULER_LOCK_BACKEND", "postgres, redis"),
        ({"SCHEDULER_LOCK_BACKEND": "postgres"}, "SCHEDULER_LOCK_BACKEND", "PostgreSQL URL"),
        ({"SCHEDULER_LEASE_SECONDS": "0"}, "SCHEDULER_LEASE_SECONDS", "must be positive"),
        ({"SCHEDULER_LEASE_SECONDS": "soon"}, "SCHEDULER_LEASE_SECONDS", "is not a number"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem) as caught:
        SchedulerSettings.from_env(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")


def test_lease_names_and_files() -> None:
    one = SchedulerSettings(database_url=PG)
    other = SchedulerSettings(database_url=PG.replace("pipebot", "staging"))
    same_but_password = SchedulerSettings(database_url=PG.replace("hunter2", "changed"))
    assert lease_name(one) != lease_name(other)
    assert lease_name(one) == lease_name(same_but_password)  # the password is no part of it
    assert "hunter2" not in lease_name(one)
    assert lease_name(SchedulerSettings(lock_name="mine")) == "mine"
    sqlite = SchedulerSettings(database_url="sqlite:////srv/pipebot/pipebot.db")
    assert str(lock_file(sqlite)) == "/srv/pipebot/pipebot.db.lease"
    assert str(lock_file(SchedulerSettings(lock_file="/run/x.lock"))) == "/run/x.lock"
