"""REST routes of the fake: users, gateway discovery, channels and messages, guilds, commands.

Every handler finds its already-parsed, already-recorded request in ``request[REC]`` (the
middleware in ``server.py`` reads the body once, records it, checks auth and rate limits).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakediscord import errors, limits, payloads
from tests.fakediscord.errors import json_response, no_content
from tests.fakediscord.state import GuildState, RecordedRequest

if TYPE_CHECKING:
    from tests.fakediscord.server import FakeDiscord

JSON = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REC = web.RequestKey("fakediscord.rec", RecordedRequest)


def validate_message(
    fake: FakeDiscord, rec: RecordedRequest, body: JSON, *, creating: bool, under: str = ""
) -> web.Response | None:
    """Discord's 50035 (limits) or 50006 (empty message) answer, or None when valid."""
    problems = limits.check_message(body)
    if problems:
        found = {under: problems} if under else problems
        return fake.reject(rec, "invalid_form_body", errors.INVALID_FORM_BODY, found)
    if creating and limits.is_empty_message(body, len(rec.files)):
        return fake.reject(rec, "empty_message", errors.EMPTY_MESSAGE)
    return None


def channel_guard(fake: FakeDiscord, channel_id: str, *, send: bool = False) -> web.Response | None:
    """10003 for an unknown channel, 50001 if the bot cannot see it, 50013 if it may not send."""
    channel, guild = fake.find_channel(channel_id)
    if channel is None:
        return errors.UNKNOWN_CHANNEL.response()
    if guild is not None:
        perms = guild.permissions(fake.bot["id"], channel)
        if not perms & payloads.VIEW_CHANNEL:
            return errors.MISSING_ACCESS.response()
        if send and not perms & payloads.SEND_MESSAGES:
            return errors.MISSING_PERMISSIONS.response()
    return None


class RestApi:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def routes(self) -> list[tuple[str, str, Handler]]:
        channel = "/channels/{channel_id}"
        message = channel + "/messages/{message_id}"
        commands = "/applications/{application_id}/commands"
        guild_commands = "/applications/{application_id}/guilds/{guild_id}/commands"
        return [
            ("GET", "/users/@me", self.get_me),
            ("POST", "/users/@me/channels", self.create_dm),
            ("GET", "/users/{user_id}", self.get_user),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", "/applications/@me", self.get_application),
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway_bot),
            ("GET", channel, self.get_channel),
            ("POST", channel + "/typing", self.typing),
            ("GET", channel + "/messages", self.list_messages),
            ("POST", channel + "/messages", self.create_message),
            ("GET", message, self.get_message),
            ("PATCH", message, self.edit_message),
            ("DELETE", message, self.delete_message),
            ("PUT", message + "/reactions/{emoji}/@me", self.react),
            ("GET", "/guilds/{guild_id}", self.get_guild),
            ("GET", "/guilds/{guild_id}/channels", self.get_guild_channels),
            ("GET", "/guilds/{guild_id}/roles", self.get_guild_roles),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
            ("GET", commands, self.get_commands),
            ("PUT", commands, self.put_commands),
            ("GET", guild_commands, self.get_commands),
            ("PUT", guild_commands, self.put_commands),
        ]

    # -- users and application ------------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.fake.bot)

    async def get_user(self, request: web.Request) -> web.StreamResponse:
        user = self.fake.users.get(request.match_info["user_id"])
        return json_response(user) if user else errors.UNKNOWN_USER.response()

    async def create_dm(self, request: web.Request) -> web.StreamResponse:
        recipient_id = str((request[REC].json or {}).get("recipient_id"))
        recipient = self.fake.users.get(recipient_id)
        if recipient is None:
            problem = {"code": "NUMBER_TYPE_COERCE", "message": "Value is not snowflake."}
            return errors.INVALID_FORM_BODY.response({"recipient_id": {"_errors": [problem]}})
        return json_response(self.fake.open_dm(recipient))

    async def get_application(self, request: web.Request) -> web.StreamResponse:
        fake = self.fake
        owner = fake.users[fake.guild.owner_id]
        app = payloads.application(
            fake.application_id, fake.bot["username"], owner=owner, flags=fake.app_flags()
        )
        return json_response(app)

    async def get_gateway(self, request: web.Request) -> web.StreamResponse:
        return json_response({"url": self.fake.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.StreamResponse:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        body = {"url": self.fake.gateway_url, "shards": 1, "session_start_limit": limit}
        return json_response(body)

    # -- channels and messages ------------------------------------------------------------------

    def _message_in(self, channel_id: str, message_id: str) -> JSON | None:
        message = self.fake.store.get(message_id)
        if message is None or message["channel_id"] != channel_id:
            return None
        return None if message["flags"] & payloads.EPHEMERAL else message

    async def get_channel(self, request: web.Request) -> web.StreamResponse:
        channel_id = request.match_info["channel_id"]
        if (denied := channel_guard(self.fake, channel_id)) is not None:
            return denied
        return json_response(self.fake.find_channel(channel_id)[0])

    async def typing(self, request: web.Request) -> web.StreamResponse:
        denied = channel_guard(self.fake, request.match_info["channel_id"], send=True)
        return denied if denied is not None else no_content()

    async def list_messages(self, request: web.Request) -> web.StreamResponse:
        channel_id = request.match_info["channel_id"]
        if (denied := channel_guard(self.fake, channel_id)) is not None:
            return denied
        limit = int(request.query.get("limit", 50))
        newest_first = list(reversed(self.fake.store.in_channel(channel_id)))
        return json_response(newest_first[:limit])

    async def create_message(self, request: web.Request) -> web.StreamResponse:
        rec, channel_id = request[REC], request.match_info["channel_id"]
        if (denied := channel_guard(self.fake, channel_id, send=True)) is not None:
            return denied
        body = rec.json or {}
        if (invalid := validate_message(self.fake, rec, body, creating=True)) is not None:
            return invalid
        channel, _ = self.fake.find_channel(channel_id)
        guild_id = channel.get("guild_id") if channel else None
        author = self.fake.bot
        message = self.fake.store.create(
            channel_id, body, rec.files, author=author, guild_id=guild_id
        )
        return json_response(message)

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        channel_id = request.match_info["channel_id"]
        if (denied := channel_guard(self.fake, channel_id)) is not None:
            return denied
        message = self._message_in(channel_id, request.match_info["message_id"])
        return json_response(message) if message else errors.UNKNOWN_MESSAGE.response()

    async def edit_message(self, request: web.Request) -> web.StreamResponse:
        rec, channel_id = request[REC], request.match_info["channel_id"]
        if (denied := channel_guard(self.fake, channel_id)) is not None:
            return denied
        message = self._message_in(channel_id, request.match_info["message_id"])
        if message is None:
            return errors.UNKNOWN_MESSAGE.response()
        if message["author"]["id"] != self.fake.bot["id"]:
            return self.fake.reject(rec, "edit_foreign_message", errors.CANNOT_EDIT_OTHERS)
        body = rec.json or {}
        if (invalid := validate_message(self.fake, rec, body, creating=False)) is not None:
            return invalid
        return json_response(self.fake.store.edit(message, body, rec.files))

    async def delete_message(self, request: web.Request) -> web.StreamResponse:
        channel_id, message_id = request.match_info["channel_id"], request.match_info["message_id"]
        if (denied := channel_guard(self.fake, channel_id)) is not None:
            return denied
        if self._message_in(channel_id, message_id) is None:
            return errors.UNKNOWN_MESSAGE.response()
        self.fake.store.delete(message_id)
        return no_content()

    async def react(self, request: web.Request) -> web.StreamResponse:
        channel_id = request.match_info["channel_id"]
        if (denied := channel_guard(self.fake, channel_id)) is not None:
            return denied
        if self._message_in(channel_id, request.match_info["message_id"]) is None:
            return errors.UNKNOWN_MESSAGE.response()
        return no_content()

    # -- guilds ---------------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> GuildState | web.Response:
        guild = self.fake.guilds.get(request.match_info["guild_id"])
        return guild if guild is not None else errors.UNKNOWN_GUILD.response()

    async def get_guild(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        if isinstance(guild, web.Response):
            return guild
        payload = guild.payload(0)
        for key in ("members", "channels", "threads", "presences", "voice_states", "member_count"):
            payload.pop(key, None)
        return json_response(payload)

    async def get_guild_channels(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        return (
            guild if isinstance(guild, web.Response) else json_response([*guild.channels.values()])
        )

    async def get_guild_roles(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        return guild if isinstance(guild, web.Response) else json_response([*guild.roles.values()])

    async def get_member(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        if isinstance(guild, web.Response):
            return guild
        member = guild.members.get(request.match_info["user_id"])
        return json_response(member) if member else errors.UNKNOWN_MEMBER.response()

    # -- application commands -------------------------------------------------------------------

    def _scope(self, request: web.Request) -> str | None | web.Response:
        """None for global commands, the guild id for guild commands, or an error."""
        guild_id = request.match_info.get("guild_id")
        wrong_app = request.match_info["application_id"] != self.fake.application_id
        if wrong_app or (guild_id is not None and guild_id not in self.fake.guilds):
            return errors.MISSING_ACCESS.response()
        return guild_id

    async def get_commands(self, request: web.Request) -> web.StreamResponse:
        scope = self._scope(request)
        if isinstance(scope, web.Response):
            return scope
        return json_response(self.fake.commands_by_scope.get(scope, []))

    async def put_commands(self, request: web.Request) -> web.StreamResponse:
        rec = request[REC]
        scope = self._scope(request)
        if isinstance(scope, web.Response):
            return scope
        if (problems := limits.check_commands(rec.json)) is not None:
            return self.fake.reject(rec, "invalid_command", errors.INVALID_FORM_BODY, problems)
        return json_response(self.fake.store_commands(rec.json, scope))
