"""Discord's error answers, with the exact codes and messages the real API uses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

JSON = dict[str, Any]


def json_response(body: Any, status: int = 200) -> web.Response:
    # Exactly "application/json", no charset: discord.py's json_or_text() compares the header
    # verbatim and treats anything else as text (Discord sends it bare).
    data = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(body=data, status=status, headers={"Content-Type": "application/json"})


def no_content() -> web.Response:
    return web.Response(status=204)


@dataclass(frozen=True)
class DiscordError:
    status: int
    code: int
    message: str

    def body(self, errors: JSON | None = None) -> JSON:
        body: JSON = {"message": self.message, "code": self.code}
        if errors is not None:
            body["errors"] = errors
        return body

    def response(self, errors: JSON | None = None) -> web.Response:
        return json_response(self.body(errors), self.status)


UNAUTHORIZED = DiscordError(401, 0, "401: Unauthorized")
NOT_FOUND = DiscordError(404, 0, "404: Not Found")
UNKNOWN_CHANNEL = DiscordError(404, 10003, "Unknown Channel")
UNKNOWN_GUILD = DiscordError(404, 10004, "Unknown Guild")
UNKNOWN_MEMBER = DiscordError(404, 10007, "Unknown Member")
UNKNOWN_MESSAGE = DiscordError(404, 10008, "Unknown Message")
UNKNOWN_USER = DiscordError(404, 10013, "Unknown User")
UNKNOWN_WEBHOOK = DiscordError(404, 10015, "Unknown Webhook")
UNKNOWN_INTERACTION = DiscordError(404, 10062, "Unknown interaction")
ALREADY_ACKNOWLEDGED = DiscordError(400, 40060, "Interaction has already been acknowledged.")
MISSING_ACCESS = DiscordError(403, 50001, "Missing Access")
CANNOT_EDIT_OTHERS = DiscordError(403, 50005, "Cannot edit a message authored by another user")
EMPTY_MESSAGE = DiscordError(400, 50006, "Cannot send an empty message")
MISSING_PERMISSIONS = DiscordError(403, 50013, "Missing Permissions")
INVALID_WEBHOOK_TOKEN = DiscordError(401, 50027, "Invalid Webhook Token")
INVALID_FORM_BODY = DiscordError(400, 50035, "Invalid Form Body")


def service_unavailable(status: int) -> web.Response:
    return json_response({"message": f"{status}: Service Unavailable", "code": 0}, status)
