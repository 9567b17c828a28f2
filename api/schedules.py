"""``/api/schedules``: list, create, read, enable, disable, run now, delete.

Every facade call that touches the database runs in a worker thread. Changes are made
as the authenticated client (``actor``) from the surface ``api``, so they land in the
audit trail next to the ones made from chat.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from dataclasses import asdict
from datetime import datetime
from typing import Any

from aiohttp import web

from scheduler.errors import JobLookupError
from scheduler.models import CATCHUPS, OVERLAPS, Policies, RunRecord, ScheduleInfo
from scheduler.service import PipelineScheduler

from .auth import current_actor
from .inputs import Fields, Query, json_object
from .offload import Offload
from .problems import invalid
from .runs import next_link, page_of_json, run_json

logger = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
RESERVED_NAMES = frozenset({"health"})
"""``GET /api/schedules/health`` is the health report, so no schedule may be called that."""
CREATE_FIELDS = ("name", "pipeline", "cron", "every", "interval", "timezone", "policies")
POLICY_FIELDS = (
    "overlap",
    "catchup",
    "coalesce",
    "misfire_grace_time",
    "jitter",
    "timeout",
    "max_instances",
)
INTERVAL_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
INTERVAL_MAX = 1_000_000_000
"""Largest value of one interval unit (the scheduler refuses more than 1000 years)."""
DAY = 86_400.0
MAX_INSTANCES = 1000
LIST_DEFAULT = 100
"""Schedules per page of ``GET /api/schedules`` unless ``limit`` says otherwise."""
LIST_LIMIT = 1000
DEFINITIONS_KEPT = 10_000
"""Schedules whose definition is kept as ready JSON text (about 0.5 KB each)."""
RUN_WAIT_DEFAULT = 10.0
RUN_WAIT_MAX = 60.0


def schedule_json(info: ScheduleInfo) -> dict[str, Any]:
    """The API's view of a schedule (the ``Schedule`` schema of the OpenAPI document)."""
    return {
        "name": info.name,
        "pipeline": info.pipeline,
        "type": info.type,
        "expression": info.expression,
        "timezone": info.timezone,
        "enabled": info.enabled,
        "owner": info.owner,
        "next_run": None if info.next_run is None else info.next_run.isoformat(),
        "last_run": None if info.last_run is None else info.last_run.isoformat(),
        "last_status": info.last_status,
        "created_by": info.created_by,
        "description": info.description,
        "bound": info.bound,
        "policies": dict(_policies_json(info.policies)),
    }


@functools.lru_cache(maxsize=256)
def _policies_json(policies: Policies) -> tuple[tuple[str, Any], ...]:
    """``policies`` as JSON pairs, once per distinct value (most schedules share one)."""
    return tuple(asdict(policies).items())


def schedule_json_text(info: ScheduleInfo) -> str:
    """``schedule_json`` as JSON text, the part that comes from the definition kept ready.

    Only the next run, the last run and its status change without the definition
    changing, so listing a page mostly joins texts it made before.
    """
    head = _definition_json(
        info.name,
        info.pipeline,
        info.type,
        info.expression,
        info.timezone,
        info.enabled,
        info.owner,
        info.created_by,
        info.description,
        info.bound,
        info.policies,
    )
    return (
        f'{head}, "next_run": {_moment_json(info.next_run)}, '
        f'"last_run": {_moment_json(info.last_run)}, '
        f'"last_status": {json.dumps(info.last_status)}}}'
    )


@functools.lru_cache(maxsize=DEFINITIONS_KEPT)
def _definition_json(
    name: str,
    pipeline: str,
    type: str,
    expression: str,
    timezone: str,
    enabled: bool,
    owner: str,
    created_by: str | None,
    description: str,
    bound: bool,
    policies: Policies,
) -> str:
    """The definition's fields as an unclosed JSON object (``schedule_json_text``)."""
    text = json.dumps(
        {
            "name": name,
            "pipeline": pipeline,
            "type": type,
            "expression": expression,
            "timezone": timezone,
            "enabled": enabled,
            "owner": owner,
            "created_by": created_by,
            "description": description,
            "bound": bound,
            "policies": dict(_policies_json(policies)),
        }
    )
    return text[:-1]


class ScheduleTextCache:
    """``schedule_json_text`` of ``ScheduleInfo`` objects, by object.

    The facade lists an unchanged schedule as the same ``ScheduleInfo`` object, so a page
    of unchanged schedules is joined from texts made before. Each entry holds its object,
    so an id is not reused while it is kept. Used from the event loop only.
    """

    def __init__(self, size: int = DEFINITIONS_KEPT) -> None:
        self.size = size
        self._texts: dict[int, tuple[ScheduleInfo, str]] = {}

    def text(self, info: ScheduleInfo) -> str:
        found = self._texts.get(id(info))
        if found is not None and found[0] is info:
            return found[1]
        text = schedule_json_text(info)
        if len(self._texts) >= self.size:
            self._texts.clear()
        self._texts[id(info)] = (info, text)
        return text


def _moment_json(moment: datetime | None) -> str:
    return "null" if moment is None else f'"{moment.isoformat()}"'


class CreateRequest:
    """A validated ``POST /api/schedules`` body."""

    def __init__(self, data: dict[str, Any], pipelines: dict[str, str]) -> None:
        fields = Fields(data)
        fields.only(CREATE_FIELDS)
        name = fields.string("name", required=True, max_length=128, pattern=NAME)
        if name in RESERVED_NAMES:
            fields.fail("name", f"{name!r} is reserved")
        pipeline = fields.string("pipeline", required=True, max_length=128)
        if pipeline is not None and pipeline not in pipelines:
            known = ", ".join(sorted(pipelines)) or "none"
            fields.fail("pipeline", f"no pipeline named {pipeline!r} (known: {known})")
        self.cron = fields.string("cron", max_length=256)
        self.every = fields.string("every", max_length=64)
        self.interval = _interval(fields)
        given = [k for k in ("cron", "every", "interval") if k in data]
        if len(given) != 1:
            fields.fail(
                "cron",
                "give exactly one of cron, every or interval"
                + (f" (found {', '.join(given)})" if given else ""),
            )
        self.timezone = fields.string("timezone", max_length=64)
        self.policies = _policies(fields)
        if fields.errors:
            raise invalid(fields.errors)
        assert name is not None and pipeline is not None
        self.name, self.pipeline = name, pipeline


def _interval(fields: Fields) -> dict[str, float] | None:
    nested = fields.mapping("interval")
    if nested is None:
        return None
    nested.only(INTERVAL_UNITS)
    values = {unit: nested.number(unit, maximum=INTERVAL_MAX) for unit in INTERVAL_UNITS}
    if not nested.data:
        fields.fail("interval", "give at least one of weeks, days, hours, minutes, seconds")
    fields.absorb(nested)
    return {unit: value for unit, value in values.items() if value is not None}


def _policies(fields: Fields) -> Policies | None:
    nested = fields.mapping("policies")
    if nested is None:
        return None
    nested.only(POLICY_FIELDS)
    given: dict[str, Any] = {
        "overlap": nested.choice("overlap", OVERLAPS),
        "catchup": nested.choice("catchup", CATCHUPS),
        "coalesce": nested.boolean("coalesce"),
        "misfire_grace_time": nested.number(
            "misfire_grace_time", maximum=365 * DAY, exclusive=True, nullable=True
        ),
        "jitter": nested.number("jitter", maximum=DAY),
        "timeout": nested.number("timeout", maximum=7 * DAY, exclusive=True, nullable=True),
        "max_instances": nested.number(
            "max_instances", minimum=1, maximum=MAX_INSTANCES, integer=True
        ),
    }
    fields.absorb(nested)
    explicit_null = {k for k in _NULLABLE if k in nested.data and nested.data[k] is None}
    return Policies(**{k: v for k, v in given.items() if v is not None or k in explicit_null})


_NULLABLE = frozenset({"misfire_grace_time", "timeout"})


def schedule_page(
    scheduler: PipelineScheduler, after: str | None, count: int
) -> list[ScheduleInfo]:
    """Up to ``count`` schedules in code point order of their names, after ``after``.

    Blocking: one page of rows and the last run of each, read as such.
    """
    return scheduler.list_schedules(after=after, limit=count)


class ScheduleViews:
    """The handlers, bound to one scheduler."""

    def __init__(self, scheduler: PipelineScheduler, offload: Offload) -> None:
        self.scheduler = scheduler
        self.offload = offload
        self.texts = ScheduleTextCache()
        self._runs: set[asyncio.Task[RunRecord]] = set()

    def register(self, router: web.UrlDispatcher) -> None:
        """Register after the health alias: ``/api/schedules/health`` must match first."""
        collection = router.add_resource("/api/schedules", name="schedules")
        collection.add_route("GET", self.list)
        collection.add_route("POST", self.create)
        item = router.add_resource("/api/schedules/{name}", name="schedule")
        item.add_route("GET", self.get)
        item.add_route("DELETE", self.delete)
        router.add_post("/api/schedules/{name}/enable", self.enable)
        router.add_post("/api/schedules/{name}/disable", self.disable)
        router.add_post("/api/schedules/{name}/run", self.run)

    async def list(self, request: web.Request) -> web.Response:
        """Schedules by name, a page at a time (``after``: the last name of the page before)."""
        query = Query(request, ("limit", "after"))
        limit = query.integer("limit", LIST_DEFAULT, 1, LIST_LIMIT)
        after = query.text("after")
        query.check()
        infos = await self.offload.quick(schedule_page, self.scheduler, after, limit + 1)
        page = infos[:limit]
        following = next_link(request, "after", page[-1].name) if len(infos) > limit else None
        return page_of_json("schedules", [self.texts.text(i) for i in page], following)

    async def create(self, request: web.Request) -> web.Response:
        actor = current_actor()
        data = await json_object(request)
        body = CreateRequest(data, self.scheduler.pipelines())
        info = await self.offload(
            lambda: self.scheduler.create_schedule(
                body.name,
                body.pipeline,
                cron=body.cron,
                every=body.every,
                interval=body.interval,
                timezone=body.timezone,
                policies=body.policies,
                owner="api",
                created_by=actor,
            )
        )
        info = await self._settled(info)
        logger.info("schedule %s created by %s through the API", info.name, actor)
        location = request.app.router["schedule"].url_for(name=info.name)
        return web.json_response(
            schedule_json(info), status=201, headers={"Location": str(location)}
        )

    async def get(self, request: web.Request) -> web.Response:
        Query(request, ()).check()
        info = await self.offload.quick(self.scheduler.get_schedule, request.match_info["name"])
        return web.json_response(schedule_json(info))

    async def enable(self, request: web.Request) -> web.Response:
        actor = current_actor()
        Query(request, ()).check()
        name = request.match_info["name"]
        info = await self.offload(lambda: self.scheduler.enable(name, actor=actor, surface="api"))
        return web.json_response(schedule_json(await self._settled(info)))

    async def disable(self, request: web.Request) -> web.Response:
        actor = current_actor()
        Query(request, ()).check()
        name = request.match_info["name"]
        info = await self.offload(lambda: self.scheduler.disable(name, actor=actor, surface="api"))
        return web.json_response(schedule_json(await self._settled(info)))

    async def delete(self, request: web.Request) -> web.Response:
        actor = current_actor()
        Query(request, ()).check()
        name = request.match_info["name"]
        await self.offload(lambda: self.scheduler.unschedule(name, actor=actor, surface="api"))
        logger.info("schedule %s removed by %s through the API", name, actor)
        return web.Response(status=204)

    async def run(self, request: web.Request) -> web.Response:
        """Run now; wait up to ``wait`` seconds for the result, else answer 202."""
        actor = current_actor()
        query = Query(request, ("wait",))
        wait = query.number("wait", RUN_WAIT_DEFAULT, 0, RUN_WAIT_MAX)
        query.check()
        name = request.match_info["name"]
        await self.offload.quick(self.scheduler.get_schedule, name)  # 404 before running
        task = asyncio.create_task(
            self.scheduler.arun(name, requested_by=actor, trigger="api"), name=f"api-run-{name}"
        )
        self._runs.add(task)
        task.add_done_callback(self._finished)
        await asyncio.wait({task}, timeout=wait)
        history = str(request.app.router["schedule-history"].url_for(name=name))
        if not task.done():
            body = {
                "schedule": name,
                "status": "running",
                "detail": f"still running after {wait:g} s; its result will be in the history",
                "history": history,
            }
            return web.json_response(body, status=202, headers={"Location": history})
        return web.json_response(run_json(task.result()))

    async def _settled(self, info: ScheduleInfo) -> ScheduleInfo:
        """``info`` read again now that the loop has applied the change to the engine.

        The facade answers from the worker thread before its engine update (queued on the
        loop) runs, so its ``next_run`` can lag: null after a create or resume, still set
        after a pause. That update runs before this coroutine resumes, so a second read is
        current. A schedule deleted meanwhile keeps the first answer.
        """
        try:
            return await self.offload.quick(self.scheduler.get_schedule, info.name)
        except JobLookupError:
            return info

    def _finished(self, task: asyncio.Task[RunRecord]) -> None:
        self._runs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.info("API run %s: %s", task.get_name(), task.exception())
