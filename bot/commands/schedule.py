"""``/schedule <pipeline> <cron> [timezone]``: validate, preview, persist, answer publicly."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import discord
from discord import app_commands

from .. import render
from ..permissions import admin_only
from ..reply import respond, start_deadline
from .base import PipeCog, actor_of

PREVIEW_COUNT = 3


def trigger_args(expression: str) -> tuple[str | None, str | None]:
    """``(cron, every)``: ``every 15m`` is an interval, anything else cron (both validated
    by the facade)."""
    text = " ".join(expression.split())
    if text.lower().startswith("every "):
        return None, text
    return text, None


def new_job_id(pipeline: str) -> str:
    return f"{pipeline}-{secrets.token_hex(3)}"


class ScheduleCommands(PipeCog):
    @app_commands.command(
        name="schedule", description="Schedule a pipeline with cron or 'every 15m'"
    )
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.describe(
        pipeline="The pipeline to run",
        cron="Standard 5-field cron (e.g. '0 9 * * 1-5') or an interval ('every 15m')",
        timezone="IANA time zone (default: the scheduler's)",
    )
    @app_commands.autocomplete(pipeline=PipeCog.pipeline_choices, timezone=PipeCog.timezone_choices)
    @admin_only()
    async def schedule(
        self,
        interaction: discord.Interaction[Any],
        pipeline: str,
        cron: app_commands.Range[str, 1, 200],
        timezone: app_commands.Range[str, 1, 64] | None = None,
    ) -> None:
        start_deadline(interaction)
        cron_text, every = trigger_args(cron)
        # The preview validates with exactly the trigger that will fire the schedule.
        upcoming = await asyncio.to_thread(
            self.scheduler.preview,
            cron=cron_text,
            every=every,
            timezone=timezone,
            count=PREVIEW_COUNT,
        )
        actor = actor_of(interaction.user)
        info = await asyncio.to_thread(
            self.scheduler.create_schedule,
            new_job_id(pipeline),
            pipeline,
            timezone=timezone,
            owner="chat",
            created_by=actor,
            cron=cron_text,
            every=every,
        )
        self.bot.forget_schedule_names()
        await respond(interaction, embed=render.schedule_created_embed(info, upcoming))
        self.bot.post_audit(
            actor, "scheduled", info.name, f"{pipeline}: {info.expression} {info.timezone}"
        )
