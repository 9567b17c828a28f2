"""``pipebot serve`` with a Discord token, in-process, against the fake Discord.

``serve()`` runs exactly as in production (pipelines.yml, SQLite, scheduler and bot on one
loop); only ``discord.http.Route.BASE`` and the gateway URL point at the fake. The test
reads the database with a second facade, as the CLI would.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pipebot.serve import serve
from pipelines.db import dispose_engine
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings
from tests.bot.support import EPHEMERAL, JSON, MANAGE_GUILD, answer
from tests.fakediscord import FakeDiscord

pytest_plugins = ["tests.fakediscord.fixtures"]

TOKEN = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"
GUILD_PUT = "PUT /applications/{application_id}/guilds/{guild_id}/commands"

PIPELINES = """
allowed_modules: [tests.bot.plugins]
pipelines:
  announce:
    description: Posts new items to the team channel
    schedule: {{cron: "0 0 1 1 *", timezone: UTC}}
    chain:
      - class: pipelines.transforms.sources.StaticItems
        kwargs: {{items: [{{title: "*Sale*"}}, {{title: "@everyone look"}}]}}
      - class: pipelines.sinks.discord.DiscordSink
        kwargs: {{channel_id: {general}, template: "new: {{title}}"}}
{extra}
"""
FLAKY = """
  flaky:
    description: Fails every second
    schedule: {every: 1s}
    chain:
      - class: pipelines.transforms.sources.StaticItems
        kwargs: {items: [{n: 1}]}
      - class: tests.bot.plugins.Fail
"""
TICK = """
  tick:
    description: Succeeds every second
    schedule: {every: 1s}
    chain:
      - class: pipelines.transforms.sources.StaticItems
        kwargs: {items: [{n: 1}]}
"""


class Served:
    """``serve(settings, path, stop=stop)`` as a task; ``db`` reads what it wrote."""

    def __init__(self, fake: FakeDiscord, tmp_path: Path, extra: str) -> None:
        self.fake = fake
        self.path = tmp_path / "pipelines.yml"
        self.path.write_text(PIPELINES.format(general=fake.channel("general")["id"], extra=extra))
        self.url = f"sqlite:///{tmp_path / 'pipebot.db'}"
        self.stop = asyncio.Event()
        self.task: asyncio.Task[int] | None = None
        self.db: PipelineScheduler | None = None

    async def start(self) -> None:
        settings = SchedulerSettings.from_env()
        assert settings.database_url == self.url
        self.task = asyncio.create_task(serve(settings, self.path, stop=self.stop))
        fake = self.fake
        await fake.wait_for(lambda: fake.gateway.current_connection(), timeout=15)
        await fake.wait_until_connected(timeout=15)
        await fake.wait_for(lambda: fake.requests_to(GUILD_PUT), timeout=15)
        self.db = PipelineScheduler(SchedulerSettings(database_url=self.url, timezone="UTC"))

    def history(self, name: str) -> list[dict[str, Any]]:
        assert self.db is not None
        return self.db.get_history(name, limit=1000)

    async def shutdown(self) -> int:
        self.stop.set()
        assert self.task is not None
        return await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def served(
    fake_discord: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    fake_discord.token = TOKEN
    fake_discord.set_role_permissions(fake_discord.role("Pipeline Operator"), MANAGE_GUILD)
    audit = fake_discord.add_channel("audit")
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "SCHEDULER_", "API_")):
            monkeypatch.delenv(name)
    env = {
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_GUILD_ID": fake_discord.guild.id,
        "DISCORD_ADMIN_ROLE_IDS": fake_discord.role("Pipeline Operator")["id"],
        "DISCORD_ALERT_CHANNEL_ID": fake_discord.channel("ops")["id"],
        "DISCORD_AUDIT_CHANNEL_ID": audit["id"],
        "API_ENABLED": "false",
        "SCHEDULER_DB_URL": f"sqlite:///{tmp_path / 'pipebot.db'}",
        "SCHEDULER_TIMEZONE": "UTC",
        "SCHEDULER_POLL_SECONDS": "0.5",
        "SCHEDULER_SHUTDOWN_GRACE": "2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runs: list[Served] = []

    def make(extra: str) -> Served:
        runs.append(Served(fake_discord, tmp_path, extra))
        return runs[-1]

    try:
        yield make
    finally:
        for run in runs:
            if run.task is not None and not run.task.done():
                run.stop.set()
                await asyncio.wait_for(run.task, 30)
        dispose_engine(env["SCHEDULER_DB_URL"])


def embeds_in(fake: FakeDiscord, channel: str) -> list[JSON]:
    return [m for m in fake.messages(fake.channel(channel)) if m.get("embeds")]


async def test_serve_runs_the_bot_next_to_the_scheduler_and_stops_cleanly(
    served: Any, fake_discord: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_discord
    app = served(FLAKY)
    with caplog.at_level(logging.DEBUG):
        await app.start()
        # A scheduled failing pipeline: an alert with buttons in DISCORD_ALERT_CHANNEL_ID.
        alerts = await fake.wait_for(lambda: embeds_in(fake, "ops"), timeout=15)
        assert alerts[0]["embeds"][0]["title"] == "❌ failed · flaky failed"
        assert "RuntimeError: the page changed" in str(alerts[0]["embeds"][0]["fields"])
        buttons = [b["custom_id"] for row in alerts[0]["components"] for b in row["components"]]
        assert buttons == ["pipebot:rerun:flaky", "pipebot:pause:flaky"]
        pause = await fake.click(alerts[0]["id"], "pipebot:pause:flaky")
        assert (await pause.response())["data"]["content"].startswith("⏸️")
        assert not app.db.get_schedule("flaky").enabled

        # /run: deferred, then the result; the sink posts through the running bot.
        handle = await fake.interact("run", {"pipeline": "announce"})
        assert (await handle.response())["type"] == 5
        result = (await handle.original(timeout=15))["embeds"][0]
        assert result["title"] == "✅ success · announce"
        fields = {f["name"]: f["value"] for f in result["fields"]}
        assert fields["Items per stage"] == "StaticItems 2 → DiscordSink 2"
        posted = fake.messages(fake.channel("general"))[-1]
        assert posted["content"] == "new: \\*Sale\\*\nnew: @\u200beveryone look"
        assert posted["mentions"] == [] and posted["mention_everyone"] is False
        assert len(fake.requests_to("GET /users/@me")) == 1  # one login: the bot's

        # /schedule with an interval: persisted, owned by chat, answered publicly.
        handle = await fake.interact("schedule", {"pipeline": "announce", "cron": "every 15m"})
        message = await answer(handle)
        assert not message["flags"] & EPHEMERAL
        job_id = message["embeds"][0]["description"].removeprefix("Job id ").strip("`")
        info = app.db.get_schedule(job_id)
        assert (info.owner, info.type, info.expression) == ("chat", "interval", "every 15m")
        assert info.created_by == f"{fake.user('alice')['id']}:alice"
        audit = await fake.wait_for(
            lambda: [
                m["content"]
                for m in fake.messages(fake.channel("audit"))
                if f"scheduled `{job_id}`" in m["content"]
            ],
            timeout=5,
        )
        assert audit == [
            f"📝 <@{fake.user('alice')['id']}> scheduled `{job_id}` · announce: every 15m UTC"
        ]

        assert await app.shutdown() == 0
    assert fake.gateway.current_connection() is None  # the bot closed its session
    assert len(fake.gateway.connections) == 1  # and did not come back
    assert "stopped (0 run(s) cancelled at shutdown)" in caplog.text
    # The token never shows: not in any log line (DEBUG included), history or audit row.
    assert TOKEN not in caplog.text
    rows = app.history("flaky") + app.history("announce") + app.db.audit_trail(200)
    assert TOKEN not in str(rows)
    actions = {(row["action"], row["actor"].split(":")[-1]) for row in app.db.audit_trail(200)}
    assert {("pause", "alice"), ("run", "alice"), ("schedule", "alice")} <= actions


async def test_the_scheduler_keeps_firing_while_the_gateway_is_dropped(
    served: Any, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    app = served(TICK)
    await app.start()
    await fake.wait_for(lambda: len(app.history("tick")) >= 1, timeout=10)
    fake.outage(True)  # Discord is gone: REST answers 503, the gateway refuses connections
    await fake.drop_gateway(code=None)  # and the live connection is cut, no close frame
    await fake.wait_for(lambda: fake.gateway.current_connection() is None)
    during = len(app.history("tick"))
    await fake.wait_for(lambda: len(app.history("tick")) >= during + 2, timeout=10)
    assert fake.gateway.current_connection() is None  # still away, the runs went on
    assert any(c.refused for c in fake.gateway.connections)  # the bot kept trying
    fake.outage(False)
    await fake.wait_for(lambda: fake.gateway.current_connection(), timeout=30)
    await fake.wait_until_connected(timeout=15)
    assert fake.gateway.connections[-1].resumed  # the same session, resumed
    health = await answer(await fake.interact("health"))
    assert health["embeds"][0]["title"] == "Scheduler health: ok"
    statuses = {row["status"] for row in app.history("tick")}
    assert statuses <= {"success", "running"}
    assert await app.shutdown() == 0
