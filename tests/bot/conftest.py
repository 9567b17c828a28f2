"""Shared set-up of the bot tests: the ``scheduler`` and ``world`` fixtures.

(Test modules using them declare ``pytest_plugins = ["tests.fakediscord.fixtures"]``.)

discord.py 2.x imports ``audioop`` (deprecated since Python 3.11); under
``filterwarnings = error`` that import would fail, so discord is imported here once,
with that one warning ignored, before any test module imports it.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord  # noqa: F401

from pipelines.db import dispose_engine  # noqa: E402
from scheduler.service import PipelineScheduler  # noqa: E402
from tests.bot.support import (  # noqa: E402
    MANAGE_GUILD,
    QuickBot,
    World,
    bot_settings,
    make_scheduler,
    register_pipelines,
)
from tests.fakediscord import FakeDiscord, running  # noqa: E402


@pytest.fixture
async def scheduler(tmp_path: Path) -> AsyncIterator[PipelineScheduler]:
    sched = make_scheduler(tmp_path)
    try:
        yield sched
    finally:
        await sched.astop(grace=1)
        dispose_engine(sched.settings.database_url)


@pytest.fixture
async def world(fake_discord: FakeDiscord, scheduler: PipelineScheduler) -> AsyncIterator[World]:
    # The operators may manage the server: Discord offers them the mutating commands.
    fake_discord.set_role_permissions(fake_discord.role("Pipeline Operator"), MANAGE_GUILD)
    bot = QuickBot(scheduler, bot_settings(fake_discord), guild_ready_timeout=0.05)
    world = World(fake_discord, bot, scheduler)
    register_pipelines(scheduler, world)
    try:
        async with running(bot, fake_discord):
            yield world
    finally:
        world.gate.set()
        bot.detach()
