"""Command sync: the hash of the command payloads is stable and follows every change."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.sync import command_payloads, hash_key, payload_hash


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
