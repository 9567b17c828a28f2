"""Who may use the bot, and where.

Two gates, both checked at run time on every interaction:

- ``DISCORD_GUILD_IDS`` (plus ``DISCORD_GUILD_ID``): servers the bot answers at all.
  Empty: every server it is in. Direct messages are never answered.
- Commands that change something (``/run``, ``/schedule``, ``/remove``, ``/pause``,
  ``/resume`` and the alert buttons) carry ``default_permissions(manage_guild=True)``,
  which Discord enforces (server admins can re-assign it in Server Settings →
  Integrations). On top of it the bot checks ``DISCORD_ADMIN_ROLE_IDS`` and
  ``DISCORD_ADMIN_USER_IDS``: a user must hold one of the roles or be one of the users.
  **When both lists are empty, the server-side permission is the only gate.**

Refusals are ephemeral and logged. The decisions are pure functions over ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import discord
from discord import app_commands

from .errors import NotAllowedError
from .settings import BotSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")

DM_REFUSAL = "This bot only answers in a server."
GUILD_REFUSAL = "This bot is not enabled in this server."
ADMIN_REFUSAL = "You are not allowed to change schedules or run pipelines."


def guild_allowed(guild_id: int | None, allowed: frozenset[int]) -> bool:
    """Whether the bot answers in ``guild_id`` (None: a DM, never)."""
    if guild_id is None:
        return False
    return not allowed or guild_id in allowed


def is_admin(
    user_id: int,
    role_ids: Iterable[int],
    *,
    admin_user_ids: frozenset[int],
    admin_role_ids: frozenset[int],
) -> bool:
    """Whether a user may change things; with no lists configured, everyone may."""
    if not admin_user_ids and not admin_role_ids:
        return True
    if user_id in admin_user_ids:
        return True
    return any(role in admin_role_ids for role in role_ids)


def guild_refusal(guild_id: int | None, settings: BotSettings) -> str | None:
    """The refusal for an interaction from ``guild_id``, or None when it is welcome."""
    if guild_id is None:
        return DM_REFUSAL
    if not guild_allowed(guild_id, settings.allowed_guild_ids):
        return GUILD_REFUSAL
    return None


def admin_refusal(user_id: int, role_ids: Iterable[int], settings: BotSettings) -> str | None:
    """The refusal for a change by this user, or None when it is allowed."""
    allowed = is_admin(
        user_id,
        role_ids,
        admin_user_ids=settings.admin_user_ids,
        admin_role_ids=settings.admin_role_ids,
    )
    return None if allowed else ADMIN_REFUSAL


def role_ids_of(user: discord.abc.User) -> list[int]:
    """The role ids of a member, including roles that are not in the cache."""
    if not isinstance(user, discord.Member):
        return []
    # Member._roles holds every role id of the interaction payload, even for a server
    # whose roles are not cached (no GUILD_CREATE yet); Member.roles would drop those.
    raw: Iterable[int] = getattr(user, "_roles", ())
    return sorted({*raw, *(role.id for role in user.roles)})


def settings_of(interaction: discord.Interaction[Any]) -> BotSettings:
    settings = getattr(interaction.client, "settings", None)
    if not isinstance(settings, BotSettings):
        raise TypeError("the client has no BotSettings (is it a PipeBot?)")
    return settings


def check_guild(interaction: discord.Interaction[Any]) -> None:
    """Raise ``NotAllowedError`` unless the bot answers in this interaction's server."""
    refusal = guild_refusal(interaction.guild_id, settings_of(interaction))
    if refusal is not None:
        raise NotAllowedError(refusal)


def check_admin(interaction: discord.Interaction[Any]) -> None:
    """Raise ``NotAllowedError`` unless the user may change things (server checked too)."""
    check_guild(interaction)
    user = interaction.user
    refusal = admin_refusal(user.id, role_ids_of(user), settings_of(interaction))
    if refusal is not None:
        raise NotAllowedError(refusal)


def admin_only() -> Callable[[T], T]:
    """An app-command check: the caller must pass ``check_admin``."""

    async def predicate(interaction: discord.Interaction[Any]) -> bool:
        check_admin(interaction)
        return True

    return app_commands.check(predicate)
