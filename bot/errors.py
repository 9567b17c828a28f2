"""The bot's exceptions and its one error handler.

BotError
├── SettingsError       a ``DISCORD_*`` variable cannot be used (names the variable)
├── NotAllowedError     the user, channel or server may not use this (also a CheckFailure)
├── InteractionExpired  the interaction token ran out before we could answer
└── SyncError           ``pipebot sync-commands`` could not sync (token, Discord refusing)

``handle_error`` is the only place where an exception becomes a message in Discord:
our own errors (``BotError``, ``scheduler.SchedulerError``) become one short ephemeral
line; anything else is logged with its traceback and answered with a generic line; a
reply that came too late (unknown interaction 10062, already responded) is only logged.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from scheduler.errors import SchedulerError

from .reply import settle

logger = logging.getLogger(__name__)

UNKNOWN_INTERACTION = 10062
INVALID_WEBHOOK_TOKEN = 50027
GENERIC_FAILURE = "Something went wrong on our side; it has been logged."


class BotError(Exception):
    """Root of every error raised by ``bot``."""


class SettingsError(BotError, ValueError):
    """An environment variable has a value the bot cannot use."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


class NotAllowedError(BotError, app_commands.CheckFailure):
    """A refusal: wrong server, no DM, or not an admin. The message is shown to the user."""


class InteractionExpired(BotError):
    """The interaction's token expired (or Discord forgot it) before the answer was sent."""


class SyncError(BotError):
    """The slash commands could not be synced; the message says why (never the token)."""


def is_expired(error: BaseException) -> bool:
    """Whether ``error`` says the interaction can no longer be answered."""
    if isinstance(error, discord.InteractionResponded | InteractionExpired):
        return True
    if isinstance(error, discord.HTTPException):
        return error.code in (UNKNOWN_INTERACTION, INVALID_WEBHOOK_TOKEN) or error.status == 401
    return False


def unwrap(error: BaseException) -> BaseException:
    """The exception a command raised, out of discord.py's invoke wrappers."""
    while isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError):
        cause = error.__cause__
        original = getattr(error, "original", None) or cause
        if original is None:
            break
        error = original
    return error


def user_message(error: BaseException) -> str | None:
    """The line to show for our own errors; None for anything unexpected."""
    if isinstance(error, BotError | SchedulerError):
        return str(error) or type(error).__name__
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.CheckFailure):
        return "You cannot use this command here."
    return None


async def handle_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """Turn ``error`` into a short ephemeral reply, or log it: the one handler."""
    error = unwrap(error)
    where = _where(interaction)
    if is_expired(error):
        logger.warning("%s: the answer came too late (%s)", where, _short(error))
        return
    message = user_message(error)
    if message is None:
        logger.error("%s failed", where, exc_info=error)
        message = GENERIC_FAILURE
    elif isinstance(error, NotAllowedError):
        logger.info("%s refused: %s", where, message)
    else:
        logger.info("%s: %s", where, message)
    await reply_ephemeral(interaction, message)


async def reply_ephemeral(interaction: discord.Interaction[Any], message: str) -> None:
    """Send ``message`` to the user only, as the response or as a follow-up."""
    text = message if len(message) <= 2000 else message[:1999] + "…"
    await settle(interaction)  # a defer under way first (exactly one acknowledgement)
    try:
        if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            # After a "thinking…" defer the error replaces it (visible as the defer was).
            await interaction.edit_original_response(
                content=text, embed=None, view=None, allowed_mentions=discord.AllowedMentions.none()
            )
        elif interaction.response.is_done():
            await interaction.followup.send(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
    except discord.HTTPException as exc:
        logger.warning("%s: could not send the error reply (%s)", _where(interaction), _short(exc))
    except discord.InteractionResponded:
        logger.warning("%s: could not send the error reply (already answered)", _where(interaction))


def _where(interaction: discord.Interaction[Any]) -> str:
    command = interaction.command
    name = f"/{command.qualified_name}" if command is not None else "interaction"
    user = interaction.user
    return f"{name} (user {user.id}, guild {interaction.guild_id})"


def _short(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
