"""Run-duration charts: one layout, drawn as SVG (status page) or PNG (Discord).

``chart_layout`` turns runs into plain geometry once, so the SVG and the PNG show the
same bars. Bars are in time order, oldest on the left, coloured by status; a run
without a duration (missed, skipped, still running) is a short stub. The PNG is drawn
with Pillow's primitives and its bundled font: no system fonts, no network.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from PIL import Image, ImageDraw, ImageFont

from scheduler.models import RunRecord

STATUS_COLOURS: dict[str, str] = {
    "success": "#1e8e3e",
    "failed": "#d93025",
    "timeout": "#e8710a",
    "skipped": "#9aa0a6",
    "missed": "#9aa0a6",
    "running": "#1a73e8",
    "abandoned": "#3c4043",
    "cancelled": "#3c4043",
}
"""Status → colour, shared by the charts and the status page's strips."""
UNKNOWN_COLOUR = "#bdc1c6"
WIDTH, HEIGHT = 800, 360
STUB = 4.0
"""Height in pixels of the bar of a run without a duration."""
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 60.0, 16.0, 48.0, 30.0
_TEXT, _MUTED, _GRID = "#202124", "#5f6368", "#e8eaed"
_EPOCH = datetime.min.replace(tzinfo=UTC)

Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


@dataclass(frozen=True, slots=True)
class Bar:
    """One run: a rectangle in pixels, its colour and a tooltip."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str


@dataclass(frozen=True, slots=True)
class Tick:
    """A horizontal grid line on the duration axis."""

    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Layout:
    """Everything a renderer draws, in pixels."""

    width: int
    height: int
    title: str
    left: float
    top: float
    right: float
    bottom: float
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    first: str
    """Label under the left end of the time axis (the oldest run)."""
    last: str
    legend: tuple[tuple[str, str], ...]
    """(status, colour) of each status present, in ``STATUS_COLOURS`` order."""
    note: str
    """Shown in the middle of an empty chart."""


def status_colour(status: str) -> str:
    return STATUS_COLOURS.get(status, UNKNOWN_COLOUR)


def format_duration(seconds: float | None) -> str:
    """``850ms``, ``12.5s``, ``3m 20s``, ``2h 05m``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def run_time(run: RunRecord) -> datetime:
    """When a run happened, for ordering: its start, else its scheduled or end time."""
    return run.started_at or run.scheduled_for or run.finished_at or _EPOCH


def chart_layout(
    runs: Sequence[RunRecord],
    *,
    title: str = "Run durations",
    width: int = WIDTH,
    height: int = HEIGHT,
    legend: bool = True,
) -> Layout:
    """Bars for ``runs`` (any order) scaled to the longest duration."""
    ordered = sorted(runs, key=run_time)
    left, right = _MARGIN_LEFT, width - _MARGIN_RIGHT
    top, bottom = _MARGIN_TOP, height - _MARGIN_BOTTOM
    longest = max((d for r in ordered if (d := r.duration) is not None), default=0.0)
    step, ceiling = _scale(longest)
    plot = bottom - top

    slot = (right - left) / max(len(ordered), 1)
    bar_width = max(min(slot * 0.8, 28.0), 1.0)
    bars = []
    for index, run in enumerate(ordered):
        duration = run.duration
        size = STUB if duration is None else max(duration / ceiling * plot, 1.5)
        bars.append(
            Bar(
                x=left + index * slot + (slot - bar_width) / 2,
                y=bottom - size,
                width=bar_width,
                height=size,
                colour=status_colour(run.status),
                label=_tooltip(run),
            )
        )
    count = round(ceiling / step)
    ticks = tuple(
        Tick(y=bottom - i * step / ceiling * plot, label=format_duration(i * step) if i else "0")
        for i in range(count + 1)
    )
    present = {r.status for r in ordered} if legend else set()
    keys = tuple((s, c) for s, c in STATUS_COLOURS.items() if s in present)
    keys += tuple((s, UNKNOWN_COLOUR) for s in sorted(present - STATUS_COLOURS.keys()))
    return Layout(
        width=width,
        height=height,
        title=title,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        bars=tuple(bars),
        ticks=ticks,
        first=_axis_time(ordered[0]) if ordered else "",
        last=_axis_time(ordered[-1]) if len(ordered) > 1 else "",
        legend=keys,
        note="" if ordered else "no runs yet",
    )


def duration_chart_svg(
    runs: Sequence[RunRecord],
    *,
    title: str = "Run durations",
    width: int = WIDTH,
    height: int = HEIGHT,
    legend: bool = True,
) -> str:
    """The chart as an ``<svg>`` element (no XML prolog: it can be inlined in HTML)."""
    layout = chart_layout(runs, title=title, width=width, height=height, legend=legend)
    return render_svg(layout)


def duration_chart_png(
    runs: Sequence[RunRecord],
    *,
    title: str = "Run durations",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """The chart as PNG bytes."""
    return render_png(chart_layout(runs, title=title, width=width, height=height))


def history_chart_png(records: list[RunRecord], title: str) -> bytes:
    """The chart the bot attaches to ``/history`` (800x360 PNG)."""
    return duration_chart_png(records, title=title)


# --- SVG ------------------------------------------------------------------------------------


def render_svg(layout: Layout) -> str:
    """An SVG document for ``layout``; every text is escaped."""
    w, h = layout.width, layout.height
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" role="img" font-family="sans-serif" font-size="12">',
        f"<title>{escape(layout.title)}</title>",
        f'<rect width="{w}" height="{h}" fill="#ffffff"/>',
        f'<text x="{layout.left:.1f}" y="22" font-size="15" font-weight="bold" '
        f'fill="{_TEXT}">{escape(layout.title)}</text>',
    ]
    for tick in layout.ticks:
        parts.append(
            f'<line x1="{layout.left:.1f}" y1="{tick.y:.1f}" x2="{layout.right:.1f}" '
            f'y2="{tick.y:.1f}" stroke="{_GRID}"/>'
            f'<text x="{layout.left - 6:.1f}" y="{tick.y + 4:.1f}" text-anchor="end" '
            f'fill="{_MUTED}">{escape(tick.label)}</text>'
        )
    for bar in layout.bars:
        parts.append(
            f'<rect class="bar" x="{bar.x:.1f}" y="{bar.y:.1f}" width="{bar.width:.1f}" '
            f'height="{bar.height:.1f}" fill="{bar.colour}"><title>{escape(bar.label)}</title>'
            "</rect>"
        )
    parts.append(
        f'<line x1="{layout.left:.1f}" y1="{layout.bottom:.1f}" x2="{layout.right:.1f}" '
        f'y2="{layout.bottom:.1f}" stroke="{_MUTED}"/>'
    )
    below = layout.bottom + 18
    if layout.first:
        parts.append(
            f'<text x="{layout.left:.1f}" y="{below:.1f}" fill="{_MUTED}">'
            f"{escape(layout.first)}</text>"
        )
    if layout.last:
        parts.append(
            f'<text x="{layout.right:.1f}" y="{below:.1f}" text-anchor="end" fill="{_MUTED}">'
            f"{escape(layout.last)}</text>"
        )
    if layout.note:
        middle_x, middle_y = (layout.left + layout.right) / 2, (layout.top + layout.bottom) / 2
        parts.append(
            f'<text x="{middle_x:.1f}" y="{middle_y:.1f}" text-anchor="middle" '
            f'fill="{_MUTED}">{escape(layout.note)}</text>'
        )
    for x, status, colour in _legend_positions(layout, lambda text: 7.0 * len(text)):
        parts.append(
            f'<rect x="{x:.1f}" y="30" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14:.1f}" y="39" fill="{_MUTED}">{escape(status)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


# --- PNG ------------------------------------------------------------------------------------


def render_png(layout: Layout) -> bytes:
    """PNG bytes for ``layout``, drawn with Pillow."""
    image = Image.new("RGB", (layout.width, layout.height), "#ffffff")
    draw = ImageDraw.Draw(image)
    font, title_font = _font(12), _font(15)
    draw.text((layout.left, 10), layout.title, fill=_TEXT, font=title_font)
    for tick in layout.ticks:
        draw.line([(layout.left, tick.y), (layout.right, tick.y)], fill=_GRID)
        _text(draw, (layout.left - 6, tick.y), tick.label, font, "right")
    for bar in layout.bars:
        x0, y0 = round(bar.x), round(bar.y)
        x1 = max(x0, round(bar.x + bar.width) - 1)
        draw.rectangle([x0, y0, x1, max(y0, round(bar.y + bar.height) - 1)], fill=bar.colour)
    draw.line([(layout.left, layout.bottom), (layout.right, layout.bottom)], fill=_MUTED)
    below = layout.bottom + 12
    if layout.first:
        _text(draw, (layout.left, below), layout.first, font, "left")
    if layout.last:
        _text(draw, (layout.right, below), layout.last, font, "right")
    if layout.note:
        middle = ((layout.left + layout.right) / 2, (layout.top + layout.bottom) / 2)
        _text(draw, middle, layout.note, font, "center")
    for x, status, colour in _legend_positions(layout, lambda text: draw.textlength(text, font)):
        draw.rectangle([round(x), 30, round(x) + 9, 39], fill=colour)
        _text(draw, (x + 14, 35), status, font, "left")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _font(size: int) -> Font:
    return ImageFont.load_default(size)


def _text(
    draw: ImageDraw.ImageDraw, at: tuple[float, float], text: str, font: Font, align: str
) -> None:
    """Draw ``text`` vertically centred on ``at``, its left, right or centre at ``at[0]``."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    x = at[0] - {"left": 0.0, "right": x1, "center": x1 / 2}[align] - x0 * (align == "left")
    draw.text((x, at[1] - (y0 + y1) / 2), text, fill=_MUTED, font=font)


# --- helpers --------------------------------------------------------------------------------


def _scale(longest: float) -> tuple[float, float]:
    """A 1-2-5 step giving at most five intervals, and the axis top (a multiple of it)."""
    if longest <= 0:
        return 0.25, 1.0
    rough = longest / 5
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    return step, math.ceil(longest / step - 1e-9) * step


def _legend_positions(
    layout: Layout, measure: Callable[[str], float]
) -> list[tuple[float, str, str]]:
    """Legend entries laid out right to left from the chart's right edge."""
    x = layout.right
    placed: list[tuple[float, str, str]] = []
    for status, colour in reversed(layout.legend):
        x -= 14 + measure(status)
        placed.append((x, status, colour))
        x -= 12
    return placed[::-1]


def _tooltip(run: RunRecord) -> str:
    when = run_time(run)
    stamp = "" if when == _EPOCH else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC, ")
    return f"{stamp}{run.status}, {format_duration(run.duration)}"


def _axis_time(run: RunRecord) -> str:
    when = run_time(run)
    return "" if when == _EPOCH else when.astimezone(UTC).strftime("%d %b %H:%M UTC")
