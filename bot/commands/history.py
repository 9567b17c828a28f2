"""``/history <pipeline>``: the latest runs of a pipeline or schedule, with their chart.

The chart is ``api.charts``' run-duration chart (the status page's, as PNG), attached as
``history.png`` and shown as the embed's image; no runs, no chart.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import discord
from discord import app_commands

from api.charts import history_chart_png
from scheduler.service import PipelineScheduler

from .. import render
from ..reply import respond, start_deadline
from .base import PipeCog

CHART_RUNS = 50
"""Runs drawn in the chart (the embed lists the latest ``render.HISTORY_ROWS``)."""
CHART_FILE = "history.png"


def history_answer(
    scheduler: PipelineScheduler, name: str
) -> tuple[discord.Embed, discord.File | None]:
    """The embed and its chart (None without runs); blocking: run it in a worker thread."""
    runs = scheduler.latest_runs(name, CHART_RUNS)
    embed = render.history_embed(name, [run.to_dict() for run in runs[: render.HISTORY_ROWS]])
    if not runs:
        return embed, None
    png = history_chart_png(runs, render.truncate(f"{name}: last {len(runs)} runs", 80))
    embed.set_image(url=f"attachment://{CHART_FILE}")
    return embed, discord.File(io.BytesIO(png), CHART_FILE)


class HistoryCommands(PipeCog):
    @app_commands.command(name="history", description="Latest runs of a pipeline or schedule")
    @app_commands.guild_only()
    @app_commands.describe(pipeline="A pipeline or schedule name")
    @app_commands.autocomplete(pipeline=PipeCog.pipeline_choices)
    async def history(self, interaction: discord.Interaction[Any], pipeline: str) -> None:
        start_deadline(interaction)
        embed, chart = await asyncio.to_thread(history_answer, self.scheduler, pipeline)
        await respond(interaction, embed=embed, file=chart)
