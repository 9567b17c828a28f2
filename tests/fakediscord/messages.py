"""Messages the bot created: channel messages, webhook messages, interaction responses.

Stored as the payloads Discord returns (after edits), with attachments served back and
``mentions``/``mention_roles``/``mention_everyone`` computed from the content under the
request's ``allowed_mentions`` (absent = Discord's default: parse everything).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.fakediscord import payloads
from tests.fakediscord.gateway import INTENT_GUILD_MESSAGES
from tests.fakediscord.state import FilePart

JSON = dict[str, Any]
Broadcast = Callable[[str, JSON, int], None]

CREATE_FLAGS = 4 | 4096 | payloads.IS_COMPONENTS_V2  # SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS, V2
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
ATTACHMENT_SCHEME = "attachment://"


class MessageStore:
    def __init__(self, users: dict[str, JSON], broadcast: Broadcast, wall: Callable[[], float]):
        self.users = users
        self.broadcast = broadcast
        self.wall = wall
        self.base_url = ""  # set when the server starts; attachment URLs point at it
        self.by_id: dict[str, JSON] = {}
        self.attachments: dict[str, bytes] = {}
        self._channels: dict[str, list[str]] = {}
        self._deleted: set[str] = set()

    def get(self, message_id: str) -> JSON | None:
        """The message, unless it does not exist or was deleted."""
        return None if message_id in self._deleted else self.by_id.get(message_id)

    def in_channel(self, channel_id: str, *, include_ephemeral: bool = False) -> list[JSON]:
        found = [self.get(m) for m in self._channels.get(channel_id, [])]
        return [
            m
            for m in found
            if m is not None and (include_ephemeral or not m["flags"] & payloads.EPHEMERAL)
        ]

    def create(
        self,
        channel_id: str,
        body: JSON,
        files: list[FilePart],
        *,
        author: JSON,
        guild_id: str | None,
        flags_mask: int = CREATE_FLAGS,
        **extra: Any,
    ) -> JSON:
        message_id = payloads.snowflake()
        message = payloads.message(
            message_id, channel_id, author, at=self.wall(), guild_id=guild_id, **extra
        )
        message["flags"] = int(body.get("flags") or 0) & flags_mask
        self._apply(message, body, files)
        self.by_id[message_id] = message
        self._channels.setdefault(channel_id, []).append(message_id)
        if not message["flags"] & payloads.EPHEMERAL:
            self.broadcast("MESSAGE_CREATE", message, INTENT_GUILD_MESSAGES)
        return message

    def edit(self, message: JSON, body: JSON, files: list[FilePart]) -> JSON:
        if "flags" in body:  # only SUPPRESS_EMBEDS can change on edit
            kept = message["flags"] & (payloads.EPHEMERAL | payloads.IS_COMPONENTS_V2)
            message["flags"] = kept | (int(body["flags"] or 0) & 4)
        message["flags"] &= ~payloads.LOADING
        message["edited_timestamp"] = payloads.iso(self.wall())
        self._apply(message, body, files)
        if not message["flags"] & payloads.EPHEMERAL:
            self.broadcast("MESSAGE_UPDATE", message, INTENT_GUILD_MESSAGES)
        return message

    def delete(self, message_id: str) -> None:
        self._deleted.add(message_id)
        message = self.by_id[message_id]
        event = {"id": message_id, "channel_id": message["channel_id"]}
        if message.get("guild_id"):
            event["guild_id"] = message["guild_id"]
        self.broadcast("MESSAGE_DELETE", event, INTENT_GUILD_MESSAGES)

    def _apply(self, message: JSON, body: JSON, files: list[FilePart]) -> None:
        if "content" in body:
            message["content"] = body["content"] or ""
        if "embeds" in body:
            message["embeds"] = [{"type": "rich", **e} for e in body["embeds"] or []]
        if "components" in body:
            message["components"] = body["components"] or []
        if "attachments" in body or files:
            message["attachments"] = self._attachments(message, body, files)
        _link_attachments(message)
        self._mentions(message, body.get("allowed_mentions"))

    def _attachments(self, message: JSON, body: JSON, files: list[FilePart]) -> list[JSON]:
        """Kept attachments (listed by id) plus new ones (``{"id": n}`` refers to ``files[n]``)."""
        existing = {a["id"]: a for a in message["attachments"]}
        wanted = body.get("attachments")
        if wanted is None:
            wanted = [{"id": i, "filename": f.filename} for i, f in enumerate(files)]
        result = []
        for item in wanted:
            if str(item["id"]) in existing:
                result.append(existing[str(item["id"])])
                continue
            part = next((f for f in files if f.name == f"files[{item['id']}]"), None)
            if part is not None:
                result.append(self._upload(message["channel_id"], item, part))
        return result

    def _upload(self, channel_id: str, item: JSON, part: FilePart) -> JSON:
        attachment_id = payloads.snowflake()
        filename = item.get("filename") or part.filename or "file"
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
        self.attachments[attachment_id] = part.data
        return {
            "id": attachment_id,
            "filename": filename,
            "description": item.get("description"),
            "size": len(part.data),
            "url": url,
            "proxy_url": url,
            "content_type": part.content_type,
        }

    def _mentions(self, message: JSON, allowed: JSON | None) -> None:
        """Who this message pings, honouring ``allowed_mentions`` (absent = parse everything)."""
        everything = {"users", "roles", "everyone"}
        parse = set(allowed.get("parse") or []) if allowed is not None else everything
        allowed_users = {str(u) for u in (allowed or {}).get("users") or []}
        allowed_roles = {str(r) for r in (allowed or {}).get("roles") or []}
        content = message["content"]
        users = [u for u in dict.fromkeys(_USER_MENTION.findall(content)) if u in self.users]
        roles = list(dict.fromkeys(_ROLE_MENTION.findall(content)))
        pinged = [u for u in users if "users" in parse or u in allowed_users]
        message["mentions"] = [self.users[u] for u in pinged]
        message["mention_roles"] = [r for r in roles if "roles" in parse or r in allowed_roles]
        everyone = "@everyone" in content or "@here" in content
        message["mention_everyone"] = everyone and "everyone" in parse


def _link_attachments(message: JSON) -> None:
    """Point embed images at ``attachment://<filename>`` to that attachment, as Discord does
    (an unknown filename stays as it was)."""
    urls = {a["filename"]: a["url"] for a in message["attachments"]}
    for embed in message["embeds"]:
        for key in ("image", "thumbnail"):
            media = embed.get(key)
            url = str((media or {}).get("url") or "")
            if url.startswith(ATTACHMENT_SCHEME) and url[len(ATTACHMENT_SCHEME) :] in urls:
                found = urls[url[len(ATTACHMENT_SCHEME) :]]
                embed[key] = {**media, "url": found, "proxy_url": found}
