"""Builders for the JSON objects Discord sends: users, roles, members, channels, guilds, messages.

Every builder returns plain dicts shaped like Discord API v10 payloads (snowflakes as strings),
independent of discord.py, so the library under test parses them exactly as it would parse
Discord's.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
import time
from typing import Any

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1420070400000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADD_REACTIONS = 1 << 6
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
ALL_PERMISSIONS = (1 << 51) - 1
DEFAULT_EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_APPLICATION_COMMANDS
)

# Channel types.
GUILD_TEXT = 0
DM = 1
GUILD_CATEGORY = 4
GUILD_ANNOUNCEMENT = 5

# Message flags.
EPHEMERAL = 1 << 6
LOADING = 1 << 7
IS_COMPONENTS_V2 = 1 << 15

_counter = itertools.count()


def snowflake(at: float | None = None) -> str:
    """A fresh, unique snowflake whose timestamp is ``at`` (epoch seconds, default now)."""
    ms = int((time.time() if at is None else at) * 1000)
    return str(((ms - DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF))


def token(length: int = 68) -> str:
    """A random URL-safe token (interaction and webhook tokens are long opaque strings)."""
    return secrets.token_urlsafe(length)[:length]


def iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat()


def user(
    user_id: int | str, username: str, *, bot: bool = False, global_name: str | None = None
) -> JSON:
    return {
        "id": str(user_id),
        "username": username,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": None,
        "bot": bot,
        "system": False,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
    }


def bot_user(user_id: int | str, username: str) -> JSON:
    return {**user(user_id, username, bot=True), "verified": True, "mfa_enabled": False}


def role(
    role_id: int | str,
    name: str,
    *,
    permissions: int = 0,
    position: int = 0,
    color: int = 0,
    managed: bool = False,
) -> JSON:
    return {
        "id": str(role_id),
        "name": name,
        "color": color,
        "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": managed,
        "mentionable": False,
        "flags": 0,
    }


def member(
    user_payload: JSON, *, roles: list[str], joined_at: float, nick: str | None = None
) -> JSON:
    return {
        "user": user_payload,
        "nick": nick,
        "avatar": None,
        "banner": None,
        "roles": list(roles),
        "joined_at": iso(joined_at),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }


def channel(
    channel_id: int | str,
    guild_id: int | str,
    name: str,
    *,
    type: int = GUILD_TEXT,
    position: int = 0,
    parent_id: str | None = None,
    topic: str | None = None,
    permission_overwrites: list[JSON] | None = None,
) -> JSON:
    return {
        "id": str(channel_id),
        "type": type,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "parent_id": parent_id,
        "topic": topic,
        "nsfw": False,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "permission_overwrites": list(permission_overwrites or []),
        "flags": 0,
    }


def overwrite(target_id: int | str, *, member: bool, allow: int = 0, deny: int = 0) -> JSON:
    return {
        "id": str(target_id),
        "type": 1 if member else 0,
        "allow": str(allow),
        "deny": str(deny),
    }


def guild(
    guild_id: int | str,
    name: str,
    *,
    owner_id: int | str,
    roles: list[JSON],
    channels: list[JSON],
    members: list[JSON],
    member_count: int,
    joined_at: float,
) -> JSON:
    return {
        "id": str(guild_id),
        "name": name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "owner_id": str(owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 1,
        "explicit_content_filter": 0,
        "roles": roles,
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "vanity_url_code": None,
        "description": None,
        "banner": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": None,
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
        "safety_alerts_channel_id": None,
        "application_id": None,
        # GUILD_CREATE extras
        "joined_at": iso(joined_at),
        "large": member_count >= 250,
        "unavailable": False,
        "member_count": member_count,
        "voice_states": [],
        "members": members,
        "channels": channels,
        "threads": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "lazy": True,
    }


def application(app_id: int | str, name: str, *, owner: JSON, flags: int) -> JSON:
    return {
        "id": str(app_id),
        "name": name,
        "icon": None,
        "description": "",
        "summary": "",
        "type": None,
        "bot_public": False,
        "bot_require_code_grant": False,
        "owner": owner,
        "team": None,
        "verify_key": "0" * 64,
        "flags": flags,
        "guild_id": None,
        "interactions_endpoint_url": None,
        "tags": [],
        "integration_types_config": {"0": {}},
    }


def message(
    message_id: str,
    channel_id: str,
    author: JSON,
    *,
    at: float,
    guild_id: str | None = None,
    type: int = 0,
    webhook_id: str | None = None,
    application_id: str | None = None,
) -> JSON:
    """An empty message shell; the caller fills content, embeds, components, flags..."""
    payload: JSON = {
        "id": message_id,
        "type": type,
        "channel_id": channel_id,
        "author": author,
        "content": "",
        "timestamp": iso(at),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "components": [],
        "pinned": False,
        "flags": 0,
    }
    if guild_id is not None:
        payload["guild_id"] = guild_id
    if webhook_id is not None:
        payload["webhook_id"] = webhook_id
    if application_id is not None:
        payload["application_id"] = application_id
    return payload


def dm_channel(channel_id: str, recipient: JSON) -> JSON:
    return {"id": channel_id, "type": DM, "last_message_id": None, "recipients": [recipient]}
