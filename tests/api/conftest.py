"""API fixtures: a real scheduler on a SQLite file, the app on a loopback port, a client.

``api(settings)`` starts the app for the test's scheduler and returns an ``Api`` that
speaks real HTTP to it. Registered targets: ``noop``, ``boom`` (raises, with a secret in
its message), and ``slow`` (waits for ``Gate.release``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from api.app import start_api, stop_api
from api.settings import ApiSettings, ApiToken
from pipelines.db import dispose_engine
from pipelines.secret import Secret
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings

OPS_TOKEN = "ops-7f3a9c1e5b2d4f60"
CI_TOKEN = "ci-0b1c2d3e4f5a6b7c"
TOKENS = (ApiToken("ops", Secret(OPS_TOKEN)), ApiToken("ci", Secret(CI_TOKEN)))
SECRET_IN_ERROR = "hunter2-very-secret"


def token_settings(**changes: Any) -> ApiSettings:
    return ApiSettings(**{"host": "127.0.0.1", "port": 0, "tokens": TOKENS, **changes})


def read_only_settings(**changes: Any) -> ApiSettings:
    return ApiSettings(**{"host": "127.0.0.1", "port": 0, **changes})


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0]


@dataclass
class Api:
    """A loopback client for one running app; ``token`` is sent unless told otherwise."""

    base: str
    session: aiohttp.ClientSession
    token: str | None = OPS_TOKEN

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        token: str | None | bool = True,
    ) -> Reply:
        sent = dict(headers or {})
        chosen = self.token if token is True else token
        if isinstance(chosen, str):
            sent.setdefault("Authorization", f"Bearer {chosen}")
        async with self.session.request(
            method, self.base + path, json=json_body, data=data, headers=sent
        ) as response:
            return Reply(response.status, dict(response.headers), await response.text())

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self.call("POST", path, json_body=body, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("DELETE", path, **kwargs)


@dataclass
class Gate:
    """Holds ``slow`` runs until released."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    started: int = 0

    async def slow(self) -> None:
        self.started += 1
        await self.event.wait()

    def release(self) -> None:
        self.event.set()


def assert_problem(reply: Reply, status: int, *fragments: str) -> dict[str, Any]:
    """An RFC 9457 answer with ``status`` whose detail contains every fragment."""
    assert reply.status == status, reply.text
    assert reply.content_type == "application/problem+json"
    body: dict[str, Any] = reply.json
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == status
    for fragment in fragments:
        assert fragment in body["detail"], body
    return body


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'pipebot.db'}"
    yield url
    dispose_engine(url)


@pytest.fixture
def gate() -> Gate:
    return Gate()


def boom() -> None:
    raise RuntimeError(f"upstream refused: token={SECRET_IN_ERROR}")


@pytest.fixture
async def scheduler(db_url: str, gate: Gate) -> AsyncIterator[PipelineScheduler]:
    """A started scheduler with ``noop``, ``boom`` and ``slow`` registered."""
    settings = SchedulerSettings(database_url=db_url, timezone="UTC", poll_interval=0.3)
    sched = PipelineScheduler(settings)

    async def noop() -> None:
        return None

    sched.register("noop", noop)
    sched.register("boom", boom)
    sched.register("slow", gate.slow)
    await sched.astart()
    yield sched
    gate.release()
    await sched.astop(grace=2)


StartApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def api(scheduler: PipelineScheduler) -> AsyncIterator[StartApi]:
    """``await api()`` (tokens) or ``await api(read_only_settings())``: a client."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(settings: ApiSettings | None = None, *, host: str = "127.0.0.1") -> Api:
        runner = await start_api(scheduler, settings or token_settings())
        runners.append(runner)
        port = runner.addresses[0][1]
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Api(f"http://{host}:{port}", session)

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await stop_api(runner)
