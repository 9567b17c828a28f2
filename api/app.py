"""The aiohttp application: routes, middlewares, and starting it next to the scheduler.

``create_app`` wires the API, health, metrics (``api.metrics``) and the status page
(``api.status_page``); ``start_api``/``stop_api`` run it on the caller's event loop
(the scheduler's), with an ``AppRunner`` and one ``TCPSite``. Call ``start_api`` before
``scheduler.astart()`` so the metrics count the runs marked abandoned at start-up.
Runs started through the API belong to the scheduler: ``scheduler.astop()`` drains them.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from scheduler.errors import SettingsError
from scheduler.service import PipelineScheduler

from .auth import auth_middleware
from .health import HealthViews
from .metrics import setup_metrics
from .offload import app_offload
from .openapi import openapi_document
from .problems import problem_middleware
from .runs import RunViews
from .schedules import ScheduleViews
from .settings import ApiSettings
from .status_page import setup_status_page

logger = logging.getLogger(__name__)

SCHEDULER_KEY = web.AppKey("pipebot_scheduler", PipelineScheduler)
SETTINGS_KEY = web.AppKey("pipebot_api_settings", ApiSettings)
MAX_BODY = 64 * 1024
"""Largest request body accepted (413 above it)."""
SHUTDOWN_SECONDS = 10.0
"""How long ``stop_api`` lets requests in flight finish."""


def create_app(scheduler: PipelineScheduler, settings: ApiSettings) -> web.Application:
    """The whole HTTP surface for ``scheduler``; nothing is bound or started yet."""
    app = web.Application(
        middlewares=[problem_middleware, auth_middleware(settings)], client_max_size=MAX_BODY
    )
    app[SCHEDULER_KEY] = scheduler
    app[SETTINGS_KEY] = settings
    offload = app_offload(app)
    router = app.router
    router.add_routes(HealthViews(scheduler, settings, offload).routes())  # first: see there
    ScheduleViews(scheduler, offload).register(router)
    router.add_routes(RunViews(scheduler, offload).routes())
    document = json.dumps(openapi_document())

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    router.add_get("/api/openapi.json", openapi)
    setup_metrics(app, scheduler)
    setup_status_page(app, scheduler)
    return app


async def start_api(scheduler: PipelineScheduler, settings: ApiSettings) -> web.AppRunner:
    """Serve the API on ``settings.host:port`` in the running loop; returns the runner."""
    runner = web.AppRunner(
        create_app(scheduler, settings), handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SettingsError(
            "API_PORT", f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from exc
    host, port = runner.addresses[0][:2]
    _warn_about(scheduler, settings)
    logger.info(
        "API listening on http://%s:%d (%s)",
        host,
        port,
        "read-only, loopback clients only: set API_TOKEN to allow changes"
        if settings.read_only
        else f"{len(settings.tokens)} token(s): {', '.join(t.name for t in settings.tokens)}",
    )
    return runner


async def stop_api(runner: web.AppRunner) -> None:
    """Stop listening, let requests in flight finish (up to 10 s), run the cleanups."""
    await runner.cleanup()


def _warn_about(scheduler: PipelineScheduler, settings: ApiSettings) -> None:
    if settings.read_only and settings.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning(
            "API bound to %s without a token: only loopback clients are served", settings.host
        )
    if scheduler.settings.poll_interval * 2 >= settings.ready_engine_seconds:
        logger.warning(
            "SCHEDULER_POLL_SECONDS (%g) is close to the readiness limit (%g s): /readyz may flap",
            scheduler.settings.poll_interval,
            settings.ready_engine_seconds,
        )
