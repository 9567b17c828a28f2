"""What every command group shares: the bot, the facade, who is asking, autocomplete."""

from __future__ import annotations

import functools
import zoneinfo
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from scheduler.service import PipelineScheduler

from .. import render

if TYPE_CHECKING:
    from ..app import PipeBot


def actor_of(user: discord.abc.User) -> str:
    """How a Discord user is recorded in the audit trail and history: ``"<id>:<name>"``."""
    return f"{user.id}:{user.name}"


@functools.cache
def time_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


class PipeCog(commands.Cog):
    """A command group bound to the bot (and through it, to the scheduler facade)."""

    def __init__(self, bot: PipeBot) -> None:
        self.bot = bot

    @property
    def scheduler(self) -> PipelineScheduler:
        return self.bot.scheduler

    async def pipeline_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return render.choices(self.scheduler.pipelines(), current)

    async def schedule_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return render.choices(await self.bot.schedule_names(), current)

    async def timezone_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return render.choices(time_zones(), current)
