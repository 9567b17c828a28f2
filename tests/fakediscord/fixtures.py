"""Pytest fixtures for the fake Discord.

Load with ``pytest_plugins = ["tests.fakediscord.fixtures"]`` (in ``tests/conftest.py`` or a
test module). Nothing else imports this module, so pytest can assertion-rewrite it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakediscord.harness import point_discord_at
from tests.fakediscord.server import FakeDiscord


@pytest.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """A started fake Discord on 127.0.0.1:<free port>, with discord.py pointed at it.

    At teardown, if ``fake.strict`` (the default) the test fails when the bot broke a rule
    and the test did not ``take_violations()``.
    """
    fake = FakeDiscord()
    await fake.start()
    point_discord_at(fake, monkeypatch)
    try:
        yield fake
    finally:
        await fake.close()
    if fake.strict:
        fake.assert_no_violations()
