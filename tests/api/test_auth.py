"""Bearer tokens, the read-only loopback mode, and settings from the environment."""

from __future__ import annotations

import base64
import logging
import socket

import pytest

from api.auth import basic_password, bearer, is_loopback
from api.settings import ApiSettings
from scheduler.errors import SettingsError
from scheduler.service import PipelineScheduler

from .conftest import CI_TOKEN, OPS_TOKEN, StartApi, assert_problem, read_only_settings

CHANGE = {"name": "x", "pipeline": "noop", "every": "1h"}
PROTECTED = [
    ("GET", "/api/schedules"),
    ("POST", "/api/schedules"),
    ("GET", "/api/runs"),
    ("GET", "/api/pipelines"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/schedules/x"),
    ("DELETE", "/api/schedules/x"),
    ("POST", "/api/schedules/x/run"),
    ("GET", "/"),
]
PUBLIC = ["/healthz", "/readyz", "/api/scheduler/health", "/api/schedules/health", "/metrics"]


def outward_address() -> str | None:
    """A local address that is not loopback (None when the host has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if is_loopback(address) else address


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_missing_token_is_401_with_challenge(api: StartApi, method: str, path: str) -> None:
    client = await api()
    reply = await client.call(method, path, token=False)
    assert_problem(reply, 401, "Authorization: Bearer")
    scheme = "Basic" if path == "/" else "Bearer"  # the status page asks the browser
    assert reply.headers["WWW-Authenticate"].startswith(scheme)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_wrong_token_is_403(api: StartApi, method: str, path: str) -> None:
    client = await api()
    reply = await client.call(method, path, token="not-a-token")
    assert_problem(reply, 403, "not valid")


@pytest.mark.parametrize("header", ["Basic", "Digest abc", "Bearer", "Bearer ", OPS_TOKEN])
async def test_malformed_authorization_is_401(api: StartApi, header: str) -> None:
    client = await api()
    reply = await client.get("/api/schedules", headers={"Authorization": header}, token=False)
    assert_problem(reply, 401)


@pytest.mark.parametrize("path", PUBLIC)
async def test_health_and_metrics_need_no_token(api: StartApi, path: str) -> None:
    client = await api()
    reply = await client.get(path, token=False)
    assert reply.status == 200, reply.text


def basic(password: str, user: str = "me") -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def test_browsers_read_with_the_token_as_basic_password(api: StartApi) -> None:
    client = await api()
    page = await client.get("/", headers=basic(OPS_TOKEN), token=False)
    assert page.status == 200 and page.content_type == "text/html"
    chart = await client.get("/charts/runs/noop.svg", headers=basic(CI_TOKEN, "x"), token=False)
    assert chart.status == 200 and chart.content_type == "image/svg+xml"
    listed = await client.get("/api/schedules", headers=basic(OPS_TOKEN), token=False)
    assert listed.status == 200 and listed.json["schedules"] == []


async def test_a_wrong_basic_password_asks_the_browser_again(api: StartApi) -> None:
    client = await api()
    page = await client.get("/", headers=basic("wrong"), token=False)
    assert_problem(page, 401, "Basic password")
    assert page.headers["WWW-Authenticate"].startswith("Basic")
    assert_problem(await client.get("/api/runs", headers=basic("wrong"), token=False), 403)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/api/schedules"), ("DELETE", "/api/schedules/x")]
)
async def test_changes_never_take_basic(
    api: StartApi, scheduler: PipelineScheduler, method: str, path: str
) -> None:
    """A browser replays Basic credentials on cross-site form posts: changes need Bearer."""
    client = await api()
    scheduler.create_schedule("x", "noop", every="1h", owner="api")
    reply = await client.call(
        method, path, json_body={**CHANGE, "name": "y"}, headers=basic(OPS_TOKEN), token=False
    )
    assert_problem(reply, 401, "Authorization: Bearer")
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert sorted(i.name for i in scheduler.list_schedules()) == ["x"]


async def test_each_token_acts_under_its_name(api: StartApi, scheduler: PipelineScheduler) -> None:
    client = await api()
    assert (await client.post("/api/schedules", CHANGE, token=CI_TOKEN)).status == 201
    assert (await client.post("/api/schedules/x/disable", token=OPS_TOKEN)).status == 200
    trail = [(a["actor"], a["surface"], a["action"]) for a in scheduler.audit_trail()[:2]]
    assert trail == [("ops", "api", "pause"), ("ci", "api", "schedule")]
    assert (await client.get("/api/schedules/x")).json["created_by"] == "ci"


async def test_read_only_mode_serves_reads_on_loopback(api: StartApi) -> None:
    client = await api(read_only_settings())
    client.token = None
    assert (await client.get("/api/schedules")).status == 200
    assert (await client.get("/api/runs")).status == 200
    assert (await client.get("/api/openapi.json")).status == 200
    assert (await client.get("/")).status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/schedules"),
        ("DELETE", "/api/schedules/x"),
        ("POST", "/api/schedules/x/enable"),
        ("POST", "/api/schedules/x/run"),
    ],
)
async def test_read_only_mode_refuses_changes_with_the_how_to(
    api: StartApi, method: str, path: str
) -> None:
    client = await api(read_only_settings())
    reply = await client.call(method, path, json_body=CHANGE, token=OPS_TOKEN)
    body = assert_problem(reply, 403, "API_TOKEN", "read-only")
    assert body["type"] == "urn:pipebot:problem:read-only"


async def test_read_only_mode_refuses_other_hosts(api: StartApi) -> None:
    address = outward_address()
    if address is None:
        pytest.skip("this host has no non-loopback address")
    client = await api(read_only_settings(host="0.0.0.0"), host=address)
    client.token = None
    assert_problem(await client.get("/api/schedules"), 403, "local clients only", "API_TOKEN")
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2001:db8::1", False),
        ("", False),
        (None, False),
        ("not-an-ip", False),
    ],
)
def test_is_loopback(peer: str | None, local: bool) -> None:
    assert is_loopback(peer) is local


def test_bearer_parsing() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer   abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer(None) is None


def test_basic_parsing() -> None:
    assert basic_password(basic("t:with:colons")["Authorization"]) == "t:with:colons"
    assert basic_password(basic("tok", user="")["Authorization"]) == "tok"
    assert basic_password(basic("")["Authorization"]) is None
    assert basic_password("Basic " + base64.b64encode(b"no-colon").decode()) is None
    assert basic_password("Basic !!notbase64") is None
    assert basic_password("Basic " + base64.b64encode(b"u:\xff").decode()) is None  # not UTF-8
    assert basic_password(basic("p\u00e4ss")["Authorization"]) == "p\u00e4ss"
    assert basic_password("Bearer abc") is None
    assert basic_password(None) is None


async def test_tokens_never_reach_the_log(api: StartApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = await api()
    await client.get("/api/schedules")
    await client.get("/api/schedules", token="wrong-" + OPS_TOKEN)
    await client.post("/api/schedules", CHANGE, token=CI_TOKEN)
    assert caplog.records, "expected access and auth log lines"
    assert OPS_TOKEN not in caplog.text and CI_TOKEN not in caplog.text
    assert "refused a request with an unknown token" in caplog.text


def test_settings_from_env() -> None:
    settings = ApiSettings.from_env(
        {
            "API_HOST": "0.0.0.0",
            "API_PORT": "9090",
            "API_TOKEN": "single-token",
            "API_TOKENS": "ops:tok1, ci:tok2:with:colons",
        }
    )
    assert (settings.host, settings.port, settings.enabled) == ("0.0.0.0", 9090, True)
    assert [(t.name, t.secret.get_secret_value()) for t in settings.tokens] == [
        ("api", "single-token"),
        ("ops", "tok1"),
        ("ci", "tok2:with:colons"),
    ]
    assert "tok1" not in repr(settings) and "single-token" not in repr(settings)
    defaults = ApiSettings.from_env({})
    assert (defaults.host, defaults.port, defaults.enabled, defaults.read_only) == (
        "127.0.0.1",
        8080,
        True,
        True,
    )
    assert ApiSettings.from_env({"API_ENABLED": "false"}).enabled is False


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"API_PORT": "http"}, "API_PORT"),
        ({"API_PORT": "70000"}, "API_PORT"),
        ({"API_ENABLED": "maybe"}, "API_ENABLED"),
        ({"API_TOKENS": "ops"}, "API_TOKENS"),
        ({"API_TOKENS": "ops:"}, "API_TOKENS"),
        ({"API_TOKENS": "o p:t"}, "API_TOKENS"),
        ({"API_TOKENS": "ops:a,ops:b"}, "API_TOKENS"),
        ({"API_TOKENS": "ops:same,ci:same"}, "API_TOKENS"),
        ({"API_TOKEN": "t", "API_TOKENS": "api:u"}, "API_TOKENS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        ApiSettings.from_env(env)
    assert caught.value.variable == variable
    for value in env.values():
        secret = value.partition(":")[2]
        if len(secret) > 3:
            assert secret not in str(caught.value)
