"""Alerts: failed, timed-out, abandoned and missed runs posted to the alert channel, with
buttons; held while the bot is away and posted when it is back. Real bot, fake Discord."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import discord
import pytest

from scheduler.events import EVENT_JOB_MISSED, JobEvent
from scheduler.ledger import Ledger
from scheduler.models import Policies
from scheduler.service import PipelineScheduler
from tests.bot.support import JSON, QuickBot, World, answer, bot_settings, register_pipelines
from tests.fakediscord import FakeDiscord, running

pytest_plugins = ["tests.fakediscord.fixtures"]


async def wait_alert(world: World, count: int = 1) -> list[JSON]:
    return await world.fake.wait_for(
        lambda: (
            (found := [m for m in world.messages("ops") if m.get("embeds")])
            and len(found) >= count
            and found
        ),
        timeout=10,
    )


async def test_a_failed_scheduled_run_is_alerted_with_buttons(world: World) -> None:
    world.scheduler.create_schedule("broken-often", "broken", every="1s", owner="chat")
    alert = (await wait_alert(world))[0]
    world.scheduler.disable("broken-often")
    embed = alert["embeds"][0]
    assert embed["title"] == "❌ failed · broken-often failed"
    assert "stage 1 (Boom)" in str(embed["fields"])
    ids = [b["custom_id"] for row in alert["components"] for b in row["components"]]
    assert ids == ["pipebot:rerun:broken-often", "pipebot:pause:broken-often"]

    refused = await world.fake.click(alert["id"], "pipebot:rerun:broken-often", user=world.bob)
    assert "not allowed" in (await refused.response())["data"]["content"]
    rerun = await world.fake.click(alert["id"], "pipebot:rerun:broken-often")
    assert (await rerun.response())["type"] == 5
    result = await rerun.original()
    assert result["embeds"][0]["title"] == "❌ failed · broken"
    world.scheduler.enable("broken-often")
    pause = await world.fake.click(alert["id"], "pipebot:pause:broken-often")
    assert (await pause.response())["data"]["content"].startswith(f"⏸️ <@{world.alice['id']}>")
    assert not world.scheduler.get_schedule("broken-often").enabled


async def test_chat_runs_are_not_alerted_and_missed_runs_are_grouped(world: World) -> None:
    await answer(await world.fake.interact("run", {"pipeline": "broken"}))
    world.bot.alerts.missed_window = 0.1
    for i in range(3):
        moment = discord.utils.utcnow().replace(microsecond=0) if i == 0 else None
        world.scheduler.events.emit(
            JobEvent(
                EVENT_JOB_MISSED,
                "nightly",
                "news",
                None,
                "missed",
                moment,
                "the process was down",
            )
        )
    alert = (await wait_alert(world))[0]
    assert alert["embeds"][0]["title"] == "⚠️ missed · nightly missed (3 instants)"
    await asyncio.sleep(0.3)
    assert len([m for m in world.messages("ops") if m.get("embeds")]) == 1  # not the chat run


async def test_alert_buttons_work_after_a_restart(
    fake_discord: FakeDiscord, scheduler: PipelineScheduler
) -> None:
    first = QuickBot(scheduler, bot_settings(fake_discord), guild_ready_timeout=0.05)
    world = World(fake_discord, first, scheduler)
    register_pipelines(scheduler, world)
    scheduler.create_schedule("broken-often", "broken", every="1s", owner="chat")
    async with running(first, fake_discord):
        alert = (await wait_alert(world))[0]
        scheduler.disable("broken-often")
    first.detach()
    await scheduler.astop()
    second = QuickBot(scheduler, bot_settings(fake_discord), guild_ready_timeout=0.05)
    async with running(second, fake_discord):
        scheduler.enable("broken-often")
        click = await fake_discord.click(alert["id"], "pipebot:pause:broken-often")
        assert "paused `broken-often`" in (await click.response())["data"]["content"]
    assert not scheduler.get_schedule("broken-often").enabled


async def test_a_broken_alert_channel_never_stops_the_scheduler(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    secret = world.fake.add_channel("secret", forbidden=True)
    world.bot.settings = dataclasses.replace(world.bot.settings, alert_channel_id=int(secret["id"]))
    with caplog.at_level(logging.WARNING, logger="bot"):
        world.scheduler.create_schedule("broken-often", "broken", every="1s", owner="chat")
        await world.fake.wait_for(
            lambda: len(world.scheduler.get_history("broken-often")) >= 2, timeout=10
        )
        await world.fake.wait_for(lambda: "could not post an alert" in caplog.text)
    world.scheduler.disable("broken-often")
    assert world.scheduler.running


async def test_a_timed_out_run_is_alerted(world: World) -> None:
    world.scheduler.create_schedule(
        "slow-often", "slow", every="1s", owner="chat", policies=Policies(timeout=0.2)
    )
    alert = (await wait_alert(world))[0]
    world.scheduler.disable("slow-often")
    assert alert["embeds"][0]["title"] == "⏱️ timeout · slow-often timed out"
    ids = [b["custom_id"] for row in alert["components"] for b in row["components"]]
    assert ids == ["pipebot:rerun:slow-often", "pipebot:pause:slow-often"]


async def test_runs_abandoned_by_a_dead_process_are_alerted_once_the_bot_connects(
    fake_discord: FakeDiscord, scheduler: PipelineScheduler
) -> None:
    dead = Ledger(scheduler.ledger.engine, holder="old-host:4242:dead")
    dead.start()
    try:
        await dead.begin(pipeline="news", trigger="schedule", schedule="nightly")
    finally:
        await dead.stop()
    # Built before the scheduler starts (as serve does), the bot hears of the start-up
    # findings, and holds them until it is connected.
    bot = QuickBot(scheduler, bot_settings(fake_discord), guild_ready_timeout=0.05)
    world = World(fake_discord, bot, scheduler)
    register_pipelines(scheduler, world)
    try:
        await scheduler.astart()
        await fake_discord.wait_for(lambda: bot.alerts.held == 1)
        assert world.messages("ops") == []
        async with running(bot, fake_discord):
            alert = (await wait_alert(world))[0]
            assert bot.alerts.held == 0
    finally:
        bot.detach()
    embed = alert["embeds"][0]
    assert embed["title"] == "💀 abandoned · nightly abandoned"
    assert "process old-host:4242:dead stopped before the run finished" in str(embed["fields"])
    ids = [b["custom_id"] for row in alert["components"] for b in row["components"]]
    assert ids == ["pipebot:rerun:nightly", "pipebot:pause:nightly"]


async def test_an_alert_discord_cannot_take_is_held_and_posted_later(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.bot.alerts.retry_delay = 0.2
    world.fake.outage(True, status=503)
    with caplog.at_level(logging.INFO, logger="bot"):
        record = await world.scheduler.arun("broken", trigger="manual")
        await world.fake.wait_for(lambda: world.bot.alerts.held == 1)
        posts = "POST /channels/{channel_id}/messages"
        await world.fake.wait_for(  # tried again while Discord is down: still held
            lambda: (
                [r.status for r in world.fake.requests_to(posts)][:2] == [503, 503]
                and world.bot.alerts.held == 1
            )
        )
        world.fake.outage(False)
        alert = (await wait_alert(world))[0]
    assert alert["embeds"][0]["title"] == "❌ failed · broken failed"
    assert record.run_id in str(alert["embeds"][0]["fields"])
    assert world.bot.alerts.held == 0
    assert "held (Discord answered HTTP 503)" in caplog.text
    await asyncio.sleep(0.3)
    assert len([m for m in world.messages("ops") if m.get("embeds")]) == 1  # posted once


async def test_no_alert_channel_means_no_alerts(world: World) -> None:
    world.bot.settings = dataclasses.replace(world.bot.settings, alert_channel_id=None)
    await world.scheduler.arun("broken", trigger="manual")
    world.scheduler.events.emit(JobEvent(EVENT_JOB_MISSED, "nightly", "news", status="missed"))
    await asyncio.sleep(0.2)
    assert world.bot.alerts.held == 0
    assert world.fake.requests_to("POST /channels/{channel_id}/messages") == []
    assert (await answer(await world.fake.interact("health")))["embeds"]
