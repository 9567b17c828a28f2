"""``/api/runs``, ``/api/schedules/{name}/history`` and ``/api/pipelines``."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from api.offload import app_offload
from api.runs import RunJsonCache, RunViews
from scheduler.dispatch import AlreadyRunningError
from scheduler.models import RunRecord
from scheduler.service import PipelineScheduler

from .conftest import SECRET_IN_ERROR, Api, Gate, StartApi, assert_problem


async def settled(client: Api, count: int) -> list[dict[str, object]]:
    """The runs once ``count`` of them are final (the ledger writes in batches)."""
    for _ in range(100):
        runs = (await client.get("/api/runs?limit=500")).json["runs"]
        if len(runs) >= count and all(r["status"] != "running" for r in runs):
            return list(runs)
        await asyncio.sleep(0.05)
    raise AssertionError("runs did not settle")


@pytest.fixture
async def client(api: StartApi, scheduler: PipelineScheduler) -> Api:
    """Seven runs: five of ``noop`` through schedule ``ticks``, two failures of ``boom``."""
    scheduler.create_schedule("ticks", "noop", every="1h", owner="api", created_by="t")
    for _ in range(5):
        await scheduler.arun("ticks", requested_by="t")
    for _ in range(2):
        try:
            await scheduler.arun("boom", requested_by="t")
        except AlreadyRunningError:
            pass
    client = await api()
    await settled(client, 7)
    return client


async def test_runs_newest_first_with_fields(client: Api) -> None:
    reply = await client.get("/api/runs")
    assert reply.status == 200 and reply.json["next"] is None
    runs = reply.json["runs"]
    assert len(runs) == 7
    started = [r["started_at"] for r in runs]
    assert started == sorted(started, reverse=True)
    assert set(runs[0]) == {
        "run_id",
        "schedule",
        "pipeline",
        "trigger",
        "status",
        "scheduled_for",
        "started_at",
        "finished_at",
        "duration_seconds",
        "requested_by",
        "error",
        "items",
        "stages",
    }


async def test_filters(client: Api) -> None:
    failed = (await client.get("/api/runs?status=failed")).json["runs"]
    assert [r["pipeline"] for r in failed] == ["boom", "boom"]
    noop = (await client.get("/api/runs?pipeline=noop")).json["runs"]
    assert len(noop) == 5 and {r["schedule"] for r in noop} == {"ticks"}
    assert len((await client.get("/api/runs?schedule=ticks")).json["runs"]) == 5
    future = quote((datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert (await client.get(f"/api/runs?since={future}")).json["runs"] == []
    assert len((await client.get("/api/runs?since=2000-01-01T00:00:00Z")).json["runs"]) == 7
    offset = quote("2000-01-01T01:00:00+01:00")
    assert len((await client.get(f"/api/runs?since={offset}")).json["runs"]) == 7


async def test_error_texts_are_redacted(client: Api) -> None:
    failed = (await client.get("/api/runs?status=failed&limit=1")).json["runs"][0]
    assert "upstream refused" in failed["error"]
    assert SECRET_IN_ERROR not in failed["error"]


async def test_cursor_pages_cover_everything_once(client: Api) -> None:
    seen: list[str] = []
    path: str | None = "/api/runs?limit=2"
    while path is not None:
        reply = await client.get(path)
        assert reply.status == 200, reply.text
        page = reply.json["runs"]
        assert 1 <= len(page) <= 2
        seen += [r["run_id"] for r in page]
        path = reply.json["next"]
        if path is not None:
            assert reply.headers["Link"] == f'<{path}>; rel="next"'
            assert "limit=2" in path and f"before={page[-1]['run_id']}" in path
    assert len(seen) == len(set(seen)) == 7
    everything = [r["run_id"] for r in (await client.get("/api/runs")).json["runs"]]
    assert seen == everything


async def test_cursor_keeps_filters(client: Api) -> None:
    first = (await client.get("/api/runs?pipeline=noop&limit=3")).json
    rest = (await client.get(first["next"])).json
    assert "pipeline=noop" in first["next"]
    assert len(rest["runs"]) == 2 and rest["next"] is None
    assert {r["pipeline"] for r in rest["runs"]} == {"noop"}


async def test_unknown_cursor_gives_an_empty_page(client: Api) -> None:
    assert (await client.get("/api/runs?before=nosuchrun")).json == {"runs": [], "next": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "query.limit"),
        ("limit=501", "query.limit"),
        ("limit=-1", "query.limit"),
        ("limit=ten", "query.limit"),
        ("status=exploded", "query.status"),
        ("since=yesterday", "query.since"),
        ("since=2025-01-01T00:00:00", "query.since"),
        ("pipline=noop", "query.pipline"),
        ("status=failed&status=success", "query.status"),
    ],
)
async def test_bad_queries_are_422(client: Api, query: str, field: str) -> None:
    body = assert_problem(await client.get(f"/api/runs?{query}"), 422, field)
    assert [e["field"] for e in body["errors"]] == [field]


async def test_limit_bounds_are_inclusive(client: Api) -> None:
    assert len((await client.get("/api/runs?limit=1")).json["runs"]) == 1
    assert len((await client.get("/api/runs?limit=500")).json["runs"]) == 7


async def test_schedule_history(client: Api) -> None:
    reply = await client.get("/api/schedules/ticks/history?limit=4")
    assert reply.status == 200
    assert len(reply.json["runs"]) == 4 and reply.json["next"] is not None
    assert {r["schedule"] for r in reply.json["runs"]} == {"ticks"}
    more = (await client.get(reply.json["next"])).json
    assert len(more["runs"]) == 1 and more["next"] is None
    assert_problem(await client.get("/api/schedules/ghost/history"), 404, "ghost")
    assert_problem(await client.get("/api/schedules/ticks/history?limit=0"), 422, "limit")


async def test_pipelines(client: Api) -> None:
    reply = await client.get("/api/pipelines")
    assert reply.status == 200
    assert [p["name"] for p in reply.json["pipelines"]] == ["boom", "noop", "slow"]
    assert all(isinstance(p["description"], str) for p in reply.json["pipelines"])


async def test_a_running_run_is_shown_finished_once_it_is(
    api: StartApi, scheduler: PipelineScheduler, gate: Gate
) -> None:
    """Finished runs' JSON is kept; a running one's must not be."""
    client = await api()
    task = asyncio.create_task(scheduler.arun("slow", requested_by="t"))

    async def status() -> str | None:
        runs = (await client.get("/api/runs?pipeline=slow")).json["runs"]
        return runs[0]["status"] if runs else None

    for _ in range(100):
        if await status() == "running":
            break
        await asyncio.sleep(0.05)
    assert await status() == "running"
    gate.release()
    assert (await task).status == "success"
    for _ in range(100):
        if await status() == "success":
            break
        await asyncio.sleep(0.05)
    assert await status() == "success"


def test_run_json_cache_keeps_finished_runs_least_recently_used_first() -> None:
    cache = RunJsonCache(size=2)
    done = [RunRecord(f"r{i}", None, "p", "manual", "success") for i in range(3)]
    running = RunRecord("r9", None, "p", "manual", "running")
    assert json.loads(cache.text(running))["status"] == "running" and len(cache) == 0
    texts = [cache.text(r) for r in done[:2]]
    assert cache.text(done[0]) is texts[0]  # kept, and now the most recently used
    cache.text(done[2])  # evicts r1, the least recently used
    assert len(cache) == 2
    assert cache.text(done[0]) is texts[0]
    assert cache.text(done[1]) is not texts[1] and cache.text(done[1]) == texts[1]


async def test_pages_are_whole_with_a_cache_smaller_than_a_page(
    client: Api, scheduler: PipelineScheduler
) -> None:
    """Kept runs are not read again; those evicted meanwhile are, and none goes missing."""
    expected = (await client.get("/api/runs?limit=7")).json
    assert len(expected["runs"]) == 7
    app = web.Application()
    app.router.add_routes(RunViews(scheduler, app_offload(app), RunJsonCache(size=2)).routes())
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/runs?limit=7"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(url) as reply:
                    assert await reply.json() == expected
    finally:
        await runner.cleanup()
