"""Liveness, readiness and the scheduler's health report (no authentication).

- ``/healthz``: 200 while the process serves HTTP.
- ``/readyz``: 200 only when the database answers and the engine's last pass is
  recent (``ApiSettings.ready_engine_seconds``, 30 s by default); 503 otherwise.
- ``/api/scheduler/health`` (alias ``/api/schedules/health``): ``health_check()``,
  with error texts passed through the log redaction since anyone may read it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from pipebot.logs import redact
from scheduler.service import PipelineScheduler

from .inputs import Query
from .offload import Offload
from .settings import ApiSettings

HEALTH_TIMEOUT = 5.0
"""Seconds ``/readyz`` waits for the database before calling it unreachable."""


def readiness(health: Mapping[str, Any], max_engine_age: float) -> list[str]:
    """What keeps the process from being ready (empty: ready), judged from ``readiness()``
    (or ``health_check()``, which has the same keys)."""
    problems: list[str] = []
    database = health.get("database") or {}
    if not database.get("reachable"):
        problems.append(f"database unreachable: {database.get('error', 'no answer')}")
    age = health.get("engine_seconds_since_pass")
    if not health.get("running") or age is None:
        problems.append("the scheduler is not running in this process")
    elif age > max_engine_age:
        problems.append(f"the engine's last pass was {age:.0f} s ago (limit {max_engine_age:g} s)")
    return problems


def public(value: Any) -> Any:
    """``value`` with every string under an ``error`` key redacted (for unauthenticated eyes)."""
    if isinstance(value, Mapping):
        return {
            k: redact(v) if k == "error" and isinstance(v, str) else public(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [public(v) for v in value]
    return value


class HealthViews:
    """The handlers, bound to one scheduler and the API settings."""

    def __init__(
        self, scheduler: PipelineScheduler, settings: ApiSettings, offload: Offload
    ) -> None:
        self.scheduler = scheduler
        self.settings = settings
        self.offload = offload

    def routes(self) -> list[web.RouteDef]:
        """Register before ``/api/schedules/{name}`` so the alias is not read as a name."""
        return [
            web.get("/healthz", self.live),
            web.get("/readyz", self.ready),
            web.get("/api/scheduler/health", self.report),
            web.get("/api/schedules/health", self.report),
        ]

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        try:
            health = await asyncio.wait_for(self.offload(self.scheduler.readiness), HEALTH_TIMEOUT)
        except TimeoutError:
            health = {"database": {"reachable": False, "error": "no answer within 5 s"}}
        problems = readiness(health, self.settings.ready_engine_seconds)
        body = {
            "ready": not problems,
            "problems": [redact(p) for p in problems],
            "engine_seconds_since_pass": health.get("engine_seconds_since_pass"),
            "database_reachable": bool((health.get("database") or {}).get("reachable")),
        }
        return web.json_response(body, status=503 if problems else 200)

    async def report(self, request: web.Request) -> web.Response:
        Query(request, ()).check()
        health = await self.offload(self.scheduler.health_check)
        return web.json_response(public(health), dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
