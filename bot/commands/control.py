"""``/pause``, ``/resume`` and ``/remove`` (with a confirmation) of a schedule."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord import app_commands

from scheduler.errors import SchedulerError

from .. import render
from ..permissions import admin_only
from ..reply import respond, start_deadline
from ..views import Confirm
from .base import PipeCog, actor_of

logger = logging.getLogger(__name__)
NONE = discord.AllowedMentions.none()


class ControlCommands(PipeCog):
    @app_commands.command(
        name="pause", description="Pause a schedule (it stays, but does not fire)"
    )
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.describe(job_id="The schedule to pause")
    @app_commands.autocomplete(job_id=PipeCog.schedule_choices)
    @admin_only()
    async def pause(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        start_deadline(interaction)
        actor = actor_of(interaction.user)
        await asyncio.to_thread(self.scheduler.disable, job_id, actor=actor, surface="chat")
        await respond(
            interaction, f"⏸️ Paused {render.code(job_id, 110)}. `/resume` starts it again."
        )
        self.bot.post_audit(actor, "paused", job_id)

    @app_commands.command(name="resume", description="Resume a paused schedule")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.describe(job_id="The schedule to resume")
    @app_commands.autocomplete(job_id=PipeCog.schedule_choices)
    @admin_only()
    async def resume(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        start_deadline(interaction)
        actor = actor_of(interaction.user)
        await asyncio.to_thread(self.scheduler.enable, job_id, actor=actor, surface="chat")
        # Read again: the engine applies the change on this loop, after enable() returned.
        info = await asyncio.to_thread(self.scheduler.get_schedule, job_id)
        await respond(
            interaction,
            f"▶️ Resumed {render.code(job_id, 110)}: next run {render.timestamp(info.next_run)}.",
        )
        self.bot.post_audit(actor, "resumed", job_id)

    @app_commands.command(
        name="remove", description="Remove a schedule made from chat, the API or the CLI"
    )
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.describe(job_id="The schedule to remove")
    @app_commands.autocomplete(job_id=PipeCog.schedule_choices)
    @admin_only()
    async def remove(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        start_deadline(interaction)
        info = await asyncio.to_thread(self.scheduler.get_schedule, job_id)
        name = render.code(job_id, 110)
        if info.owner == "yaml":
            logger.info("/remove of %s refused: owned by pipelines.yml", job_id)
            await respond(
                interaction,
                f"{name} comes from pipelines.yml and cannot be removed from chat: "
                f"remove it there, or stop it with `/pause job_id:{render.truncate(job_id, 100)}`.",
                ephemeral=True,
            )
            return
        view = Confirm(owner_id=interaction.user.id, confirm_label="Remove")
        view.interaction = interaction
        await respond(
            interaction,
            f"Remove {name} ({render.schedule_text(info)})? This cannot be undone.",
            view=view,
        )
        await view.wait()
        await self._finish_remove(interaction, view, job_id)

    async def _finish_remove(
        self, interaction: discord.Interaction[Any], view: Confirm, job_id: str
    ) -> None:
        name = render.code(job_id, 110)
        answer = view.answer
        if view.value is None or answer is None:
            await view.refresh(content=f"No answer: {name} was not removed.")
            return
        if not view.value:
            await answer.response.edit_message(content=f"Kept {name}.", view=view)
            return
        await answer.response.defer()  # at once; the message is updated once it is done
        actor = actor_of(answer.user)
        try:
            await asyncio.to_thread(self.scheduler.unschedule, job_id, actor=actor, surface="chat")
        except SchedulerError as exc:  # removed meanwhile, or read-only after all
            logger.info("/remove of %s failed: %s", job_id, exc)
            await answer.edit_original_response(
                content=f"Not removed: {render.clean(exc, 1800)}", view=view, allowed_mentions=NONE
            )
            return
        self.bot.forget_schedule_names()
        await answer.edit_original_response(
            content=f"🗑️ Removed {name} ({render.actor_text(actor)}).",
            view=view,
            allowed_mentions=NONE,
        )
        self.bot.post_audit(actor, "removed", job_id)
