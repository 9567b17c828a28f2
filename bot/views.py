"""Buttons: pagination and confirmation, usable only by the user who asked, with a timeout.

(The persistent alert buttons live in ``bot.alerts``.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from .errors import handle_error

logger = logging.getLogger(__name__)

PAGE_TIMEOUT = 180.0
CONFIRM_TIMEOUT = 60.0
NOT_YOURS = "Only the person who ran this command can use these buttons."

PageRenderer = Callable[[int], discord.Embed | Awaitable[discord.Embed]]
"""Page index (0-based) to its embed; async when the page has to be read first."""


class OwnedView(discord.ui.View):
    """A view whose buttons answer only ``owner_id``; errors go to the one handler."""

    def __init__(self, *, owner_id: int, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.owner_id = owner_id
        self.interaction: discord.Interaction[Any] | None = None
        """The interaction whose response carries this view (edited on timeout)."""

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        logger.info(
            "button refused: user %s is not the owner %s of the view",
            interaction.user.id,
            self.owner_id,
        )
        await interaction.response.send_message(
            NOT_YOURS, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )
        return False

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any], /
    ) -> None:
        await handle_error(interaction, error)

    def disable_all(self) -> None:
        for child in self.children:
            if isinstance(child, discord.ui.Button | discord.ui.Select):
                child.disabled = True

    async def on_timeout(self) -> None:
        self.disable_all()
        await self.refresh()

    async def refresh(self, **changes: Any) -> None:
        """Edit the message carrying this view (new view state plus ``changes``)."""
        if self.interaction is None:
            return
        try:
            await self.interaction.edit_original_response(view=self, **changes)
        except discord.HTTPException as exc:  # deleted message, expired token: nothing to do
            logger.debug("could not update a view's message: %s", exc)


class Paginator(OwnedView):
    """First / previous / page / next / last over pages rendered on demand.

    ``render`` may be a coroutine function (for a page read when its button is pressed).
    Presses are answered one at a time, so a quick double "next" moves two pages.
    """

    def __init__(
        self,
        *,
        owner_id: int,
        pages: int,
        render: PageRenderer,
        timeout: float | None = None,
    ) -> None:
        super().__init__(owner_id=owner_id, timeout=PAGE_TIMEOUT if timeout is None else timeout)
        self.pages = max(1, pages)
        self.render = render
        self.page = 0
        self._turning = asyncio.Lock()
        self._update_buttons()

    async def send(self, interaction: discord.Interaction[Any], *, ephemeral: bool = False) -> None:
        """Answer ``interaction`` with the first page (and the buttons, when there are more).

        Works on a fresh interaction and on a deferred one (whose "thinking…" response
        is then edited into the page).
        """
        embed = await self._render(0)
        view: discord.ui.View = self
        if self.pages == 1:
            self.stop()
            view = discord.utils.MISSING
        else:
            self.interaction = interaction
        none = discord.AllowedMentions.none()
        if interaction.response.is_done():
            view = self if self.pages > 1 else None  # type: ignore[assignment]
            await interaction.edit_original_response(embed=embed, view=view, allowed_mentions=none)
        else:
            await interaction.response.send_message(
                embed=embed, view=view, ephemeral=ephemeral, allowed_mentions=none
            )

    async def _render(self, page: int) -> discord.Embed:
        embed = self.render(page)
        if isinstance(embed, discord.Embed):
            return embed
        return await embed

    def _update_buttons(self) -> None:
        self.first.disabled = self.previous.disabled = self.page == 0
        self.next.disabled = self.last.disabled = self.page >= self.pages - 1
        self.counter.label = f"{self.page + 1}/{self.pages}"

    async def show(self, interaction: discord.Interaction[Any], page: int) -> None:
        """Answer a press with page ``page`` (clamped), the buttons following it."""
        page = min(max(page, 0), self.pages - 1)
        embed = await self._render(page)
        self.page = page
        self._update_buttons()
        await interaction.response.edit_message(
            embed=embed, view=self, allowed_mentions=discord.AllowedMentions.none()
        )

    async def _turn(self, interaction: discord.Interaction[Any], to: Callable[[int], int]) -> None:
        """Show page ``to(current page)``, after any press still being answered."""
        async with self._turning:
            await self.show(interaction, to(self.page))

    @discord.ui.button(label="«", style=discord.ButtonStyle.secondary)
    async def first(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        await self._turn(interaction, lambda page: 0)

    @discord.ui.button(label="‹", style=discord.ButtonStyle.secondary)
    async def previous(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        await self._turn(interaction, lambda page: page - 1)

    @discord.ui.button(label="1/1", style=discord.ButtonStyle.primary, disabled=True)
    async def counter(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        await interaction.response.defer()  # a label, not a button: never enabled

    @discord.ui.button(label="›", style=discord.ButtonStyle.secondary)
    async def next(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        await self._turn(interaction, lambda page: page + 1)

    @discord.ui.button(label="»", style=discord.ButtonStyle.secondary)
    async def last(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        await self._turn(interaction, lambda page: self.pages - 1)


class Confirm(OwnedView):
    """A yes/no question; ``value`` is True, False, or None after the timeout."""

    def __init__(
        self, *, owner_id: int, confirm_label: str = "Confirm", timeout: float | None = None
    ) -> None:
        super().__init__(owner_id=owner_id, timeout=CONFIRM_TIMEOUT if timeout is None else timeout)
        self.value: bool | None = None
        self.answer: discord.Interaction[Any] | None = None
        """The button press that decided (respond to it to update the message)."""
        self.confirm.label = confirm_label

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.danger)
    async def confirm(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        self._decide(interaction, True)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        self._decide(interaction, False)

    def _decide(self, interaction: discord.Interaction[Any], value: bool) -> None:
        self.value = value
        self.answer = interaction
        self.disable_all()
        self.stop()

    async def on_timeout(self) -> None:
        self.disable_all()  # the waiting command edits the message
