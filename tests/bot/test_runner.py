"""``run_bot``: a rejected token, Discord down at login and a gateway that gives up are
logged (never the token) and retried with backoff, while the scheduler keeps firing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest

from bot import runner
from bot.runner import backoff, describe, run_bot
from pipelines.secret import Secret
from scheduler.service import PipelineScheduler
from tests.bot.support import QuickBot, World, bot_settings, register_pipelines
from tests.fakediscord import FakeDiscord

pytest_plugins = ["tests.fakediscord.fixtures"]

# The shape of a real bot token (this one is the example from Discord's documentation).
TOKEN = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"
LOGIN = "GET /users/@me"


class Runner:
    """``run_bot`` as a task, with the scheduler started beside it (as ``serve`` does)."""

    def __init__(self, fake: FakeDiscord, scheduler: PipelineScheduler) -> None:
        self.fake = fake
        self.scheduler = scheduler
        self.bot = QuickBot(
            scheduler, bot_settings(fake), start_scheduler=False, guild_ready_timeout=0.05
        )
        self.world = World(fake, self.bot, scheduler)
        register_pipelines(scheduler, self.world)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self, token: str = TOKEN) -> None:
        self.task = asyncio.create_task(
            run_bot(self.bot, Secret(token), stop=self.stop, initial_delay=0.05, max_delay=0.2)
        )

    def logins(self, status: int) -> int:
        return sum(1 for r in self.fake.requests_to(LOGIN) if r.status == status)

    def runs(self, name: str) -> int:
        return len(self.scheduler.get_history(name))

    async def finish(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)
        assert self.fake.gateway.current_connection() is None  # the session was closed


@pytest.fixture
async def runner_(fake_discord: FakeDiscord, scheduler: PipelineScheduler) -> AsyncIterator[Runner]:
    fake_discord.token = TOKEN
    it = Runner(fake_discord, scheduler)
    await scheduler.astart()
    try:
        yield it
    finally:
        it.world.gate.set()
        await it.finish()


def test_backoff_doubles_from_the_first_delay_up_to_the_cap() -> None:
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0)]:
        assert base * 0.9 <= backoff(attempt) <= base * 1.1
    assert 270 <= backoff(30) <= 300
    assert backoff(40, initial=0.05, cap=0.2) <= 0.2


def test_describe_never_shows_the_token() -> None:
    error = OSError(f"cannot connect with {TOKEN}")
    assert TOKEN not in describe(error, TOKEN)
    assert describe(error, TOKEN) == "OSError: cannot connect with ***"
    assert "rejected the token" in describe(discord.LoginFailure("nope"), TOKEN)


async def test_a_rejected_token_is_retried_with_backoff_while_the_scheduler_fires(
    runner_: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    fake, scheduler = runner_.fake, runner_.scheduler
    fake.token = "another.token.entirely"  # Discord rejects ours
    scheduler.create_schedule("tick", "news", every="1s", owner="chat")
    with caplog.at_level(logging.DEBUG):
        runner_.start()
        await fake.wait_for(lambda: runner_.logins(401) >= 3)
        await fake.wait_for(lambda: runner_.runs("tick") >= 2, timeout=10)
        assert scheduler.running and not runner_.task.done()  # type: ignore[union-attr]
        fake.token = TOKEN  # the token is good again (say, Discord had a bad moment)
        await fake.wait_until_connected(timeout=10)
        health = await (await fake.interact("health")).response()
        assert health["type"] == 4 and health["data"]["embeds"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.runner"]
    assert "Discord bot disconnected (attempt 1): Discord rejected the token" in warnings[0]
    delays = [float(w.rsplit("retrying in ", 1)[1].split()[0]) for w in warnings[:3]]
    assert delays[0] < delays[2] <= 0.2  # backing off, capped
    assert TOKEN not in caplog.text
    assert all(TOKEN not in str(row) for row in scheduler.get_history("tick"))
    assert TOKEN not in repr(runner_.bot) and TOKEN not in repr(runner_.bot.settings)
    assert {v.rule for v in fake.take_violations()} == {"unauthorized"}  # the rejected logins


async def test_discord_down_at_login_is_retried_and_alerts_wait_for_the_bot(
    runner_: Runner,
) -> None:
    fake, scheduler = runner_.fake, runner_.scheduler
    fake.outage(True, status=503)
    runner_.start()
    await fake.wait_for(lambda: runner_.logins(503) >= 2)
    await scheduler.arun("broken", trigger="manual")  # fails while the bot is away
    await fake.wait_for(lambda: runner_.bot.alerts.held == 1)
    fake.outage(False)
    alert = await fake.wait_for(
        lambda: [m for m in runner_.world.messages("ops") if m.get("embeds")], timeout=10
    )
    assert alert[0]["embeds"][0]["title"] == "❌ failed · broken failed"
    assert runner_.bot.alerts.held == 0


async def test_a_gateway_close_discord_py_gives_up_on_is_retried_with_a_new_session(
    runner_: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    fake, scheduler = runner_.fake, runner_.scheduler
    runner_.start()
    first = await fake.wait_until_connected(timeout=10)
    await fake.wait_for(runner_.bot.is_ready)  # (closing before READY is discord.py's race)
    with caplog.at_level(logging.WARNING, logger="bot.runner"):
        await fake.drop_gateway(code=4004)  # not resumable: Client.start() ends
        second = await fake.wait_for(
            lambda: (s := fake.gateway.session) is not first and s is not None and s.conn and s
        )
        await fake.wait_until_connected(timeout=10)
    assert "ConnectionClosed" in caplog.text and "4004" in caplog.text
    assert second.id != first.id and fake.gateway.connections[-1].identified
    assert runner_.logins(200) == 2
    # Everything works after the restart, the persistent alert buttons too.
    scheduler.create_schedule("broken-often", "broken", every="1h", owner="chat")
    await scheduler.arun("broken-often", trigger="manual")
    alert = await fake.wait_for(
        lambda: [m for m in runner_.world.messages("ops") if m.get("embeds")], timeout=10
    )
    click = await fake.click(alert[0]["id"], "pipebot:pause:broken-often")
    assert "paused `broken-often`" in (await click.response())["data"]["content"]
    assert not scheduler.get_schedule("broken-often").enabled


async def test_an_unexpected_error_stops_only_the_bot(
    runner_: Runner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in setup")

    monkeypatch.setattr(runner_.bot, "setup_hook", broken)
    with caplog.at_level(logging.ERROR, logger="bot.runner"):
        runner_.start()
        await asyncio.wait_for(runner_.task, 10)  # type: ignore[arg-type]
    assert "stopped by an unexpected error; the scheduler keeps running" in caplog.text
    assert runner_.scheduler.running
    record = await runner_.scheduler.arun("news", trigger="manual")
    assert record.status == "success"


async def test_stop_during_the_backoff_returns_at_once(runner_: Runner) -> None:
    runner_.fake.outage(True, status=503)
    runner_.task = asyncio.create_task(
        run_bot(runner_.bot, Secret(TOKEN), stop=runner_.stop, initial_delay=60, max_delay=60)
    )
    await runner_.fake.wait_for(lambda: runner_.logins(503) >= 1)
    runner_.stop.set()
    await asyncio.wait_for(runner_.task, 5)  # not 60 s later
    assert runner.INITIAL_DELAY == 1.0


async def test_the_connection_probe_follows_the_bot_across_a_new_session(runner_: Runner) -> None:
    fake, first = runner_.fake, runner_.bot
    probe = first.connection_probe()
    assert not probe()  # not logged in yet
    runner_.start()
    await fake.wait_for(probe, timeout=10)
    assert first.gateway_connected()
    fake.outage(True, status=503)  # no new session until Discord is back
    await fake.drop_gateway(code=4004)  # not resumable: run_bot starts a successor
    await fake.wait_for(lambda: runner_.logins(503) >= 1)
    assert not probe() and not first.gateway_connected()
    fake.outage(False)
    await fake.wait_for(probe, timeout=10)
    successor = first.alerts.bot
    assert successor is not first and successor.gateway_connected()
    assert not first.gateway_connected()  # the first client is closed for good
    await runner_.finish()
    assert not probe()
