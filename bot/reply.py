"""Answering within Discord's 3-second window when the answer needs the database.

A command that reads or writes through the facade before it answers starts a
``Deadline``: if no answer was sent ``DEFER_AFTER`` seconds later, the interaction is
deferred ("thinking…"), and ``respond`` then edits that response instead of sending one.
In the usual case (milliseconds) the answer goes out directly, so refusals stay
ephemeral; a slow database costs a visible "thinking…", never "the application did not
respond". The deadline lives in ``interaction.extras`` so the one error handler settles
it too: exactly one acknowledgement, whoever answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord

logger = logging.getLogger(__name__)

DEFER_AFTER = 2.0
"""Seconds after which an unanswered interaction is deferred (Discord allows 3)."""
_KEY = "pipebot.deadline"


class Deadline:
    """Defers ``interaction`` after ``after`` seconds unless it was answered by then."""

    def __init__(self, interaction: discord.Interaction[Any], after: float) -> None:
        self.interaction = interaction
        self._deferring: asyncio.Task[Any] | None = None
        self._timer = asyncio.get_running_loop().call_later(after, self._defer)

    def _defer(self) -> None:
        if not self.interaction.response.is_done():
            logger.info("answer not ready in time: deferring the interaction")
            self._deferring = asyncio.ensure_future(self.interaction.response.defer(thinking=True))

    async def settle(self) -> None:
        """Stop the timer; wait for a defer already under way (its failure is logged)."""
        self._timer.cancel()
        deferring, self._deferring = self._deferring, None
        if deferring is not None:
            try:
                await deferring
            except (discord.HTTPException, discord.InteractionResponded) as exc:
                logger.warning("deferring the interaction failed: %s", exc)


def start_deadline(interaction: discord.Interaction[Any], after: float | None = None) -> Deadline:
    """Start the deadline of ``interaction`` (answer with ``respond``)."""
    deadline = Deadline(interaction, DEFER_AFTER if after is None else after)
    interaction.extras[_KEY] = deadline
    return deadline


async def settle(interaction: discord.Interaction[Any]) -> None:
    """Settle the interaction's deadline, if it has one (before any other answer)."""
    deadline = interaction.extras.pop(_KEY, None)
    if isinstance(deadline, Deadline):
        await deadline.settle()


async def respond(
    interaction: discord.Interaction[Any],
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    view: discord.ui.View | None = None,
    file: discord.File | None = None,
    ephemeral: bool = False,
) -> None:
    """The answer: sent as the response, or, after a defer, edited into it.

    ``file`` is attached either way (an embed shows it as ``attachment://<filename>``).

    (After a defer the answer is as visible as the "thinking…" was: ``ephemeral`` is
    then lost, the price of answering at all.)
    """
    await settle(interaction)
    none = discord.AllowedMentions.none()
    if interaction.response.is_done():
        await interaction.edit_original_response(
            content=content,
            embed=embed,
            view=view,
            attachments=[file] if file is not None else discord.utils.MISSING,
            allowed_mentions=none,
        )
        return
    await interaction.response.send_message(
        content,
        embed=embed or discord.utils.MISSING,
        view=view or discord.utils.MISSING,
        file=file if file is not None else discord.utils.MISSING,
        ephemeral=ephemeral,
        allowed_mentions=none,
    )
