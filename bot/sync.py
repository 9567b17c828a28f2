"""Command sync: to ``DISCORD_GUILD_ID`` when set (instant), else globally, only on change.

The hash of the command payloads (``[c.to_dict(tree) ...]``, the very JSON a sync sends)
is remembered in the scheduler's database per target, so restarts do not re-sync
(Discord rate-limits command upserts, and a global sync takes a while to spread).
``pipebot sync-commands`` forces a sync with ``run_sync_commands`` (REST only, no gateway).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from discord import app_commands

from .errors import SettingsError, SyncError

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


@dataclass(frozen=True)
class SyncResult:
    """What a sync did: ``synced`` False means the command set was unchanged (not sent)."""

    synced: bool
    commands: int
    target: str
    """``"guild <id>"`` or ``"global"``."""

    def __str__(self) -> str:
        if not self.synced:
            return f"slash commands unchanged since the last sync ({self.target}): not synced"
        spread = "" if self.target != "global" else "; global commands can take a while to show"
        return f"synced {self.commands} slash command(s) ({self.target}){spread}"


async def sync_commands(bot: PipeBot, force: bool) -> SyncResult:
    """Sync when the command set changed since the last sync (or ``force``)."""
    guild_id = bot.settings.guild_id
    guild = target_of(guild_id)
    if guild is not None:
        bot.tree.copy_global_to(guild=guild)
    payloads = command_payloads(bot.tree, guild)
    digest = payload_hash(payloads)
    key = hash_key(guild_id)
    where = f"guild {guild_id}" if guild_id is not None else "global"
    if not force and await asyncio.to_thread(bot.scheduler.recall, key) == digest:
        logger.info("slash commands unchanged since the last sync (%s): not syncing", where)
        return SyncResult(False, len(payloads), where)
    synced = await bot.tree.sync(guild=guild)
    await asyncio.to_thread(bot.scheduler.remember, key, digest)
    logger.info("synced %d slash command(s) (%s)", len(synced), where)
    return SyncResult(True, len(synced), where)


async def run_sync_commands(
    scheduler: PipelineScheduler, settings: BotSettings, *, force: bool = True
) -> SyncResult:
    """For ``pipebot sync-commands``: log in over REST (no gateway), sync, log out.

    Syncs to ``DISCORD_GUILD_ID`` when set, else globally, and remembers the command-set
    hash in the scheduler's database (so ``pipebot serve`` does not sync again). With
    ``force=False`` it syncs only when the commands changed. Raises ``SettingsError``
    without a token and ``SyncError`` when Discord rejects the token or the commands or
    cannot be reached (one line, never the token).
    """
    from .app import PipeBot

    if settings.token is None:
        raise SettingsError("DISCORD_TOKEN", "is not set (it is needed to sync the commands)")
    secret = settings.token.get_secret_value()
    bot = PipeBot(scheduler, settings, start_scheduler=False, sync_on_start=False)
    try:
        await bot.login(secret)
        return await sync_commands(bot, force)
    except discord.LoginFailure:
        raise SyncError("Discord rejected DISCORD_TOKEN (401 Unauthorized)") from None
    except discord.HTTPException as exc:
        text = f"Discord answered HTTP {exc.status}: {exc.text or exc}".replace(secret, "***")
        raise SyncError(text) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        text = f"cannot reach Discord ({type(exc).__name__}: {exc})".replace(secret, "***")
        raise SyncError(text) from None
    finally:
        bot.detach()
        await bot.close()
