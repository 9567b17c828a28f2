"""The bot's settings, read from ``DISCORD_*`` environment variables.

| variable | meaning |
| --- | --- |
| ``DISCORD_TOKEN`` | the bot token; without it the scheduler runs without the bot |
| ``DISCORD_GUILD_ID`` | sync commands to this server only (instant); else globally |
| ``DISCORD_GUILD_IDS`` | servers the bot answers (comma-separated); with ``DISCORD_GUILD_ID`` |
| ``DISCORD_ADMIN_ROLE_IDS`` | roles allowed to change things (comma-separated) |
| ``DISCORD_ADMIN_USER_IDS`` | users allowed to change things (comma-separated) |
| ``DISCORD_ALERT_CHANNEL_ID`` | failed, timed-out and missed runs are posted here |
| ``DISCORD_AUDIT_CHANNEL_ID`` | every change made from chat is posted here |

The token is kept in a ``Secret`` whose ``repr``/``str``/format are masked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipelines.secret import Secret

from .errors import SettingsError

_MAX_SNOWFLAKE = 2**64 - 1


@dataclass(frozen=True)
class BotSettings:
    """Everything the bot reads from the environment, validated."""

    token: Secret | None = None
    guild_id: int | None = None
    guild_ids: frozenset[int] = field(default_factory=frozenset)
    admin_role_ids: frozenset[int] = field(default_factory=frozenset)
    admin_user_ids: frozenset[int] = field(default_factory=frozenset)
    alert_channel_id: int | None = None
    audit_channel_id: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BotSettings:
        """Read and check the ``DISCORD_*`` variables; a bad one raises ``SettingsError``."""
        env = os.environ if environ is None else environ
        return cls(
            token=_token(env.get("DISCORD_TOKEN", "")),
            guild_id=_snowflake(env, "DISCORD_GUILD_ID"),
            guild_ids=_snowflakes(env, "DISCORD_GUILD_IDS"),
            admin_role_ids=_snowflakes(env, "DISCORD_ADMIN_ROLE_IDS"),
            admin_user_ids=_snowflakes(env, "DISCORD_ADMIN_USER_IDS"),
            alert_channel_id=_snowflake(env, "DISCORD_ALERT_CHANNEL_ID"),
            audit_channel_id=_snowflake(env, "DISCORD_AUDIT_CHANNEL_ID"),
        )

    @property
    def enabled(self) -> bool:
        """Whether there is a token, i.e. whether the bot should run at all."""
        return self.token is not None

    @property
    def allowed_guild_ids(self) -> frozenset[int]:
        """Servers the bot answers: ``DISCORD_GUILD_IDS`` plus ``DISCORD_GUILD_ID``.

        Empty means every server the bot is in.
        """
        if self.guild_id is not None and self.guild_ids:
            return self.guild_ids | {self.guild_id}
        if self.guild_id is not None:
            return frozenset({self.guild_id})
        return self.guild_ids


def _token(raw: str) -> Secret | None:
    value = raw.strip()
    if value.lower().startswith("bot "):  # discord.py adds the "Bot " prefix itself
        value = value[4:].strip()
    if not value:
        return None
    if any(ch.isspace() for ch in value):
        raise SettingsError("DISCORD_TOKEN", "contains whitespace")
    return Secret(value)


def _parse_id(variable: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= _MAX_SNOWFLAKE:
        # The value is an id, not a secret, but keep it short in the message.
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise SettingsError(variable, f"{shown!r} is not a Discord id (a positive integer)")
    return int(text)


def _snowflake(env: Mapping[str, str], variable: str) -> int | None:
    text = env.get(variable, "").strip()
    return _parse_id(variable, text) if text else None


def _snowflakes(env: Mapping[str, str], variable: str) -> frozenset[int]:
    text = env.get(variable, "").strip()
    if not text:
        return frozenset()
    return frozenset(_parse_id(variable, part.strip()) for part in text.split(",") if part.strip())
