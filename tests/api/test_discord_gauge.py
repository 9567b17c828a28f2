"""``pipebot_discord_connected`` follows a real discord.py client's gateway connection.

The composition root hands the metrics a probe looking at its bot (``watch_discord``);
here a plain ``discord.Client`` talks to the fake Discord on loopback, its gateway is cut
during an outage, and the gauge is scraped over HTTP before, during and after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from api.metrics import setup_metrics, watch_discord
from scheduler.service import PipelineScheduler
from tests.fakediscord import FakeDiscord, running  # first: it imports discord quietly

import discord  # noqa: E402  isort: skip

from .live import close_scheduler, make_scheduler, serve
from .test_metrics import scrape, value

pytest_plugins = ["tests.fakediscord.fixtures"]


def gateway_up(client: discord.Client) -> bool:
    """The probe recommended for the bot: ready, not closed, and its websocket open
    (``is_ready()`` alone stays true while discord.py reconnects)."""
    return client.is_ready() and not client.is_closed() and client.ws is not None and client.ws.open


@pytest.fixture
async def scheduler(tmp_path: Path) -> AsyncIterator[PipelineScheduler]:
    sched = make_scheduler(tmp_path)
    yield sched
    await close_scheduler(sched)


async def gauge(base: str) -> float | None:
    return value(await scrape(base), "pipebot_discord_connected")


async def test_gauge_follows_the_gateway_through_an_outage(
    fake_discord: FakeDiscord, scheduler: PipelineScheduler
) -> None:
    app = web.Application()
    setup_metrics(app, scheduler)
    client = discord.Client(intents=discord.Intents.none(), guild_ready_timeout=0.05)
    watch_discord(app, lambda: gateway_up(client))
    async with serve(app) as base:
        assert await gauge(base) == 0  # not started yet
        async with running(client, fake_discord):
            assert await gauge(base) == 1
            fake_discord.outage()
            await fake_discord.drop_gateway()  # reconnects are refused during the outage
            await fake_discord.wait_for(lambda: not gateway_up(client))
            assert await gauge(base) == 0
            fake_discord.outage(False)
            await fake_discord.wait_for(lambda: gateway_up(client), timeout=30)
            assert await gauge(base) == 1
        assert await gauge(base) == 0  # closed
