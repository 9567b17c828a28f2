"""HtmlSelect on fixture pages, through the pipeline runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.transforms.html import HtmlSelect
from pipelines.transforms.sources import StaticItems

from .conftest import RunChain

SHOP = """
<html><body>
  <div class="item featured" data-id="1">
    <h2><a href="/books/one.html">  The   Quiet
        Harbour </a></h2>
    <img src="img/one.png" alt="cover">
    <span class="price">12.50</span>
  </div>
  <div class="item" data-id="2">
    <h2><a href="https://other.example/two">Two <em>Rivers</em></a></h2>
    <span class="price"></span>
  </div>
  <div class="item" data-id="3"><h2>No link</h2></div>
  <p class="item-like">not matched</p>
</body></html>
"""

FIELDS = {
    "title": "h2 a::text",
    "link": "h2 a@href",
    "cover": "img@src",
    "alt": "img@alt",
    "price": "span.price",
    "id": "@data-id",
    "classes": "@class",
    "all_text": "::text",
}


def page(text: str, url: str = "https://shop.example/cat/index.html") -> dict[str, Any]:
    return {"url": url, "text": text, "status": 200}


async def test_fields_by_spec(run_chain: RunChain) -> None:
    result, rows = await run_chain(
        (StaticItems, {"items": [page(SHOP)]}),
        (HtmlSelect, {"selector": "div.item", "fields": FIELDS}),
    )
    assert result.ok, result.failure
    assert result.items == (1, 3, 3)
    first, second, third = rows
    assert first == {
        "title": "The Quiet Harbour",
        "link": "https://shop.example/books/one.html",
        "cover": "https://shop.example/cat/img/one.png",
        "alt": "cover",
        "price": "12.50",
        "id": "1",
        "classes": "item featured",
        "all_text": "The Quiet Harbour 12.50",
        "source_url": "https://shop.example/cat/index.html",
    }
    assert second["title"] == "Two Rivers"
    assert second["link"] == "https://other.example/two"
    assert second["cover"] is None
    assert second["price"] == ""
    assert third["title"] is None
    assert third["link"] is None
    assert third["all_text"] == "No link"


async def test_base_href_and_custom_base_key(run_chain: RunChain) -> None:
    html = '<head><base href="/shelf/"></head><a href="x.html">x</a>'
    item = {"page": "https://h.example/a/b.html", "text": html}
    result, rows = await run_chain(
        (StaticItems, {"items": [item]}),
        (HtmlSelect, {"selector": "a", "fields": {"u": "@href"}, "base_url_key": "page"}),
    )
    assert result.ok, result.failure
    assert rows == [{"u": "https://h.example/shelf/x.html", "source_url": item["page"]}]


async def test_without_a_page_url_links_stay_as_written(run_chain: RunChain) -> None:
    result, rows = await run_chain(
        (StaticItems, {"items": [{"text": '<a href="rel/x">x</a>'}]}),
        (HtmlSelect, {"selector": "a", "fields": {"u": "@href"}}),
    )
    assert result.ok, result.failure
    assert rows == [{"u": "rel/x", "source_url": None}]


async def test_relative_file_page_urls_resolve_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_chain: RunChain
) -> None:
    monkeypatch.chdir(tmp_path)
    result, rows = await run_chain(
        (StaticItems, {"items": [page('<a href="b/c.html">c</a>', "file:site/index.html")]}),
        (HtmlSelect, {"selector": "a", "fields": {"u": "@href"}}),
    )
    assert result.ok, result.failure
    assert rows[0]["u"] == (tmp_path / "site" / "b" / "c.html").as_uri()
    assert rows[0]["source_url"] == (tmp_path / "site" / "index.html").as_uri()


NEWS = """
<article class="story"><time datetime="2026-11-02">2 Nov</time>
  <h2><a href="#winter-hours">Opening hours extended</a></h2></article>
<article class="story"><time datetime="2026-11-09">9 Nov</time>
  <h2><a href="#author-evening">Author evening with <b>Astrid Lund</b></a></h2></article>
"""


async def test_dates_headlines_and_fragment_links(run_chain: RunChain) -> None:
    url = "file:///srv/site/news/index.html"
    fields = {"date": "time@datetime", "headline": "h2 a::text", "link": "h2 a@href"}
    result, rows = await run_chain(
        (StaticItems, {"items": [page(NEWS, url)]}),
        (HtmlSelect, {"selector": "article.story", "fields": fields}),
    )
    assert result.ok, result.failure
    assert [r["date"] for r in rows] == ["2026-11-02", "2026-11-09"]
    assert rows[1]["headline"] == "Author evening with Astrid Lund"
    assert rows[1]["link"] == url + "#author-evening"


async def test_pages_without_text_give_nothing(run_chain: RunChain) -> None:
    result, rows = await run_chain(
        (StaticItems, {"items": [page(""), {"url": "https://x"}]}),
        (HtmlSelect, {"selector": "a", "fields": {"u": "@href"}}),
    )
    assert result.ok, result.failure
    assert rows == []


async def test_items_that_are_not_pages_fail_the_stage(run_chain: RunChain) -> None:
    result, _ = await run_chain(
        (StaticItems, {"items": ["just a string"]}),
        (HtmlSelect, {"selector": "a", "fields": {"u": "@href"}}),
    )
    assert result.status == "failed"
    assert result.failure is not None
    assert (result.failure.stage_index, result.failure.class_name) == (1, "HtmlSelect")
    assert result.failure.error_type == "TypeError"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"selector": "div[", "fields": {"a": "::text"}}, "selector: invalid CSS selector"),
        ({"selector": "div", "fields": {"a": "p[x=::text"}}, "field 'a': invalid CSS selector"),
        ({"selector": "div", "fields": {}}, "at least one field"),
    ],
)
def test_bad_selectors_are_refused_when_built(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HtmlSelect(**kwargs)
