"""JsonLinesSink, LogSink and the DiscordSink placeholder, through the pipeline runner."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pipelines.core import Transform
from pipelines.registry import BUILTIN_PREFIXES, resolve_class
from pipelines.sinks.discord import DiscordSink
from pipelines.sinks.jsonl import JsonLinesSink
from pipelines.sinks.log import LogSink
from pipelines.transforms.sources import Range, StaticItems

from .conftest import RunChain

ITEMS: list[Any] = [{"title": "Ålesund", "day": date(2026, 11, 2)}, {"n": 1}, [1, "two"], "x"]


def read_lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_jsonl_appends_and_passes_items_through(tmp_path: Path, run_chain: RunChain) -> None:
    path = tmp_path / "deep" / "er" / "out.jsonl"
    for _ in range(2):
        result, out = await run_chain(
            (StaticItems, {"items": ITEMS}), (JsonLinesSink, {"path": str(path)})
        )
        assert result.ok, result.failure
        assert result.items == (4, 4, 4)
        assert out == ITEMS
    expected = [{"title": "Ålesund", "day": "2026-11-02"}, {"n": 1}, [1, "two"], "x"]
    assert read_lines(path) == expected * 2
    assert "Ålesund" in path.read_text(encoding="utf-8")


async def test_jsonl_ensure_ascii(tmp_path: Path, run_chain: RunChain) -> None:
    path = tmp_path / "ascii.jsonl"
    await run_chain(
        (StaticItems, {"items": ITEMS[:1]}),
        (JsonLinesSink, {"path": path, "ensure_ascii": True}),
    )
    assert "\\u00c5lesund" in path.read_text(encoding="utf-8")


async def test_jsonl_overwrite_replaces_the_file(tmp_path: Path, run_chain: RunChain) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"old": true}\n')
    path.chmod(0o640)
    result, _ = await run_chain(
        (Range, {"count": 1000}), (JsonLinesSink, {"path": path, "mode": "overwrite"})
    )
    assert result.ok, result.failure
    assert read_lines(path) == list(range(1000))
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


async def test_jsonl_overwrite_with_no_items_leaves_an_empty_file(
    tmp_path: Path, run_chain: RunChain
) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    result, _ = await run_chain(
        (StaticItems, {"items": []}), (JsonLinesSink, {"path": path, "mode": "overwrite"})
    )
    assert result.ok, result.failure
    assert path.read_text() == ""


class PeekThenFail(Transform):
    """Checks the sink's target still holds the old content mid-run, then fails."""

    blocking = False

    def __init__(self, path: str, seen: list[str]) -> None:
        self.path = Path(path)
        self.seen = seen

    def process(self, item: Any) -> Any:
        self.seen.append(self.path.read_text())
        if item == 600:
            raise RuntimeError("downstream broke")
        return item


async def test_jsonl_overwrite_is_atomic(tmp_path: Path, run_chain: RunChain) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    seen: list[str] = []
    result, _ = await run_chain(
        (Range, {"count": 1000}),
        (JsonLinesSink, {"path": path, "mode": "overwrite"}),
        (PeekThenFail, {"path": str(path), "seen": seen}),
    )
    assert result.status == "failed"
    assert result.failure is not None and result.failure.stage_index == 2
    assert seen and set(seen) == {"old\n"}
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_jsonl_refuses_unknown_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be one of append, overwrite"):
        JsonLinesSink(tmp_path / "x", mode="truncate")  # type: ignore[arg-type]


async def test_log_sink_templates_and_truncates(
    run_chain: RunChain, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pipebot.run")
    items = [{"title": "Salt", "price": 9.5}, {"title": "x" * 50}]
    result, out = await run_chain(
        (StaticItems, {"items": items}),
        (LogSink, {"template": "{title} costs {price}", "max_chars": 20, "level": "warning"}),
        name="logs",
    )
    assert result.ok, result.failure
    assert out == items
    records = [r for r in caplog.records if r.name == "pipebot.run.logs.1"]
    assert [r.getMessage() for r in records] == ["Salt costs 9.5", "x" * 19 + "…"]
    assert {r.levelno for r in records} == {logging.WARNING}


async def test_log_sink_json_default_and_bad_template_fallback(
    run_chain: RunChain, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    result, _ = await run_chain((StaticItems, {"items": [{"a": "é"}, 5]}), LogSink, name="plain")
    assert result.ok, result.failure
    messages = [r.getMessage() for r in caplog.records if r.name == "pipebot.run.plain.1"]
    assert messages == ['{"a": "é"}', "5"]

    caplog.clear()
    result, _ = await run_chain(
        (StaticItems, {"items": [{"p": "cheap"}, {"p": "free"}, 7]}),
        (LogSink, {"template": "{p:.2f} / {item}"}),
        name="bad",
    )
    assert result.ok, result.failure
    messages = [r.getMessage() for r in caplog.records if r.name == "pipebot.run.bad.1"]
    assert messages == ['{"p": "cheap"}', '{"p": "free"}', "7"]
    assert sum("template" in r.getMessage() for r in caplog.records) == 1


async def test_log_sink_template_sees_the_whole_item(
    run_chain: RunChain, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await run_chain(
        (StaticItems, {"items": ["plain", {"a": 1}]}),
        (LogSink, {"template": "got {item} a={a}"}),
        name="whole",
    )
    messages = [r.getMessage() for r in caplog.records if r.name == "pipebot.run.whole.1"]
    assert messages == ["got plain a=None", "got {'a': 1} a=1"]


def test_log_sink_refuses_unknown_levels() -> None:
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        LogSink(level="LOUD")


def test_the_seed_path_of_discord_sink_resolves_to_ours() -> None:
    assert resolve_class("core.infra.discord_sink.DiscordSink", BUILTIN_PREFIXES) is DiscordSink
    sink = DiscordSink(webhook_url="https://discord.com/api/webhooks/123/t0ken")
    assert "t0ken" not in repr(sink)
