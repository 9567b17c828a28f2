"""JsonExtract and Filter on fixture data, through the pipeline runner."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipelines.transforms.extract import JsonExtract, lookup
from pipelines.transforms.filter import Filter
from pipelines.transforms.sources import StaticItems

from .conftest import RunChain

BOOKS: list[dict[str, Any]] = [
    {"title": "River Maps", "price": "7.40", "tags": ["maps", "travel"], "stock": {"n": 3}},
    {"title": "Salt and Stone", "price": 9.99, "tags": ["poetry"], "stock": {"n": 0}},
    {"title": "Northern Lights", "price": "24.00", "tags": [], "stock": None},
    {"title": "Winter Garden", "price": "n/a", "tags": ["garden"]},
    {"title": None, "price": 18.2, "tags": ["garden", "travel"], "stock": {"n": 1}},
]


def test_lookup_follows_dotted_paths() -> None:
    doc = {"a": {"b": [{"c": 1}, {"c": 2}]}, "x.y": "whole key"}
    assert lookup(doc, "a.b.1.c") == 2
    assert lookup(doc, "a.b.-1.c") == 2
    assert lookup(doc, "a.b.5.c") is None
    assert lookup(doc, "a.b.c") is None
    assert lookup(doc, "a.zz.c") is None
    assert lookup(doc, "x.y") == "whole key"
    assert lookup(doc, "") is doc
    assert lookup("text", "0") is None


async def test_extract_from_json_text_fans_out_arrays(run_chain: RunChain) -> None:
    status = {
        "status": "ok",
        "checks": [
            {"name": "catalogue", "latency_ms": 12},
            {"name": "payments", "latency_ms": 48},
            {"name": "search", "latency_ms": 950},
        ],
    }
    text = json.dumps(status)
    pages = [{"url": "file:///status.json", "text": text}]
    result, rows = await run_chain(
        (StaticItems, {"items": pages}),
        (
            JsonExtract,
            {"fields": {"status": "status", "first": "checks.0.name"}, "from_key": "text"},
        ),
    )
    assert result.ok, result.failure
    assert rows == [{"status": "ok", "first": "catalogue"}]

    array = json.dumps(status["checks"])
    result, rows = await run_chain(
        (StaticItems, {"items": [{"text": array}]}),
        (JsonExtract, {"fields": {"check": "name", "ms": "latency_ms"}, "from_key": "text"}),
    )
    assert result.ok, result.failure
    assert result.items == (1, 3, 3)
    assert rows[2] == {"check": "search", "ms": 950}


async def test_extract_from_the_item_itself_and_parsed_values(run_chain: RunChain) -> None:
    items = [{"doc": {"k": [10, 20]}}, {"doc": [{"k": [1]}, {"k": [2]}]}]
    result, rows = await run_chain(
        (StaticItems, {"items": items}),
        (JsonExtract, {"fields": {"v": "k.0"}, "from_key": "doc"}),
    )
    assert result.ok, result.failure
    assert rows == [{"v": 10}, {"v": 1}, {"v": 2}]
    result, rows = await run_chain(
        (StaticItems, {"items": BOOKS[:2]}),
        (JsonExtract, {"fields": {"t": "title", "stock": "stock.n"}}),
    )
    assert rows == [{"t": "River Maps", "stock": 3}, {"t": "Salt and Stone", "stock": 0}]


async def test_invalid_json_fails_the_stage(run_chain: RunChain) -> None:
    result, _ = await run_chain(
        (StaticItems, {"items": [{"url": "https://x/api", "text": "<html>"}]}),
        (JsonExtract, {"fields": {"a": "a"}, "from_key": "text"}),
    )
    assert result.status == "failed"
    assert result.failure is not None
    assert (result.failure.stage_index, result.failure.class_name) == (1, "JsonExtract")
    assert "field 'text' of https://x/api is not JSON" in result.failure.message


@pytest.mark.parametrize(
    ("kwargs", "titles"),
    [
        ({"field": "title", "equals": "River Maps"}, ["River Maps"]),
        (
            {"field": "title", "not_equals": "River Maps"},
            ["Salt and Stone", "Northern Lights", "Winter Garden", None],
        ),
        ({"field": "title", "contains": "and"}, ["Salt and Stone"]),
        ({"field": "tags", "contains": "travel"}, ["River Maps", None]),
        ({"field": "title", "regex": r"^(River|Winter)\b"}, ["River Maps", "Winter Garden"]),
        ({"field": "price", "min": 9.99}, ["Salt and Stone", "Northern Lights", None]),
        ({"field": "price", "max": 10}, ["River Maps", "Salt and Stone"]),
        ({"field": "price", "min": 8, "max": 20}, ["Salt and Stone", None]),
        ({"field": "stock.n", "min": 1}, ["River Maps", None]),
        ({"field": "stock", "exists": True}, ["River Maps", "Salt and Stone", None]),
        ({"field": "stock", "exists": False}, ["Northern Lights", "Winter Garden"]),
        ({"field": "title", "exists": True, "contains": "Garden"}, ["Winter Garden"]),
    ],
)
async def test_filter_conditions(
    run_chain: RunChain, kwargs: dict[str, Any], titles: list[str | None]
) -> None:
    result, rows = await run_chain((StaticItems, {"items": BOOKS}), (Filter, kwargs))
    assert result.ok, result.failure
    assert [r["title"] for r in rows] == titles
    assert result.items == (5, len(titles), len(titles))


def test_filter_needs_a_condition() -> None:
    with pytest.raises(ValueError, match="at least one condition"):
        Filter("title")
