"""``/run <pipeline>``: run now through the same no-overlap guard as scheduled runs."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from scheduler.dispatch import AlreadyRunningError

from .. import render
from ..errors import is_expired
from ..permissions import admin_only
from .base import PipeCog, actor_of

if TYPE_CHECKING:
    from ..app import PipeBot

logger = logging.getLogger(__name__)

LONG_RUN_SECONDS = 14 * 60
"""Past this, the 15-minute interaction token is nearly spent: report to the channel."""


async def run_and_report(bot: PipeBot, interaction: discord.Interaction[Any], name: str) -> None:
    """Defer, run ``name`` (a pipeline or schedule), then show the result.

    The result replaces the "thinking…" response; a run that outlived the interaction
    token (or whose edit fails because the token expired) is reported in the channel.
    """
    await interaction.response.defer(thinking=True)
    actor = actor_of(interaction.user)
    started = time.monotonic()
    try:
        record = await bot.scheduler.arun(name, requested_by=actor, trigger="chat")
    except AlreadyRunningError as exc:
        text = render.already_running_text(exc.pipeline, exc.run_id)
        await deliver(bot, interaction, started, content=text)
        return
    bot.post_audit(actor, "ran", name, f"{record.status} (run {record.run_id[:12]})")
    await deliver(bot, interaction, started, embed=render.run_embed(record, actor))


async def deliver(
    bot: PipeBot,
    interaction: discord.Interaction[Any],
    started: float,
    *,
    content: str | None = None,
    embed: discord.Embed | None = None,
) -> None:
    """Edit the original response, or post to the channel once the token is spent."""
    if time.monotonic() - started < LONG_RUN_SECONDS:
        try:
            await interaction.edit_original_response(
                content=content, embed=embed, allowed_mentions=discord.AllowedMentions.none()
            )
            return
        except discord.HTTPException as exc:
            if not is_expired(exc):
                raise
            logger.info("interaction token expired; reporting the run to the channel instead")
    await post_to_channel(bot, interaction, content=content, embed=embed)


async def post_to_channel(
    bot: PipeBot,
    interaction: discord.Interaction[Any],
    *,
    content: str | None,
    embed: discord.Embed | None,
) -> None:
    channel_id = interaction.channel_id
    if channel_id is None:
        logger.warning("cannot report a long run: the interaction has no channel")
        return
    who = render.actor_text(actor_of(interaction.user))
    text = f"{who}, your run finished." + (f"\n{content}" if content else "")
    await bot.get_partial_messageable(channel_id).send(
        render.truncate(text, render.MESSAGE_CHARS),
        embed=embed or discord.utils.MISSING,
        allowed_mentions=discord.AllowedMentions.none(),
    )


class RunCommands(PipeCog):
    @app_commands.command(name="run", description="Run a pipeline now (never doubles a run)")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.describe(pipeline="The pipeline (or schedule) to run")
    @app_commands.autocomplete(pipeline=PipeCog.pipeline_choices)
    @admin_only()
    async def run(self, interaction: discord.Interaction[Any], pipeline: str) -> None:
        await run_and_report(self.bot, interaction, pipeline)
