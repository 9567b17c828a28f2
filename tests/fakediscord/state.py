"""Plain data the fake keeps: the world (guilds, channels, roles, members), interactions,
recorded requests, violations and rate-limit rules."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from tests.fakediscord import payloads
from tests.fakediscord.gateway import INTENT_GUILD_MEMBERS

JSON = dict[str, Any]


@dataclass(frozen=True)
class FilePart:
    """One uploaded file of a multipart request (``files[n]``)."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    """One REST request as Discord would have received it.

    ``path`` and ``route`` are relative to ``/api/v10``; ``route`` is the template, e.g.
    ``"POST /channels/{channel_id}/messages"``. ``headers`` never contain ``Authorization``;
    ``auth`` says whether one was sent and whether it carried the fake's bot token:
    ``"valid"``, ``"invalid"`` or ``"missing"``. ``json`` is the JSON body, or the parsed
    ``payload_json`` part of a multipart body (then ``files`` holds the other parts).
    ``status``, ``response`` (JSON or None) and ``response_headers`` are what the fake answered.
    """

    index: int
    method: str
    path: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    auth: str
    json: Any
    files: list[FilePart]
    at: float
    status: int = 0
    response: Any = None
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Violation:
    """A rule the bot broke; the fake answered with Discord's real error for it."""

    rule: str
    status: int
    body: JSON
    detail: str
    request: RecordedRequest | None = None

    def __str__(self) -> str:
        where = f" on {self.request.method} {self.request.path}" if self.request else ""
        return f"{self.rule}{where}: {self.status} {self.body} ({self.detail})"


@dataclass
class RateLimitRule:
    """Every ``every``-th request matching ``pattern`` gets a 429 (at most ``times`` of them)."""

    pattern: str
    every: int
    times: int | None
    retry_after: float
    is_global: bool
    scope: str
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, route: str, path: str) -> bool:
        return fnmatch.fnmatchcase(f"{method} {route}", self.pattern) or fnmatch.fnmatchcase(
            f"{method} {path}", self.pattern
        )

    def fire(self) -> bool:
        self.seen += 1
        if self.times is not None and self.fired >= self.times:
            return False
        if self.seen % self.every:
            return False
        self.fired += 1
        return True


@dataclass
class Bucket:
    window_start: float
    count: int = 0


@dataclass
class InteractionRecord:
    """Everything the fake knows about one interaction it dispatched."""

    id: str
    token: str
    type: int
    payload: JSON
    created_at: float
    channel_id: str
    guild_id: str | None
    source_message_id: str | None = None
    acked_with: int | None = None
    acked_at: float | None = None
    original_id: str | None = None
    followup_ids: list[str] = field(default_factory=list)


@dataclass
class GuildState:
    id: str
    name: str
    owner_id: str
    joined_at: float
    roles: dict[str, JSON] = field(default_factory=dict)
    channels: dict[str, JSON] = field(default_factory=dict)
    members: dict[str, JSON] = field(default_factory=dict)

    @property
    def everyone(self) -> JSON:
        return self.roles[self.id]

    def role_named(self, name: str) -> JSON:
        for role in self.roles.values():
            if role["name"] == name:
                return role
        raise KeyError(f"no role named {name!r} in guild {self.name!r}")

    def channel_named(self, name: str) -> JSON:
        for channel in self.channels.values():
            if channel["name"] == name:
                return channel
        raise KeyError(f"no channel named {name!r} in guild {self.name!r}")

    def permissions(
        self, user_id: str, channel: JSON | None = None, *, roles: list[str] | None = None
    ) -> int:
        """The member's permissions (in ``channel`` if given), as Discord computes them;
        ``roles`` replaces the member's role ids."""
        if user_id == self.owner_id:
            return payloads.ALL_PERMISSIONS
        member_roles = self.members[user_id]["roles"] if roles is None else roles
        perms = int(self.everyone["permissions"])
        for role_id in member_roles:
            perms |= int(self.roles[role_id]["permissions"]) if role_id in self.roles else 0
        if perms & payloads.ADMINISTRATOR:
            return payloads.ALL_PERMISSIONS
        if channel is None:
            return perms
        overwrites = {o["id"]: o for o in channel.get("permission_overwrites") or []}
        ordered = [overwrites.get(self.id)]
        role_ows = [overwrites[r] for r in member_roles if r in overwrites]
        allow = sum(int(o["allow"]) for o in role_ows)
        deny = sum(int(o["deny"]) for o in role_ows)
        ordered.append({"allow": str(allow), "deny": str(deny)} if role_ows else None)
        ordered.append(overwrites.get(user_id))
        for ow in ordered:
            if ow is not None:
                perms = (perms & ~int(ow["deny"])) | int(ow["allow"])
        return perms

    def payload(self, intents: int) -> JSON:
        """The GUILD_CREATE payload; all members only with the GUILD_MEMBERS intent."""
        members = list(self.members.values())
        if not intents & INTENT_GUILD_MEMBERS:
            members = [m for m in members if m["user"].get("bot")]
        return payloads.guild(
            self.id,
            self.name,
            owner_id=self.owner_id,
            roles=list(self.roles.values()),
            channels=list(self.channels.values()),
            members=members,
            member_count=len(self.members),
            joined_at=self.joined_at,
        )
