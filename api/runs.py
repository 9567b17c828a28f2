"""``/api/runs``, ``/api/schedules/{name}/history`` and ``/api/pipelines``.

Run lists are newest first and paged with a cursor: a page that has more after it
carries ``next`` (also a ``Link: <...>; rel="next"`` header), the same query with
``before`` set to the last run id of the page.

A finished run never changes, so its JSON is kept (``RunJsonCache``): pages that are
asked for again and again (dashboards, the newest runs) are joined from ready text.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from datetime import datetime
from typing import Any, get_args

from aiohttp import web
from yarl import URL

from pipebot.logs import redact
from scheduler.models import FINAL_STATUSES, RunRecord, RunStatus
from scheduler.service import PipelineScheduler

from .inputs import Query

RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
LIMIT_DEFAULT = 50
LIMIT_MAX = 500
CACHED_RUNS = 4096
"""Finished runs whose JSON is kept (a few MiB at most)."""


def run_json(record: RunRecord) -> dict[str, Any]:
    """The API's view of a run (the ``Run`` schema); error texts have secrets masked."""
    return {
        "run_id": record.run_id,
        "schedule": record.schedule,
        "pipeline": record.pipeline,
        "trigger": record.trigger,
        "status": record.status,
        "scheduled_for": _iso(record.scheduled_for),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "duration_seconds": record.duration,
        "requested_by": record.requested_by,
        "error": None if record.error is None else redact(record.error),
        "items": list(record.items),
        "stages": list(record.stages),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def next_link(request: web.Request, cursor: str, value: str) -> str:
    """This request's path and query with the cursor parameter set to ``value``."""
    query = {k: v for k, v in request.query.items() if k != cursor}
    query[cursor] = value
    return str(URL(request.path).with_query(query))


def page_response(key: str, items: list[dict[str, Any]], following: str | None) -> web.Response:
    headers = {"Link": f'<{following}>; rel="next"'} if following else None
    return web.json_response({key: items, "next": following}, headers=headers)


def page_of_json(key: str, items: list[str], following: str | None) -> web.Response:
    """``page_response`` for items already serialised."""
    headers = {"Link": f'<{following}>; rel="next"'} if following else None
    body = f'{{"{key}": [{", ".join(items)}], "next": {json.dumps(following)}}}'
    return web.Response(text=body, content_type="application/json", headers=headers)


class RunJsonCache:
    """JSON text of finished runs by run id, the least recently used dropped first.

    Only runs in a final status are kept: a final row is never written again (pruning
    deletes it, and a deleted run is no longer listed, so its entry is never asked for).
    Used from the event loop only.
    """

    def __init__(self, size: int = CACHED_RUNS) -> None:
        self.size = size
        self._texts: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._texts)

    def text(self, record: RunRecord) -> str:
        if record.status not in FINAL_STATUSES:
            return json.dumps(run_json(record))
        texts = self._texts
        found = texts.get(record.run_id)
        if found is not None:
            texts.move_to_end(record.run_id)
            return found
        found = texts[record.run_id] = json.dumps(run_json(record))
        if len(texts) > self.size:
            texts.popitem(last=False)
        return found


class RunViews:
    """The handlers, bound to one scheduler."""

    def __init__(self, scheduler: PipelineScheduler, cache: RunJsonCache | None = None) -> None:
        self.scheduler = scheduler
        self.cache = cache or RunJsonCache()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/runs", self.runs),
            web.get("/api/schedules/{name}/history", self.history, name="schedule-history"),
            web.get("/api/pipelines", self.pipelines),
        ]

    async def runs(self, request: web.Request) -> web.Response:
        query = Query(request, ("pipeline", "schedule", "status", "since", "limit", "before"))
        filters: dict[str, Any] = {
            "pipeline": query.text("pipeline"),
            "schedule": query.text("schedule"),
            "status": query.choice("status", RUN_STATUSES),
            "since": query.moment("since"),
        }
        limit, before = _cursor(query)
        return await self._page(request, filters, limit, before)

    async def history(self, request: web.Request) -> web.Response:
        limit, before = _cursor(Query(request, ("limit", "before")))
        name = request.match_info["name"]
        await asyncio.to_thread(self.scheduler.get_schedule, name)  # 404 if unknown
        return await self._page(request, {"schedule": name}, limit, before)

    async def pipelines(self, request: web.Request) -> web.Response:
        Query(request, ()).check()
        described = self.scheduler.pipelines()
        items = [{"name": name, "description": text} for name, text in described.items()]
        return web.json_response({"pipelines": items})

    async def _page(
        self, request: web.Request, filters: dict[str, Any], limit: int, before: str | None
    ) -> web.Response:
        records = await asyncio.to_thread(
            lambda: self.scheduler.ledger.history(**filters, limit=limit + 1, before_run_id=before)
        )
        page = records[:limit]
        following = next_link(request, "before", page[-1].run_id) if len(records) > limit else None
        return page_of_json("runs", [self.cache.text(r) for r in page], following)


def _cursor(query: Query) -> tuple[int, str | None]:
    """``limit`` and ``before`` of a run list; raises 422 for any bad parameter."""
    limit = query.integer("limit", LIMIT_DEFAULT, 1, LIMIT_MAX)
    before = query.text("before", max_length=64)
    query.check()
    return limit, before
