"""The API's own worker threads for blocking facade calls.

Handlers never block the event loop the scheduler fires from: every database call of a
request runs on a thread of ``Offload``. Two lanes:

* ``offload.quick(fn, ...)``: one thread for the short indexed reads behind the hot
  paths (a page of schedules or runs, one schedule). One thread, because these calls
  share the interpreter lock with the event loop: in ``bench/api_bench.py`` a page of
  runs cost the server 2.2 ms of CPU through one thread and 4.5 ms through four, the
  difference being lock hand-offs between threads that all want to run Python.
* ``offload(fn, ...)``: a few threads for everything else (writes, health reports
  that read whole tables, the status page, charts), so a slow call there never holds
  up the quick lane.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from aiohttp import web

P = ParamSpec("P")
T = TypeVar("T")
THREADS = 4
"""Threads of the general lane."""


class Offload:
    """``await offload(fn, *args)`` / ``await offload.quick(fn, *args)``: ``fn`` on a
    thread of that lane, with the caller's context variables."""

    def __init__(self, threads: int = THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pipebot-api")
        self._quick = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipebot-api-quick")

    async def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await _run(self._pool, fn, *args, **kwargs)

    async def quick(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """For a read that takes a few milliseconds at most."""
        return await _run(self._quick, fn, *args, **kwargs)

    def close(self) -> None:
        """Let calls in flight finish in the background; refuse new ones."""
        for pool in (self._quick, self._pool):
            pool.shutdown(wait=False, cancel_futures=True)


async def _run(
    pool: ThreadPoolExecutor, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(pool, call)


OFFLOAD_KEY = web.AppKey("pipebot_offload", Offload)


def app_offload(app: web.Application) -> Offload:
    """The ``Offload`` of ``app``: made on first use, closed when the app is cleaned up."""
    found = app.get(OFFLOAD_KEY)
    if found is None:
        found = app[OFFLOAD_KEY] = Offload()

        async def close(app: web.Application) -> None:
            found.close()

        app.on_cleanup.append(close)
    return found
