"""The bot end to end: real discord.py against the fake Discord, a real scheduler on SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import threading
import time
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot import reply, views
from bot.commands import run as run_module
from pipelines.pipeline import Pipeline, StageSpec
from pipelines.sinks import discord as sink_module
from pipelines.sinks.discord import DiscordSink
from pipelines.transforms.sources import StaticItems
from scheduler.schedules import make_schedule
from scheduler.service import PipelineScheduler
from tests.bot.support import (
    EPHEMERAL,
    JSON,
    MANAGE_GUILD,
    MUTATING,
    QuickBot,
    World,
    answer,
    assert_no_pings,
    bot_settings,
    finished,
)
from tests.fakediscord import FakeDiscord, running

pytest_plugins = ["tests.fakediscord.fixtures"]

# --- start-up and sync --------------------------------------------------------------------


async def test_start_starts_the_scheduler_and_syncs_to_the_guild(world: World) -> None:
    assert world.scheduler.running
    assert world.bot.started_scheduler
    names = {c["name"] for c in world.fake.commands(world.fake.guild)}
    assert names == {
        "pipelines",
        "run",
        "schedule",
        "jobs",
        "remove",
        "pause",
        "resume",
        "history",
        "next",
        "health",
    }
    by_name = {c["name"]: c for c in world.fake.commands(world.fake.guild)}
    for mutating in ("run", "schedule", "remove", "pause", "resume"):
        assert int(by_name[mutating]["default_member_permissions"]) == 1 << 5  # manage_guild
    assert by_name["jobs"]["default_member_permissions"] is None
    assert all(c.get("contexts") == [0] for c in by_name.values())  # guild only


async def test_a_restart_does_not_sync_unchanged_commands(
    fake_discord: FakeDiscord, scheduler: PipelineScheduler
) -> None:
    put = "PUT /applications/{application_id}/guilds/{guild_id}/commands"
    for _ in range(2):
        bot = QuickBot(scheduler, bot_settings(fake_discord), guild_ready_timeout=0.05)
        async with running(bot, fake_discord):
            pass
        bot.detach()
    assert len(fake_discord.requests_to(put)) == 1
    from bot.sync import sync_commands

    bot = QuickBot(scheduler, bot_settings(fake_discord), guild_ready_timeout=0.05)
    async with running(bot, fake_discord):
        assert (await sync_commands(bot, force=True)).synced
    assert len(fake_discord.requests_to(put)) == 2


# --- /pipelines, /health, /next, /history -------------------------------------------------


async def test_pipelines_lists_description_schedule_next_and_last(world: World) -> None:
    world.chat_schedule("news-weekdays", "0 9 * * 1-5")
    await world.scheduler.arun("news", trigger="manual")
    await world.fake.wait_for(lambda: finished(world.scheduler, "news"))
    message = await answer(await world.fake.interact("pipelines"))
    fields = {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}
    assert set(fields) == {"news", "broken", "slow"}
    news = fields["news"]
    assert "Shop \\*news\\*" in news  # escaped pipeline data
    assert "at 09:00, Monday to Friday · `0 9 * * 1-5` · UTC" in news
    assert ":R>" in news  # next run as a Discord timestamp
    assert "last run: ✅ success <t:" in news
    assert "not scheduled" in fields["slow"] and "last run: never" in fields["slow"]


async def test_health(world: World) -> None:
    message = await answer(await world.fake.interact("health"))
    assert message["embeds"][0]["title"] == "Scheduler health: ok"
    assert_no_pings(world.fake)


async def test_next_previews_with_the_scheduler_and_refuses_bad_cron(world: World) -> None:
    message = await answer(
        await world.fake.interact("next", {"cron": "30 2 * * *", "timezone": "Europe/Stockholm"})
    )
    embed = message["embeds"][0]
    assert "`30 2 * * *` · Europe/Stockholm" in embed["description"]
    assert embed["fields"][0]["value"].count("<t:") == 10  # five times, absolute + relative
    response = await (await world.fake.interact("next", {"cron": "0 9 * * 1-9"})).response()
    assert response["data"]["flags"] & EPHEMERAL
    assert "day-of-week" in response["data"]["content"]
    response = await (
        await world.fake.interact("next", {"cron": "every 15m", "timezone": "Mars/Base"})
    ).response()
    assert "Mars/Base" in response["data"]["content"]


async def test_history_shows_runs(world: World) -> None:
    await world.scheduler.arun("news", requested_by="7:carol", trigger="manual")
    await world.scheduler.arun("broken", trigger="manual")
    await world.fake.wait_for(lambda: finished(world.scheduler, "news", "broken"))
    message = await answer(await world.fake.interact("history", {"pipeline": "broken"}))
    field = message["embeds"][0]["fields"][0]
    assert field["name"].startswith("❌ failed")
    assert "stage 1 (Boom): ValueError: no <article> in the page" in field["value"]
    message = await answer(await world.fake.interact("history", {"pipeline": "news"}))
    assert "by <@7>" in message["embeds"][0]["fields"][0]["value"]


async def chart_of(fake: FakeDiscord, message: JSON) -> Image.Image:
    """The PNG attached to ``message``, fetched as Discord's users would, and decoded."""
    (attachment,) = message["attachments"]
    assert attachment["filename"] == "history.png"
    assert message["embeds"][0]["image"]["url"] == attachment["url"]  # shown in the embed
    async with aiohttp.ClientSession() as session:
        async with session.get(attachment["url"]) as resp:
            data = await resp.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data))


async def test_history_attaches_the_run_chart(world: World) -> None:
    for _ in range(3):
        await world.scheduler.arun("news", trigger="manual")
    await world.scheduler.arun("broken", trigger="manual")
    await world.fake.wait_for(lambda: finished(world.scheduler, "news", "broken"))
    handle = await world.fake.interact("history", {"pipeline": "news"})
    assert (await handle.response())["type"] == 4
    (part,) = handle.callbacks[0].files
    assert part.filename == "history.png"
    image = await chart_of(world.fake, await handle.original())
    assert image.format == "PNG" and image.size == (800, 360)
    # Three success bars in the chart's green, no failure red: the news runs, not broken's.
    colours = {colour for _, colour in image.convert("RGB").getcolors(800 * 360) or []}
    assert (0x1E, 0x8E, 0x3E) in colours and (0xD9, 0x30, 0x25) not in colours


async def test_history_without_runs_sends_no_chart(world: World) -> None:
    handle = await world.fake.interact("history", {"pipeline": "slow"})
    message = await answer(handle)
    assert message["embeds"][0]["description"] == "No runs recorded yet."
    assert "image" not in message["embeds"][0] and message["attachments"] == []
    assert handle.callbacks[0].files == []
    assert not handle.callbacks[0].headers["Content-Type"].startswith("multipart/")


async def test_a_slow_history_is_deferred_and_the_chart_edited_in(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await world.scheduler.arun("news", trigger="manual")
    await world.fake.wait_for(lambda: finished(world.scheduler, "news"))
    monkeypatch.setattr(reply, "DEFER_AFTER", 0.05)
    history = world.scheduler.ledger.history

    def slowly(**kwargs: Any) -> Any:
        time.sleep(0.3)  # a database having a bad moment (in the worker thread)
        return history(**kwargs)

    monkeypatch.setattr(world.scheduler.ledger, "history", slowly)
    handle = await world.fake.interact("history", {"pipeline": "news"})
    assert (await handle.response())["type"] == 5
    image = await chart_of(world.fake, await handle.original())
    assert image.size == (800, 360)
    (edit,) = world.fake.requests_to(
        "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"
    )
    assert [f.filename for f in edit.files] == ["history.png"]
    assert len(handle.callbacks) == 1


# --- /run ---------------------------------------------------------------------------------


async def test_run_defers_then_shows_the_result(world: World) -> None:
    handle = await world.fake.interact("run", {"pipeline": "news"})
    assert (await handle.response())["type"] == 5  # deferred within the 3 s window
    embed = (await handle.original())["embeds"][0]
    assert embed["title"] == "✅ success · news"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Items per stage"] == "StaticItems 2"
    assert fields["Ran by"] == f"<@{world.alice['id']}>"
    run_id = fields["Run id"].strip("`")
    history = world.scheduler.get_history("news")
    assert history[0]["run_id"] == run_id
    assert history[0]["trigger"] == "chat"
    assert history[0]["requested_by"] == f"{world.alice['id']}:alice"
    trail = world.scheduler.audit_trail()
    assert any(
        row["action"] == "run" and row["actor"] == f"{world.alice['id']}:alice" for row in trail
    )
    assert_no_pings(world.fake)


async def test_a_failed_run_says_what_failed_and_where(world: World) -> None:
    handle = await world.fake.interact("run", {"pipeline": "broken"})
    embed = (await handle.original())["embeds"][0]
    assert embed["title"] == "❌ failed · broken"
    text = str(embed)
    assert "did not succeed" in text
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert "stage 1 (Boom): ValueError: no <article> in the page" in fields["What failed"]
    assert "success" not in embed["title"] + embed.get("description", "")


async def test_a_run_already_going_is_reported_not_doubled(world: World) -> None:
    first = await world.fake.interact("run", {"pipeline": "slow"})
    await asyncio.wait_for(world.entered.wait(), 5)
    second = await world.fake.interact("run", {"pipeline": "slow"})
    message = await second.original()
    assert "is already running" in message["content"]
    world.gate.set()
    assert (await first.original())["embeds"][0]["title"] == "✅ success · slow"
    await world.fake.wait_for(lambda: finished(world.scheduler, "slow"))
    statuses = [row["status"] for row in world.scheduler.get_history("slow")]
    assert sorted(statuses) == ["skipped", "success"]


async def test_an_unknown_pipeline_is_one_short_line(world: World) -> None:
    handle = await world.fake.interact("run", {"pipeline": "nope"})
    message = await handle.original()
    assert message["content"] == "no pipeline named 'nope'"


async def test_a_run_past_the_token_reports_to_the_channel(world: World) -> None:
    handle = await world.fake.interact("run", {"pipeline": "slow"})
    await asyncio.wait_for(world.entered.wait(), 5)
    world.fake.advance(15 * 60 + 5)  # the interaction token has expired meanwhile
    world.gate.set()
    posted = await world.fake.wait_for(
        lambda: [m for m in world.messages("general") if m.get("embeds")]
    )
    assert posted[-1]["content"] == f"<@{world.alice['id']}>, your run finished."
    assert posted[-1]["embeds"][0]["title"] == "✅ success · slow"
    assert posted[-1]["mentions"] == []  # named, not pinged
    rules = [v.rule for v in world.fake.take_violations()]
    assert rules == ["token_expired"]  # the bot tried the edit, then fell back to the channel
    assert handle.id


async def test_a_run_longer_than_14_minutes_goes_to_the_channel(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_module, "LONG_RUN_SECONDS", 0.0)
    handle = await world.fake.interact("run", {"pipeline": "news"})
    await handle.response()
    posted = await world.fake.wait_for(
        lambda: [m for m in world.messages("general") if m.get("embeds")]
    )
    assert posted[-1]["embeds"][0]["title"] == "✅ success · news"


async def test_run_autocomplete(world: World) -> None:
    handle = await world.fake.autocomplete("run", "pipeline", "ne")
    response = await handle.response()
    assert response["type"] == 8
    assert [c["value"] for c in response["data"]["choices"]] == ["news"]


# --- permissions --------------------------------------------------------------------------


async def test_discord_hides_the_mutating_commands_from_members_without_manage_server(
    world: World,
) -> None:
    for command, options in MUTATING.items():
        with pytest.raises(PermissionError, match="default_member_permissions"):
            await world.fake.interact(command, options, user=world.bob)
    assert (await (await world.fake.interact("jobs", user=world.bob)).response())["type"] == 5


async def test_a_non_admin_is_refused_ephemerally_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # A moderator may manage the server, but is not in DISCORD_ADMIN_ROLE_IDS.
    mods = world.fake.add_role("Moderators", permissions=MANAGE_GUILD)
    carol = world.fake.add_member("carol", roles=[mods])
    with caplog.at_level(logging.INFO, logger="bot"):
        handle = await world.fake.interact("run", {"pipeline": "news"}, user=carol)
        response = await handle.response()
    assert response["type"] == 4
    assert response["data"]["flags"] & EPHEMERAL
    assert "not allowed" in response["data"]["content"]
    assert "refused" in caplog.text and f"user {carol['id']}" in caplog.text
    assert world.scheduler.get_history("news") == []
    for command, options in MUTATING.items():
        # ... and a server admin opening the commands to everyone changes nothing.
        world.fake.open_command(command)
        for user in (carol, world.bob):
            refused = await (await world.fake.interact(command, options, user=user)).response()
            assert "not allowed" in refused["data"]["content"], command
    assert world.scheduler.list_schedules() == []
    # reading is open to everyone
    assert (await (await world.fake.interact("jobs", user=world.bob)).response())["type"] == 5


async def test_with_no_admin_lists_the_server_permission_is_the_gate(world: World) -> None:
    world.bot.settings = dataclasses.replace(world.bot.settings, admin_role_ids=frozenset())
    mods = world.fake.add_role("Moderators", permissions=MANAGE_GUILD)
    carol = world.fake.add_member("carol", roles=[mods])
    handle = await world.fake.interact("run", {"pipeline": "news"}, user=carol)
    assert (await handle.original())["embeds"][0]["title"] == "✅ success · news"
    with pytest.raises(PermissionError):
        await world.fake.interact("run", {"pipeline": "news"}, user=world.bob)


async def test_admin_user_ids_let_a_user_in_without_the_role(world: World) -> None:
    carol = world.fake.add_member("carol")
    world.fake.open_command("pause")
    world.chat_schedule("chatty")
    refused = await (
        await world.fake.interact("pause", {"job_id": "chatty"}, user=carol)
    ).response()
    assert "not allowed" in refused["data"]["content"]
    world.bot.settings = dataclasses.replace(
        world.bot.settings, admin_user_ids=frozenset({int(carol["id"])})
    )
    paused = await answer(await world.fake.interact("pause", {"job_id": "chatty"}, user=carol))
    assert paused["content"].startswith("⏸️ Paused `chatty`")


async def test_other_servers_are_refused(world: World) -> None:
    world.bot.settings = dataclasses.replace(
        world.bot.settings, guild_id=None, guild_ids=frozenset({1})
    )
    response = await (await world.fake.interact("health")).response()
    assert response["data"]["flags"] & EPHEMERAL
    assert response["data"]["content"] == "This bot is not enabled in this server."
    completion = await (await world.fake.autocomplete("run", "pipeline", "")).response()
    assert completion["data"]["choices"] == []


# --- /schedule ----------------------------------------------------------------------------


async def test_schedule_validates_previews_persists_and_answers_publicly(world: World) -> None:
    handle = await world.fake.interact(
        "schedule", {"pipeline": "news", "cron": "0 9 * * 1-5", "timezone": "Europe/Stockholm"}
    )
    message = await answer(handle)
    assert not message["flags"] & EPHEMERAL
    embed = message["embeds"][0]
    job_id = embed["description"].removeprefix("Job id ").strip("`")
    assert job_id.startswith("news-")
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Next runs"].count("<t:") == 6
    info = world.scheduler.get_schedule(job_id)
    assert (info.owner, info.expression, info.timezone) == (
        "chat",
        "0 9 * * 1-5",
        "Europe/Stockholm",
    )
    assert info.created_by == f"{world.alice['id']}:alice"
    preview = world.scheduler.preview(cron="0 9 * * 1-5", timezone="Europe/Stockholm", count=3)
    stamps = [f"<t:{int(t.timestamp())}:f>" for t in preview]
    assert all(stamp in fields["Next runs"] for stamp in stamps)  # the scheduler's own times
    assert any(
        row["action"] == "schedule" and row["target"] == job_id
        for row in world.scheduler.audit_trail()
    )


async def test_schedule_accepts_an_interval(world: World) -> None:
    message = await answer(
        await world.fake.interact("schedule", {"pipeline": "news", "cron": "every 15m"})
    )
    job_id = message["embeds"][0]["description"].removeprefix("Job id ").strip("`")
    info = world.scheduler.get_schedule(job_id)
    assert (info.type, info.expression, info.timezone) == ("interval", "every 15m", "UTC")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pipeline": "news", "cron": "0 9 * * 1-9"}, "day-of-week"),
        ({"pipeline": "news", "cron": "0 0 L * *"}, "L"),
        ({"pipeline": "news", "cron": "0 9 * * *", "timezone": "Mars/Base"}, "Mars/Base"),
        ({"pipeline": "nope", "cron": "0 9 * * *"}, "no pipeline named 'nope'"),
        ({"pipeline": "news", "cron": "every 0s"}, "at least 1 second"),
    ],
)
async def test_schedule_refuses_what_would_not_fire(
    world: World, options: JSON, message: str
) -> None:
    response = await (await world.fake.interact("schedule", options)).response()
    assert response["data"]["flags"] & EPHEMERAL
    assert message in response["data"]["content"]
    assert world.scheduler.list_schedules() == []


async def test_schedule_autocompletes_pipelines_and_zones(world: World) -> None:
    zones = await (await world.fake.autocomplete("schedule", "timezone", "Stock")).response()
    assert [c["value"] for c in zones["data"]["choices"]] == ["Europe/Stockholm"]
    every = await (await world.fake.autocomplete("schedule", "timezone", "")).response()
    assert len(every["data"]["choices"]) == 25


# --- /jobs --------------------------------------------------------------------------------


def buttons(message: JSON) -> dict[str, JSON]:
    """The message's buttons by label (the page counter under its own label)."""
    return {b["label"]: b for row in message.get("components") or [] for b in row["components"]}


async def press(world: World, message: JSON, label: str) -> JSON:
    """The caller presses ``label``; the message as it is once the bot has answered."""
    clicked = await world.fake.click(message["id"], buttons(message)[label]["custom_id"])
    assert (await clicked.response())["type"] == 7  # the message is updated in place
    return world.fake.message(message["id"])


def shown(message: JSON) -> tuple[str, list[str]]:
    embed = message["embeds"][0]
    return embed["footer"]["text"], [f["name"].split(" ", 1)[1] for f in embed.get("fields", [])]


def page_reads(world: World, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any, bool]]:
    """Every ``list_schedules`` call as ``(after, limit, on the event loop's thread)``."""
    calls: list[tuple[Any, Any, bool]] = []
    real = world.scheduler.list_schedules
    loop_thread = threading.get_ident()

    def spy(**kwargs: Any) -> Any:
        calls.append(
            (kwargs.get("after"), kwargs.get("limit"), threading.get_ident() == loop_thread)
        )
        return real(**kwargs)

    monkeypatch.setattr(world.scheduler, "list_schedules", spy)
    return calls


async def test_jobs_pages_are_read_when_shown_by_the_caller_only(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(23):
        world.chat_schedule(f"job-{i:02d}")
    reads = page_reads(world, monkeypatch)
    first = await answer(await world.fake.interact("jobs"))
    assert shown(first) == ("Page 1/3", [f"job-{i:02d}" for i in range(10)])
    assert first["embeds"][0]["title"] == "Jobs (23)"
    assert buttons(first)["«"]["disabled"] and buttons(first)["‹"]["disabled"]
    assert buttons(first)["1/3"]["disabled"]
    assert reads == [(None, 10, False)]  # page 1 only, off the event loop

    refused = await world.fake.click(first["id"], buttons(first)["›"]["custom_id"], user=world.bob)
    reply = await refused.response()
    assert reply["data"]["flags"] & EPHEMERAL and "Only the person" in reply["data"]["content"]
    assert shown(world.fake.message(first["id"]))[0] == "Page 1/3"
    assert len(reads) == 1

    second = await press(world, first, "›")
    assert shown(second) == ("Page 2/3", [f"job-{i:02d}" for i in range(10, 20)])
    assert "2/3" in buttons(second) and not buttons(second)["«"]["disabled"]
    last = await press(world, second, "»")
    assert shown(last) == ("Page 3/3", ["job-20", "job-21", "job-22"])
    assert buttons(last)["›"]["disabled"] and buttons(last)["»"]["disabled"]
    back = await press(world, last, "‹")
    assert shown(back)[0] == "Page 2/3"
    again = await press(world, back, "«")
    assert shown(again) == shown(first)
    starts = [after for after, _, _ in reads]
    assert starts == [None, "job-09", "job-19", "job-09", None]
    assert all(limit == 10 and not on_loop for _, limit, on_loop in reads)
    assert_no_pings(world.fake)


async def test_jobs_pages_show_what_is_left_after_removals(world: World) -> None:
    for i in range(23):
        world.chat_schedule(f"job-{i:02d}")
    first = await answer(await world.fake.interact("jobs"))
    for name in ("job-09", "job-12", "job-20", "job-21", "job-22"):
        world.scheduler.unschedule(name)
    world.chat_schedule("job-12a")
    second = await press(world, first, "›")  # still after job-09, removed or not
    expected = ["job-10", "job-11", "job-12a", *(f"job-{i}" for i in range(13, 20))]
    assert shown(second) == ("Page 2/3", expected)
    last = await press(world, second, "»")
    assert shown(last) == ("Page 3/3", [])
    assert "removed" in last["embeds"][0]["description"]
    assert last["embeds"][0]["title"] == "Jobs (23)"  # as counted when /jobs was run
    assert shown(await press(world, last, "«"))[1][-1] == "job-10"  # job-09 is gone


async def test_jobs_quick_presses_are_answered_in_turn(world: World) -> None:
    for i in range(35):
        world.chat_schedule(f"job-{i:02d}")
    first = await answer(await world.fake.interact("jobs"))
    next_id = buttons(first)["›"]["custom_id"]
    presses = [await world.fake.click(first["id"], next_id) for _ in range(2)]
    for handle in presses:
        assert (await handle.response())["type"] == 7
    assert shown(world.fake.message(first["id"])) == (
        "Page 3/4",
        [f"job-{i}" for i in range(20, 30)],
    )


async def test_jobs_buttons_are_disabled_after_the_timeout(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_TIMEOUT", 0.3)
    for i in range(11):
        world.chat_schedule(f"job-{i:02d}")
    message = await answer(await world.fake.interact("jobs"))

    def disabled() -> bool:
        current = world.fake.message(message["id"])
        buttons = [c for row in current["components"] for c in row["components"]]
        return all(b.get("disabled") for b in buttons)

    await world.fake.wait_for(disabled)


async def test_jobs_with_one_page_has_no_buttons(world: World) -> None:
    world.chat_schedule("only")
    message = await answer(await world.fake.interact("jobs"))
    assert message["embeds"][0]["footer"]["text"] == "Page 1/1"
    assert not message.get("components")


async def test_jobs_with_10000_schedules_defers_and_renders_one_page(world: World) -> None:
    world.scheduler.add_schedules(
        [
            make_schedule(
                f"job-{i:05d}",
                "news",
                "cron",
                {"expression": f"{i % 60} * * * *"},
                timezone="UTC",
                owner="chat",
            )
            for i in range(10_000)
        ]
    )
    handle = await world.fake.interact("jobs")
    assert (await handle.response())["type"] == 5  # acknowledged first (bench/ times it)
    message = await handle.original(timeout=30)
    assert message["embeds"][0]["footer"]["text"] == "Page 1/1000"
    assert len(message["embeds"][0]["fields"]) == 10


# --- /remove, /pause, /resume -------------------------------------------------------------


async def test_remove_asks_first_and_only_the_caller_may_answer(world: World) -> None:
    world.chat_schedule("chatty")
    handle = await world.fake.interact("remove", {"job_id": "chatty"})
    question = await answer(handle)
    assert question["content"].startswith("Remove `chatty`")
    ids = {b["label"]: b["custom_id"] for row in question["components"] for b in row["components"]}
    other = await world.fake.click(question["id"], ids["Remove"], user=world.bob)
    assert "Only the person" in (await other.response())["data"]["content"]
    assert world.scheduler.get_schedule("chatty")
    confirm = await world.fake.click(question["id"], ids["Remove"])
    assert (await confirm.response())["type"] == 6  # acknowledged at once, updated after
    done = await world.fake.wait_for(
        lambda: (m := world.fake.message(question["id"]))["content"].startswith("🗑️") and m
    )
    assert done["content"].startswith("🗑️ Removed `chatty`")
    assert all(b["disabled"] for row in done["components"] for b in row["components"])
    assert [s.name for s in world.scheduler.list_schedules()] == []
    trail = world.scheduler.audit_trail()
    assert trail[0]["action"] == "remove" and trail[0]["actor"] == f"{world.alice['id']}:alice"


async def test_remove_cancel_and_timeout_keep_the_job(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.chat_schedule("chatty")
    question = await answer(await world.fake.interact("remove", {"job_id": "chatty"}))
    ids = {b["label"]: b["custom_id"] for row in question["components"] for b in row["components"]}
    await (await world.fake.click(question["id"], ids["Cancel"])).response()
    assert world.fake.message(question["id"])["content"] == "Kept `chatty`."
    monkeypatch.setattr(views, "CONFIRM_TIMEOUT", 0.2)
    question = await answer(await world.fake.interact("remove", {"job_id": "chatty"}))
    await world.fake.wait_for(
        lambda: world.fake.message(question["id"])["content"].startswith("No answer")
    )
    assert world.scheduler.get_schedule("chatty")


async def test_a_yaml_job_cannot_be_removed_from_chat(world: World) -> None:
    world.scheduler.sync_yaml(
        [
            make_schedule(
                "nightly", "news", "cron", {"expression": "0 2 * * *"}, timezone="UTC", owner="yaml"
            )
        ]
    )
    response = await (await world.fake.interact("remove", {"job_id": "nightly"})).response()
    assert response["data"]["flags"] & EPHEMERAL
    assert "pipelines.yml" in response["data"]["content"]
    assert "/pause" in response["data"]["content"]
    assert world.scheduler.get_schedule("nightly")


async def test_remove_of_an_unknown_job(world: World) -> None:
    response = await (await world.fake.interact("remove", {"job_id": "ghost"})).response()
    assert response["data"]["content"] == "no schedule named 'ghost'"


async def test_pause_and_resume(world: World) -> None:
    world.chat_schedule("chatty")
    world.bot.settings = dataclasses.replace(
        world.bot.settings, audit_channel_id=int(world.fake.channel("general")["id"])
    )
    paused = await answer(await world.fake.interact("pause", {"job_id": "chatty"}))
    assert paused["content"].startswith("⏸️ Paused `chatty`")
    assert not world.scheduler.get_schedule("chatty").enabled
    resumed = await answer(await world.fake.interact("resume", {"job_id": "chatty"}))
    assert resumed["content"].startswith("▶️ Resumed `chatty`: next run <t:")
    assert world.scheduler.get_schedule("chatty").enabled
    actions = [row["action"] for row in world.scheduler.audit_trail()]
    assert actions[:2] == ["resume", "pause"]
    audit = await world.fake.wait_for(
        lambda: [m["content"] for m in world.messages("general") if m["content"].startswith("📝")]
    )
    assert audit[0] == f"📝 <@{world.alice['id']}> paused `chatty`"
    for command in ("pause", "resume"):
        response = await (await world.fake.interact(command, {"job_id": "ghost"})).response()
        assert response["data"]["content"] == "no schedule named 'ghost'"
        assert response["data"]["flags"] & EPHEMERAL


async def test_job_autocomplete_caps_at_25(world: World) -> None:
    for i in range(30):
        world.chat_schedule(f"job-{i:02d}")
    response = await (await world.fake.autocomplete("remove", "job_id", "job-0")).response()
    assert [c["value"] for c in response["data"]["choices"]] == [f"job-{i:02d}" for i in range(10)]
    response = await (await world.fake.autocomplete("pause", "job_id", "")).response()
    assert len(response["data"]["choices"]) == 25


# --- errors -------------------------------------------------------------------------------


async def test_an_unexpected_error_is_logged_and_answered_briefly(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(world.scheduler, "health_check", broken)
    with caplog.at_level(logging.ERROR, logger="bot"):
        response = await (await world.fake.interact("health")).response()
    assert response["data"]["flags"] & EPHEMERAL
    assert response["data"]["content"] == "Something went wrong on our side; it has been logged."
    assert "kaboom" in caplog.text and "Traceback" in caplog.text


async def test_an_answer_that_needs_a_slow_database_is_deferred_in_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reply, "DEFER_AFTER", 0.05)

    def slowly(method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.3)  # a database having a bad moment (in the worker thread)
            return method(*args, **kwargs)

        return call

    quick = await (await world.fake.interact("pause", {"job_id": "ghost"})).response()
    assert quick["type"] == 4 and quick["data"]["flags"] & EPHEMERAL  # fast: ephemeral
    monkeypatch.setattr(world.scheduler, "health_check", slowly(world.scheduler.health_check))
    monkeypatch.setattr(world.scheduler, "disable", slowly(world.scheduler.disable))
    handle = await world.fake.interact("health")
    assert (await handle.response())["type"] == 5  # "thinking…" before the answer
    assert (await handle.original())["embeds"][0]["title"] == "Scheduler health: ok"
    refused = await world.fake.interact("pause", {"job_id": "ghost"})
    assert (await refused.response())["type"] == 5
    assert (await refused.original())["content"] == "no schedule named 'ghost'"
    assert [len(h.callbacks) for h in (handle, refused)] == [1, 1]  # one acknowledgement


async def test_a_reply_that_comes_too_late_is_only_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot"):
        handle = await world.fake.interact("health")
        world.fake.advance(4)  # the bot answers after Discord's 3 s window
        await world.fake.wait_for(lambda: handle.callbacks)
        await world.fake.wait_for(lambda: "came too late" in caplog.text)
    assert [v.rule for v in world.fake.take_violations()] == ["late_response"]
    assert (await answer(await world.fake.interact("health")))["embeds"]  # still answering


# --- DiscordSink against the fake ---------------------------------------------------------


def sink_pipeline(**kwargs: Any) -> Pipeline:
    items = [{"title": f"item *{i}*", "link": f"https://shop.example/{i}"} for i in range(12)]
    return Pipeline(
        "to-discord",
        (StageSpec(StaticItems, {"items": items}), StageSpec(DiscordSink, kwargs)),
    )


async def test_sink_posts_through_the_running_bot(world: World) -> None:
    ops = world.fake.channel("ops")
    result = await sink_pipeline(
        channel_id=int(ops["id"]), embed={"title": "{title}", "url": "{link}"}
    ).run()
    assert result.status == "success", result.failure
    assert result.items == (12, 12)  # items pass through
    posted = world.messages("ops")
    assert [len(m["embeds"]) for m in posted] == [10, 2]
    assert posted[0]["embeds"][0]["title"] == "item \\*0\\*"
    assert len(world.fake.requests_to("GET /users/@me")) == 1  # no second login: the bot's
    assert_no_pings(world.fake)


async def test_sink_over_rest_with_only_a_token(
    fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "_client", None)
    monkeypatch.setenv("DISCORD_TOKEN", fake_discord.token)
    general = fake_discord.channel("general")
    result = await sink_pipeline(channel_id=int(general["id"]), template="{title} {link}").run()
    assert result.status == "success", result.failure
    posted = fake_discord.messages(general)
    assert len(posted) == 1 and posted[0]["content"].count("\n") == 11
    assert not fake_discord.gateway.session  # REST only, no gateway
    assert all(r.auth == "valid" for r in fake_discord.requests)


async def test_sink_posts_to_a_webhook(fake_discord: FakeDiscord) -> None:
    general = fake_discord.channel("general")
    hook = fake_discord.add_webhook(general)
    result = await sink_pipeline(webhook_url=hook["url"], template="{title}").run()
    assert result.status == "success", result.failure
    assert fake_discord.messages(general)[-1]["content"].startswith("item \\*0\\*")
    assert all(r.auth == "missing" for r in fake_discord.requests)


async def test_sink_waits_out_a_short_rate_limit(
    fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "_client", None)
    monkeypatch.setenv("DISCORD_TOKEN", fake_discord.token)
    general = fake_discord.channel("general")
    fake_discord.rate_limit("POST /channels/*/messages", times=1, retry_after=0.2)
    result = await sink_pipeline(channel_id=int(general["id"]), template="{title}").run()
    assert result.status == "success", result.failure
    statuses = [r.status for r in fake_discord.requests_to("POST /channels/{channel_id}/messages")]
    assert statuses == [429, 200]
    hook = fake_discord.add_webhook(general)
    fake_discord.rate_limit("POST /webhooks/*", times=1, retry_after=0.2)
    result = await sink_pipeline(webhook_url=hook["url"], template="{title}").run()
    assert result.status == "success", result.failure


@pytest.mark.parametrize("via", ["channel", "webhook"])
async def test_sink_fails_instead_of_sleeping_through_a_long_rate_limit(
    fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    monkeypatch.setattr(sink_module, "_client", None)
    monkeypatch.setenv("DISCORD_TOKEN", fake_discord.token)
    general = fake_discord.channel("general")
    if via == "channel":
        target: JSON = {"channel_id": int(general["id"])}
        fake_discord.rate_limit("POST /channels/*/messages", retry_after=600)
    else:
        target = {"webhook_url": fake_discord.add_webhook(general)["url"]}
        fake_discord.rate_limit("POST /webhooks/*", retry_after=600)
    result = await sink_pipeline(template="{title}", max_ratelimit_timeout=30, **target).run()
    posts = [r.status for r in fake_discord.requests if r.method == "POST"]
    assert posts == [429]  # failed at the first 429: no sleep, no retry
    assert result.status == "failed" and result.failure is not None
    assert result.failure.error_type == "DiscordSinkError"
    assert "rate limited by Discord for 600 s" in result.failure.message


async def test_sink_fails_clearly_on_a_missing_or_forbidden_channel(
    fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sink_module, "_client", None)
    monkeypatch.setenv("DISCORD_TOKEN", fake_discord.token)
    secret = fake_discord.add_channel("secret", forbidden=True)
    hook = fake_discord.add_webhook(fake_discord.channel("general"))
    gone = hook["url"].replace(hook["id"], "1234567890123456789")
    with caplog.at_level(logging.DEBUG):
        missing = await sink_pipeline(channel_id=424242424242424242, template="{title}").run()
        forbidden = await sink_pipeline(channel_id=int(secret["id"]), template="{title}").run()
        deleted = await sink_pipeline(webhook_url=gone, template="{title}").run()
    assert missing.failure is not None and forbidden.failure is not None
    assert deleted.failure is not None
    assert missing.failure.message.startswith("channel 424242424242424242: not found (404")
    assert forbidden.failure.message.startswith(f"channel {secret['id']}: forbidden (403")
    assert deleted.failure.message.startswith("webhook 1234567890123456789: not found (404")
    assert "webhook was deleted" in deleted.failure.message
    for text in (str(deleted.failure), caplog.text):
        assert hook["token"] not in text
        assert fake_discord.token not in text
