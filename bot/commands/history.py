"""``/history <pipeline>``: the latest runs of a pipeline or schedule."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands

from .. import render
from ..reply import respond, start_deadline
from .base import PipeCog


class HistoryCommands(PipeCog):
    @app_commands.command(name="history", description="Latest runs of a pipeline or schedule")
    @app_commands.guild_only()
    @app_commands.describe(pipeline="A pipeline or schedule name")
    @app_commands.autocomplete(pipeline=PipeCog.pipeline_choices)
    async def history(self, interaction: discord.Interaction[Any], pipeline: str) -> None:
        start_deadline(interaction)
        rows = await asyncio.to_thread(self.scheduler.get_history, pipeline, render.HISTORY_ROWS)
        await respond(interaction, embed=render.history_embed(pipeline, rows))
