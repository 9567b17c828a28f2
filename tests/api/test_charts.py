"""The run-duration chart: one layout, drawn as SVG and as PNG."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from api.charts import (
    HEIGHT,
    STATUS_COLOURS,
    WIDTH,
    chart_layout,
    duration_chart_png,
    duration_chart_svg,
    format_duration,
    history_chart_png,
)
from scheduler.models import RunRecord

SVG_NS = "{http://www.w3.org/2000/svg}"
T0 = datetime(2025, 3, 30, 0, 0, tzinfo=UTC)


def run(index: int, status: str = "success", seconds: float | None = 2.0) -> RunRecord:
    started = T0 + timedelta(minutes=10 * index)
    return RunRecord(
        run_id=f"r{index}",
        schedule="s",
        pipeline="p",
        trigger="schedule",
        status=status,
        scheduled_for=started,
        started_at=started,
        finished_at=None if seconds is None else started + timedelta(seconds=seconds),
    )


RUNS = [
    run(0, "success", 1.0),
    run(1, "failed", 4.0),
    run(2, "timeout", 10.0),
    run(3, "skipped", None),
    run(4, "running", None),
    run(5, "abandoned", None),
]


def test_bars_are_in_time_order_scaled_and_coloured() -> None:
    layout = chart_layout(list(reversed(RUNS)))  # newest first, as the ledger returns them
    assert [b.colour for b in layout.bars] == [STATUS_COLOURS[r.status] for r in RUNS]
    xs = [b.x for b in layout.bars]
    assert xs == sorted(xs)
    tallest = max(layout.bars, key=lambda b: b.height)
    assert tallest.colour == STATUS_COLOURS["timeout"]
    assert tallest.y >= layout.top  # fits under the axis top
    assert layout.bars[3].height == layout.bars[4].height == 4.0  # stubs
    assert [t.label for t in layout.ticks] == ["0", "2.0s", "4.0s", "6.0s", "8.0s", "10s"]
    assert [s for s, _ in layout.legend] == [
        "success",
        "failed",
        "timeout",
        "skipped",
        "running",
        "abandoned",
    ]
    assert layout.first == "30 Mar 00:00 UTC" and layout.last == "30 Mar 00:50 UTC"


def test_svg_parses_and_escapes_the_title() -> None:
    svg = duration_chart_svg(RUNS, title="a <b> & c")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    assert root.get("viewBox") == f"0 0 {WIDTH} {HEIGHT}"
    assert root.findtext(f"{SVG_NS}title") == "a <b> & c"
    bars = [r for r in root.iter(f"{SVG_NS}rect") if r.get("class") == "bar"]
    assert len(bars) == len(RUNS)
    assert "failed, 4.0s" in (bars[1].findtext(f"{SVG_NS}title") or "")


def test_png_decodes_with_the_expected_size_and_colours() -> None:
    data = duration_chart_png(RUNS, title="news")
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.size == (WIDTH, HEIGHT)
        colours = {c for _, c in image.convert("RGB").getcolors(maxcolors=1 << 16) or []}
    for status in ("success", "failed", "timeout"):
        hex_colour = STATUS_COLOURS[status]
        assert tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)) in colours


def test_history_chart_for_discord_and_an_empty_chart() -> None:
    with Image.open(io.BytesIO(history_chart_png([], "nothing yet"))) as image:
        assert image.size == (WIDTH, HEIGHT)
    assert "no runs yet" in duration_chart_svg([])
    small = duration_chart_svg(RUNS, width=420, height=200, legend=False)
    assert ET.fromstring(small).get("viewBox") == "0 0 420 200"
    assert chart_layout(RUNS, legend=False).legend == ()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.25, "250ms"), (2.5, "2.5s"), (42, "42s"), (200, "3m 20s"), (7500, "2h 05m")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
