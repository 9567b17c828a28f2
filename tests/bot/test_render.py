"""render: Discord's limits, truncation, escaping, timestamps, pages, words for cron."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import discord
import pytest

from bot import render
from pipelines.sinks.discord import EMBED_TOTAL_CHARS
from scheduler.models import Policies, RunRecord, ScheduleInfo

T0 = datetime(2025, 3, 30, 1, 30, tzinfo=UTC)


def info(name: str = "news", **changes: object) -> ScheduleInfo:
    values: dict[str, object] = {
        "name": name,
        "pipeline": "news",
        "type": "cron",
        "expression": "0 9 * * 1-5",
        "timezone": "Europe/Stockholm",
        "enabled": True,
        "owner": "chat",
        "next_run": T0,
        "last_run": T0 - timedelta(days=1),
        "last_status": "success",
        "created_by": "42:ann",
        "policies": Policies(),
    }
    values.update(changes)
    return ScheduleInfo(**values)  # type: ignore[arg-type]


def embed_ok(embed: discord.Embed) -> None:
    """Every per-embed limit holds."""
    assert len(embed) <= EMBED_TOTAL_CHARS
    assert len(embed.title or "") <= render.TITLE_CHARS
    assert len(embed.description or "") <= render.DESCRIPTION_CHARS
    assert len(embed.fields) <= render.EMBED_FIELDS
    for field in embed.fields:
        assert 0 < len(field.name or "") <= render.FIELD_NAME_CHARS
        assert 0 < len(field.value or "") <= render.FIELD_VALUE_CHARS
    assert len(embed.footer.text or "") <= render.FOOTER_CHARS


# --- text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("eleven chars", 11, "eleven cha…"),
        ("abc", 1, "…"),
        ("abc", 0, ""),
        ("word  then", 6, "word…"),
    ],
)
def test_truncate(text: str, limit: int, expected: str) -> None:
    assert render.truncate(text, limit) == expected
    assert len(render.truncate(text, limit)) <= max(limit, 0)


def test_clean_escapes_markdown_and_mentions() -> None:
    text = render.clean("**bold** _x_ @everyone <@123> `code` ||spoiler||")
    assert "**" not in text.replace("\\*", "")
    assert "@everyone" not in text  # a zero-width space breaks it
    assert "\\_x\\_" in text
    assert "\\`code\\`" in text


def test_clean_cuts_without_a_dangling_escape() -> None:
    text = render.clean("a" * 5 + "*" * 10, 8)
    assert len(text) <= 8
    assert text.endswith(render.ELLIPSIS)
    assert not text.endswith("\\" + render.ELLIPSIS)


def test_code_and_code_block_cannot_be_closed_early() -> None:
    assert render.code("a`b") == "`aˋb`"
    assert len(render.code("x" * 500, 20)) == 20
    block = render.code_block("```\n@everyone```" + "y" * 3000, 300)
    assert block.startswith("```\n") and block.endswith("\n```")
    assert block.count("```") == 2
    assert len(block) <= 300


def test_timestamps() -> None:
    epoch = int(T0.timestamp())
    assert render.timestamp(T0) == f"<t:{epoch}:R>"
    assert render.timestamp(T0, "F") == f"<t:{epoch}:F>"
    assert render.timestamp(T0.replace(tzinfo=None)) == f"<t:{epoch}:R>"  # naive = UTC
    other_zone = T0.astimezone(timezone(timedelta(hours=5)))
    assert render.timestamp(other_zone) == f"<t:{epoch}:R>"
    assert render.timestamp(None) == render.NONE
    assert render.when(T0) == f"<t:{epoch}:f> (<t:{epoch}:R>)"


def test_parse_time_and_durations() -> None:
    assert render.parse_time(T0.isoformat()) == T0
    assert render.parse_time("nonsense") is None
    assert render.parse_time(None) is None
    assert render.duration_text(1.234) == "1.23 s"
    assert render.duration_text(125) == "2 min 5 s"
    assert render.duration_text(3 * 3600 + 60) == "3 h 1 min"
    assert render.duration_text(None) == render.NONE


def test_actor_text_never_pings_and_escapes_names() -> None:
    assert render.actor_text("42:ann") == "<@42>"
    assert render.actor_text("cli") == "cli"
    assert render.actor_text("@everyone") != "@everyone"
    assert render.actor_text(None) == render.NONE


def test_items_text() -> None:
    assert render.items_text(("HttpFetch", "Html_Select"), (10, 50)) == (
        "HttpFetch 10 → Html\\_Select 50"
    )
    assert render.items_text((), (3,)) == "stage 0 3"
    assert render.items_text((), ()) == render.NONE


# --- cron in words ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 9 * * 1-5", "at 09:00, Monday to Friday"),
        ("0 9 * * mon-fri", "at 09:00, Monday to Friday"),
        ("30 2 * * *", "at 02:30, every day"),
        ("*/15 * * * *", "every 15 minutes"),
        ("* * * * *", "every minute"),
        ("5 * * * *", "every hour at :05"),
        ("0 */6 * * *", "every 6 hours at :00"),
        ("0 9,17 * * *", "at 09:00 and 17:00, every day"),
        ("0 0 1 * *", "at 00:00, on day 1 of the month"),
        ("0 8 * * 0,6", "at 08:00, on Sunday and Saturday"),
        ("0 8 * * 7", "at 08:00, on Sunday"),
        ("@daily", "at 00:00, every day"),
        ("0 0 1 1 *", ""),  # months: not described, the cron is shown
        ("0 9-17 * * *", ""),
        ("not a cron", ""),
    ],
)
def test_describe_cron(expression: str, words: str) -> None:
    assert render.describe_schedule("cron", expression) == words


def test_describe_interval_is_the_expression() -> None:
    assert render.describe_schedule("interval", "every 15m") == "every 15m"


def test_schedule_text_shows_words_cron_and_zone() -> None:
    text = render.schedule_text(info())
    assert text == "at 09:00, Monday to Friday · `0 9 * * 1-5` · Europe/Stockholm"


# --- embeds and messages ------------------------------------------------------------------


def test_fit_embed_enforces_every_limit() -> None:
    embed = discord.Embed(title="t" * 1000, description="d" * 10_000)
    for i in range(40):
        embed.add_field(name=f"n{i}" * 200, value="v" * 5000)
    embed.set_footer(text="f" * 5000)
    embed.set_author(name="a" * 1000)
    fitted = render.fit_embed(embed)
    embed_ok(fitted)
    assert fitted.title is not None and fitted.title.endswith(render.ELLIPSIS)


def test_pages() -> None:
    assert render.page_count(0, 10) == 1
    assert render.page_count(10, 10) == 1
    assert render.page_count(11, 10) == 2
    assert render.page_bounds(25, 0, 10) == (0, 10)
    assert render.page_bounds(25, 2, 10) == (20, 25)
    assert render.page_bounds(25, 99, 10) == (20, 25)
    assert render.page_bounds(25, -3, 10) == (0, 10)
    assert render.page_bounds(0, 0, 10) == (0, 0)


def test_choices_limits_and_order() -> None:
    names = [f"job-{i:03d}" for i in range(100)] + ["x" * 101, "alpha-job"]
    found = render.choices(names, "")
    assert len(found) == render.CHOICES
    assert all(len(c.name) <= render.CHOICE_CHARS for c in found)
    assert "x" * 101 not in [c.value for c in render.choices(names, "x")]
    ranked = [c.value for c in render.choices(["my-job", "job-a", "JOB-b"], "job")]
    assert ranked == ["JOB-b", "job-a", "my-job"]  # prefix matches first, case-insensitive


def test_jobs_page_renders_the_page_it_is_given() -> None:
    rows = [info(f"job-{i:05d}", enabled=i % 2 == 0) for i in range(9_990, 10_000)]
    last = render.jobs_page(rows, 999, 10_000)
    embed_ok(last)
    assert last.title == "Jobs (10000)"
    assert len(last.fields) == render.JOBS_PER_PAGE
    assert last.footer.text == "Page 1000/1000"
    assert last.fields[-1].name == "⏸️ job-09999"
    value = last.fields[0].value or ""
    assert "owner `chat`" in value and "<@42>" in value and "Europe/Stockholm" in value
    assert f"<t:{int(T0.timestamp())}:R>" in value
    first = render.jobs_page(rows + rows, 0, 10_000)  # never more than a page of rows
    assert len(first.fields) == render.JOBS_PER_PAGE
    assert first.footer.text == "Page 1/1000"


def test_jobs_page_whose_rows_were_removed_meanwhile() -> None:
    short = render.jobs_page([info("job-1")], 2, 30)
    assert short.footer.text == "Page 3/3" and len(short.fields) == 1
    assert short.description is None
    empty = render.jobs_page([], 2, 30)
    assert empty.footer.text == "Page 3/3" and not empty.fields
    assert empty.description is not None and "removed" in empty.description


def test_jobs_page_escapes_hostile_data() -> None:
    hostile = info(
        "**boom** @everyone " + "n" * 400,
        pipeline="p`x",
        timezone="UTC",
        created_by="@here",
        expression="`" * 300,
    )
    embed = render.jobs_page([hostile], 0, 1)
    embed_ok(embed)
    text = (embed.fields[0].name or "") + (embed.fields[0].value or "")
    assert "@everyone" not in text and "@here" not in text
    assert "**boom**" not in text


def test_empty_jobs_page() -> None:
    embed = render.jobs_page([], 0, 0)
    assert embed.description is not None and "/schedule" in embed.description
    assert embed.footer.text == "Page 1/1"


def test_pipeline_fields_and_pages() -> None:
    pipelines = {f"p{i}": f"description {i}" for i in range(30)}
    schedules = [info(f"s{i}", pipeline="p0") for i in range(5)]
    last = {"p1": {"status": "failed", "started_at": T0.isoformat()}}
    fields = render.pipeline_fields(pipelines, schedules, last)
    assert len(fields) == 30
    assert "…and 2 more schedules" in fields[0][1]
    assert "not scheduled" in fields[1][1]
    assert fields[1][1].endswith(f"last run: ❌ failed <t:{int(T0.timestamp())}:R>")
    assert fields[2][1].endswith("last run: never")
    page = render.pipelines_page(fields, 2)
    embed_ok(page)
    assert page.footer.text == "Page 3/3"


def test_run_embed_success_and_failure() -> None:
    ok = RunRecord(
        run_id="abc123def456789",
        schedule=None,
        pipeline="news",
        trigger="chat",
        status="success",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3.5),
        requested_by="42:ann",
        items=(3, 2),
        stages=("Fetch", "Sink"),
    )
    embed = render.run_embed(ok)
    embed_ok(embed)
    assert embed.colour == render.COLOUR_OK
    values = {f.name: f.value for f in embed.fields}
    assert values["Duration"] == "3.50 s"
    assert values["Ran by"] == "<@42>"
    assert values["Items per stage"] == "Fetch 3 → Sink 2"
    failed = RunRecord(
        run_id="r2",
        schedule="news-1",
        pipeline="news",
        trigger="chat",
        status="failed",
        started_at=T0,
        finished_at=T0,
        error="stage 1 (HtmlSelect): ValueError: " + "e" * 3000,
    )
    embed = render.run_embed(failed)
    embed_ok(embed)
    assert embed.colour == render.COLOUR_FAIL
    assert "success" not in (embed.title or "") + (embed.description or "")
    assert "did not succeed" in (embed.description or "")
    what = {f.name: f.value for f in embed.fields}["What failed"] or ""
    assert "stage 1 (HtmlSelect): ValueError" in what


def test_schedule_created_and_next_embeds() -> None:
    upcoming = [T0 + timedelta(days=i) for i in range(3)]
    embed = render.schedule_created_embed(info("news-ab12cd"), upcoming)
    embed_ok(embed)
    assert "`news-ab12cd`" in (embed.description or "")
    times = {f.name: f.value for f in embed.fields}["Next runs"] or ""
    assert times.count("<t:") == 6
    empty = render.next_embed("0 0 30 2 *", "UTC", "", [])
    assert "never" in (empty.fields[0].value or "")


def test_history_embed() -> None:
    rows = [
        {
            "run_id": f"run{i:020d}",
            "status": "failed" if i % 2 else "success",
            "started_at": T0.isoformat(),
            "scheduled_for": None,
            "trigger": "schedule",
            "requested_by": None,
            "duration_seconds": 1.5,
            "items": [1, 2],
            "stages": ["A", "B"],
            "error": "boom " * 400 if i % 2 else None,
        }
        for i in range(15)
    ]
    embed = render.history_embed("news", rows)
    embed_ok(embed)
    assert len(embed.fields) == render.HISTORY_ROWS
    assert render.history_embed("news", []).description == "No runs recorded yet."


def test_health_embed() -> None:
    health = {
        "status": "degraded",
        "uptime_seconds": 3600.0,
        "jobs": {"total": 3, "enabled": 2, "paused": 1, "unbound": ["x"]},
        "metrics": {"window": 10, "succeeded": 9, "success_rate": 0.9, "mean_duration": 1.0},
        "next_due": {"name": "news", "at": T0.isoformat()},
        "running_runs": {"news": ["r1"]},
        "problems": ["ledger: slow"],
        "database": {"url": "sqlite:///x"},
    }
    embed = render.health_embed(health)
    embed_ok(embed)
    assert embed.colour == render.COLOUR_WARN
    names = [f.name for f in embed.fields]
    assert names == [
        "Jobs",
        "Not bound",
        "Recent runs",
        "Uptime",
        "Next due",
        "Running now",
        "Problems",
    ]
    down = render.health_embed(
        {"status": "down", "database": {"reachable": False, "error": "gone"}}
    )
    assert down.colour == render.COLOUR_FAIL
    assert "database: gone" in (down.fields[0].value or "")


def test_alert_and_audit_text() -> None:
    embed = render.alert_embed(
        status="missed", schedule="news", pipeline="news", error="late", at=T0, count=3
    )
    embed_ok(embed)
    assert "missed (3 instants)" in (embed.title or "")
    text = render.audit_text("42:ann", "removed", "job-1", "why @everyone")
    assert text.startswith("📝 <@42> removed `job-1`")
    assert "@everyone" not in text
