"""A fake Discord (REST + gateway on loopback) that the real discord.py client talks to.

    from tests.fakediscord import FakeDiscord, running

    async def test_ping(fake_discord: FakeDiscord) -> None:
        bot = make_bot()                      # a real discord.Client / commands.Bot
        async with running(bot, fake_discord):
            await bot.tree.sync()             # PUT /applications/{id}/commands, recorded
            handle = await fake_discord.interact("ping")
            assert (await handle.response())["data"]["content"] == "pong"

See ``server.FakeDiscord`` for the driver API, ``harness`` for ``running()`` and
``fixtures`` (load it with ``pytest_plugins``, do not import it) for the ``fake_discord`` fixture.
"""

import warnings

with warnings.catch_warnings():  # discord.py 2.x imports audioop, deprecated in 3.11+
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord  # noqa: F401

from tests.fakediscord.harness import point_discord_at, running  # noqa: E402
from tests.fakediscord.server import FakeDiscord, InteractionHandle  # noqa: E402
from tests.fakediscord.state import FilePart, GuildState, RecordedRequest, Violation  # noqa: E402

__all__ = [
    "FakeDiscord",
    "FilePart",
    "GuildState",
    "InteractionHandle",
    "RecordedRequest",
    "Violation",
    "point_discord_at",
    "running",
]
