"""``/pause``, ``/resume`` and ``/remove`` (with a confirmation) of a schedule."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import discord
from discord import app_commands

from scheduler.errors import SchedulerError
from scheduler.models import ScheduleInfo

from .. import render
from ..permissions import admin_only
from ..reply import respond, start_deadline
from ..views import Confirm
from .base import PipeCog, actor_of

logger = logging.getLogger(__name__)
NONE = discord.AllowedMentions.none()
T = TypeVar("T")


class Change(Protocol):
    def __call__(self, name: str, /, *, actor: str, surface: str) -> ScheduleInfo: ...


def on_a_schedule(verb: str) -> Callable[[T], T]:
    """What every command changing one schedule (``job_id``) has: guild only, admins only
    (``manage_guild`` by default, then the runtime check), schedule-name autocomplete."""
    decorators = (
        app_commands.guild_only(),
        app_commands.default_permissions(manage_guild=True),
        app_commands.describe(job_id=f"The schedule to {verb}"),
        app_commands.autocomplete(job_id=PipeCog.schedule_choices),
        admin_only(),
    )

    def apply(command: T) -> T:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


class ControlCommands(PipeCog):
    @app_commands.command(
        name="pause", description="Pause a schedule (it stays, but does not fire)"
    )
    @on_a_schedule("pause")
    async def pause(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        actor = await self._change(interaction, self.scheduler.disable, job_id)
        await respond(
            interaction, f"⏸️ Paused {render.code(job_id, 110)}. `/resume` starts it again."
        )
        self.bot.post_audit(actor, "paused", job_id)

    @app_commands.command(name="resume", description="Resume a paused schedule")
    @on_a_schedule("resume")
    async def resume(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        actor = await self._change(interaction, self.scheduler.enable, job_id)
        # Read again: the engine applies the change on this loop, after enable() returned.
        info = await asyncio.to_thread(self.scheduler.get_schedule, job_id)
        await respond(
            interaction,
            f"▶️ Resumed {render.code(job_id, 110)}: next run {render.timestamp(info.next_run)}.",
        )
        self.bot.post_audit(actor, "resumed", job_id)

    async def _change(
        self, interaction: discord.Interaction[Any], change: Change, job_id: str
    ) -> str:
        """Apply ``change`` (enable or disable) to ``job_id`` as the caller; returns the actor."""
        start_deadline(interaction)
        actor = actor_of(interaction.user)
        await asyncio.to_thread(change, job_id, actor=actor, surface="chat")
        return actor

    @app_commands.command(
        name="remove", description="Remove a schedule made from chat, the API or the CLI"
    )
    @on_a_schedule("remove")
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
