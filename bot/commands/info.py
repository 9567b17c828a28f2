"""``/next <cron> [timezone]`` and ``/health``."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands

from .. import render
from ..reply import respond, start_deadline
from .base import PipeCog
from .schedule import trigger_args

NEXT_COUNT = 5


class InfoCommands(PipeCog):
    @app_commands.command(name="next", description="Next fire times of a cron expression")
    @app_commands.guild_only()
    @app_commands.describe(
        cron="Standard 5-field cron (e.g. '30 2 * * *') or an interval ('every 15m')",
        timezone="IANA time zone (default: the scheduler's)",
    )
    @app_commands.autocomplete(timezone=PipeCog.timezone_choices)
    async def next(
        self,
        interaction: discord.Interaction[Any],
        cron: app_commands.Range[str, 1, 200],
        timezone: app_commands.Range[str, 1, 64] | None = None,
    ) -> None:
        cron_text, every = trigger_args(cron)
        times = await asyncio.to_thread(
            self.scheduler.preview, cron=cron_text, every=every, timezone=timezone, count=NEXT_COUNT
        )
        zone = timezone or self.scheduler.settings.timezone
        kind = "cron" if cron_text is not None else "interval"
        expression = cron_text or every or ""
        embed = render.next_embed(
            expression, zone, render.describe_schedule(kind, expression), times
        )
        await interaction.response.send_message(
            embed=embed, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="health", description="Is the scheduler healthy?")
    @app_commands.guild_only()
    async def health(self, interaction: discord.Interaction[Any]) -> None:
        start_deadline(interaction)  # /health is for when things are slow
        health = await asyncio.to_thread(self.scheduler.health_check)
        await respond(interaction, embed=render.health_embed(health))
