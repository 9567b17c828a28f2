"""Command sync: the hash of the command payloads is stable and follows every change;
``run_sync_commands`` (``pipebot sync-commands``) syncs over REST against the fake."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import discord
import pytest
from discord import app_commands

from bot.errors import SettingsError, SyncError
from bot.sync import command_payloads, hash_key, payload_hash, run_sync_commands
from pipelines.secret import Secret
from scheduler.service import PipelineScheduler
from tests.bot.support import bot_settings
from tests.fakediscord import FakeDiscord

pytest_plugins = ["tests.fakediscord.fixtures"]
GUILD_PUT = "PUT /applications/{application_id}/guilds/{guild_id}/commands"
GLOBAL_PUT = "PUT /applications/{application_id}/commands"


def tree_with(description: str = "Run a pipeline", option: str = "pipeline") -> Any:
    client = discord.Client(intents=discord.Intents.none())
    tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)

    async def run(interaction: discord.Interaction[Any], pipeline: str) -> None:
        return None

    async def health(interaction: discord.Interaction[Any]) -> None:
        return None

    run_command = app_commands.Command(name="run", description=description, callback=run)
    if option != "pipeline":
        run_command = app_commands.rename(pipeline=option)(run_command)
    tree.add_command(app_commands.Command(name="health", description="Health", callback=health))
    tree.add_command(run_command)
    return tree


def test_same_commands_same_hash() -> None:
    first = payload_hash(command_payloads(tree_with(), None))
    second = payload_hash(command_payloads(tree_with(), None))
    assert first == second
    assert 0 <= first < 2**62  # fits the signed BIGINT of the meta table


def test_any_change_changes_the_hash() -> None:
    base = payload_hash(command_payloads(tree_with(), None))
    assert payload_hash(command_payloads(tree_with(description="Run now"), None)) != base
    assert payload_hash(command_payloads(tree_with(option="name"), None)) != base


def test_payloads_are_sorted_and_what_sync_sends() -> None:
    tree = tree_with()
    payloads = command_payloads(tree, None)
    assert [p["name"] for p in payloads] == ["health", "run"]
    assert payloads[1]["options"][0]["name"] == "pipeline"


def test_hash_key_per_target() -> None:
    assert hash_key(None) == "discord_commands:global"
    assert hash_key(123) == "discord_commands:123"
    assert len(hash_key(2**64 - 1)) + len("app:") <= 64  # the meta key column


async def test_sync_commands_forces_a_sync_over_rest_and_remembers_it(
    fake_discord: FakeDiscord, scheduler: PipelineScheduler, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(bot_settings(fake_discord), token=Secret(fake_discord.token))
    with caplog.at_level(logging.DEBUG):
        result = await run_sync_commands(scheduler, settings)
    assert result.synced and result.commands == 10
    assert str(result) == f"synced 10 slash command(s) (guild {fake_discord.guild.id})"
    assert len(fake_discord.commands(fake_discord.guild)) == 10
    assert fake_discord.gateway.connections == []  # REST only
    assert not scheduler.running
    assert fake_discord.token not in caplog.text
    unchanged = await run_sync_commands(scheduler, settings, force=False)
    assert not unchanged.synced and "unchanged" in str(unchanged)
    assert len(fake_discord.requests_to(GUILD_PUT)) == 1
    assert (await run_sync_commands(scheduler, settings)).synced  # force: again
    assert len(fake_discord.requests_to(GUILD_PUT)) == 2
    everywhere = dataclasses.replace(settings, guild_id=None)
    result = await run_sync_commands(scheduler, everywhere, force=False)
    assert result.synced and result.target == "global"  # its own hash
    assert "can take a while" in str(result)
    assert {c["name"] for c in fake_discord.commands()} == {
        c["name"] for c in fake_discord.commands(fake_discord.guild)
    }
    assert len(fake_discord.requests_to(GLOBAL_PUT)) == 1


async def test_sync_commands_fails_in_one_line_without_the_token(
    fake_discord: FakeDiscord, scheduler: PipelineScheduler
) -> None:
    settings = bot_settings(fake_discord)
    with pytest.raises(SettingsError, match="^DISCORD_TOKEN: is not set"):
        await run_sync_commands(scheduler, settings)
    wrong = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"
    with pytest.raises(SyncError) as rejected:
        await run_sync_commands(scheduler, dataclasses.replace(settings, token=Secret(wrong)))
    assert str(rejected.value) == "Discord rejected DISCORD_TOKEN (401 Unauthorized)"
    fake_discord.outage(True, status=503)
    good = dataclasses.replace(settings, token=Secret(fake_discord.token))
    with pytest.raises(SyncError, match="^Discord answered HTTP 503"):
        await run_sync_commands(scheduler, good)
    assert {v.rule for v in fake_discord.take_violations()} == {"unauthorized"}
    assert fake_discord.commands(fake_discord.guild) == []
    assert scheduler.recall(hash_key(int(fake_discord.guild.id))) is None
