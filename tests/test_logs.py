"""Log redaction (every secret shape, every part of a record) and the JSON format."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from pipebot.logs import MASK, configure_logging, make_handler, redact
from pipelines.db import dispose_engine
from scheduler.service import PipelineScheduler
from scheduler.settings import SchedulerSettings

with warnings.catch_warnings():  # discord.py 2.x imports audioop, deprecated in 3.11+
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from discord.http import Route

BOT_TOKEN = "MTA4NzY1NDMyMTA5ODc2NTQzMg.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789"
INTERACTION_TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OTpYWFhYWFhYWFhYWFhYWFhY"
WEBHOOK_TOKEN = "k3Y-x_7aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789abcdefghijklmnopqrstuvwx"
INTERACTION_URL = Route(
    "POST",
    "/interactions/{interaction_id}/{interaction_token}/callback",
    interaction_id=1234567890123456789,
    interaction_token=INTERACTION_TOKEN,
).url
WEBHOOK_URL = Route(
    "PATCH",
    "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
    webhook_id=987654321098765432,
    webhook_token=WEBHOOK_TOKEN,
).url
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"

SHAPES = [
    pytest.param(f"POST {INTERACTION_URL} with None has returned 204", INTERACTION_TOKEN, id="ia"),
    pytest.param(f"PATCH {WEBHOOK_URL} has received {{}}", WEBHOOK_TOKEN, id="webhook-url"),
    pytest.param(
        f"POST https://discord.com/api/webhooks/123/{WEBHOOK_TOKEN}", WEBHOOK_TOKEN, id="hook"
    ),
    pytest.param(f"{{'Authorization': 'Bot {BOT_TOKEN}'}}", BOT_TOKEN, id="auth-header-repr"),
    pytest.param("Authorization: Bearer abc.DEF-123_x", "abc.DEF-123_x", id="auth-bearer"),
    pytest.param("authorization=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", id="auth-basic"),
    pytest.param("retrying with bearer Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4", id="bearer"),
    pytest.param(f"using {BOT_TOKEN} now", BOT_TOKEN, id="bare-bot-token"),
    pytest.param(f"token {INTERACTION_TOKEN}", INTERACTION_TOKEN, id="bare-interaction"),
    pytest.param(f"DISCORD_TOKEN={BOT_TOKEN}", BOT_TOKEN, id="env-token"),
    pytest.param("API_TOKEN=shortsecret1", "shortsecret1", id="env-api-token"),
    pytest.param(
        f"{{'op': 2, 'd': {{'token': '{BOT_TOKEN}', 'intents': 513}}}}", BOT_TOKEN, id="identify"
    ),
    pytest.param(
        f'{{"type": 2, "token": "{INTERACTION_TOKEN}", "id": "1"}}', INTERACTION_TOKEN, id="json"
    ),
    pytest.param('{"password": "correct horse battery"}', "horse battery", id="json-spaces"),
    pytest.param("login password=hunter2&user=bob", "hunter2", id="password-query"),
    pytest.param("smtp_passwd: pa55", "pa55", id="passwd"),
    pytest.param("client_secret=cs-9f8e7d", "cs-9f8e7d", id="client-secret"),
    pytest.param("X-Api-Key: k-123456", "k-123456", id="api-key-header"),
    pytest.param("postgresql+psycopg://bot:pg-pass@db:5432/pipebot", "pg-pass", id="db-url"),
    pytest.param("redis://:r3d1s@cache:6379/0", "r3d1s", id="redis-url-no-user"),
    pytest.param(f"jwt {JWT}", JWT, id="jwt"),
]


@pytest.mark.parametrize(("text", "secret"), SHAPES)
def test_each_secret_shape_is_masked(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert MASK in cleaned
    assert redact(cleaned) == cleaned  # idempotent: several handlers may redact one record


def test_what_is_not_secret_stays_readable() -> None:
    lines = [
        "run finished: run_id=0f3c schedule=news pipeline=news status=success duration=1.20s",
        "Shard ID None has connected to Gateway (Session ID: 5f1c).",
        "https://discord.com/api/v10/channels/123/messages has received {}",
        "author: ann, tokens used: 12",
        "401: missing bearer token",
    ]
    for line in lines:
        assert redact(line) == line
    assert redact(f"{WEBHOOK_URL}").endswith("/webhooks/987654321098765432/***/messages/@original")


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """Give tests the root logger and put its handlers and levels back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {n: logging.getLogger(n).level for n in ("discord", "apscheduler", "alembic")}
    yield root
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def capture(root: logging.Logger, log_format: str) -> io.StringIO:
    stream = io.StringIO()
    handler = make_handler(log_format)
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    return stream


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_discord_debug_records_are_redacted_in_args(
    root_logger: logging.Logger, log_format: str
) -> None:
    stream = capture(root_logger, log_format)
    http, gateway = logging.getLogger("discord.http"), logging.getLogger("discord.gateway")
    payload = '{"type":4,"data":{"content":"pong"}}'
    http.debug("%s %s with %s has returned %s", "POST", INTERACTION_URL, payload, 204)
    http.debug("%s %s has received %s", "PATCH", WEBHOOK_URL, {"id": "1"})
    event = {"t": "INTERACTION_CREATE", "d": {"token": INTERACTION_TOKEN, "id": "1"}}
    gateway.debug("For Shard ID %s: WebSocket Event: %s", None, event)
    out = stream.getvalue()
    for secret in (INTERACTION_TOKEN, WEBHOOK_TOKEN):
        assert secret not in out
    assert out.count(MASK) >= 3
    assert "pong" in out and "INTERACTION_CREATE" in out


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_tracebacks_and_stacks_are_redacted(root_logger: logging.Logger, log_format: str) -> None:
    stream = capture(root_logger, log_format)
    log = logging.getLogger("pipelines.sinks.discord")
    try:
        raise ConnectionError(f"cannot reach {WEBHOOK_URL} (token={BOT_TOKEN})")
    except ConnectionError:
        log.exception("sink failed")
    log.warning("where am I", stack_info=True)  # token=in-the-source-line-1234
    out = stream.getvalue()
    assert "ConnectionError" in out and "Traceback" in out
    assert WEBHOOK_TOKEN not in out and BOT_TOKEN not in out
    assert "in-the-source-line-1234" not in out
    assert "where am I" in out


def test_json_lines_carry_extras_redacted(root_logger: logging.Logger) -> None:
    stream = capture(root_logger, "json")
    logging.getLogger("scheduler.dispatch").info(
        "run finished: %s",
        "r1",
        extra={
            "run_id": "r1",
            "duration": 1.5,
            "target": WEBHOOK_URL,
            "headers": {"Authorization": f"Bot {BOT_TOKEN}"},
            "when": datetime(2025, 1, 1),
        },
    )
    logging.getLogger("x").warning("second line")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert {"time", "level", "logger", "message"} <= first.keys()
    assert (first["level"], first["logger"], first["message"]) == (
        "INFO",
        "scheduler.dispatch",
        "run finished: r1",
    )
    assert datetime.fromisoformat(first["time"]).utcoffset() is not None
    assert first["run_id"] == "r1" and first["duration"] == 1.5
    assert first["when"] == "2025-01-01 00:00:00"
    assert WEBHOOK_TOKEN not in lines[0] and BOT_TOKEN not in lines[0]
    assert first["headers"] == {"Authorization": f"Bot {MASK}"}
    assert json.loads(lines[1])["message"] == "second line"


def test_configure_logging_from_the_environment(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = configure_logging({"LOG_LEVEL": "debug", "LOG_FORMAT": "json"})
    assert root_logger.handlers == [handler] and root_logger.level == logging.DEBUG
    logging.getLogger("discord.http").debug("PATCH %s", WEBHOOK_URL)
    record = json.loads(capsys.readouterr().err.strip())
    assert record["logger"] == "discord.http" and WEBHOOK_TOKEN not in record["message"]
    configure_logging({"LOG_LEVEL": "chatty"})
    assert root_logger.level == logging.INFO
    assert logging.getLogger("apscheduler").level == logging.WARNING


def run_fields(message: str) -> dict[str, str]:
    """The ``key=value`` words of a run log line."""
    head, _, rest = message.partition(": ")
    words = [w.split("=", 1) for w in rest.split() if "=" in w]
    return {"event": head, **{k: v for k, v in words}}


async def test_each_run_logs_one_start_and_one_end_line(
    root_logger: logging.Logger, tmp_path: Path
) -> None:
    """A real scheduler on a SQLite file, JSON lines: schedule, pipeline, run id, status,
    duration, and the failure's secret masked."""
    stream = capture(root_logger, "json")
    url = f"sqlite:///{tmp_path / 'pipebot.db'}"
    scheduler = PipelineScheduler(SchedulerSettings(database_url=url, timezone="UTC"))

    async def ok() -> None:
        return None

    async def bad() -> None:
        raise RuntimeError("upstream said no: password=pa55w0rd-xyz")

    scheduler.register("ok", ok)
    scheduler.register("bad", bad)
    scheduler.create_schedule("nightly", "ok", cron="0 3 * * *", owner="code")
    await scheduler.astart()
    try:
        done = await scheduler.arun("nightly", requested_by="ann")
        failed = await scheduler.arun("bad")
    finally:
        await scheduler.astop(grace=1)
        dispose_engine(url)
    out = stream.getvalue()
    assert "pa55w0rd-xyz" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    for record, schedule in ((done, "nightly"), (failed, "-")):
        mine = [
            run_fields(line["message"])
            for line in lines
            if line["message"].startswith(("run started", "run finished"))
            and f"run_id={record.run_id}" in line["message"]
        ]
        assert [m["event"] for m in mine] == ["run started", "run finished"]
        for fields in mine:
            assert (fields["schedule"], fields["pipeline"]) == (schedule, record.pipeline)
        assert mine[1]["status"] == record.status
        assert mine[1]["duration"].endswith("s") and float(mine[1]["duration"][:-1]) >= 0
        structured = [
            line for line in lines if line.get("run_id") == record.run_id and "pipeline" in line
        ]
        assert [line["trigger"] for line in structured] == ["manual", "manual"]
        assert {line["schedule"] for line in structured} == {None if schedule == "-" else schedule}
        assert structured[1]["status"] == record.status
        assert structured[1]["duration_seconds"] == record.duration
    assert failed.status == "failed"
