"""What the bot tests share: test pipelines, a quick bot, the world they live in, helpers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.app import PipeBot
from bot.settings import BotSettings
from pipelines.core import Transform
from pipelines.pipeline import Pipeline, StageSpec
from pipelines.transforms.sources import StaticItems
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings
from tests.fakediscord import FakeDiscord

JSON = dict[str, Any]
EPHEMERAL = 1 << 6
MANAGE_GUILD = 1 << 5
MUTATING = {
    "run": {"pipeline": "news"},
    "schedule": {"pipeline": "news", "cron": "* * * * *"},
    "remove": {"job_id": "x"},
    "pause": {"job_id": "x"},
    "resume": {"job_id": "x"},
}
MESSAGE_ROUTES = {
    "POST /channels/{channel_id}/messages",
    "POST /interactions/{interaction_id}/{token}/callback",
    "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
    "POST /webhooks/{webhook_id}/{webhook_token}",
}


class Boom(Transform):
    """Fails on every item, like a scraper meeting unexpected HTML."""

    blocking = False

    def process(self, item: Any) -> Any:
        raise ValueError("no <article> in the page")


class Gate(Transform):
    """A source that waits for the test to open the gate."""

    def __init__(self, gate: asyncio.Event, entered: asyncio.Event) -> None:
        self.gate = gate
        self.entered = entered

    async def produce(self) -> AsyncIterator[Any]:
        self.entered.set()
        await self.gate.wait()
        yield {"n": 1}


class QuickBot(PipeBot):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s before re-identifying; nothing to pace against here."""


class World:
    """The fake, the bot and its scheduler, with shortcuts for the tests."""

    def __init__(self, fake: FakeDiscord, bot: PipeBot, scheduler: PipelineScheduler) -> None:
        self.fake = fake
        self.bot = bot
        self.scheduler = scheduler
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    @property
    def alice(self) -> JSON:
        return self.fake.user("alice")  # holds the admin role

    @property
    def bob(self) -> JSON:
        return self.fake.user("bob")  # a member without it

    def messages(self, channel: str) -> list[JSON]:
        return self.fake.messages(self.fake.channel(channel))

    def chat_schedule(self, name: str, cron: str = "0 9 * * *") -> None:
        self.scheduler.create_schedule(
            name, "news", cron=cron, owner="chat", created_by="1:someone"
        )


def make_scheduler(tmp_path: Path) -> PipelineScheduler:
    settings = SchedulerSettings(
        database_url=f"sqlite:///{tmp_path / 'pipebot.db'}", timezone="UTC", poll_interval=0.3
    )
    return PipelineScheduler(settings)


def register_pipelines(scheduler: PipelineScheduler, world: World) -> None:
    items = {"items": [{"title": "a"}, {"title": "b"}]}
    scheduler.register(
        "news", Pipeline("news", (StageSpec(StaticItems, items),), description="Shop *news*")
    )
    scheduler.register(
        "broken",
        Pipeline("broken", (StageSpec(StaticItems, items), StageSpec(Boom)), description="Fails"),
    )
    gate = {"gate": world.gate, "entered": world.entered}
    scheduler.register("slow", Pipeline("slow", (StageSpec(Gate, gate),), description="Waits"))


def bot_settings(fake: FakeDiscord, **changes: Any) -> BotSettings:
    settings = BotSettings(
        guild_id=int(fake.guild.id),
        admin_role_ids=frozenset({int(fake.role("Pipeline Operator")["id"])}),
        alert_channel_id=int(fake.channel("ops")["id"]),
    )
    return dataclasses.replace(settings, **changes)


async def answer(handle: Any) -> JSON:
    """The message the user sees: the immediate response, or the deferred one once edited."""
    await handle.response()
    return await handle.original()  # type: ignore[no-any-return]


def finished(scheduler: PipelineScheduler, *names: str) -> bool:
    """Whether every recorded run of ``names`` has its result written (the ledger is async)."""
    rows = [row for name in names for row in scheduler.get_history(name)]
    return bool(rows) and all(row["status"] != "running" for row in rows)


def assert_no_pings(fake: FakeDiscord) -> None:
    """Every message the bot sent said: mention nobody."""
    sent = [
        r
        for r in fake.requests
        if f"{r.method} {r.route}" in MESSAGE_ROUTES and isinstance(r.json, dict)
    ]
    assert sent
    for request in sent:
        body = request.json.get("data", request.json)
        if "content" in body or "embeds" in body:
            assert body.get("allowed_mentions") == {"parse": []}, request.route
