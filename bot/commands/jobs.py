"""``/jobs``: every schedule, paginated; only the first page is rendered up front."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands

from .. import render
from ..views import Paginator
from .base import PipeCog


class JobsCommands(PipeCog):
    @app_commands.command(
        name="jobs", description="All schedules: owner, cron, time zone, state, runs"
    )
    @app_commands.guild_only()
    async def jobs(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(thinking=True)
        schedules = await asyncio.to_thread(self.scheduler.list_schedules)
        schedules.sort(key=lambda info: info.name)
        pages = render.page_count(len(schedules), render.JOBS_PER_PAGE)
        view = Paginator(
            owner_id=interaction.user.id,
            pages=pages,
            render=lambda page: render.jobs_page(schedules, page),
        )
        await view.send(interaction)
