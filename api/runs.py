"""``/api/runs``, ``/api/schedules/{name}/history`` and ``/api/pipelines``.

Run lists are newest first and paged with a cursor: a page that has more after it
carries ``next`` (also a ``Link: <...>; rel="next"`` header), the same query with
``before`` set to the last run id of the page.

A finished run never changes, so its JSON is kept (``RunJsonCache``): pages that are
asked for again and again (dashboards, the newest runs) are joined from ready text.
"""

from __future__ import annotations

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
from .offload import Offload

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


def page_of_json(key: str, items: list[str], following: str | None) -> web.Response:
    """A page of items already serialised, with ``next`` (and a ``Link`` header) when
    there is more."""
    headers = {"Link": f'<{following}>; rel="next"'} if following else None
    body = f'{{"{key}": [{", ".join(items)}], "next": {json.dumps(following)}}}'
    return web.Response(text=body, content_type="application/json", headers=headers)


class RunJsonCache:
    """JSON text of finished runs by run id, the least recently used dropped first.

    Only runs in a final status are kept: a final row is never written again (pruning
    deletes it, and a deleted run is no longer listed, so its entry is never asked for).
    Changed on the event loop only; ``has`` may be asked from any thread.
    """

    def __init__(self, size: int = CACHED_RUNS) -> None:
        self.size = size
        self._texts: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._texts)

    def has(self, run_id: str) -> bool:
        """Whether the run's text is kept (safe to ask from any thread)."""
        return run_id in self._texts

    def get(self, run_id: str) -> str | None:
        """The kept text of a run, if it is kept."""
        found = self._texts.get(run_id)
        if found is not None:
            self._texts.move_to_end(run_id)
        return found

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

    def __init__(
        self, scheduler: PipelineScheduler, offload: Offload, cache: RunJsonCache | None = None
    ) -> None:
        self.scheduler = scheduler
        self.offload = offload
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
        await self.offload.quick(self.scheduler.get_schedule, name)  # 404 if unknown
        return await self._page(request, {"schedule": name}, limit, before)

    async def pipelines(self, request: web.Request) -> web.Response:
        Query(request, ()).check()
        described = self.scheduler.pipelines()
        items = [{"name": name, "description": text} for name, text in described.items()]
        return web.json_response({"pipelines": items})

    async def _page(
        self, request: web.Request, filters: dict[str, Any], limit: int, before: str | None
    ) -> web.Response:
        """One page: the ids and statuses first, whole rows only for runs not kept."""
        scheduler, cache = self.scheduler, self.cache
        # one filter (or none) is one index range; combinations may scan far: general lane
        lane = (
            self.offload.quick
            if sum(v is not None for v in filters.values()) <= 1
            else self.offload
        )

        def read() -> tuple[list[tuple[str, str]], dict[str, RunRecord]]:
            keys = scheduler.run_keys(**filters, limit=limit + 1, before=before)
            return keys, scheduler.runs_by_id([r for r, _ in keys[:limit] if not cache.has(r)])

        keys, records = await lane(read)
        page = keys[:limit]
        kept = {r: cache.get(r) for r, _ in page if r not in records}
        evicted = [r for r, text in kept.items() if text is None]
        if evicted:  # dropped from the cache by other requests meanwhile
            records.update(await lane(scheduler.runs_by_id, evicted))
        texts = []
        for run_id, _ in page:
            record = records.get(run_id)
            text = cache.text(record) if record is not None else kept.get(run_id)
            if text is not None:  # else deleted by retention between the two reads
                texts.append(text)
        following = next_link(request, "before", page[-1][0]) if len(keys) > limit else None
        return page_of_json("runs", texts, following)


def _cursor(query: Query) -> tuple[int, str | None]:
    """``limit`` and ``before`` of a run list; raises 422 for any bad parameter."""
    limit = query.integer("limit", LIMIT_DEFAULT, 1, LIMIT_MAX)
    before = query.text("before", max_length=64)
    query.check()
    return limit, before
