"""``LastRunCache``: kept answers, forgotten by this process's writes, expired for others'."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler.last_run_cache import LastRunCache
from scheduler.models import LastRun

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_answers_are_kept_until_the_ttl_and_runless_names_too() -> None:
    clock = Clock()
    cache = LastRunCache(ttl=2.0, clock=clock)
    found, missing, token = cache.lookup(["a", "b"])
    assert (found, missing) == ({}, ["a", "b"])
    cache.keep(token, missing, {"a": LastRun(AT, "success")})  # b has no run yet
    clock.now += 1.9
    assert cache.lookup(["a", "b", "c"])[:2] == ({"a": LastRun(AT, "success")}, ["c"])
    clock.now += 0.2
    assert cache.lookup(["a", "b"])[1] == ["a", "b"]  # expired: another process may have run


def test_forget_drops_names_and_refuses_answers_read_meanwhile() -> None:
    cache = LastRunCache(ttl=60)
    _, missing, token = cache.lookup(["a", "b"])
    cache.keep(token, missing, {"a": LastRun(AT, "running"), "b": LastRun(AT, "success")})
    _, missing, stale = cache.lookup(["c"])
    cache.forget(["a", None])  # a write committed while "c" was being read
    cache.keep(stale, missing, {})
    assert cache.lookup(["a", "b", "c"])[:2] == ({"b": LastRun(AT, "success")}, ["a", "c"])
    cache.forget_all()
    assert cache.lookup(["b"])[1] == ["b"]
