"""``/jobs``: every schedule, paginated; each page is read when it is shown.

Only the names are read up front (to count the pages and to know the name each page
starts after); a page's rows, with their next and last run, are read by name range when
its button is pressed. A schedule removed in between is simply not on its page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands

from .. import render
from ..views import Paginator
from .base import PipeCog


def page_starts(names: Sequence[str], per_page: int) -> list[str | None]:
    """The name each page starts after (None: the first page), from all names in order."""
    return [None, *names[per_page - 1 :: per_page]]


class JobsCommands(PipeCog):
    @app_commands.command(
        name="jobs", description="All schedules: owner, cron, time zone, state, runs"
    )
    @app_commands.guild_only()
    async def jobs(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(thinking=True)
        names = await asyncio.to_thread(self.scheduler.schedule_names)
        total, per_page = len(names), render.JOBS_PER_PAGE
        starts = page_starts(names, per_page)

        async def page(index: int) -> discord.Embed:
            rows = await asyncio.to_thread(
                self.scheduler.list_schedules, after=starts[index], limit=per_page
            )
            return render.jobs_page(rows, index, total, per_page)

        view = Paginator(
            owner_id=interaction.user.id,
            pages=render.page_count(total, per_page),
            render=page,
        )
        await view.send(interaction)
