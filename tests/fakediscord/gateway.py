"""The fake gateway: HELLO, IDENTIFY/READY/GUILD_CREATE, heartbeats, RESUME and replay.

One websocket handler serves both ``/gateway`` (the URL discord.py starts from) and ``/resume``
(the ``resume_gateway_url`` handed out in READY), so tests can tell an IDENTIFY from a RESUME by
the path they arrived on. Frames are written by one writer task per connection, in the order they
were queued; with ``compress=zlib-stream`` every frame is deflated through a single per-connection
``zlib.compressobj`` and ended with a ``Z_SYNC_FLUSH``, as Discord does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.fakediscord.server import FakeDiscord

JSON = dict[str, Any]

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE_UPDATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = {
    "members": INTENT_GUILD_MEMBERS,
    "presences": INTENT_GUILD_PRESENCES,
    "message_content": INTENT_MESSAGE_CONTENT,
}
ALL_INTENTS = (1 << 26) - 1


@dataclass
class GatewayFrame:
    """One frame on a gateway connection, as JSON (tokens redacted)."""

    direction: Literal["recv", "send"]
    conn_id: int
    op: int
    t: str | None
    s: int | None
    d: Any
    at: float


@dataclass
class ConnectionRecord:
    id: int
    path: str
    query: dict[str, str]
    opened_at: float
    refused: bool = False
    identified: bool = False
    resumed: bool = False
    close_code: int | None = None  # the code the fake closed with, else the client's


@dataclass
class Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    buffer: list[JSON] = field(default_factory=list)
    conn: Connection | None = None
    invalid: bool = False

    def dispatch(self, event: str, data: Any) -> int:
        """Sequence, buffer (for RESUME replay) and queue a DISPATCH frame."""
        self.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.buffer.append(frame)
        if self.conn is not None:
            self.conn.send(frame)
        return self.seq


class Connection:
    def __init__(
        self,
        gateway: Gateway,
        record: ConnectionRecord,
        ws: web.WebSocketResponse,
        request: web.Request,
    ) -> None:
        self.gateway = gateway
        self.record = record
        self.ws = ws
        self.request = request
        self.session: Session | None = None
        self.queue: asyncio.Queue[JSON | None] = asyncio.Queue()
        compress = record.query.get("compress") == "zlib-stream"
        self._zlib = zlib.compressobj() if compress else None

    def send(self, frame: JSON) -> None:
        self.queue.put_nowait(frame)

    async def run_writer(self) -> None:
        while (frame := await self.queue.get()) is not None:
            self.gateway.log("send", self, frame)
            data = json.dumps(frame, separators=(",", ":"))
            try:
                if self._zlib is None:
                    await self.ws.send_str(data)
                else:
                    chunk = self._zlib.compress(data.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(chunk)
            except (ConnectionError, RuntimeError):
                return

    async def close(self, code: int, reason: str) -> None:
        if self.record.close_code is None:
            self.record.close_code = code
        await self.ws.close(code=code, message=reason.encode())

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a network failure)."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class Gateway:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.heartbeat_interval_ms = 41250
        self.ack_heartbeats = True
        self.sessions: dict[str, Session] = {}
        self.session: Session | None = None
        self.connections: list[ConnectionRecord] = []
        self.frames: list[GatewayFrame] = []
        self.live: set[Connection] = set()

    # -- logging --------------------------------------------------------------------------------

    def log(self, direction: Literal["recv", "send"], conn: Connection, frame: JSON) -> None:
        data = frame.get("d")
        if frame.get("op") in (IDENTIFY, RESUME) and isinstance(data, dict) and "token" in data:
            data = {**data, "token": "<redacted>"}
        self.frames.append(
            GatewayFrame(
                direction,
                conn.record.id,
                frame.get("op", -1),
                frame.get("t"),
                frame.get("s"),
                data,
                self.fake.now(),
            )
        )
        self.fake.notify()

    # -- websocket handler ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        record = ConnectionRecord(
            len(self.connections) + 1, request.path, dict(request.query), self.fake.now()
        )
        self.connections.append(record)
        self.fake.notify()
        if self.fake.outage_status is not None:
            record.refused = True
            return web.Response(status=self.fake.outage_status, text="Service Unavailable")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = Connection(self, record, ws, request)
        writer = asyncio.create_task(conn.run_writer())
        self.live.add(conn)
        conn.send({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                await self._on_message(conn, msg.data)
        finally:
            conn.queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            if record.close_code is None:
                record.close_code = ws.close_code
            self.live.discard(conn)
            self.fake.notify()
        return ws

    async def _on_message(self, conn: Connection, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
            op = frame["op"]
        except (ValueError, KeyError, TypeError):
            await conn.close(4002, "Error while decoding payload.")
            return
        self.log("recv", conn, frame)
        data = frame.get("d")
        if op == HEARTBEAT:
            if self.ack_heartbeats:
                conn.send({"op": HEARTBEAT_ACK})
        elif op == IDENTIFY:
            await self._identify(conn, data)
        elif op == RESUME:
            await self._resume(conn, data)
        elif conn.session is None:
            await conn.close(4003, "Not authenticated.")
        elif op == REQUEST_GUILD_MEMBERS:
            self._request_members(conn.session, data)
        elif op not in (PRESENCE_UPDATE, VOICE_STATE_UPDATE):
            await conn.close(4001, "Unknown opcode.")

    async def _identify(self, conn: Connection, data: JSON) -> None:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        if data.get("token") != self.fake.token:
            self.fake.violation(
                "gateway_authentication_failed", 4004, {}, "IDENTIFY with a bad token"
            )
            await conn.close(4004, "Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents & ~ALL_INTENTS:
            await conn.close(4013, "Invalid intent(s).")
            return
        allowed = sum(PRIVILEGED_INTENTS[name] for name in self.fake.privileged_intents)
        privileged = sum(PRIVILEGED_INTENTS.values())
        if intents & privileged & ~allowed:
            await conn.close(4014, "Disallowed intent(s).")
            return
        session = Session(secrets.token_hex(16), intents, data.get("shard"))
        self.sessions[session.id] = session
        self.session = session
        self._attach(conn, session)
        conn.record.identified = True
        session.dispatch("READY", self.fake.ready_payload(session))
        if intents & INTENT_GUILDS:
            for guild in self.fake.guilds.values():
                session.dispatch("GUILD_CREATE", guild.payload(intents))

    async def _resume(self, conn: Connection, data: JSON) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.invalid or data.get("token") != self.fake.token:
            conn.send({"op": INVALID_SESSION, "d": False})
            return
        self._attach(conn, session)
        self.session = session
        conn.record.resumed = True
        last_seen = data.get("seq") or 0
        for frame in session.buffer:
            if frame["s"] > last_seen:
                conn.send(frame)
        session.dispatch("RESUMED", {})

    def _attach(self, conn: Connection, session: Session) -> None:
        old = session.conn
        if old is not None and old is not conn:
            old.session = None
        session.conn = conn
        conn.session = session

    def _request_members(self, session: Session, data: JSON) -> None:
        guild = self.fake.guilds.get(str(data.get("guild_id")))
        if guild is None:
            return
        query = str(data.get("query") or "").lower()
        user_ids = {str(u) for u in data.get("user_ids") or []}
        members = [
            m
            for m in guild.members.values()
            if (
                str(m["user"]["id"]) in user_ids
                if user_ids
                else m["user"]["username"].startswith(query)
            )
        ]
        limit = int(data.get("limit") or 0)
        chunk: JSON = {
            "guild_id": guild.id,
            "members": members[:limit] if limit else members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": sorted(user_ids - {m["user"]["id"] for m in members}),
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    # -- test hooks -----------------------------------------------------------------------------

    def current_connection(self) -> Connection | None:
        session = self.session
        return session.conn if session is not None else None

    async def close_all(self, code: int = 1001) -> None:
        for conn in list(self.live):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(code, "Going away."), 2)
