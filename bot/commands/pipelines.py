"""``/pipelines``: each pipeline with its description, schedules, next run and last status."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands

from .. import render
from ..views import Paginator
from .base import PipeCog


class PipelinesCommands(PipeCog):
    @app_commands.command(
        name="pipelines", description="Pipelines with their schedules and last status"
    )
    @app_commands.guild_only()
    async def pipelines(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(thinking=True)
        pipelines = self.scheduler.pipelines()
        schedules = await asyncio.to_thread(self.scheduler.list_schedules)
        last_runs = await asyncio.to_thread(self._last_runs, list(pipelines))
        fields = render.pipeline_fields(pipelines, schedules, last_runs)
        view = Paginator(
            owner_id=interaction.user.id,
            pages=render.page_count(len(fields), render.PIPELINES_PER_PAGE),
            render=lambda page: render.pipelines_page(fields, page),
        )
        await view.send(interaction)

    def _last_runs(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """The newest run of each pipeline (or of its schedule of the same name)."""
        found = {}
        for name in names:
            rows = self.scheduler.get_history(name, 1)
            if rows:
                found[name] = rows[0]
        return found
