"""The fake Discord: an aiohttp app on loopback serving REST under ``/api/v10`` and the gateway
on ``/gateway`` (and ``/resume``), plus the driver tests use to act as Discord's users.

Every REST request goes through one middleware that parses the body once, records it in
``fake.requests``, answers 503 during an ``outage()``, 401 without the bot token (except
interaction and webhook routes, which Discord authenticates by token), injects the configured
429s, enforces the advertised rate-limit bucket, and stamps ``X-RateLimit-*`` and ``Via``
headers on the answer. Rule breaches are answered with Discord's real error and appended to
``fake.violations``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web

from tests.fakediscord import errors, interaction_data, payloads
from tests.fakediscord.errors import DiscordError, json_response
from tests.fakediscord.gateway import (
    INVALID_SESSION,
    PRIVILEGED_INTENTS,
    RECONNECT,
    Gateway,
    Session,
)
from tests.fakediscord.messages import MessageStore
from tests.fakediscord.rest import REC, RestApi
from tests.fakediscord.state import (
    Bucket,
    FilePart,
    GuildState,
    InteractionRecord,
    RateLimitRule,
    RecordedRequest,
    Violation,
)
from tests.fakediscord.webhooks import WebhookApi
from tests.fakediscord.world import World

JSON = dict[str, Any]
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/api/v10"
TOKEN_ROUTES = ("/interactions/", "/webhooks/{webhook_id}/{webhook_token}")
CALLBACK_ROUTE = "/interactions/{interaction_id}/{token}/callback"
MAJOR_PARAMETERS = (
    "channel_id",
    "guild_id",
    "webhook_id",
    "webhook_token",
    "interaction_id",
    "token",
)


class FakeDiscord(World):
    """State, HTTP app, gateway and test driver of the fake.

    World: ``guild``, ``channel(name)``, ``role(name)``, ``user(name)``, ``add_channel()``,
    ``add_role()``, ``add_member()``, ``set_roles()``, ``add_webhook()`` (see ``World``).
    Driver: ``interact()``, ``autocomplete()``, ``click()``, ``open_command()``, ``dispatch()``,
    ``advance()``, ``rate_limit()``, ``outage()``, ``drop_gateway()``, ``request_reconnect()``,
    ``invalidate_session()``. Records: ``requests``, ``violations``, ``gateway.frames``,
    ``gateway.connections``, ``callbacks()``, ``messages()``, ``commands()``, ``wait_for()``.
    """

    def __init__(self, *, token: str = "fake.bot.token", host: str = "127.0.0.1") -> None:
        self.gateway = Gateway(self)
        super().__init__()
        self.token = token
        self.host = host
        self.port = 0
        self.strict = True
        self.clock_offset = 0.0
        self.outage_status: int | None = None
        self.privileged_intents: set[str] = set(PRIVILEGED_INTENTS)
        self.bucket_limit = 50
        self.bucket_window = 1.0
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.interactions: dict[str, InteractionRecord] = {}
        self.rate_limits: list[RateLimitRule] = []
        self.commands_by_scope: dict[str | None, list[JSON]] = {}
        self.opened_commands: set[tuple[str, str]] = set()
        """``(guild id, command name)`` a server admin opened to everyone (``open_command``)."""
        self.store = MessageStore(self.users, self.broadcast, self.wall)
        self._buckets: dict[str, Bucket] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._runner: web.AppRunner | None = None
        self.build_default_world()

    # == lifecycle =============================================================================

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` must be set to."""
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/resume"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024**2)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/resume", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._attachment)
        for method, path, handler in [*RestApi(self).routes(), *WebhookApi(self).routes()]:
            app.router.add_route(method, API_PREFIX + path, handler)
        app.on_shutdown.append(self._on_shutdown)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self.port = self._runner.addresses[0][1]
        self.store.base_url = self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.gateway.close_all()

    async def _attachment(self, request: web.Request) -> web.StreamResponse:
        data = self.store.attachments.get(request.match_info["attachment_id"])
        return web.Response(body=data) if data is not None else web.Response(status=404)

    # == clock =================================================================================

    def now(self) -> float:
        """The fake's monotonic clock (seconds); ``advance()`` moves it forward."""
        return time.monotonic() + self.clock_offset

    def wall(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Shift the fake's notion of time: ``advance(4)`` makes pending interactions late,
        ``advance(15 * 60)`` expires interaction tokens. (The bot's own clock is untouched.)"""
        self.clock_offset += seconds
        self.notify()

    # == gateway ===============================================================================

    def broadcast(self, event: str, data: JSON, intent: int) -> None:
        session = self.gateway.session
        if session is not None and not session.invalid and session.intents & intent:
            session.dispatch(event, data)

    def app_flags(self) -> int:
        bits = {"presences": 1 << 12, "members": 1 << 14, "message_content": 1 << 18}
        return sum(bits[name] for name in self.privileged_intents)

    def ready_payload(self, session: Session) -> JSON:
        ready: JSON = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": guild_id, "unavailable": True} for guild_id in self.guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": self.application_id, "flags": self.app_flags()},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "geo_ordered_rtc_regions": [],
            "guild_join_requests": [],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        return ready

    def _session(self) -> Session:
        session = self.gateway.session
        if session is None or session.invalid:
            raise RuntimeError("no bot session on the fake gateway (start the client first)")
        return session

    async def dispatch(self, event: str, data: JSON) -> int:
        """Send any DISPATCH event to the bot (buffered while it is disconnected); returns its
        sequence number."""
        return self._session().dispatch(event, data)

    async def wait_until_connected(self, timeout: float = 5.0) -> Session:
        """Until a bot session is live and everything dispatched to it so far was sent."""

        def connected() -> Session | None:
            session = self.gateway.session
            if session is None or session.conn is None:
                return None
            sent = {f.s for f in self.gateway.frames if f.direction == "send"}
            return session if session.seq in sent else None

        return await self.wait_for(connected, timeout)

    async def drop_gateway(self, code: int | None = 4000) -> None:
        """Close the bot's gateway connection with ``code`` (4000: resumable), or cut the TCP
        connection without a close frame when ``code`` is None."""
        conn = self.gateway.current_connection()
        if conn is None:
            raise RuntimeError("no live gateway connection to drop")
        if code is None:
            conn.abort()
        else:
            await conn.close(code, "Dropped by the test.")

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; discord.py closes and RESUMEs."""
        conn = self.gateway.current_connection()
        if conn is None:
            raise RuntimeError("no live gateway connection")
        conn.send({"op": RECONNECT, "d": None})

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; unless resumable, the bot must IDENTIFY afresh."""
        session = self._session()
        session.invalid = not resumable
        if session.conn is not None:
            session.conn.send({"op": INVALID_SESSION, "d": resumable})

    # == recording, waiting, violations ========================================================

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0) -> T:
        """Re-evaluate ``predicate()`` after every request and gateway frame (and at least every
        20 ms, for conditions on the bot's own state) until it returns something truthy, and
        return that. Raises ``TimeoutError`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not (result := predicate()):
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    await asyncio.wait([waiter], timeout=0.02)
                return result
        except TimeoutError:
            recent = "\n  ".join(f"{r.status} {r.method} {r.path}" for r in self.requests[-10:])
            message = f"fake Discord: condition not met within {timeout}s; last requests:"
            raise TimeoutError(f"{message}\n  {recent}") from None

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float = 5.0, *, since: int = 0
    ) -> RecordedRequest:
        """The first answered request (index >= ``since``) matching ``predicate``."""

        def find() -> RecordedRequest | None:
            return next((r for r in self.requests[since:] if r.status and predicate(r)), None)

        return await self.wait_for(find, timeout)

    def requests_to(self, route: str) -> list[RecordedRequest]:
        """Requests whose ``"METHOD /route/template"`` equals ``route``."""
        return [r for r in self.requests if f"{r.method} {r.route}" == route]

    def violation(
        self,
        rule: str,
        status: int,
        body: JSON,
        detail: str,
        request: RecordedRequest | None = None,
    ) -> None:
        self.violations.append(Violation(rule, status, body, detail, request))
        self.notify()

    def reject(
        self,
        rec: RecordedRequest,
        rule: str,
        error: DiscordError,
        found: JSON | None = None,
        *,
        detail: str = "",
    ) -> web.Response:
        """Answer ``error`` (with the ``errors`` object ``found``) and record a violation."""
        self.violation(rule, error.status, error.body(found), detail or error.message, rec)
        return error.response(found)

    def take_violations(self) -> list[Violation]:
        """Return and forget the violations so far (for tests that provoke them on purpose)."""
        taken, self.violations = self.violations, []
        return taken

    def assert_no_violations(self) -> None:
        if self.violations:
            lines = "\n  ".join(str(v) for v in self.violations)
            raise AssertionError(f"the bot broke Discord's rules:\n  {lines}")

    # == HTTP plumbing =========================================================================

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        rec = await self._record(request)
        request[REC] = rec
        response = await self._process(request, handler, rec)
        rec.status = response.status
        body = response.body if isinstance(response, web.Response) else None
        if isinstance(body, bytes) and response.content_type == "application/json":
            rec.response = json.loads(body)
        response.headers["Via"] = "1.1 google"  # discord.py treats a 429 without Via as a ban
        rec.response_headers = dict(response.headers)
        self.notify()
        return response

    async def _record(self, request: web.Request) -> RecordedRequest:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        auth_header = request.headers.get("Authorization")
        auth = "missing" if auth_header is None else "invalid"
        if auth_header == f"Bot {self.token}":
            auth = "valid"
        body, files = await _read_body(request)
        match = request.match_info
        resource = match.route.resource if match.http_exception is None else None
        route = resource.canonical if resource is not None else request.path
        rec = RecordedRequest(
            index=len(self.requests),
            method=request.method,
            path=request.path.removeprefix(API_PREFIX),
            route=route.removeprefix(API_PREFIX),
            params=dict(match),
            query=dict(request.query),
            headers=headers,
            auth=auth,
            json=body,
            files=files,
            at=self.now(),
        )
        self.requests.append(rec)
        return rec

    async def _process(
        self, request: web.Request, handler: Handler, rec: RecordedRequest
    ) -> web.StreamResponse:
        if self.outage_status is not None:
            return errors.service_unavailable(self.outage_status)
        if request.match_info.http_exception is not None:
            detail = f"the fake has no route for {rec.method} {rec.path}"
            return self.reject(rec, "unhandled_route", errors.NOT_FOUND, detail=detail)
        if not rec.route.startswith(TOKEN_ROUTES) and rec.auth != "valid":
            return self.reject(rec, "unauthorized", errors.UNAUTHORIZED, detail=f"auth {rec.auth}")
        key, bucket = self._bucket(rec)
        matching = [r for r in self.rate_limits if r.matches(rec.method, rec.route, rec.path)]
        fired = [rule for rule in matching if rule.fire()]
        if fired:
            return self._too_many(fired[0], key, bucket)
        bucket.count += 1
        if bucket.count > self.bucket_limit:
            rule = RateLimitRule("", 1, None, self._reset_after(bucket), False, "user")
            detail = f"more than {self.bucket_limit} requests within {self.bucket_window}s: {key}"
            self.violation("rate_limit_exceeded", 429, {}, detail, rec)
            return self._too_many(rule, key, bucket)
        response = await handler(request)
        self._rate_headers(response, key, bucket)
        return response

    def _bucket(self, rec: RecordedRequest) -> tuple[str, Bucket]:
        majors = [rec.params[m] for m in MAJOR_PARAMETERS if m in rec.params]
        key = ":".join([f"{rec.method} {rec.route}", *majors])
        bucket = self._buckets.get(key)
        if bucket is None or self.now() >= bucket.window_start + self.bucket_window:
            bucket = self._buckets[key] = Bucket(self.now())
        return key, bucket

    def _reset_after(self, bucket: Bucket) -> float:
        # Rounded up to the ms: a client sleeping exactly this long lands in the next window.
        remaining = bucket.window_start + self.bucket_window - self.now()
        return max(math.ceil(remaining * 1000) / 1000, 0.001)

    def _rate_headers(self, response: web.StreamResponse, key: str, bucket: Bucket) -> None:
        reset_after = self._reset_after(bucket)
        route = key.split(":")[0]
        response.headers.update(
            {
                "X-RateLimit-Limit": str(self.bucket_limit),
                "X-RateLimit-Remaining": str(max(self.bucket_limit - bucket.count, 0)),
                "X-RateLimit-Reset": f"{self.wall() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": hashlib.sha1(route.encode()).hexdigest()[:32],
            }
        )

    def _too_many(self, rule: RateLimitRule, key: str, bucket: Bucket) -> web.Response:
        body = {
            "message": "You are being rate limited.",
            "retry_after": rule.retry_after,
            "global": rule.is_global,
        }
        response = json_response(body, 429)
        response.headers["Retry-After"] = str(math.ceil(rule.retry_after))
        response.headers["X-RateLimit-Scope"] = rule.scope
        if rule.is_global:
            response.headers["X-RateLimit-Global"] = "true"
        else:
            self._rate_headers(response, key, bucket)
            response.headers["X-RateLimit-Remaining"] = "0"
            response.headers["X-RateLimit-Reset-After"] = f"{rule.retry_after:.3f}"
        return response

    # == driver: failures ======================================================================

    def rate_limit(
        self,
        pattern: str,
        *,
        every: int = 1,
        times: int | None = None,
        retry_after: float = 0.2,
        is_global: bool = False,
        scope: str = "user",
    ) -> RateLimitRule:
        """Answer every ``every``-th request matching ``pattern`` with 429 (at most ``times``).

        ``pattern`` is an fnmatch glob over ``"METHOD /route/template"`` or ``"METHOD /path"``,
        e.g. ``"POST /channels/{channel_id}/messages"`` or ``"POST /interactions/*"``.
        """
        rule = RateLimitRule(pattern, every, times, retry_after, is_global, scope)
        self.rate_limits.append(rule)
        return rule

    def outage(self, on: bool = True, *, status: int = 503) -> None:
        """While on, REST answers ``status`` and the gateway refuses new connections.
        (On 503 discord.py raises at once; on 500/502/504 it retries 5 times over ~25 s.)"""
        self.outage_status = status if on else None

    # == driver: commands and interactions =====================================================

    def commands(self, guild: GuildState | None = None) -> list[JSON]:
        """The registered commands: global, or of ``guild``."""
        return self.commands_by_scope.get(guild.id if guild else None, [])

    def register_commands(
        self, commands: list[JSON], guild: GuildState | None = None
    ) -> list[JSON]:
        """Register commands as if the bot had bulk-overwritten them (no request recorded)."""
        return self.store_commands(commands, guild.id if guild else None)

    def store_commands(self, commands: list[JSON], guild_id: str | None) -> list[JSON]:
        """Bulk overwrite: replace the scope's commands, keeping the ids of same-named ones."""
        old = self.commands_by_scope.get(guild_id, [])
        ids = {(c["type"], c["name"]): c["id"] for c in old}
        stored = []
        for command in commands:
            kind = command.get("type", 1)
            defaults: JSON = {"description": "", "options": [], "default_member_permissions": None}
            entry = {
                **defaults,
                "nsfw": False,
                "contexts": None,
                "integration_types": [0],
                **command,
                "id": ids.get((kind, command["name"])) or payloads.snowflake(),
                "application_id": self.application_id,
                "version": payloads.snowflake(),
                "type": kind,
            }
            if guild_id is not None:
                entry["guild_id"] = guild_id
            stored.append(entry)
        self.commands_by_scope[guild_id] = stored
        return stored

    def open_command(self, name: str, guild: GuildState | None = None) -> None:
        """A server admin allows ``/name`` for everyone (Server Settings → Integrations),
        overriding the command's ``default_member_permissions`` in that server."""
        self.opened_commands.add(((guild or self.guild).id, name))

    def _check_default_permissions(self, command: JSON, guild: GuildState, member: JSON) -> None:
        """The Discord client does not offer a command whose ``default_member_permissions``
        the member lacks (administrators and the owner always pass), unless it was opened."""
        required = command.get("default_member_permissions")
        if required is None or (guild.id, command["name"]) in self.opened_commands:
            return
        need, held = int(required), int(member["permissions"])
        if held & payloads.ADMINISTRATOR or (need and held & need == need):
            return
        raise PermissionError(
            f"the Discord client does not offer /{command['name']} to user "
            f"{member['user']['username']}: it needs permissions {need} "
            "(default_member_permissions); use open_command() to override"
        )

    def _lookup_command(self, path: str, guild: GuildState) -> tuple[JSON, list[str], str | None]:
        name, *rest = path.split()
        for scope in (guild.id, None):
            found = interaction_data.find_command(self.commands_by_scope.get(scope, []), name)
            if found is not None:
                return found, rest, scope
        registered = {
            s or "global": [c["name"] for c in cs] for s, cs in self.commands_by_scope.items()
        }
        raise LookupError(
            f"/{name} is not registered with the fake (did the bot sync?): {registered}"
        )

    def _context(self, guild_id: Any, channel: Any) -> tuple[GuildState, JSON]:
        guild = self.guilds[str(guild_id)] if guild_id else self.guild
        if channel is None:
            return guild, next(iter(guild.channels.values()))
        channel_id = str(channel["id"] if isinstance(channel, dict) else channel)
        return guild, guild.channels[channel_id]

    def _member(
        self, guild: GuildState, user: Any, roles: Sequence[Any] | None, channel: JSON
    ) -> JSON:
        """The interaction's ``member``; ``roles`` (payloads, ids or names) overrides the member's
        roles for this interaction only."""
        user_id = str(user["id"] if isinstance(user, dict) else user or self.user("alice")["id"])
        if user_id not in guild.members:
            raise ValueError(f"user {user_id} is not a member of {guild.name!r}")
        member = dict(guild.members[user_id])
        if roles is not None:
            member["roles"] = [_role_id(guild, r) for r in roles]
        permissions = guild.permissions(user_id, channel, roles=member["roles"])
        member["permissions"] = str(permissions)
        return member

    def _new_interaction(
        self,
        kind: int,
        data: JSON,
        guild: GuildState,
        channel: JSON,
        member: JSON,
        *,
        locale: str = "en-US",
        message: JSON | None = None,
    ) -> InteractionHandle:
        interaction_id, token = payloads.snowflake(), payloads.token()
        body: JSON = {
            "id": interaction_id,
            "application_id": self.application_id,
            "type": kind,
            "data": data,
            "guild_id": guild.id,
            "guild": {"id": guild.id, "locale": "en-US", "features": []},
            "channel_id": channel["id"],
            "channel": {**channel, "permissions": member["permissions"]},
            "member": member,
            "token": token,
            "version": 1,
            "app_permissions": str(guild.permissions(self.bot["id"], channel)),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild.id},
            "context": 0,
            "attachment_size_limit": 10 * 1024**2,
        }
        if message is not None:
            body["message"] = message
        source = message["id"] if message else None
        record = InteractionRecord(
            interaction_id, token, kind, body, self.now(), channel["id"], guild.id, source
        )
        self._session().dispatch("INTERACTION_CREATE", body)
        self.interactions[interaction_id] = record
        return InteractionHandle(self, record)

    async def interact(
        self,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        user: JSON | str | None = None,
        roles: Sequence[Any] | None = None,
        guild_id: Any = None,
        channel_id: Any = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """A user runs ``/command [group] [subcommand]`` with ``options`` (by option name).

        ``user`` is a user payload or id (default: alice), in guild ``guild_id`` (default: the
        first) and channel ``channel_id`` (payload or id; default: the guild's first channel).
        ``roles`` (role payloads, ids or names) replaces the member's roles for this
        interaction. Options are typed from the registered schema and validated like the
        Discord client does (``ValueError``); user/channel/role options take ids or payloads
        and come with ``resolved`` data. A member lacking the command's
        ``default_member_permissions`` cannot invoke it (``PermissionError``), as in the
        Discord client, unless a server admin opened it (``open_command``).
        """
        guild, channel = self._context(guild_id, channel_id)
        member = self._member(guild, user, roles, channel)
        found, path, scope = self._lookup_command(command, guild)
        self._check_default_permissions(found, guild, member)
        builder = interaction_data.OptionBuilder(guild, self.users, focused=None)
        data = interaction_data.command_data(found, path, dict(options or {}), builder, scope)
        return self._new_interaction(2, data, guild, channel, member, locale=locale)

    async def autocomplete(
        self,
        command: str,
        focused: str,
        value: str,
        options: dict[str, Any] | None = None,
        *,
        user: JSON | str | None = None,
        guild_id: Any = None,
        channel_id: Any = None,
    ) -> InteractionHandle:
        """A user types ``value`` into option ``focused`` of ``/command`` (a type 4
        interaction); ``options`` are the other options already filled in."""
        guild, channel = self._context(guild_id, channel_id)
        member = self._member(guild, user, None, channel)
        found, path, scope = self._lookup_command(command, guild)
        self._check_default_permissions(found, guild, member)
        builder = interaction_data.OptionBuilder(guild, self.users, focused=focused)
        values = {**(options or {}), focused: value}
        data = interaction_data.command_data(found, path, values, builder, scope)
        return self._new_interaction(4, data, guild, channel, member)

    async def click(
        self,
        message: JSON | str,
        custom_id: str,
        *,
        user: JSON | str | None = None,
        roles: Sequence[Any] | None = None,
        values: list[str] | None = None,
    ) -> InteractionHandle:
        """A user clicks button ``custom_id`` (or picks ``values`` in that select menu) on a
        message the bot posted. The component must be on the message as it is now, enabled."""
        message_id = str(message["id"] if isinstance(message, dict) else message)
        current = self.store.get(message_id)
        if current is None:
            raise ValueError(f"message {message_id} does not exist (any more)")
        component = interaction_data.find_component(current.get("components") or [], custom_id)
        if component is None:
            raise ValueError(f"message {message_id} has no component {custom_id!r}")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        channel, guild = self.find_channel(current["channel_id"])
        if channel is None or guild is None:
            raise ValueError("the fake supports clicks in guild channels only")
        member = self._member(guild, user, roles, channel)
        data: JSON = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] != 2:
            data["values"] = list(values or [])
        return self._new_interaction(3, data, guild, channel, member, message=current)

    # == queries ===============================================================================

    def callbacks(self, interaction_id: str) -> list[RecordedRequest]:
        """The callback requests for one interaction, answered or not, in order."""
        return [
            r
            for r in self.requests
            if r.route == CALLBACK_ROUTE and r.params["interaction_id"] == interaction_id
        ]

    def messages(self, channel: JSON | str | int, *, include_ephemeral: bool = False) -> list[JSON]:
        """The channel's messages as they are now (edited, minus deleted ones), oldest first."""
        channel_id = str(channel["id"] if isinstance(channel, dict) else channel)
        return self.store.in_channel(channel_id, include_ephemeral=include_ephemeral)

    def message(self, message_id: str) -> JSON:
        return self.store.by_id[message_id]


class InteractionHandle:
    """What a test holds after ``interact()``, ``autocomplete()`` or ``click()``."""

    def __init__(self, fake: FakeDiscord, record: InteractionRecord) -> None:
        self.fake = fake
        self.record = record

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def token(self) -> str:
        return self.record.token

    @property
    def payload(self) -> JSON:
        """The INTERACTION_CREATE ``d`` the bot received."""
        return self.record.payload

    @property
    def callbacks(self) -> list[RecordedRequest]:
        return self.fake.callbacks(self.id)

    @property
    def followups(self) -> list[JSON]:
        """Current payloads of the followup messages, oldest first."""
        return [self.fake.store.by_id[m] for m in self.record.followup_ids]

    async def response(self, timeout: float = 5.0) -> JSON:
        """The body of the bot's first (answered) callback, e.g. ``{"type": 4, "data": {...}}``;
        its status is ``callbacks[0].status``."""

        def first() -> RecordedRequest | None:
            return next((c for c in self.callbacks if c.status), None)

        request = await self.fake.wait_for(first, timeout)
        return request.json  # type: ignore[no-any-return]  # callbacks carry a JSON object

    async def original(self, timeout: float = 5.0) -> JSON:
        """The original response message as it is now, once it is no longer "thinking"."""

        def ready() -> JSON | None:
            message = self.fake.store.get(self.record.original_id or "")
            return message if message and not message["flags"] & payloads.LOADING else None

        return await self.fake.wait_for(ready, timeout)

    async def wait_followups(self, count: int, timeout: float = 5.0) -> list[JSON]:
        await self.fake.wait_for(lambda: len(self.record.followup_ids) >= count, timeout)
        return self.followups


def _role_id(guild: GuildState, role: Any) -> str:
    if isinstance(role, dict):
        return str(role["id"])
    if isinstance(role, int) or str(role).isdigit():
        return str(role)
    return str(guild.role_named(role)["id"])


async def _read_body(request: web.Request) -> tuple[Any, list[FilePart]]:
    """JSON body, or ``payload_json`` plus file parts of a multipart body."""
    if not request.body_exists:
        return None, []
    if not request.content_type.startswith("multipart/"):
        raw = await request.read()
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode(errors="replace"), []
    body: Any = None
    files: list[FilePart] = []
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue  # nested multipart: Discord does not use it
        if part.name == "payload_json":
            body = json.loads(await part.text())
        else:
            data = bytes(await part.read())
            content_type = part.headers.get("Content-Type")
            files.append(FilePart(part.name or "", part.filename, content_type, data))
    return body, files
