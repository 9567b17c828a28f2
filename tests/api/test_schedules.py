"""``/api/schedules``: real HTTP on loopback against a real scheduler on a SQLite file."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest

from api.schedules import schedule_json, schedule_json_text
from scheduler.last_run_cache import TTL
from scheduler.schedules import make_schedule
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings

from .conftest import Api, Gate, StartApi, assert_problem

HOURLY = {"seconds": 3600}


def cron_body(name: str = "nightly", **extra: Any) -> dict[str, Any]:
    return {"name": name, "pipeline": "noop", "cron": "0 3 * * *", **extra}


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def client(api: StartApi) -> Api:
    return await api()


async def test_create_answers_with_the_next_run(client: Api) -> None:
    for i in range(10):  # the engine learns of a new schedule on the loop, after the store
        created = await client.post("/api/schedules", cron_body(f"n{i}"))
        assert created.status == 201 and created.json["next_run"] is not None, created.text


async def test_create_get_list_and_audit(client: Api, scheduler: PipelineScheduler) -> None:
    assert (await client.get("/api/schedules")).json == {"schedules": [], "next": None}
    body = cron_body(timezone="Europe/Stockholm", policies={"overlap": "allow", "jitter": 2})
    created = await client.post("/api/schedules", body)
    assert created.status == 201, created.text
    assert created.headers["Location"] == "/api/schedules/nightly"
    info = created.json
    assert (info["name"], info["type"], info["expression"], info["owner"]) == (
        "nightly",
        "cron",
        "0 3 * * *",
        "api",
    )
    assert info["created_by"] == "ops" and info["timezone"] == "Europe/Stockholm"
    assert info["policies"]["overlap"] == "allow" and info["policies"]["jitter"] == 2
    assert info["next_run"] is not None and info["enabled"] is True
    assert (await client.get("/api/schedules/nightly")).json == info
    listed = (await client.get("/api/schedules")).json["schedules"]
    assert listed == [info]
    trail = scheduler.audit_trail()
    assert (trail[0]["actor"], trail[0]["surface"], trail[0]["action"]) == (
        "ops",
        "api",
        "schedule",
    )


@pytest.mark.parametrize(
    ("trigger", "expression"),
    [
        ({"every": "15m"}, "every 15m"),
        ({"interval": {"hours": 1, "minutes": 30}}, "every 1h30m"),
        ({"interval": {"seconds": 45}}, "every 45s"),
    ],
)
async def test_interval_forms(client: Api, trigger: dict[str, Any], expression: str) -> None:
    reply = await client.post("/api/schedules", {"name": "tick", "pipeline": "noop", **trigger})
    assert reply.status == 201, reply.text
    assert (reply.json["type"], reply.json["expression"]) == ("interval", expression)


async def test_unknown_fields_are_listed(client: Api) -> None:
    reply = await client.post(
        "/api/schedules", cron_body(colour="red", policies={"overlap": "skip", "speed": 3})
    )
    body = assert_problem(reply, 422, "colour", "policies.speed")
    assert {e["field"] for e in body["errors"]} == {"colour", "policies.speed"}


async def test_wrong_types_are_listed(client: Api) -> None:
    reply = await client.post(
        "/api/schedules",
        {
            "name": 7,
            "pipeline": "noop",
            "cron": ["0 3 * * *"],
            "policies": {"jitter": "lots", "coalesce": "yes", "max_instances": 1.5},
            "timezone": None,
        },
    )
    body = assert_problem(reply, 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {
        "name",
        "cron",
        "timezone",
        "policies.jitter",
        "policies.coalesce",
        "policies.max_instances",
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (cron_body(cron="0 9 * * 1-9"), "day-of-week"),
        (cron_body(cron="0 0 30 2 *"), "never"),
        (cron_body(timezone="Mars/Base"), "Mars/Base"),
        ({"name": "x", "pipeline": "noop", "every": "15 parsecs"}, "15 parsecs"),
        ({"name": "x", "pipeline": "noop", "interval": {"seconds": 0.5}}, "whole number"),
        (cron_body(policies={"timeout": 0}), "timeout"),
    ],
)
async def test_scheduler_judges_meaning_with_its_one_line(
    client: Api, body: dict[str, Any], fragment: str
) -> None:
    problem = assert_problem(await client.post("/api/schedules", body), 422, fragment)
    assert "\n" not in problem["detail"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "x", "pipeline": "noop"}, "exactly one of cron, every or interval"),
        (cron_body(every="5m"), "found cron, every"),
        (cron_body(pipeline="nope"), "no pipeline named 'nope'"),
        (cron_body(name="health"), "reserved"),
        (cron_body(name="a/b"), "name: must match"),
        ({"pipeline": "noop", "cron": "* * * * *"}, "name: is required"),
        (cron_body(interval={}), "interval"),
        (cron_body(policies={"max_instances": 0}), "max_instances"),
        (cron_body(policies={"jitter": float("1e300")}), "jitter"),
    ],
)
async def test_shape_errors(client: Api, body: dict[str, Any], fragment: str) -> None:
    assert_problem(await client.post("/api/schedules", body), 422, fragment)


async def test_body_must_be_a_json_object(client: Api) -> None:
    assert_problem(await client.post("/api/schedules", [1, 2]), 422, "JSON object")
    bad = await client.call(
        "POST", "/api/schedules", data="{", headers={"Content-Type": "application/json"}
    )
    assert_problem(bad, 400, "not valid JSON")
    nan = await client.call(
        "POST", "/api/schedules", data='{"name": NaN}', headers={"Content-Type": "application/json"}
    )
    assert_problem(nan, 400, "NaN")
    text = await client.call("POST", "/api/schedules", data="name=x")
    assert_problem(text, 415, "application/json")
    huge = await client.post("/api/schedules", cron_body(padding="x" * 70_000))
    assert_problem(huge, 413, "65536")


async def test_duplicate_name_is_409(client: Api) -> None:
    assert (await client.post("/api/schedules", cron_body())).status == 201
    assert_problem(await client.post("/api/schedules", cron_body()), 409, "exists already")


async def test_unknown_schedule_is_404_everywhere(client: Api) -> None:
    for method, path in [
        ("GET", "/api/schedules/ghost"),
        ("DELETE", "/api/schedules/ghost"),
        ("POST", "/api/schedules/ghost/enable"),
        ("POST", "/api/schedules/ghost/disable"),
        ("POST", "/api/schedules/ghost/run"),
        ("GET", "/api/schedules/ghost/history"),
    ]:
        body = assert_problem(await client.call(method, path), 404, "ghost")
        assert body["type"] == "urn:pipebot:problem:schedule-not-found"
        assert body["instance"] == path


async def test_enable_disable_and_audit(client: Api, scheduler: PipelineScheduler) -> None:
    await client.post("/api/schedules", cron_body())
    for _ in range(5):  # each answer shows the engine's state after the change
        paused = await client.post("/api/schedules/nightly/disable")
        assert paused.status == 200 and paused.json["enabled"] is False
        assert paused.json["next_run"] is None
        resumed = await client.post("/api/schedules/nightly/enable")
        assert resumed.status == 200 and resumed.json["enabled"] is True
        assert resumed.json["next_run"] is not None
    actions = [(a["actor"], a["surface"], a["action"]) for a in scheduler.audit_trail()[:2]]
    assert actions == [("ops", "api", "resume"), ("ops", "api", "pause")]
    assert len([a for a in scheduler.audit_trail(100) if a["action"] == "pause"]) == 5


async def test_delete(client: Api, scheduler: PipelineScheduler) -> None:
    await client.post("/api/schedules", cron_body())
    gone = await client.delete("/api/schedules/nightly")
    assert gone.status == 204 and gone.text == ""
    assert_problem(await client.get("/api/schedules/nightly"), 404)
    assert scheduler.audit_trail()[0]["action"] == "remove"


async def test_yaml_owned_schedule_cannot_be_deleted(
    client: Api, scheduler: PipelineScheduler
) -> None:
    yaml = make_schedule(
        "news", "noop", "cron", {"expression": "0 * * * *"}, timezone="UTC", owner="yaml"
    )
    await asyncio.to_thread(scheduler.sync_yaml, [yaml])
    body = assert_problem(
        await client.delete("/api/schedules/news"), 403, "pipelines.yml", "/disable"
    )
    assert body["type"] == "urn:pipebot:problem:schedule-read-only"
    assert (await client.post("/api/schedules/news/disable")).json["enabled"] is False


async def test_run_now_returns_the_finished_run(client: Api, scheduler: PipelineScheduler) -> None:
    await client.post("/api/schedules", cron_body())
    reply = await client.post("/api/schedules/nightly/run")
    latest = scheduler.audit_trail()[0]
    assert (latest["actor"], latest["surface"], latest["action"], latest["target"]) == (
        "ops",
        "api",
        "run",
        "nightly",
    )
    assert reply.status == 200, reply.text
    run = reply.json
    assert (run["status"], run["trigger"], run["requested_by"], run["schedule"]) == (
        "success",
        "api",
        "ops",
        "nightly",
    )


async def test_run_while_running_is_409_and_slow_runs_are_202(client: Api, gate: Gate) -> None:
    await client.post("/api/schedules", {"name": "long", "pipeline": "slow", "every": "1h"})
    accepted = await client.post("/api/schedules/long/run?wait=0.2")
    assert accepted.status == 202, accepted.text
    assert accepted.json["status"] == "running"
    assert accepted.headers["Location"] == "/api/schedules/long/history"
    assert_problem(await client.post("/api/schedules/long/run"), 409, "already running")
    gate.release()

    async def finished() -> bool:
        runs = (await client.get("/api/schedules/long/history")).json["runs"]
        return any(r["status"] == "success" for r in runs)

    await wait_until(finished)
    assert_problem(await client.post("/api/schedules/long/run?wait=99"), 422, "query.wait")


async def test_twenty_concurrent_creates_one_wins(client: Api) -> None:
    replies = await asyncio.gather(
        *(client.post("/api/schedules", cron_body("race")) for _ in range(20))
    )
    statuses = Counter(r.status for r in replies)
    assert statuses == {201: 1, 409: 19}, [r.text for r in replies if r.status not in (201, 409)]
    for reply in replies:
        if reply.status == 409:
            assert_problem(reply, 409, "exists already")
    assert len((await client.get("/api/schedules")).json["schedules"]) == 1


async def test_concurrent_enable_disable_end_consistent(
    client: Api, scheduler: PipelineScheduler
) -> None:
    await client.post("/api/schedules", {"name": "flip", "pipeline": "noop", "every": "1h"})
    actions = ["enable", "disable"] * 10
    replies = await asyncio.gather(*(client.post(f"/api/schedules/flip/{a}") for a in actions))
    assert {r.status for r in replies} == {200}
    stored = (await client.get("/api/schedules/flip")).json["enabled"]

    async def engine_agrees() -> bool:
        info = (await client.get("/api/schedules/flip")).json
        return info["enabled"] is stored and (info["next_run"] is None) is (not stored)

    await wait_until(engine_agrees)  # the watchdog applies the store's last word
    trail = [a for a in scheduler.audit_trail(100) if a["target"] == "flip"]
    assert Counter(a["action"] for a in trail) == {"resume": 10, "pause": 10, "schedule": 1}


async def test_concurrent_deletes_one_wins(client: Api, scheduler: PipelineScheduler) -> None:
    """Fails now and then while ``ScheduleStore.remove`` ignores the DELETE's rowcount: on
    SQLite its SELECT runs before pysqlite opens the transaction, so racing removes all
    "succeed" (and are all audited)."""
    await client.post("/api/schedules", cron_body("gone"))
    replies = await asyncio.gather(*(client.delete("/api/schedules/gone") for _ in range(10)))
    assert Counter(r.status for r in replies) == {204: 1, 404: 9}
    trail = [a["action"] for a in scheduler.audit_trail(100) if a["target"] == "gone"]
    assert trail.count("remove") == 1


async def test_mixed_concurrent_traffic(client: Api, scheduler: PipelineScheduler) -> None:
    """Creates, runs, pauses, deletes and reads at once: documented answers only, and the
    store ends as the successful changes say."""
    for name in ("a", "b", "c"):
        assert (await client.post("/api/schedules", cron_body(name))).status == 201
    calls = [
        client.post("/api/schedules", cron_body("d")),
        client.post("/api/schedules", cron_body("d")),
        client.post("/api/schedules/a/run?wait=5"),
        client.post("/api/schedules/a/run?wait=5"),
        client.post("/api/schedules/b/disable"),
        client.delete("/api/schedules/c"),
        client.post("/api/schedules/c/run?wait=5"),
        client.post("/api/schedules/c/enable"),
        client.get("/api/schedules"),
        client.get("/api/runs"),
        client.get("/api/schedules/c/history"),
    ]
    replies = await asyncio.gather(*calls)
    assert all(r.status in (200, 201, 202, 204, 404, 409) for r in replies), [
        (r.status, r.text) for r in replies
    ]
    assert sorted(r.status for r in replies[:2]) == [201, 409]
    assert replies[5].status == 204
    assert {r.status for r in replies[2:4]} <= {200, 409}  # the second may meet the first
    names = [s["name"] for s in (await client.get("/api/schedules")).json["schedules"]]
    assert names == ["a", "b", "d"]
    assert (await client.get("/api/schedules/b")).json["enabled"] is False


async def test_list_pages_by_name(client: Api) -> None:
    names = [f"job-{i:02d}" for i in range(7)]
    for name in reversed(names):
        assert (await client.post("/api/schedules", cron_body(name))).status == 201
    seen: list[str] = []
    path: str | None = "/api/schedules?limit=3"
    pages = 0
    while path is not None:
        reply = await client.get(path)
        assert reply.status == 200, reply.text
        seen += [s["name"] for s in reply.json["schedules"]]
        path = reply.json["next"]
        if path is not None:
            assert reply.headers["Link"] == f'<{path}>; rel="next"'
        pages += 1
    assert seen == names and pages == 3
    after = (await client.get("/api/schedules?after=job-04")).json["schedules"]
    assert [s["name"] for s in after] == ["job-05", "job-06"]


async def test_list_defaults_to_pages_of_100(client: Api, scheduler: PipelineScheduler) -> None:
    defs = [
        make_schedule(f"n-{i:03d}", "noop", "interval", HOURLY, timezone="UTC", owner="api")
        for i in range(130)
    ]
    defs.append(make_schedule("B", "noop", "interval", HOURLY, timezone="UTC", owner="api"))
    await asyncio.to_thread(scheduler.add_schedules, defs)
    first = await client.get("/api/schedules")
    names = [s["name"] for s in first.json["schedules"]]
    assert len(names) == 100 and names[:2] == ["B", "n-000"]  # code point order
    assert first.json["next"] == "/api/schedules?after=n-098"
    rest = (await client.get(first.json["next"])).json
    assert [s["name"] for s in rest["schedules"]][-1] == "n-129" and rest["next"] is None
    assert len(rest["schedules"]) == 31
    everything = (await client.get("/api/schedules?limit=1000")).json
    assert len(everything["schedules"]) == 131 and everything["next"] is None


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=x", "limit=1&limit=2", "colour=red"]
)
async def test_list_query_is_checked(client: Api, query: str) -> None:
    assert_problem(await client.get(f"/api/schedules?{query}"), 422, "query.")


async def test_health_alias_is_not_a_schedule_name(client: Api) -> None:
    reply = await client.get("/api/schedules/health", token=False)
    assert reply.status == 200 and reply.json["status"] in ("ok", "degraded")


async def test_list_is_current_after_every_kind_of_change(
    client: Api, scheduler: PipelineScheduler, db_url: str
) -> None:
    """Pages are reused while the store's revision stands; each change must show at once."""

    async def listed() -> dict[str, dict[str, Any]]:
        reply = await client.get("/api/schedules")
        assert reply.status == 200, reply.text
        return {s["name"]: s for s in reply.json["schedules"]}

    assert (await client.post("/api/schedules", cron_body("a"))).status == 201
    first = await listed()
    assert first["a"]["enabled"] is True and first["a"]["last_status"] is None
    assert await listed() == first  # the same page again
    assert (await client.post("/api/schedules/a/disable")).status == 200
    paused = (await listed())["a"]
    assert paused["enabled"] is False and paused["next_run"] is None
    assert (await client.post("/api/schedules/a/enable")).status == 200
    assert (await listed())["a"]["next_run"] == first["a"]["next_run"]
    assert (await client.post("/api/schedules/a/run")).status == 200
    ran = (await listed())["a"]
    assert ran["last_status"] == "success" and ran["last_run"] is not None
    other = PipelineScheduler(SchedulerSettings(database_url=db_url, timezone="UTC"))
    other.register("noop", lambda: None)
    await asyncio.to_thread(other.schedule_cron, "b", "noop", "5 4 * * *")
    assert set(await listed()) == {"a", "b"}  # another process's change, before any sync
    assert (await listed())["b"]["last_status"] is None
    await other.arun("b")  # a run written by another process's ledger

    async def shown() -> bool:
        return bool((await listed())["b"]["last_status"] == "success")

    await wait_until(shown, timeout=TTL + 2)  # seen within the TTL
    await asyncio.to_thread(other.unschedule, "a")
    assert set(await listed()) == {"b"}


async def test_list_text_is_the_json_of_a_schedule(scheduler: PipelineScheduler) -> None:
    await asyncio.to_thread(
        scheduler.schedule_cron, "ünïcode", "noop", "0 3 * * *", timezone="Europe/Stockholm"
    )
    await asyncio.to_thread(scheduler.schedule_interval, "plain", "boom", minutes=5)
    await scheduler.arun("plain")
    infos = await asyncio.to_thread(scheduler.list_schedules)
    assert [i.last_status for i in infos] == ["failed", None]
    for info in infos:
        assert json.loads(schedule_json_text(info)) == schedule_json(info)
