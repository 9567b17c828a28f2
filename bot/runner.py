"""Run the bot next to the scheduler: reconnect with capped exponential backoff.

discord.py already resumes dropped gateway sessions inside ``Client.connect``; what
escapes it (a rejected token, Discord or the network down at login, a gateway close it
does not resume) ends ``bot.start``. ``run_bot`` then logs one line (never the token),
waits, and starts again with ``bot.successor()`` (a closed discord.py client cannot log
in again), until ``stop`` is set. Nothing here can stop the scheduler: ``run_bot``
returns instead of raising, and runs go on while the bot is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING

import aiohttp
import discord

from pipelines.secret import Secret

if TYPE_CHECKING:
    from .app import PipeBot

logger = logging.getLogger(__name__)

INITIAL_DELAY = 1.0
MAX_DELAY = 300.0
STABLE_AFTER = 60.0
"""A connection that lasted this long resets the backoff."""

RETRYABLE: tuple[type[BaseException], ...] = (
    discord.LoginFailure,
    discord.ConnectionClosed,
    discord.GatewayNotFound,
    discord.HTTPException,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


def backoff(attempt: int, *, initial: float = INITIAL_DELAY, cap: float = MAX_DELAY) -> float:
    """Delay before attempt ``attempt + 1``: doubling from ``initial``, capped, ±10 % jitter."""
    base = min(cap, initial * 2.0 ** max(attempt - 1, 0))
    return min(cap, base * random.uniform(0.9, 1.1))


def describe(error: BaseException, token: str) -> str:
    """One line about ``error``, with the token masked should it ever appear in it."""
    if isinstance(error, discord.LoginFailure):
        text = "Discord rejected the token (LoginFailure)"
    elif isinstance(error, discord.HTTPException) and not isinstance(error, discord.Forbidden):
        text = f"Discord answered HTTP {error.status}: {error.text or error}"
    else:
        text = f"{type(error).__name__}: {error}"
    return text.replace(token, "***") if token else text


async def run_bot(
    bot: PipeBot,
    token: Secret,
    *,
    stop: asyncio.Event,
    initial_delay: float = INITIAL_DELAY,
    max_delay: float = MAX_DELAY,
) -> None:
    """``bot.start(token)`` until ``stop`` is set, with a fresh client after each failure.

    Returns once ``stop`` is set (the gateway session closed), or after an error that is
    not Discord's or the network's (logged with its traceback); then the bot stops
    alerting (``bot.detach()``).
    """
    secret = token.get_secret_value()
    attempt = 0
    loop = asyncio.get_running_loop()
    try:
        while not stop.is_set():
            attempt += 1
            started = loop.time()
            error = await _attempt(bot, secret, stop)
            if stop.is_set():
                break
            if error is None:
                logger.info("Discord bot closed; not reconnecting")
                return
            if not isinstance(error, RETRYABLE):
                logger.error(
                    "Discord bot stopped by an unexpected error; the scheduler keeps running: %s",
                    describe(error, secret),
                    exc_info=error,
                )
                return
            if loop.time() - started >= STABLE_AFTER:
                attempt = 1
            delay = backoff(attempt, initial=initial_delay, cap=max_delay)
            logger.warning(
                "Discord bot disconnected (attempt %d): %s; retrying in %.2f s",
                attempt,
                describe(error, secret),
                delay,
            )
            bot = bot.successor()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        await _close(bot)
        logger.info("Discord bot stopped")
    finally:
        bot.detach()


async def _attempt(bot: PipeBot, secret: str, stop: asyncio.Event) -> BaseException | None:
    """One ``bot.start``: its error, or None if it ended cleanly (or ``stop`` was set)."""
    starting = asyncio.create_task(bot.start(secret), name="pipebot-discord")
    stopping = asyncio.create_task(stop.wait(), name="pipebot-discord-stop")
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not starting.done():  # asked to stop, or run_bot itself was cancelled
            await _close(bot)
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
    error = None if starting.cancelled() else starting.exception()
    await _close(bot)
    return error


async def _close(bot: PipeBot) -> None:
    if bot.is_closed():
        return
    try:
        await bot.close()
    except Exception as exc:  # closing is best effort
        logger.warning("closing the Discord bot failed: %s: %s", type(exc).__name__, exc)
