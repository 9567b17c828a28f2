"""Pointing discord.py at the fake, and running a real client against it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal, TypeVar

import discord
import discord.gateway
import discord.http
import pytest
import yarl

from tests.fakediscord.server import FakeDiscord

ClientT = TypeVar("ClientT", bound=discord.Client)


def point_discord_at(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redirect discord.py to the fake: the two class attributes that hold Discord's URLs.

    * ``discord.http.Route.BASE`` (every REST route, including the webhook and interaction
      routes of ``discord.webhook.async_``, which build ``discord.http.Route`` objects);
    * ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (``Client.connect`` never asks
      ``/gateway/bot``; it starts from this URL, then follows READY's ``resume_gateway_url``).
    """
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
    )


@contextlib.asynccontextmanager
async def running(
    client: ClientT,
    fake: FakeDiscord,
    *,
    token: str | None = None,
    wait: Literal["ready", "connected"] | None = "ready",
    timeout: float = 10.0,
) -> AsyncIterator[ClientT]:
    """Run ``client.start(token)`` in the background; close it and await it on exit.

    ``wait="ready"`` waits for discord.py's ``on_ready`` (which comes ``guild_ready_timeout``
    seconds, default 2, after the last GUILD_CREATE: construct test clients with
    ``guild_ready_timeout=0.05``); ``"connected"`` only waits until the fake has sent READY and
    the GUILD_CREATEs, which is enough to dispatch interactions.
    """
    task = asyncio.create_task(client.start(token or fake.token), name="fakediscord-client")
    try:
        if wait is not None:
            await _wait_started(client, fake, task, wait, timeout)
        yield client
    finally:
        await client.close()
        try:
            await asyncio.wait_for(task, timeout)
        except (discord.ConnectionClosed, discord.GatewayNotFound, discord.HTTPException):
            pass


async def _wait_started(
    client: discord.Client,
    fake: FakeDiscord,
    task: asyncio.Task[None],
    wait: Literal["ready", "connected"],
    timeout: float,
) -> None:
    async with asyncio.timeout(timeout):
        while not task.done():
            if wait == "ready" and client.is_ready():
                return
            if wait == "connected" and fake.gateway.session is not None:
                await fake.wait_until_connected(timeout)
                return
            await asyncio.sleep(0.01)
    task.result()  # start() ended early: raise its error (bad token, refused intents...)
    raise RuntimeError("client.start() returned before the client was ready")
