"""``PipeBot``: the discord.py bot, given the scheduler facade and its settings.

The alert listener is attached in ``__init__``: build the bot before
``scheduler.astart()`` and the alerts of start-up (abandoned runs, missed instants) are
held until the bot is connected, then posted. ``setup_hook`` starts the scheduler on this
loop when nobody has yet, loads the command groups, registers the persistent alert
buttons, and syncs the slash commands when they changed. The bot uses the scheduler only
through the ``PipelineScheduler`` facade; synchronous facade calls run in worker threads.

A closed discord.py client cannot log in again (its HTTP session, loop and view store
are gone), so ``bot.runner.run_bot`` continues after a failure with ``successor()``: a
new client sharing the alert poster (and the alerts it holds).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from pipelines.sinks import discord as discord_sink
from scheduler.errors import SchedulerError
from scheduler.events import (
    EVENT_JOB_ADDED,
    EVENT_JOB_ERROR,
    EVENT_JOB_MISSED,
    EVENT_JOB_REMOVED,
    JobEvent,
)
from scheduler.service import PipelineScheduler

from . import render
from .alerts import AlertPoster, PauseButton, RerunButton
from .commands import COGS
from .errors import handle_error
from .permissions import guild_refusal
from .settings import BotSettings
from .sync import sync_commands

logger = logging.getLogger(__name__)

MAX_RATELIMIT_TIMEOUT = 60.0
"""A request rate-limited for longer fails instead of sleeping (discord.py's minimum is 30)."""
NAMES_TTL = 10.0
"""Seconds the schedule names for autocomplete are reused."""


_INTERACTION_URL = re.compile(r"(/(?:interactions|webhooks)/\d+/)[\w.-]+")


class RedactInteractionTokens(logging.Filter):
    """discord.py logs interaction URLs (their token included) at DEBUG: mask the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _INTERACTION_URL.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _INTERACTION_URL.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


for _name in ("discord.http", "discord.webhook.async_"):
    logging.getLogger(_name).addFilter(RedactInteractionTokens())


def default_intents() -> discord.Intents:
    """Slash commands need no privileged intents; ``guilds`` keeps channels resolvable."""
    intents = discord.Intents.none()
    intents.guilds = True
    return intents


class PipeTree(app_commands.CommandTree[Any]):
    """The command tree: refuses other servers and DMs, and routes errors to one handler."""

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        settings: BotSettings = self.client.settings
        refusal = guild_refusal(interaction.guild_id, settings)
        if refusal is None:
            return True
        logger.info(
            "refused interaction from user %s in guild %s: %s",
            interaction.user.id,
            interaction.guild_id,
            refusal,
        )
        if interaction.type is discord.InteractionType.autocomplete:
            await interaction.response.autocomplete([])
        else:
            await interaction.response.send_message(
                refusal, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        return False

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError, /
    ) -> None:
        await handle_error(interaction, error)


class PipeBot(commands.Bot):
    """The chat-ops bot over one ``PipelineScheduler``, sharing its event loop."""

    def __init__(
        self,
        scheduler: PipelineScheduler,
        settings: BotSettings,
        *,
        start_scheduler: bool = True,
        sync_on_start: bool = True,
        alerts: AlertPoster | None = None,
        **options: Any,
    ) -> None:
        self._options = dict(options)
        options.setdefault("intents", default_intents())
        options.setdefault("max_ratelimit_timeout", MAX_RATELIMIT_TIMEOUT)
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=PipeTree,
            **options,
        )
        self.scheduler = scheduler
        self.settings = settings
        self.start_scheduler = start_scheduler
        self.sync_on_start = sync_on_start
        self.started_scheduler = False
        """Whether this bot started the scheduler (its owner must then stop it)."""
        if alerts is None:
            alerts = AlertPoster(self)
            scheduler.add_listener(alerts.on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        alerts.bot = self
        self.alerts = alerts
        self._names: list[str] = []
        self._names_at = float("-inf")
        self._background: set[asyncio.Task[None]] = set()
        scheduler.add_listener(self._on_schedules_changed, EVENT_JOB_ADDED | EVENT_JOB_REMOVED)

    def successor(self) -> PipeBot:
        """A new client like this one, for the next login; it takes over the alerts."""
        return type(self)(
            self.scheduler,
            self.settings,
            start_scheduler=self.start_scheduler,
            sync_on_start=self.sync_on_start,
            alerts=self.alerts,
            **self._options,
        )

    def gateway_connected(self) -> bool:
        """Whether this client is logged in with an open gateway websocket."""
        ws = self.ws
        return self.is_ready() and not self.is_closed() and ws is not None and ws.open

    def connection_probe(self) -> Callable[[], bool]:
        """``gateway_connected`` of the newest client: this one, or its latest successor.

        Successors share the alert poster, and each takes it over, so ``alerts.bot`` is
        always the client ``run_bot`` is running (for ``api.metrics.watch_discord``).
        """
        alerts = self.alerts
        return lambda: alerts.bot.gateway_connected()

    def __repr__(self) -> str:
        return f"<PipeBot user={self.user!r} scheduler={self.scheduler!r}>"

    async def setup_hook(self) -> None:
        """At login (once per client): scheduler, command groups, buttons, command sync."""
        if self.start_scheduler and not self.scheduler.running:
            await self.scheduler.astart()
            self.started_scheduler = True
        self.alerts.loop = asyncio.get_running_loop()
        for cog in COGS:
            await self.add_cog(cog(self))
        self.add_dynamic_items(RerunButton, PauseButton)
        if self.sync_on_start:
            try:
                await sync_commands(self, force=False)
            except (discord.HTTPException, SchedulerError) as exc:
                logger.error("slash command sync failed (the old commands stay): %s", exc)

    async def on_ready(self) -> None:
        discord_sink.set_client(self)
        user = self.user
        logger.info(
            "Discord bot ready as %s (id %s) in %d server(s)",
            user,
            user.id if user is not None else "?",
            len(self.guilds),
        )
        self.alerts.flush()

    async def on_resumed(self) -> None:
        self.alerts.flush()

    async def close(self) -> None:
        self.scheduler.remove_listener(self._on_schedules_changed)
        discord_sink.clear_client(self)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.alerts.aclose()
        await super().close()

    def detach(self) -> None:
        """Stop alerting: the bot is gone for good (``run_bot`` calls it when it returns)."""
        self.scheduler.remove_listener(self.alerts.on_event)
        self.scheduler.remove_listener(self._on_schedules_changed)

    # --- for the command groups ---------------------------------------------------------

    async def schedule_names(self) -> list[str]:
        """Schedule names for autocomplete, reused for ``NAMES_TTL`` seconds."""
        if time.monotonic() - self._names_at > NAMES_TTL:
            self._names = await asyncio.to_thread(self.scheduler.schedule_names)
            self._names_at = time.monotonic()
        return self._names

    def forget_schedule_names(self) -> None:
        self._names_at = float("-inf")

    def _on_schedules_changed(self, event: JobEvent) -> None:
        self._names_at = float("-inf")  # any thread: a plain assignment

    def post_audit(self, actor: str, action: str, target: str, detail: str = "") -> None:
        """Post a change to ``DISCORD_AUDIT_CHANNEL_ID`` in the background, if set.

        The audit row itself is written by the facade call that made the change.
        """
        channel_id = self.settings.audit_channel_id
        if channel_id is None or self.is_closed():
            return
        text = render.audit_text(actor, action, target, detail)
        task = asyncio.ensure_future(self._send_audit(channel_id, text))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_audit(self, channel_id: int, text: str) -> None:
        try:
            await self.get_partial_messageable(channel_id).send(
                text, allowed_mentions=discord.AllowedMentions.none()
            )
        except (discord.HTTPException, OSError, TimeoutError) as exc:
            logger.warning("could not post to the audit channel %s: %s", channel_id, exc)
