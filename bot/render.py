"""Pure rendering: scheduler models to Discord text and embeds, within Discord's limits.

Nothing here talks to Discord or to the scheduler. Pipeline data (names, descriptions,
errors, who ran what) is escaped with ``clean`` before it reaches Markdown, and every
builder ends in ``fit_embed`` so no limit can be exceeded, whatever the data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import discord

from pipelines.sinks import discord as sink
from scheduler.models import RunRecord, ScheduleInfo

# Discord's limits (https://discord.com/developers/docs/resources/message), as the sink has them.
MESSAGE_CHARS = sink.MESSAGE_CHARS
EMBED_FIELDS = sink.EMBED_FIELDS
TITLE_CHARS = sink.TITLE_CHARS
DESCRIPTION_CHARS = sink.DESCRIPTION_CHARS
FIELD_NAME_CHARS = sink.FIELD_NAME_CHARS
FIELD_VALUE_CHARS = sink.FIELD_VALUE_CHARS
FOOTER_CHARS = sink.FOOTER_CHARS
AUTHOR_CHARS = 256
CHOICES = 25
CHOICE_CHARS = 100

JOBS_PER_PAGE = 10
PIPELINES_PER_PAGE = 10
HISTORY_ROWS = 10
ELLIPSIS = "…"
NONE = "—"

COLOUR_OK = discord.Colour.green()
COLOUR_FAIL = discord.Colour.red()
COLOUR_WARN = discord.Colour.orange()
COLOUR_INFO = discord.Colour.blurple()

STATUS_ICONS = {
    "success": "✅",
    "failed": "❌",
    "timeout": "⏱️",
    "skipped": "⏭️",
    "missed": "⚠️",
    "abandoned": "💀",
    "cancelled": "🚫",
    "running": "🔄",
}
FAILURES = frozenset({"failed", "timeout", "abandoned", "missed"})
_ACTOR = re.compile(r"^(\d{1,20}):(.*)$", re.S)


# --- text -------------------------------------------------------------------------------


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``…`` when cut."""
    if limit < 1:
        return ""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def clean(text: object, limit: int | None = None) -> str:
    """Pipeline data made inert: Markdown and mentions escaped, then cut to ``limit``."""
    value = discord.utils.escape_mentions(discord.utils.escape_markdown(str(text)))
    if limit is None:
        return value
    cut = truncate(value, limit)
    if cut.endswith("\\" + ELLIPSIS):  # do not leave a lone escape before the ellipsis
        cut = cut[:-2] + ELLIPSIS
    return cut


def code(text: object, limit: int = 20) -> str:
    """Inline code; backticks inside are replaced so they cannot close it."""
    value = str(text).replace("`", "ˋ")
    return f"`{truncate(value, max(limit - 2, 1))}`"


def code_block(text: object, limit: int = FIELD_VALUE_CHARS) -> str:
    """A fenced block holding ``text``, at most ``limit`` characters in all."""
    value = str(text).replace("```", "ˋˋˋ")
    return f"```\n{truncate(value, max(limit - 8, 1))}\n```"


def timestamp(moment: datetime | None, style: str = "R") -> str:
    """A Discord timestamp (``<t:…:R>``) that every reader sees in their own time zone."""
    if moment is None:
        return NONE
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"<t:{math.floor(moment.timestamp())}:{style}>"


def when(moment: datetime | None) -> str:
    """Absolute and relative: ``<t:…:f> (<t:…:R>)``."""
    if moment is None:
        return NONE
    return f"{timestamp(moment, 'f')} ({timestamp(moment, 'R')})"


def parse_time(value: object) -> datetime | None:
    """An ISO string or datetime from a history row, as an aware datetime."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def status_text(status: str | None) -> str:
    if status is None:
        return "never ran"
    return f"{STATUS_ICONS.get(status, '•')} {clean(status, 40)}"


def actor_text(actor: str | None) -> str:
    """``<@id>`` for ``"id:name"`` actors (no ping: mentions are off), else the name."""
    if not actor:
        return NONE
    match = _ACTOR.match(actor)
    if match is not None:
        return f"<@{match.group(1)}>"
    return clean(actor, 100)


def items_text(stages: Sequence[str], items: Sequence[int]) -> str:
    """``HttpFetch 10 → HtmlSelect 50 → JsonLinesSink 50``."""
    if not items:
        return NONE
    names = list(stages) + [f"stage {i}" for i in range(len(stages), len(items))]
    parts = [f"{clean(name, 60)} {count}" for name, count in zip(names, items, strict=False)]
    return truncate(" → ".join(parts), FIELD_VALUE_CHARS)


# --- schedules in words -------------------------------------------------------------------

_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_NAMES = {name[:3].lower(): index for index, name in enumerate(_DAYS)}
_MACROS = {
    "@hourly": "every hour, on the hour",
    "@daily": "at 00:00, every day",
    "@midnight": "at 00:00, every day",
    "@weekly": "at 00:00, on Sunday",
    "@monthly": "at 00:00, on day 1 of the month",
    "@yearly": "at 00:00, on 1 January",
    "@annually": "at 00:00, on 1 January",
}


def describe_schedule(kind: str, expression: str) -> str:
    """The schedule in words for the common shapes; ``""`` when unsure.

    Display only: the scheduler itself validates and fires the expression, and the
    exact cron is always shown next to these words.
    """
    if kind != "cron":
        return expression  # "every 15m", "at 2025-…": readable already
    text = " ".join(expression.lower().split())
    if text in _MACROS:
        return _MACROS[text]
    parts = text.split(" ")
    if len(parts) != 5 or parts[3] != "*":
        return ""
    minute, hour, dom, _, dow = parts
    time = _time_words(minute, hour)
    days = _day_words(dom, dow)
    if time is None or days is None:
        return ""
    if days == "every day" and time.startswith("every"):
        return time
    return f"{time}, {days}"


def _step(field: str) -> int | None:
    if field.startswith("*/") and field[2:].isdigit() and int(field[2:]) > 0:
        return int(field[2:])
    return None


def _time_words(minute: str, hour: str) -> str | None:
    if hour == "*":
        if minute == "*":
            return "every minute"
        if (step := _step(minute)) is not None:
            return f"every {step} minutes"
        if minute.isdigit():
            return f"every hour at :{int(minute):02d}"
        return None
    if not minute.isdigit():
        return None
    if (step := _step(hour)) is not None:
        return f"every {step} hours at :{int(minute):02d}"
    hours = hour.split(",")
    if all(h.isdigit() for h in hours) and len(hours) <= 6:
        times = [f"{int(h):02d}:{int(minute):02d}" for h in hours]
        return "at " + (
            times[0] if len(times) == 1 else ", ".join(times[:-1]) + " and " + times[-1]
        )
    return None


def _day_number(token: str) -> int | None:
    if token.isdigit() and int(token) <= 7:
        return int(token) % 7
    return _DAY_NAMES.get(token)


def _day_words(dom: str, dow: str) -> str | None:
    if dom == "*" and dow == "*":
        return "every day"
    if dow == "*":
        return f"on day {int(dom)} of the month" if dom.isdigit() else None
    if dom != "*":
        return None
    if "-" in dow and "," not in dow:
        first, _, last = dow.partition("-")
        a, b = _day_number(first), _day_number(last)
        if a is None or b is None:
            return None
        return f"{_DAYS[a]} to {_DAYS[b]}"
    days = [_day_number(token) for token in dow.split(",")]
    if any(day is None for day in days):
        return None
    names = [_DAYS[day] for day in days if day is not None]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"on {joined}"


def schedule_text(info: ScheduleInfo) -> str:
    """``at 09:00, Monday to Friday · `0 9 * * 1-5` · Europe/Stockholm``."""
    words = describe_schedule(info.type, info.expression)
    expression = code(info.expression, 120)
    head = (
        f"{clean(words, 200)} · {expression}" if words and words != info.expression else expression
    )
    return f"{head} · {clean(info.timezone, 64)}"


# --- embeds -------------------------------------------------------------------------------


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Cut ``embed`` to every per-embed limit, including the 6,000-character total."""
    if embed.title:
        embed.title = truncate(embed.title, TITLE_CHARS)
    if embed.description:
        embed.description = truncate(embed.description, DESCRIPTION_CHARS)
    fields = embed.fields[:EMBED_FIELDS]
    embed.clear_fields()
    for field in fields:
        embed.add_field(
            name=truncate(field.name or NONE, FIELD_NAME_CHARS),
            value=truncate(field.value or NONE, FIELD_VALUE_CHARS),
            inline=bool(field.inline),
        )
    if embed.footer.text:
        embed.set_footer(text=truncate(embed.footer.text, FOOTER_CHARS))
    if embed.author.name:
        embed.set_author(name=truncate(embed.author.name, AUTHOR_CHARS))
    return sink.fit_embed(embed)  # and the 6,000-character total


def page_count(total: int, per_page: int) -> int:
    """Pages needed for ``total`` rows (at least one: an empty list is one empty page)."""
    return max(1, math.ceil(total / per_page))


def page_bounds(total: int, page: int, per_page: int) -> tuple[int, int]:
    """``(start, stop)`` of page ``page`` (0-based, clamped to the existing pages)."""
    page = min(max(page, 0), page_count(total, per_page) - 1)
    start = page * per_page
    return start, min(start + per_page, total)


def choices(names: Iterable[str], current: str) -> list[discord.app_commands.Choice[str]]:
    """Up to 25 autocomplete choices: names containing ``current``, prefix matches first."""
    needle = current.strip().lower()
    scored: list[tuple[int, str]] = []
    for name in names:
        if len(name) > CHOICE_CHARS:
            continue  # a choice's value must be the whole name, and at most 100 long
        lower = name.lower()
        if not needle or needle in lower:
            scored.append((0 if lower.startswith(needle) else 1, name))
    scored.sort()
    return [discord.app_commands.Choice(name=name, value=name) for _, name in scored[:CHOICES]]


def jobs_page(
    rows: Sequence[ScheduleInfo], page: int, total: int, per_page: int = JOBS_PER_PAGE
) -> discord.Embed:
    """Page ``page`` (0-based) of ``/jobs``, showing ``rows``, of ``total`` schedules.

    ``rows`` is the page as read now: it may be shorter than ``per_page`` (or empty)
    when schedules were removed since ``total`` was counted.
    """
    pages = page_count(total, per_page)
    embed = discord.Embed(title=f"Jobs ({total})", colour=COLOUR_INFO)
    if not total:
        embed.description = "No schedules yet. Add one with `/schedule`."
    elif not rows:
        embed.description = "Nothing left on this page: schedules were removed since `/jobs`."
    for info in rows[:per_page]:
        embed.add_field(name=_job_title(info), value=_job_value(info), inline=False)
    embed.set_footer(text=f"Page {min(max(page, 0), pages - 1) + 1}/{pages}")
    return fit_embed(embed)


def _job_title(info: ScheduleInfo) -> str:
    state = "▶️" if info.enabled else "⏸️"
    return f"{state} {clean(info.name, FIELD_NAME_CHARS - 4)}"


def _job_value(info: ScheduleInfo) -> str:
    owner = f"owner {code(info.owner)}"
    if info.created_by:
        owner += f" · by {actor_text(info.created_by)}"
    bound = "" if info.bound else " · ⚠️ not bound in this process"
    lines = [
        f"pipeline {code(info.pipeline, 70)} · {owner}{bound}",
        schedule_text(info),
        f"{'enabled' if info.enabled else 'paused'} · next {timestamp(info.next_run)}"
        f" · last {timestamp(info.last_run)} {status_text(info.last_status)}",
    ]
    return truncate("\n".join(lines), FIELD_VALUE_CHARS)


def pipeline_fields(
    pipelines: Mapping[str, str],
    schedules: Iterable[ScheduleInfo],
    last_runs: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[str, str]]:
    """``(name, value)`` per pipeline for ``/pipelines``: description, its schedules (in
    words, cron, zone, next run, last status) and its last run of any trigger."""
    by_pipeline: dict[str, list[ScheduleInfo]] = {}
    for info in schedules:
        by_pipeline.setdefault(info.pipeline, []).append(info)
    last_runs = last_runs or {}
    fields = []
    for name, description in pipelines.items():
        lines = [clean(description, 300) if description else "*no description*"]
        own = by_pipeline.get(name, [])
        for info in own[:3]:
            paused = "" if info.enabled else " (paused)"
            lines.append(
                f"🕒 {schedule_text(info)}{paused}\n"
                f"next {timestamp(info.next_run)} · last {status_text(info.last_status)}"
            )
        if len(own) > 3:
            lines.append(f"…and {len(own) - 3} more schedules (`/jobs`)")
        if not own:
            lines.append("not scheduled · run it with `/run`")
        last = last_runs.get(name)
        if last is None:
            lines.append("last run: never")
        else:
            at = parse_time(last.get("started_at")) or parse_time(last.get("scheduled_for"))
            lines.append(f"last run: {status_text(str(last.get('status')))} {timestamp(at)}")
        fields.append(
            (clean(name, FIELD_NAME_CHARS), truncate("\n".join(lines), FIELD_VALUE_CHARS))
        )
    return fields


def pipelines_page(
    fields: Sequence[tuple[str, str]], page: int, per_page: int = PIPELINES_PER_PAGE
) -> discord.Embed:
    total = len(fields)
    start, stop = page_bounds(total, page, per_page)
    embed = discord.Embed(title=f"Pipelines ({total})", colour=COLOUR_INFO)
    if not total:
        embed.description = "No pipelines are configured."
    for name, value in fields[start:stop]:
        embed.add_field(name=name, value=value, inline=False)
    embed.set_footer(text=f"Page {start // per_page + 1}/{page_count(total, per_page)}")
    return fit_embed(embed)


def run_embed(record: RunRecord, ran_by: str | None = None) -> discord.Embed:
    """The result of a run: status, duration, items per stage, run id, who ran it."""
    ok = record.status == "success"
    title = f"{status_text(record.status)} · {clean(record.pipeline, 200)}"
    embed = discord.Embed(title=title, colour=COLOUR_OK if ok else COLOUR_FAIL)
    if not ok:
        embed.description = (
            f"**{clean(record.pipeline, 100)} did not succeed: {clean(record.status, 30)}.**"
        )
    embed.add_field(name="Duration", value=duration_text(record.duration), inline=True)
    embed.add_field(name="Run id", value=code(record.run_id or NONE, 40), inline=True)
    embed.add_field(name="Ran by", value=actor_text(ran_by or record.requested_by), inline=True)
    embed.add_field(
        name="Items per stage", value=items_text(record.stages, record.items), inline=False
    )
    if record.error:
        embed.add_field(name="What failed", value=code_block(record.error), inline=False)
    if record.schedule:
        embed.set_footer(text=f"schedule {record.schedule}")
    return fit_embed(embed)


def already_running_text(pipeline: str, run_id: str) -> str:
    return (
        f"⏳ {clean(pipeline, 100)} is already running (run {code(run_id[:12])}); "
        "not started again. See `/history`."
    )


def schedule_created_embed(info: ScheduleInfo, upcoming: Sequence[datetime]) -> discord.Embed:
    embed = discord.Embed(title=f"Scheduled: {clean(info.name, 200)}", colour=COLOUR_OK)
    embed.description = f"Job id {code(info.name, 110)}"
    embed.add_field(name="Pipeline", value=code(info.pipeline, 70), inline=True)
    embed.add_field(
        name="Owner", value=f"{code(info.owner)} · {actor_text(info.created_by)}", inline=True
    )
    embed.add_field(name="When", value=schedule_text(info), inline=False)
    embed.add_field(name="Next runs", value=times_text(upcoming), inline=False)
    return fit_embed(embed)


def times_text(times: Sequence[datetime]) -> str:
    if not times:
        return "never: this schedule will not fire again"
    return "\n".join(f"{i}. {when(t)}" for i, t in enumerate(times, 1))


def next_embed(
    expression: str, timezone: str, words: str, times: Sequence[datetime]
) -> discord.Embed:
    embed = discord.Embed(title="Next fire times", colour=COLOUR_INFO)
    head = f"{clean(words, 200)} · " if words and words != expression else ""
    embed.description = f"{head}{code(expression, 120)} · {clean(timezone, 64)}"
    embed.add_field(name="Upcoming", value=times_text(times), inline=False)
    return fit_embed(embed)


def history_embed(name: str, rows: Sequence[Mapping[str, Any]]) -> discord.Embed:
    embed = discord.Embed(title=f"History: {clean(name, 200)}", colour=COLOUR_INFO)
    if not rows:
        embed.description = "No runs recorded yet."
    for row in rows[:HISTORY_ROWS]:
        started = parse_time(row.get("started_at")) or parse_time(row.get("scheduled_for"))
        title = f"{status_text(str(row.get('status')))} · {timestamp(started, 'f')}"
        embed.add_field(
            name=truncate(title, FIELD_NAME_CHARS), value=_history_value(row), inline=False
        )
    return fit_embed(embed)


def _history_value(row: Mapping[str, Any]) -> str:
    run_id = code(str(row.get("run_id") or NONE)[:12])
    trigger = clean(row.get("trigger") or NONE, 20)
    lines = [
        f"{duration_text(row.get('duration_seconds'))} · {trigger}"
        f" · by {actor_text(row.get('requested_by'))} · run {run_id}",
        f"items: {items_text(row.get('stages') or (), row.get('items') or ())}",
    ]
    if row.get("error"):
        lines.append(code_block(row["error"], 500))
    return truncate("\n".join(lines), FIELD_VALUE_CHARS)


def health_embed(health: Mapping[str, Any]) -> discord.Embed:
    """``/health``: the verdict and the figures behind it."""
    status = str(health.get("status", "unknown"))
    colour = {"ok": COLOUR_OK, "degraded": COLOUR_WARN}.get(status, COLOUR_FAIL)
    embed = discord.Embed(title=f"Scheduler health: {clean(status, 40)}", colour=colour)
    for name, value, inline in _health_fields(health):
        embed.add_field(name=name, value=value, inline=inline)
    return fit_embed(embed)


def _health_fields(health: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    fields: list[tuple[str, str, bool]] = []
    jobs = health.get("jobs") or {}
    if jobs:
        counts = (jobs.get("total", 0), jobs.get("enabled", 0), jobs.get("paused", 0))
        fields.append(("Jobs", "{} total · {} enabled · {} paused".format(*counts), False))
        if jobs.get("unbound"):
            fields.append(("Not bound", clean(", ".join(jobs["unbound"]), 1000), False))
    metrics = health.get("metrics") or {}
    if metrics:
        rate = metrics.get("success_rate")
        share = f" ({rate:.0%})" if isinstance(rate, float) else ""
        mean = duration_text(metrics.get("mean_duration"))
        ran = f"{metrics.get('succeeded', 0)}/{metrics.get('window', 0)} succeeded"
        fields.append(("Recent runs", f"{ran}{share} · mean {mean}", False))
    if health.get("uptime_seconds") is not None:
        fields.append(("Uptime", duration_text(health["uptime_seconds"]), True))
    due = health.get("next_due")
    if due:
        at = timestamp(parse_time(due.get("at")))
        fields.append(("Next due", f"{clean(due.get('name'), 100)} {at}", True))
    if health.get("running_runs"):
        fields.append(
            ("Running now", clean(", ".join(sorted(health["running_runs"])), 1000), False)
        )
    problems = [str(p) for p in health.get("problems") or []]
    database = health.get("database") or {}
    if database.get("error"):
        problems.append(f"database: {database['error']}")
    if problems:
        fields.append(("Problems", clean("\n".join(problems), 1000), False))
    return fields


def alert_embed(
    *,
    status: str,
    schedule: str | None,
    pipeline: str | None,
    error: str | None,
    at: datetime | None,
    run_id: str | None = None,
    count: int = 1,
) -> discord.Embed:
    """A failed, timed-out or missed run, for the alert channel."""
    name = schedule or pipeline or "?"
    what = {"missed": "missed", "timeout": "timed out"}.get(status, status)
    times = f" ({count} instants)" if count > 1 else ""
    embed = discord.Embed(
        title=f"{status_text(status)} · {clean(name, 150)} {what}{times}", colour=COLOUR_FAIL
    )
    if pipeline and pipeline != name:
        embed.add_field(name="Pipeline", value=code(pipeline, 70), inline=True)
    if at is not None:
        embed.add_field(
            name="Scheduled for" if status == "missed" else "When", value=when(at), inline=True
        )
    if run_id:
        embed.add_field(name="Run id", value=code(run_id, 40), inline=True)
    if error:
        embed.add_field(
            name="What failed" if status != "missed" else "Why",
            value=code_block(error),
            inline=False,
        )
    return fit_embed(embed)


def audit_text(actor: str, action: str, target: str, detail: str = "") -> str:
    tail = f" · {clean(detail, 300)}" if detail else ""
    return truncate(
        f"📝 {actor_text(actor)} {clean(action, 40)} {code(target, 110)}{tail}", MESSAGE_CHARS
    )
