"""Command sync: to ``DISCORD_GUILD_ID`` when set (instant), else globally, only on change.

The hash of the command payloads (``[c.to_dict(tree) ...]``, the very JSON a sync sends)
is remembered in the scheduler's database per target, so restarts do not re-sync
(Discord rate-limits command upserts, and a global sync takes a while to spread).
``pipebot sync-commands`` forces a sync with ``run_sync_commands``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from .errors import SettingsError

if TYPE_CHECKING:
    from scheduler.service import PipelineScheduler

    from .app import PipeBot
    from .settings import BotSettings

logger = logging.getLogger(__name__)

HASH_KEY = "discord_commands"


def target_of(guild_id: int | None) -> discord.Object | None:
    return None if guild_id is None else discord.Object(id=guild_id)


def command_payloads(
    tree: app_commands.CommandTree[Any], guild: discord.abc.Snowflake | None
) -> list[dict[str, Any]]:
    """What ``tree.sync(guild=guild)`` would send, sorted by command name and type."""
    commands = tree.get_commands(guild=guild)
    payloads = [command.to_dict(tree) for command in commands]
    return sorted(payloads, key=lambda p: (str(p.get("name")), int(p.get("type", 1))))


def payload_hash(payloads: Sequence[dict[str, Any]]) -> int:
    """A stable 62-bit hash of the payloads (fits the meta table's signed BIGINT)."""
    text = json.dumps(list(payloads), sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 2


def hash_key(guild_id: int | None) -> str:
    return f"{HASH_KEY}:{guild_id if guild_id is not None else 'global'}"


async def sync_commands(bot: PipeBot, force: bool) -> bool:
    """Sync when the command set changed since the last sync (or ``force``); True if synced."""
    guild_id = bot.settings.guild_id
    guild = target_of(guild_id)
    if guild is not None:
        bot.tree.copy_global_to(guild=guild)
    digest = payload_hash(command_payloads(bot.tree, guild))
    key = hash_key(guild_id)
    where = f"guild {guild_id}" if guild_id is not None else "global"
    if not force and await asyncio.to_thread(bot.scheduler.recall, key) == digest:
        logger.info("slash commands unchanged since the last sync (%s): not syncing", where)
        return False
    synced = await bot.tree.sync(guild=guild)
    await asyncio.to_thread(bot.scheduler.remember, key, digest)
    logger.info("synced %d slash command(s) (%s)", len(synced), where)
    return True


async def run_sync_commands(
    scheduler: PipelineScheduler, settings: BotSettings, *, force: bool = True
) -> bool:
    """For ``pipebot sync-commands``: log in over REST (no gateway), sync, log out."""
    from .app import PipeBot

    if settings.token is None:
        raise SettingsError("DISCORD_TOKEN", "is not set")
    bot = PipeBot(scheduler, settings, start_scheduler=False, sync_on_start=False)
    try:
        await bot.login(settings.token.get_secret_value())
        return await sync_commands(bot, force)
    finally:
        await bot.close()
