"""Shared by the metrics and status page tests: a scheduler on a SQLite file, an app
served on loopback, and a real HTTP GET."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from pipelines.db import dispose_engine
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings


def make_scheduler(tmp_path: Path) -> PipelineScheduler:
    url = f"sqlite:///{tmp_path / 'pipebot.db'}"
    return PipelineScheduler(
        SchedulerSettings(database_url=url, timezone="Europe/Stockholm", poll_interval=0.3)
    )


async def close_scheduler(scheduler: PipelineScheduler) -> None:
    await scheduler.astop(grace=1)
    dispose_engine(scheduler.settings.database_url)


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on 127.0.0.1 (a free port); yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def fetch(url: str) -> tuple[int, str, bytes]:
    """GET ``url``: status, content type header, body."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()
