"""The served OpenAPI document matches what the API does (schemathesis, bounded).

schemathesis speaks ``requests`` (blocking), so the scheduler and the app run on their
own event loop in a thread; the document is loaded from the running app. Each operation
gets a few generated requests (fixed seed, ``derandomize``), and every response must
have a documented status, the documented media type, a body matching its schema and the
documented headers, and never be a server error.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import start_api, stop_api
from pipelines.db import dispose_engine
from scheduler.schedules import make_schedule
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings

from .conftest import OPS_TOKEN, boom, read_only_settings, token_settings

AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = 12
KNOWN_NAMES = ["alpha", "beta", "gamma", "news", "ghost"]
logger = logging.getLogger(__name__)


async def _noop() -> None:
    return None


async def _serve(url: str, ports: queue.Queue[int], stop: asyncio.Event) -> None:
    sched = PipelineScheduler(SchedulerSettings(database_url=url, timezone="UTC"))
    sched.register("noop", _noop)
    sched.register("boom", boom)
    await asyncio.to_thread(
        sched.sync_yaml,
        [make_schedule("news", "noop", "cron", {"expression": "0 * * * *"}, timezone="UTC")],
    )
    for name in ("alpha", "beta", "gamma"):
        sched.create_schedule(name, "noop", every="1h", owner="api", created_by="seed")
    await sched.astart()
    for name in ("alpha", "beta"):
        await sched.arun(name, requested_by="seed")
    await sched.arun("boom", requested_by="seed")
    runner = await start_api(sched, token_settings())
    ports.put(runner.addresses[0][1])
    try:
        await stop.wait()
    finally:
        await stop_api(runner)
        await sched.astop(grace=1)
        dispose_engine(url)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The running app's base URL; scheduler and app live on a loop in a thread."""
    path: Path = tmp_path_factory.mktemp("openapi") / "pipebot.db"
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ports: queue.Queue[int] = queue.Queue()
    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(_serve(f"sqlite:///{path}", ports, stop),),
        name="api-under-test",
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=30)}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture(scope="module")
def schema(base_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{base_url}/api/openapi.json", headers=AUTH)


def operations(schema: Any) -> list[Any]:
    """Every operation; deletions last, so the others meet schedules that exist."""
    found = [result.ok() for result in schema.get_all_operations()]
    return sorted(found, key=lambda op: op.method.upper() == "DELETE")


def test_document_is_openapi_31_and_lists_every_route(schema: Any) -> None:
    raw = schema.raw_schema
    assert raw["openapi"].startswith("3.1")
    labels = {op.label for op in operations(schema)}
    assert labels == {
        "GET /healthz",
        "GET /readyz",
        "GET /api/scheduler/health",
        "GET /api/schedules/health",
        "GET /api/schedules",
        "POST /api/schedules",
        "GET /api/schedules/{name}",
        "DELETE /api/schedules/{name}",
        "POST /api/schedules/{name}/enable",
        "POST /api/schedules/{name}/disable",
        "POST /api/schedules/{name}/run",
        "GET /api/schedules/{name}/history",
        "GET /api/runs",
        "GET /api/pipelines",
    }


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_responses_conform_to_the_document(
    schema: Any, base_url: str, mode: GenerationMode
) -> None:
    seen: dict[str, Counter[int]] = {}
    with requests.Session() as session:
        for operation in operations(schema):
            if mode is GenerationMode.NEGATIVE and not _has_input(operation):
                continue  # nothing to make invalid
            seen[operation.label] = _exercise(operation, base_url, session, mode)
    logger.info("statuses per operation (%s): %s", mode.value, seen)
    if mode is GenerationMode.POSITIVE:  # the checks saw successes, not only refusals
        assert seen["POST /api/schedules"][201] > 0
        assert seen["GET /api/schedules/{name}"][200] > 0
        assert seen["POST /api/schedules/{name}/run"][200] > 0


def _has_input(operation: Any) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


def _cases(operation: Any, mode: GenerationMode) -> st.SearchStrategy[Any]:
    """Generated cases; for ``{name}`` paths, also ones naming schedules that exist."""
    generated = operation.as_strategy(generation_mode=mode)
    if "{name}" not in operation.path:
        return generated
    # "health" is the one name the document forbids: GET /api/schedules/health is the alias
    generated = generated.filter(lambda case: (case.path_parameters or {}).get("name") != "health")
    known = st.sampled_from(KNOWN_NAMES).flatmap(
        lambda name: operation.as_strategy(generation_mode=mode, path_parameters={"name": name})
    )
    return st.one_of(generated, known)


def _exercise(
    operation: Any, base_url: str, session: requests.Session, mode: GenerationMode
) -> Counter[int]:
    statuses: Counter[int] = Counter()

    @seed(20240611)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_cases(operation, mode))
    def check(case: Any) -> None:
        if operation.label == "POST /api/schedules" and isinstance(case.body, dict):
            case.body["pipeline"] = "noop"  # a configured pipeline: creations can succeed
        response = case.call_and_validate(
            base_url=base_url, session=session, headers=AUTH, checks=CHECKS
        )
        statuses[response.status_code] += 1

    check()
    return statuses


@pytest.mark.parametrize(
    ("headers", "status"), [({}, 401), ({"Authorization": "Bearer wrong"}, 403)]
)
def test_auth_failures_conform(
    schema: Any, base_url: str, headers: dict[str, str], status: int
) -> None:
    """The 401/403 answers of a protected operation match the document too."""
    operation = schema["/api/schedules"]["GET"]
    case = operation.Case()
    response = case.call(base_url=base_url, headers=headers)
    assert response.status_code == status
    case.validate_response(response, checks=CHECKS)


def test_read_only_refusal_is_documented(tmp_path: Path) -> None:
    """A change without configured tokens gets a documented 403 problem."""
    ports: queue.Queue[int] = queue.Queue()

    async def main() -> None:
        url = f"sqlite:///{tmp_path / 'ro.db'}"
        sched = PipelineScheduler(SchedulerSettings(database_url=url, timezone="UTC"))
        runner = await start_api(sched, read_only_settings())
        try:
            port = runner.addresses[0][1]
            reply = await asyncio.to_thread(
                requests.post, f"http://127.0.0.1:{port}/api/schedules", json={}, timeout=10
            )
            ports.put(reply.status_code)
            doc = await asyncio.to_thread(
                requests.get, f"http://127.0.0.1:{port}/api/openapi.json", timeout=10
            )
            documented = doc.json()["paths"]["/api/schedules"]["post"]["responses"]
            assert "403" in documented
        finally:
            await stop_api(runner)
            dispose_engine(url)

    asyncio.run(main())
    assert ports.get_nowait() == 403
