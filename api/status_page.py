"""The status page at ``GET /`` and the run charts at ``/charts/runs/{pipeline}.svg|.png``.

Server-rendered HTML with inline CSS and inline SVG: no scripts, no external assets,
readable on a phone. Everything that comes from pipelines, schedules or errors is
HTML-escaped, and error texts are passed through the log redaction first.
``read_snapshot`` does the (blocking) reads; ``render_page`` is a pure function of
what it read and the current time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from pipebot.logs import redact
from scheduler.errors import SchedulerError
from scheduler.models import FAILURE_STATUSES, RunRecord, ScheduleInfo
from scheduler.service import PipelineScheduler

from .charts import (
    STATUS_COLOURS,
    duration_chart_png,
    duration_chart_svg,
    format_duration,
    run_time,
    status_colour,
)
from .offload import Offload, app_offload

logger = logging.getLogger(__name__)
T = TypeVar("T")

RUNS_SHOWN = 50
"""Runs per pipeline in the strip and the chart."""
FAILURES_SHOWN = 10
MAX_PIPELINES = 100
SCHEDULES_SHOWN = 100
"""Schedules in the table: the next due first, paused ones last (the API lists them all)."""
ERROR_CHARS = 1500
INLINE_CHART_SIZE = (420, 200)
"""Phone-sized: the chart's 12 px text stays readable at the width of a phone's card."""
REFRESH_SECONDS = 60


@dataclass(frozen=True, slots=True)
class PipelineRuns:
    """A pipeline and its latest runs, newest first."""

    name: str
    description: str
    runs: tuple[RunRecord, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the page shows, read in one go."""

    health: str
    schedules: tuple[ScheduleInfo, ...]
    pipelines: tuple[PipelineRuns, ...]
    failures: tuple[RunRecord, ...]
    hidden_pipelines: int = 0
    hidden_schedules: int = 0


def read_snapshot(scheduler: PipelineScheduler) -> Snapshot:
    """Read schedules, recent runs and failures (blocking: call it in a thread)."""
    health = scheduler.status()
    schedules, total = scheduler.upcoming(SCHEDULES_SHOWN)
    described = scheduler.pipelines()
    names = sorted(set(described) | {s.pipeline for s in schedules})
    pipelines = tuple(
        PipelineRuns(
            name,
            described.get(name, ""),
            tuple(scheduler.get_runs(pipeline=name, limit=RUNS_SHOWN)),
        )
        for name in names[:MAX_PIPELINES]
    )
    failures = [
        run
        for status in FAILURE_STATUSES
        for run in scheduler.get_runs(status=status, limit=FAILURES_SHOWN)
    ]
    failures.sort(key=run_time, reverse=True)
    return Snapshot(
        health=health,
        schedules=tuple(schedules),
        pipelines=pipelines,
        failures=tuple(failures[:FAILURES_SHOWN]),
        hidden_pipelines=max(len(names) - MAX_PIPELINES, 0),
        hidden_schedules=total - len(schedules),
    )


def setup_status_page(app: web.Application, scheduler: PipelineScheduler) -> None:
    """Serve ``GET /`` and the run charts of each pipeline as SVG and PNG."""
    offload = app_offload(app)

    async def index(request: web.Request) -> web.Response:
        try:
            snapshot = await offload(read_snapshot, scheduler)
        except SchedulerError as exc:
            logger.warning("status page: %s", exc)
            return web.Response(
                text=render_unavailable(str(exc)), content_type="text/html", status=503
            )
        page = render_page(snapshot, datetime.now(UTC))
        return web.Response(text=page, content_type="text/html", headers=_NO_STORE)

    async def svg(request: web.Request) -> web.Response:
        name = request.match_info["pipeline"]
        text = await _chart(
            scheduler, offload, name, lambda runs: duration_chart_svg(runs, title=name)
        )
        return web.Response(text=text, content_type="image/svg+xml", headers=_NO_STORE)

    async def png(request: web.Request) -> web.Response:
        name = request.match_info["pipeline"]
        body = await _chart(
            scheduler, offload, name, lambda runs: duration_chart_png(runs, title=name)
        )
        return web.Response(body=body, content_type="image/png", headers=_NO_STORE)

    app.router.add_get("/", index)
    app.router.add_get("/charts/runs/{pipeline}.svg", svg)
    app.router.add_get("/charts/runs/{pipeline}.png", png)


_NO_STORE = {"Cache-Control": "no-store"}


async def _chart(
    scheduler: PipelineScheduler,
    offload: Offload,
    pipeline: str,
    draw: Callable[[list[RunRecord]], T],
) -> T:
    def work() -> T | None:
        runs = scheduler.get_runs(pipeline=pipeline, limit=RUNS_SHOWN)
        if not runs and pipeline not in scheduler.pipelines():
            return None
        return draw(runs)

    try:
        result = await offload(work)
    except SchedulerError as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from exc
    if result is None:
        raise web.HTTPNotFound(text=f"no pipeline named {pipeline!r}")
    return result


# --- rendering --------------------------------------------------------------------------------


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #202124; background: #f1f3f4; }
header, main { max-width: 960px; margin: 0 auto; padding: 12px 14px; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 12px; }
h1 { font-size: 1.4rem; margin: 0; }
h2 { font-size: 1.1rem; margin: 22px 0 8px; }
h3 { font-size: 1rem; margin: 0 0 4px; overflow-wrap: anywhere; }
.muted { color: #5f6368; font-size: .85rem; }
.badge { padding: 1px 9px; border-radius: 10px; color: #fff; font-weight: 600; }
.badge.ok { background: #1e8e3e; } .badge.degraded { background: #e8710a; }
.badge.down, .badge.unknown { background: #d93025; }
.card { background: #fff; border-radius: 8px; padding: 12px; margin: 0 0 12px;
  box-shadow: 0 1px 2px rgba(0,0,0,.12); }
table { width: 100%; border-collapse: collapse; background: #fff; border-radius: 8px;
  box-shadow: 0 1px 2px rgba(0,0,0,.12); }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid #e8eaed;
  vertical-align: top; overflow-wrap: anywhere; }
th { font-size: .8rem; color: #5f6368; font-weight: 600; }
code { font-size: .85rem; }
td code { white-space: nowrap; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
  margin-right: 4px; }
.strip { display: flex; gap: 2px; height: 22px; margin: 8px 0; }
.strip .run { flex: 1 1 0; min-width: 2px; max-width: 14px; border-radius: 2px; }
svg.chart { display: block; width: 100%; max-width: 560px; height: auto; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #fce8e6; padding: 8px;
  border-radius: 6px; margin: 6px 0 0; font-size: .8rem; max-height: 12em; overflow: auto; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 12px; font-size: .8rem; }
a { color: #1a73e8; }
@media (max-width: 640px) {
  table, thead, tbody, tr, td { display: block; }
  thead { display: none; }
  tr { border-bottom: 1px solid #dadce0; padding: 6px 0; }
  td { border: 0; padding: 2px 12px; }
  td::before { content: attr(data-label) ": "; color: #5f6368; font-size: .8rem; }
}
"""


def _status_css() -> str:
    rules = [f".s-{name} {{ background: {colour}; }}" for name, colour in STATUS_COLOURS.items()]
    rules.append(f".s-unknown {{ background: {status_colour('')}; }}")
    return "\n".join(rules)


def render_page(snapshot: Snapshot, now: datetime) -> str:
    """The whole status page as an HTML document."""
    health = snapshot.health if snapshot.health in ("ok", "degraded", "down") else "unknown"
    body = [
        "<header>",
        "<h1>pipebot</h1>",
        f'<span class="badge {health}" id="health">{escape(snapshot.health)}</span>',
        f'<span class="muted">as of {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC</span>',
        "</header>",
        "<main>",
        _schedules_section(snapshot.schedules, now, snapshot.hidden_schedules),
        _pipelines_section(snapshot),
        _failures_section(snapshot.failures),
        _legend(),
        "</main>",
    ]
    return _document("pipebot status", "\n".join(body))


def render_unavailable(reason: str) -> str:
    """The page shown when the database cannot be read."""
    body = (
        '<main><h1>pipebot</h1><p><span class="badge down">down</span> '
        f"The schedule store cannot be read.</p><pre>{escape(redact(reason))}</pre></main>"
    )
    return _document("pipebot status: unavailable", body)


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">\n'
        f"<title>{escape(title)}</title>\n"
        f"<style>{_CSS}\n{_status_css()}\n</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _schedules_section(schedules: Sequence[ScheduleInfo], now: datetime, hidden: int = 0) -> str:
    if not schedules:
        return '<h2>Schedules</h2>\n<p class="card muted" id="schedules">No schedules.</p>'
    rows = []
    for info in schedules:
        last = (
            "never"
            if info.last_status is None
            else f'<span class="dot s-{_css_status(info.last_status)}"></span>'
            f"{escape(info.last_status)}"
        )
        rows.append(
            f'<tr data-schedule="{escape(info.name)}">'
            f'<td data-label="Schedule"><strong>{escape(info.name)}</strong></td>'
            f'<td data-label="Pipeline">{escape(info.pipeline)}</td>'
            f'<td data-label="When"><code>{escape(info.expression)}</code></td>'
            f'<td data-label="Next run">{_next_run(info, now)}</td>'
            f'<td data-label="Last">{last}</td></tr>'
        )
    more = (
        f'\n<p class="muted" id="more-schedules">{hidden} more, due later or paused: '
        '<a href="api/schedules">GET /api/schedules</a> lists them all.</p>'
        if hidden
        else ""
    )
    return (
        "<h2>Schedules</h2>\n"
        '<table id="schedules"><thead><tr><th>Schedule</th><th>Pipeline</th><th>When</th>'
        "<th>Next run</th><th>Last</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>"
        + more
    )


def _next_run(info: ScheduleInfo, now: datetime) -> str:
    zone = _zone(info.timezone)
    if not info.enabled:
        return "paused"
    if info.next_run is None:
        return "none"
    local = info.next_run.astimezone(zone)
    when = f"{local:%a %d %b %H:%M} {local.tzname() or ''}".strip()
    seconds = (info.next_run - now).total_seconds()
    return (
        f'<time datetime="{info.next_run.isoformat()}">{escape(when)}</time> '
        f'<span class="muted">({escape(info.timezone)}, {_relative(seconds)})</span>'
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _relative(seconds: float) -> str:
    if seconds < 0:
        return "due now"
    if seconds < 90:
        return f"in {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"in {seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"in {seconds / 3600:.1f} h"
    return f"in {seconds / 86400:.1f} days"


def _pipelines_section(snapshot: Snapshot) -> str:
    parts = ["<h2>Pipelines</h2>"]
    if not snapshot.pipelines:
        parts.append('<p class="card muted">No pipelines.</p>')
    for pipeline in snapshot.pipelines:
        parts.append(_pipeline_card(pipeline))
    if snapshot.hidden_pipelines:
        parts.append(f'<p class="muted">{snapshot.hidden_pipelines} more not shown.</p>')
    return "\n".join(parts)


def _pipeline_card(pipeline: PipelineRuns) -> str:
    oldest_first = list(reversed(pipeline.runs))
    cells = "".join(
        f'<span class="run s-{_css_status(r.status)}" title="{escape(_run_title(r))}"></span>'
        for r in oldest_first
    )
    link = f"charts/runs/{quote(pipeline.name, safe='')}.png"
    description = (
        f'<div class="muted">{escape(pipeline.description)}</div>' if pipeline.description else ""
    )
    return (
        f'<section class="card pipeline" data-pipeline="{escape(pipeline.name)}">'
        f"<h3>{escape(pipeline.name)}</h3>{description}"
        f'<div class="strip" role="img" aria-label="last {len(oldest_first)} runs, '
        f'oldest first">{cells}</div>\n'
        f"{_inline_chart(pipeline.runs)}\n"
        f'<div class="muted"><a href="{escape(link)}">PNG</a></div></section>'
    )


def _inline_chart(runs: Sequence[RunRecord]) -> str:
    width, height = INLINE_CHART_SIZE
    return duration_chart_svg(runs, title="Run durations", width=width, height=height, legend=False)


def _run_title(run: RunRecord) -> str:
    when = run_time(run).astimezone(UTC)
    return f"{when:%Y-%m-%d %H:%M} UTC {run.status} {format_duration(run.duration)}"


def _failures_section(failures: Sequence[RunRecord]) -> str:
    if not failures:
        return '<h2>Recent failures</h2>\n<p class="card muted" id="failures">None.</p>'
    items = []
    for run in failures:
        error = redact(run.error or "(no error recorded)")
        if len(error) > ERROR_CHARS:
            error = error[:ERROR_CHARS] + " …"
        when = run_time(run).astimezone(UTC)
        items.append(
            f'<div class="card failure" data-run="{escape(run.run_id)}">'
            f'<span class="dot s-{_css_status(run.status)}"></span>'
            f"<strong>{escape(run.pipeline)}</strong> {escape(run.status)} "
            f'<span class="muted">{when:%Y-%m-%d %H:%M} UTC'
            f"{escape(f', schedule {run.schedule}') if run.schedule else ''}</span>"
            f"<pre>{escape(error)}</pre></div>"
        )
    return '<h2>Recent failures</h2>\n<div id="failures">\n' + "\n".join(items) + "\n</div>"


def _legend() -> str:
    entries = "".join(
        f'<span><span class="dot s-{status}"></span>{status}</span>' for status in STATUS_COLOURS
    )
    return f'<h2>Legend</h2>\n<div class="legend">{entries}</div>'


def _css_status(status: str) -> str:
    return status if status in STATUS_COLOURS else "unknown"
