"""Polling helpers for tests that wait on another process, thread or task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    context: Callable[[], str] | None = None,
    interval: float = 0.05,
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.

    ``context`` adds to the failure message (e.g. a process's log).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(_timed_out(timeout, what, context))
        time.sleep(interval)


async def eventually(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    context: Callable[[], str] | None = None,
    interval: float = 0.05,
) -> T:
    """``wait_for`` without blocking the event loop (for checks on the test's own loop)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(_timed_out(timeout, what, context))
        await asyncio.sleep(interval)


def _timed_out(timeout: float, what: str, context: Callable[[], str] | None) -> str:
    extra = f"\n{context()}" if context is not None else ""
    return f"timed out after {timeout}s waiting for {what}{extra}"
