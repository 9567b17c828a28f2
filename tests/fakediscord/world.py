"""The world the bot lives in: its user, guilds with roles, channels and members, webhooks.

The default world (``build_default_world``) is one guild, "Pipebot Test Guild", owned by
``owner``, with text channels ``#general`` and ``#ops``, a role "Pipeline Operator" held by
``alice`` (``bob`` has no role), and the bot with its managed role.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tests.fakediscord import payloads
from tests.fakediscord.gateway import INTENT_GUILD_MEMBERS, INTENT_GUILDS
from tests.fakediscord.state import GuildState

JSON = dict[str, Any]


class World:
    def __init__(self) -> None:
        self.users: dict[str, JSON] = {}
        self.guilds: dict[str, GuildState] = {}
        self.dm_channels: dict[str, JSON] = {}
        self.webhooks: dict[str, JSON] = {}
        self.application_id = payloads.snowflake()
        self.bot = payloads.bot_user(self.application_id, "PipeBot")
        self.users[self.application_id] = self.bot

    def broadcast(self, event: str, data: JSON, intent: int) -> None:
        """Tell the connected bot about a change (the fake dispatches it on the gateway)."""

    def build_default_world(self) -> None:
        owner = self.add_user("owner")
        guild = self.add_guild("Pipebot Test Guild", owner=owner)
        operator = self.add_role("Pipeline Operator", guild=guild)
        self.add_member("alice", roles=[operator], guild=guild)
        self.add_member("bob", guild=guild)
        self.add_channel("general", guild=guild)
        self.add_channel("ops", guild=guild)

    # -- lookups --------------------------------------------------------------------------------

    @property
    def guild(self) -> GuildState:
        """The default guild (the first one)."""
        return next(iter(self.guilds.values()))

    def channel(self, name: str, guild: GuildState | None = None) -> JSON:
        return (guild or self.guild).channel_named(name)

    def role(self, name: str, guild: GuildState | None = None) -> JSON:
        return (guild or self.guild).role_named(name)

    def user(self, username: str) -> JSON:
        for user in self.users.values():
            if user["username"] == username:
                return user
        raise KeyError(f"no user named {username!r}")

    def find_channel(self, channel_id: str) -> tuple[JSON | None, GuildState | None]:
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.channels[channel_id], guild
        return self.dm_channels.get(channel_id), None

    # -- builders -------------------------------------------------------------------------------

    def add_user(self, username: str, *, bot: bool = False) -> JSON:
        user = payloads.user(payloads.snowflake(), username, bot=bot)
        self.users[user["id"]] = user
        return user

    def add_guild(self, name: str, *, owner: JSON) -> GuildState:
        guild_id = payloads.snowflake()
        guild = GuildState(guild_id, name, owner["id"], time.time())
        everyone = payloads.DEFAULT_EVERYONE_PERMISSIONS
        guild.roles[guild_id] = payloads.role(guild_id, "@everyone", permissions=everyone)
        bot_role = payloads.role(
            payloads.snowflake(),
            self.bot["username"],
            managed=True,
            position=1,
            permissions=everyone,
        )
        guild.roles[bot_role["id"]] = bot_role
        self.guilds[guild_id] = guild
        self._join(guild, self.bot, [bot_role["id"]])
        self._join(guild, owner, [])
        return guild

    def add_role(self, name: str, *, permissions: int = 0, guild: GuildState | None = None) -> JSON:
        guild = guild or self.guild
        role_id = payloads.snowflake()
        role = payloads.role(role_id, name, permissions=permissions, position=len(guild.roles))
        guild.roles[role_id] = role
        self.broadcast("GUILD_ROLE_CREATE", {"guild_id": guild.id, "role": role}, INTENT_GUILDS)
        return role

    def set_role_permissions(self, role: JSON, permissions: int) -> None:
        """Change a role's permission bits (GUILD_ROLE_UPDATE to the bot)."""
        guild = next(g for g in self.guilds.values() if role["id"] in g.roles)
        role["permissions"] = str(permissions)
        self.broadcast("GUILD_ROLE_UPDATE", {"guild_id": guild.id, "role": role}, INTENT_GUILDS)

    def add_member(
        self, username: str, *, roles: Sequence[JSON] = (), guild: GuildState | None = None
    ) -> JSON:
        """Create a user and make them a member; returns the user payload."""
        user = self.add_user(username)
        self._join(guild or self.guild, user, [r["id"] for r in roles])
        return user

    def set_roles(self, user: JSON, roles: Sequence[JSON], guild: GuildState | None = None) -> None:
        guild = guild or self.guild
        member = guild.members[user["id"]]
        member["roles"] = [r["id"] for r in roles]
        self.broadcast(
            "GUILD_MEMBER_UPDATE", {**member, "guild_id": guild.id}, INTENT_GUILD_MEMBERS
        )

    def add_channel(
        self,
        name: str,
        *,
        guild: GuildState | None = None,
        forbidden: bool = False,
        read_only: bool = False,
        type: int = payloads.GUILD_TEXT,
    ) -> JSON:
        """A channel; ``forbidden`` hides it from the bot (403 50001 Missing Access), ``read_only``
        denies it Send Messages (403 50013 Missing Permissions). Both are permission overwrites,
        so discord.py's ``permissions_for`` agrees with the REST answers."""
        guild = guild or self.guild
        deny = payloads.VIEW_CHANNEL if forbidden else 0
        deny |= payloads.SEND_MESSAGES if read_only else 0
        overwrites = [payloads.overwrite(self.bot["id"], member=True, deny=deny)] if deny else []
        channel = payloads.channel(
            payloads.snowflake(),
            guild.id,
            name,
            type=type,
            position=len(guild.channels),
            permission_overwrites=overwrites,
        )
        guild.channels[channel["id"]] = channel
        self.broadcast("CHANNEL_CREATE", channel, INTENT_GUILDS)
        return channel

    def add_webhook(self, channel: JSON, name: str = "Captain Hook") -> JSON:
        """A channel webhook. ``url`` has discord.com's shape, so ``discord.Webhook.from_url``
        parses it; its requests still go to the patched ``Route.BASE``, i.e. to the fake."""
        webhook_id, token = payloads.snowflake(), payloads.token()
        webhook = {
            "id": webhook_id,
            "type": 1,
            "name": name,
            "avatar": None,
            "channel_id": channel["id"],
            "guild_id": channel.get("guild_id"),
            "application_id": None,
            "token": token,
            "url": f"https://discord.com/api/webhooks/{webhook_id}/{token}",
        }
        self.webhooks[webhook_id] = webhook
        return webhook

    def open_dm(self, recipient: JSON) -> JSON:
        for channel in self.dm_channels.values():
            if channel["recipients"][0]["id"] == recipient["id"]:
                return channel
        channel = payloads.dm_channel(payloads.snowflake(), recipient)
        self.dm_channels[channel["id"]] = channel
        return channel

    def _join(self, guild: GuildState, user: JSON, role_ids: list[str]) -> None:
        member = payloads.member(user, roles=role_ids, joined_at=time.time())
        guild.members[user["id"]] = member
        event = {**member, "guild_id": guild.id}
        self.broadcast("GUILD_MEMBER_ADD", event, INTENT_GUILD_MEMBERS)
