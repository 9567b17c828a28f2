"""The status page and run charts over real HTTP, and rendered by a real headless Chromium."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from api.charts import HEIGHT, STATUS_COLOURS, WIDTH
from api.status_page import SCHEDULES_SHOWN, setup_status_page
from scheduler.errors import StoreError
from scheduler.schedules import make_schedule
from scheduler.service import PipelineScheduler

from .live import close_scheduler, fetch, make_scheduler, serve

EVIL = "<script>alert('x')</script> & token=s3cr3t-value"
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture
async def scheduler(tmp_path: Path) -> AsyncIterator[PipelineScheduler]:
    sched = make_scheduler(tmp_path)
    sched.register("news-digest", _ok)
    sched.register("price-watch", _evil)
    sched.register("odd<name>", _ok)
    sched.create_schedule("morning-news", "news-digest", cron="0 9 * * 1-5", owner="code")
    sched.create_schedule(
        "prices", "price-watch", cron="*/30 * * * *", timezone="America/New_York", owner="code"
    )
    sched.create_schedule("paused-one", "news-digest", cron="0 0 * * *", owner="code")
    sched.disable("paused-one")
    yield sched
    await close_scheduler(sched)


async def _ok() -> None:
    await asyncio.sleep(0.01)


async def _evil() -> None:
    raise RuntimeError(EVIL)


def status_app(scheduler: PipelineScheduler) -> web.Application:
    app = web.Application()
    setup_status_page(app, scheduler)
    return app


async def with_runs(scheduler: PipelineScheduler) -> None:
    for _ in range(3):
        await scheduler.arun("news-digest")
    await scheduler.arun("price-watch")
    await scheduler.arun("odd<name>")


async def page(scheduler: PipelineScheduler) -> str:
    async with serve(status_app(scheduler)) as base:
        status, content_type, body = await fetch(f"{base}/")
    assert status == 200
    assert content_type.startswith("text/html")
    return body.decode()


async def test_schedules_are_listed_with_next_run_and_time_zone(
    scheduler: PipelineScheduler,
) -> None:
    html = await page(scheduler)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    row = re.search(r'<tr data-schedule="prices">.*?</tr>', html, re.S)
    assert row is not None
    assert "*/30 * * * *" in row.group(0)
    assert "America/New_York" in row.group(0)
    assert re.search(r"<time datetime=\"\d{4}-\d\d-\d\dT", row.group(0))
    assert re.search(r"\b(EST|EDT)\b", row.group(0))
    paused = re.search(r'<tr data-schedule="paused-one">.*?</tr>', html, re.S)
    assert paused is not None and "paused" in paused.group(0)
    assert 'data-schedule="morning-news"' in html


async def test_strips_are_coloured_by_status(scheduler: PipelineScheduler) -> None:
    await with_runs(scheduler)
    html = await page(scheduler)
    news = re.search(r'data-pipeline="news-digest".*?</section>', html, re.S)
    prices = re.search(r'data-pipeline="price-watch".*?</section>', html, re.S)
    assert news is not None and prices is not None
    assert news.group(0).count('class="run s-success"') == 3
    assert prices.group(0).count('class="run s-failed"') == 1
    for status in ("success", "failed", "timeout", "running"):
        assert f".s-{status} {{ background: {STATUS_COLOURS[status]}; }}" in html
    assert STATUS_COLOURS["success"] == "#1e8e3e" and STATUS_COLOURS["failed"] == "#d93025"


async def test_inline_svg_chart_has_a_bar_per_run(scheduler: PipelineScheduler) -> None:
    await with_runs(scheduler)
    html = await page(scheduler)
    news = re.search(r'data-pipeline="news-digest".*?</section>', html, re.S)
    assert news is not None
    svg = re.search(r"<svg.*?</svg>", news.group(0), re.S)
    assert svg is not None
    root = ET.fromstring(svg.group(0))
    bars = [r for r in root.iter(f"{SVG_NS}rect") if r.get("class") == "bar"]
    assert len(bars) == 3
    assert {b.get("fill") for b in bars} == {STATUS_COLOURS["success"]}


async def test_failures_and_names_are_escaped_and_redacted(scheduler: PipelineScheduler) -> None:
    await with_runs(scheduler)
    html = await page(scheduler)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; token=***" in html
    assert "s3cr3t-value" not in html
    failures = re.search(r'<div id="failures">.*?</div>\n</div>', html, re.S)
    assert failures is not None and "price-watch" in failures.group(0)
    assert 'data-pipeline="odd&lt;name&gt;"' in html
    assert "<h3>odd&lt;name&gt;</h3>" in html
    assert 'href="charts/runs/odd%3Cname%3E.png"' in html


async def test_charts_as_svg_and_png(scheduler: PipelineScheduler) -> None:
    await with_runs(scheduler)
    async with serve(status_app(scheduler)) as base:
        svg_status, svg_type, svg = await fetch(f"{base}/charts/runs/news-digest.svg")
        png_status, png_type, png = await fetch(f"{base}/charts/runs/news-digest.png")
        odd_status, _, _ = await fetch(f"{base}/charts/runs/odd%3Cname%3E.png")
        missing, _, _ = await fetch(f"{base}/charts/runs/nope.svg")
    assert (svg_status, png_status, odd_status, missing) == (200, 200, 200, 404)
    assert svg_type.startswith("image/svg+xml") and png_type == "image/png"
    assert ET.fromstring(svg).tag == f"{SVG_NS}svg"
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)


async def test_big_installs_show_the_next_due_first(scheduler: PipelineScheduler) -> None:
    defs = [
        make_schedule(
            f"bulk-{i:03d}",
            "news-digest",
            "cron",
            {"expression": f"{i % 60} {i // 60} * * *"},
            timezone="UTC",
            owner="code",
        )
        for i in range(100)
    ]
    await asyncio.to_thread(scheduler.add_schedules, defs)  # 102 enabled, 1 paused in all
    html = await page(scheduler)
    shown = re.findall(r'<tr data-schedule="([^"]+)"', html)
    assert len(shown) == SCHEDULES_SHOWN
    assert "paused-one" not in shown
    assert re.search(r'id="more-schedules">3 more', html)
    infos = {i.name: i for i in scheduler.list_schedules()}
    due = [infos[name].next_run for name in shown]
    assert None not in due and due == sorted(due)  # type: ignore[type-var]
    hidden = set(infos) - set(shown) - {"paused-one"}
    assert all(infos[n].next_run >= due[-1] for n in hidden)  # type: ignore[operator]


async def test_store_down_gives_503_with_the_reason(
    scheduler: PipelineScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_: object) -> None:
        raise StoreError("cannot read schedules (postgresql://u:hunter2@db/x): gone <b>")

    monkeypatch.setattr(scheduler, "upcoming", down)
    async with serve(status_app(scheduler)) as base:
        status, _, body = await fetch(f"{base}/")
    assert status == 503
    text = body.decode()
    assert "gone &lt;b&gt;" in text and "hunter2" not in text


# --- a real browser ---------------------------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


async def run_chromium(binary: str, profile: Path, *args: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=412,915",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    except TimeoutError:
        process.kill()
        await process.communicate()
        raise
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout


@pytest.mark.slow
async def test_chromium_renders_the_page_on_a_phone_sized_window(
    scheduler: PipelineScheduler, tmp_path: Path
) -> None:
    binary = chromium()
    await scheduler.astart()
    await with_runs(scheduler)
    screenshot = tmp_path / "status.png"
    async with serve(status_app(scheduler)) as base:
        dom = await run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", f"{base}/")
        await run_chromium(
            binary, tmp_path / "profile-shot", f"--screenshot={screenshot}", f"{base}/"
        )
    html = dom.decode()
    assert '<span class="badge ok" id="health">ok</span>' in html
    assert 'id="schedules"' in html
    for name in ("morning-news", "prices", "paused-one"):
        assert f'data-schedule="{name}"' in html
    assert re.search(r'<svg[^>]*class="chart"', html)
    assert "<script>" not in html
    assert screenshot.stat().st_size > 10_000
    with Image.open(screenshot) as image:
        assert image.size == (412, 915)
        colours = image.convert("RGB").getcolors(maxcolors=100_000)
        assert colours is not None and len(colours) > 50  # text and colours, not a blank page
