"""Alerts: failed, timed-out and missed runs posted to ``DISCORD_ALERT_CHANNEL_ID``.

Each alert carries persistent buttons (``pipebot:rerun:<name>``, ``pipebot:pause:<name>``)
built as ``DynamicItem``s, so they keep working after a restart. Pressing one is
permission-checked like the commands. Missed instants of one schedule that arrive
together (catch-up, a blocked loop) are posted as one alert. Runs left ``abandoned`` by a
stopped process are alerted too (the scheduler reports them at start-up).

The listener never raises into the scheduler and never blocks it: it only schedules
a task on the bot's loop. Alerts raised while the bot is not connected (start-up,
catch-up, a Discord outage) are held, at most ``MAX_HELD``, and posted once it is ready
again; an alert Discord refuses (403/404: a wrong channel) is logged and dropped. Runs
started from chat are not alerted (their result is shown where they were asked for).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Self

import aiohttp
import discord

from scheduler.events import EVENT_JOB_MISSED, JobEvent

from . import render
from .commands.base import actor_of
from .commands.run import run_and_report
from .errors import handle_error
from .permissions import check_admin
from .reply import respond, start_deadline

if TYPE_CHECKING:
    from .app import PipeBot

logger = logging.getLogger(__name__)

ALERT_STATUSES = frozenset({"failed", "timeout", "abandoned"})
MISSED_WINDOW = 2.0
"""Seconds to gather missed instants of one schedule into one alert."""
MAX_HELD = 50
"""Alerts kept while the bot is away; past this the oldest are dropped (and logged)."""
RETRY_DELAY = 15.0
"""Seconds before held alerts are tried again after Discord failed to take one."""
CUSTOM_ID_CHARS = 100
RERUN_PREFIX = "pipebot:rerun:"
PAUSE_PREFIX = "pipebot:pause:"


class _AlertButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"pipebot:(?:rerun|pause):(?P<name>.+)",
):
    """A persistent alert button: ``<prefix><name>``; subclasses act in ``act``."""

    PREFIX: ClassVar[str]
    LABEL: ClassVar[str]
    EMOJI: ClassVar[str]
    STYLE: ClassVar[discord.ButtonStyle]

    def __init__(self, name: str) -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=self.LABEL, emoji=self.EMOJI, style=self.STYLE, custom_id=self.PREFIX + name
        )
        super().__init__(button)
        self.name = name

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: Any,
        /,
    ) -> Self:
        return cls(str(match["name"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            check_admin(interaction)
            await self.act(interaction, interaction.client)
        except Exception as exc:
            await handle_error(interaction, exc)

    async def act(self, interaction: discord.Interaction[Any], bot: PipeBot) -> None:
        raise NotImplementedError


class RerunButton(_AlertButton, template=r"pipebot:rerun:(?P<name>.+)"):
    """Run the pipeline (or schedule) of an alert again."""

    PREFIX, LABEL, EMOJI, STYLE = RERUN_PREFIX, "Run again", "🔁", discord.ButtonStyle.primary

    async def act(self, interaction: discord.Interaction[Any], bot: PipeBot) -> None:
        await run_and_report(bot, interaction, self.name)


class PauseButton(_AlertButton, template=r"pipebot:pause:(?P<name>.+)"):
    """Pause the schedule of an alert."""

    PREFIX, LABEL, EMOJI, STYLE = PAUSE_PREFIX, "Pause", "⏸️", discord.ButtonStyle.secondary

    async def act(self, interaction: discord.Interaction[Any], bot: PipeBot) -> None:
        start_deadline(interaction)
        actor = actor_of(interaction.user)
        await asyncio.to_thread(bot.scheduler.disable, self.name, actor=actor, surface="chat")
        await respond(
            interaction, f"⏸️ {render.actor_text(actor)} paused {render.code(self.name, 110)}."
        )
        bot.post_audit(actor, "paused", self.name, "from an alert")


def alert_view(schedule: str | None, pipeline: str | None) -> discord.ui.View | None:
    """The buttons of an alert: run again (schedule or pipeline), pause (schedules only)."""
    view = discord.ui.View(timeout=None)
    target = schedule or pipeline
    if target and len(RERUN_PREFIX + target) <= CUSTOM_ID_CHARS:
        view.add_item(RerunButton(target))
    if schedule and len(PAUSE_PREFIX + schedule) <= CUSTOM_ID_CHARS:
        view.add_item(PauseButton(schedule))
    return view if view.children else None


class AlertPoster:
    """The scheduler listener that turns run events into alert messages.

    It posts through ``bot``, the current client (``PipeBot.successor`` hands it over).
    """

    def __init__(self, bot: PipeBot, *, missed_window: float = MISSED_WINDOW) -> None:
        self.bot = bot
        self.missed_window = missed_window
        self._missed: dict[str, list[JobEvent]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: deque[tuple[discord.Embed, discord.ui.View | None]] = deque()
        self._retry: asyncio.Task[None] | None = None
        self.retry_delay = RETRY_DELAY
        self.loop: asyncio.AbstractEventLoop | None = None
        """The bot's loop; taken from the first event when the bot has not started yet."""

    @property
    def held(self) -> int:
        """How many alerts wait for the bot to be connected."""
        return len(self._held)

    def on_event(self, event: JobEvent) -> None:
        """Scheduler listener (any thread): never raises, never blocks."""
        try:
            if self.bot.settings.alert_channel_id is None:
                return
            if event.code & EVENT_JOB_MISSED:
                self._submit(self._gather_missed, event)
            elif event.status in ALERT_STATUSES and not _answered_in_chat(event):
                self._submit(self._post_run, event)
        except Exception:
            logger.exception("alert listener failed for %s", event.schedule or event.pipeline)

    def _submit(self, job: Any, event: JobEvent) -> None:
        if self.loop is None:
            try:
                self.loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        loop = self.loop
        if loop is None or loop.is_closed():
            logger.warning("alert for %s dropped: no event loop", event.schedule or event.pipeline)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn(job(event))
        else:
            loop.call_soon_threadsafe(lambda: self._spawn(job(event)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_run(self, event: JobEvent) -> None:
        record = event.record
        embed = render.alert_embed(
            status=event.status or "failed",
            schedule=event.schedule,
            pipeline=event.pipeline,
            error=event.error,
            at=(record.started_at if record is not None else None) or event.scheduled_for,
            run_id=event.run_id,
        )
        await self.post(embed, alert_view(event.schedule, event.pipeline))

    async def _gather_missed(self, event: JobEvent) -> None:
        key = event.schedule or event.pipeline or "?"
        pending = self._missed.setdefault(key, [])
        pending.append(event)
        if len(pending) > 1:
            return  # the first event's task posts them all
        await asyncio.sleep(self.missed_window)
        embed, view = _missed_alert(self._missed.pop(key, []))
        await self.post(embed, view)

    async def post(self, embed: discord.Embed, view: discord.ui.View | None) -> None:
        """Send one alert, or hold it while the bot is away; never raises."""
        channel_id = self.bot.settings.alert_channel_id
        if channel_id is None:
            return
        if self.bot.is_closed() or not self.bot.is_ready():
            self._hold(embed, view, "the bot is not connected")  # on_ready posts it
            return
        try:
            await self.bot.get_partial_messageable(channel_id).send(
                embed=embed,
                view=view or discord.utils.MISSING,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as exc:
            if exc.status >= 500:
                self._hold(embed, view, f"Discord answered HTTP {exc.status}", retry=True)
            else:
                logger.warning("could not post an alert to channel %s: %s", channel_id, exc)
        except (discord.RateLimited, aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._hold(embed, view, f"{type(exc).__name__}: {exc}", retry=True)

    def _hold(
        self, embed: discord.Embed, view: discord.ui.View | None, why: str, *, retry: bool = False
    ) -> None:
        if len(self._held) >= MAX_HELD:
            dropped, _ = self._held.popleft()
            logger.warning("alert %r dropped: more than %d held", dropped.title, MAX_HELD)
        self._held.append((embed, view))
        logger.info("alert %r held (%s)", embed.title, why)
        if retry and self._retry is None:
            self._retry = asyncio.ensure_future(self._retry_later())
            self._tasks.add(self._retry)
            self._retry.add_done_callback(self._tasks.discard)

    async def _retry_later(self) -> None:
        try:
            await asyncio.sleep(self.retry_delay)
        finally:
            self._retry = None
        if self.bot.is_ready() and not self.bot.is_closed():
            await self._flush()

    def flush(self) -> None:
        """Post the held alerts (the bot is connected again): from ``on_ready``/``on_resumed``."""
        if self._held:
            self._spawn(self._flush())

    async def _flush(self) -> None:
        logger.info("posting %d alert(s) held while the bot was away", len(self._held))
        for _ in range(len(self._held)):  # one pass: what fails again stays held
            if not self._held or self.bot.is_closed():
                return
            embed, view = self._held.popleft()
            await self.post(embed, view)

    async def aclose(self) -> None:
        """Stop gathering (the bot is closing): missed instants gathered so far are held."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for events in self._missed.values():
            if events:
                self._hold(*_missed_alert(events), "the bot closed")
        self._missed.clear()


def _missed_alert(events: list[JobEvent]) -> tuple[discord.Embed, discord.ui.View | None]:
    """One alert for missed instants of one schedule."""
    latest = max(events, key=lambda e: e.scheduled_for.timestamp() if e.scheduled_for else 0)
    embed = render.alert_embed(
        status="missed",
        schedule=latest.schedule,
        pipeline=latest.pipeline,
        error=latest.error,
        at=latest.scheduled_for,
        count=len(events),
    )
    return embed, alert_view(latest.schedule, latest.pipeline)


def _answered_in_chat(event: JobEvent) -> bool:
    """A chat run's result is shown in chat, unless the process died under it."""
    record = event.record
    return record is not None and record.trigger == "chat" and event.status != "abandoned"
