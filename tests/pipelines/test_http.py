"""HttpFetch against a real loopback aiohttp server, and against file: URLs."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from pipelines.transforms.extract import JsonExtract
from pipelines.transforms.html import HtmlSelect
from pipelines.transforms.http import HttpFetch, absolute_url, parse_retry_after, redact
from pipelines.transforms.sources import StaticItems

from .conftest import RunChain

REPO = Path(__file__).resolve().parents[2]


class Loopback:
    """A loopback HTTP server that records what it was asked and how."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0
        self.headers: list[dict[str, str]] = []
        self.base = ""

    def url(self, path: str) -> str:
        return self.base + path

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/page/{name}", self.page)
        app.router.add_get("/flaky/{fails}/{name}", self.flaky)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/sleep/{seconds}/{name}", self.sleep)
        app.router.add_get("/throttled/{retry_after}", self.throttled)
        app.router.add_get("/big/{size}", self.big)
        app.router.add_get("/links", self.links)
        app.router.add_get("/api", self.api)
        return app

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.hits[request.path] += 1
        self.arrivals[request.path].append(time.monotonic())
        self.headers.append(dict(request.headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def page(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.Response(text=f"<h1>{name}</h1>", content_type="text/html")

    async def flaky(self, request: web.Request) -> web.Response:
        if self.hits[request.path] <= int(request.match_info["fails"]):
            return web.Response(status=500, text="try again")
        return web.Response(text="finally", content_type="text/plain")

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no")

    async def sleep(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.match_info["seconds"]))
        return web.Response(text=request.match_info["name"])

    async def throttled(self, request: web.Request) -> web.Response:
        if self.hits[request.path] == 1:
            retry_after = request.match_info["retry_after"]
            return web.Response(status=429, headers={"Retry-After": retry_after})
        return web.Response(text="ok")

    async def big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["size"]))

    async def links(self, request: web.Request) -> web.Response:
        body = '<a href="/page/one">1</a> <a href="file:///etc/passwd">local</a>'
        return web.Response(text=body, content_type="text/html")

    async def api(self, request: web.Request) -> web.Response:
        return web.json_response([{"id": 1, "tags": ["a"]}, {"id": 2, "tags": []}])


@pytest.fixture
async def server() -> AsyncIterator[Loopback]:
    loopback = Loopback()
    runner = web.AppRunner(loopback.app(), handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    loopback.base = f"http://{host}:{port}"
    try:
        yield loopback
    finally:
        await runner.cleanup()


def fetch(**kwargs: object) -> tuple[type, dict[str, object]]:
    return HttpFetch, {"backoff": 0.01, **kwargs}


async def test_fetches_pages_with_their_metadata(server: Loopback, run_chain: RunChain) -> None:
    urls = [server.url(f"/page/p{i}") for i in range(3)]
    result, pages = await run_chain(fetch(urls=urls))
    assert result.status == "success", result.failure
    assert result.items == (3, 3)
    assert sorted(p["url"] for p in pages) == sorted(urls)
    page = next(p for p in pages if p["url"] == urls[0])
    assert page["status"] == 200
    assert page["content_type"] == "text/html"
    assert page["text"] == "<h1>p0</h1>"
    assert 0 <= page["elapsed"] < 5
    assert server.headers[0]["User-Agent"] == "pipebot/0.1"


async def test_input_items_carry_their_keys_and_headers_are_sent(
    server: Loopback, run_chain: RunChain
) -> None:
    items = [server.url("/page/a"), {"url": server.url("/page/b"), "tag": "kept", "status": 1}]
    result, pages = await run_chain(
        (StaticItems, {"items": items}),
        fetch(headers={"X-Token": "abc"}, user_agent="bot/2"),
    )
    assert result.ok, result.failure
    by_url = {p["url"]: p for p in pages}
    assert "tag" not in by_url[server.url("/page/a")]
    carried = by_url[server.url("/page/b")]
    assert carried["tag"] == "kept"
    assert carried["status"] == 200  # what was fetched wins over a carried key
    assert {h["X-Token"] for h in server.headers} == {"abc"}
    assert {h["User-Agent"] for h in server.headers} == {"bot/2"}


async def test_retries_a_500_then_succeeds(server: Loopback, run_chain: RunChain) -> None:
    result, pages = await run_chain(fetch(urls=[server.url("/flaky/2/x")], retries=3))
    assert result.ok, result.failure
    assert server.hits["/flaky/2/x"] == 3
    assert [p["text"] for p in pages] == ["finally"]


async def test_gives_up_after_the_last_retry(server: Loopback, run_chain: RunChain) -> None:
    result, _ = await run_chain(fetch(urls=[server.url("/status/503")], retries=2))
    assert result.status == "failed"
    assert server.hits["/status/503"] == 3
    assert result.failure is not None
    assert (result.failure.stage_index, result.failure.class_name) == (0, "HttpFetch")
    assert result.failure.error_type == "FetchError"
    assert "after 3 attempts: HTTP 503" in result.failure.message


async def test_404_fails_fast(server: Loopback, run_chain: RunChain) -> None:
    result, _ = await run_chain(fetch(urls=[server.url("/status/404")], retries=5))
    assert result.status == "failed"
    assert server.hits["/status/404"] == 1
    assert result.failure is not None
    assert result.failure.error_type == "FetchError"
    assert "HTTP 404" in result.failure.message


async def test_timeout_fails_the_run_at_the_fetch_stage(
    server: Loopback, run_chain: RunChain
) -> None:
    url = server.url("/sleep/5/slow")
    started = time.monotonic()
    result, pages = await run_chain(fetch(urls=[url], timeout=0.2, retries=1))
    assert time.monotonic() - started < 3
    assert result.status == "failed"
    assert pages == []
    assert result.failure is not None
    assert (result.failure.stage_index, result.failure.class_name) == (0, "HttpFetch")
    assert "after 2 attempts: timed out" in result.failure.message
    assert server.hits["/sleep/5/slow"] == 2


async def test_never_more_than_concurrency_requests_in_flight(
    server: Loopback, run_chain: RunChain
) -> None:
    urls = [server.url(f"/sleep/0.05/{i}") for i in range(30)]
    result, pages = await run_chain(fetch(urls=urls, concurrency=5))
    assert result.ok, result.failure
    assert len(pages) == 30
    assert server.max_in_flight == 5


async def test_pages_stream_out_as_they_complete(server: Loopback, run_chain: RunChain) -> None:
    urls = [server.url("/sleep/0.5/slow"), server.url("/sleep/0/fast")]
    result, pages = await run_chain(fetch(urls=urls, concurrency=2))
    assert result.ok, result.failure
    assert [p["text"] for p in pages] == ["fast", "slow"]


async def test_per_host_delay_spaces_request_starts(server: Loopback, run_chain: RunChain) -> None:
    urls = [server.url(f"/page/{i}") for i in range(4)]
    result, _ = await run_chain(fetch(urls=urls, concurrency=4, per_host_delay=0.15))
    assert result.ok, result.failure
    starts = sorted(t for i in range(4) for t in server.arrivals[f"/page/{i}"])
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.14, gaps


async def test_429_honours_retry_after(server: Loopback, run_chain: RunChain) -> None:
    result, pages = await run_chain(fetch(urls=[server.url("/throttled/1")], backoff=0))
    assert result.ok, result.failure
    first, second = server.arrivals["/throttled/1"]
    assert second - first >= 0.95
    assert pages[0]["text"] == "ok"


async def test_retry_after_is_capped(server: Loopback, run_chain: RunChain) -> None:
    url = server.url("/throttled/3600")
    result, _ = await run_chain(fetch(urls=[url], max_retry_after=0.1))
    assert result.ok, result.failure
    first, second = server.arrivals["/throttled/3600"]
    assert second - first < 1


async def test_body_over_max_bytes_fails(server: Loopback, run_chain: RunChain) -> None:
    result, _ = await run_chain(fetch(urls=[server.url("/big/5000")], max_bytes=1000))
    assert result.status == "failed"
    assert result.failure is not None
    assert "exceeds max_bytes=1000" in result.failure.message
    assert server.hits["/big/5000"] == 1


async def test_connection_refused_is_retried_then_fails(run_chain: RunChain) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result, _ = await run_chain(fetch(urls=[f"http://127.0.0.1:{port}/"], retries=1))
    assert result.status == "failed"
    assert result.failure is not None
    assert "after 2 attempts" in result.failure.message


@pytest.mark.parametrize(
    ("item", "fragment"),
    [("ftp://example.org/x", "unsupported URL scheme 'ftp'"), (42, "must be URL strings")],
)
async def test_bad_input_fails_the_stage(run_chain: RunChain, item: object, fragment: str) -> None:
    result, _ = await run_chain((StaticItems, {"items": [item]}), fetch())
    assert result.status == "failed"
    assert result.failure is not None
    assert result.failure.stage_index == 1
    assert fragment in result.failure.message


async def test_links_from_a_fetched_page_never_point_at_local_files(
    server: Loopback, run_chain: RunChain
) -> None:
    result, rows = await run_chain(
        fetch(urls=[server.url("/links")]),
        (HtmlSelect, {"selector": "a", "fields": {"u": "@href"}}),
    )
    assert result.ok, result.failure
    assert [r["u"] for r in rows] == [server.url("/page/one"), None]


async def test_json_api_to_items(server: Loopback, run_chain: RunChain) -> None:
    result, rows = await run_chain(
        fetch(urls=[server.url("/api")]),
        (JsonExtract, {"fields": {"id": "id", "tag": "tags.0"}, "from_key": "text"}),
    )
    assert result.ok, result.failure
    assert rows == [{"id": 1, "tag": "a"}, {"id": 2, "tag": None}]


def _site(root: Path, *, broken_link: bool = False) -> None:
    (root / "site" / "books").mkdir(parents=True)
    missing = '<li><a href="books/missing.html">Gone</a></li>' if broken_link else ""
    (root / "site" / "index.html").write_text(
        '<ul><li><a href="books/one.html">One</a></li><li><a href="books/two.html">Two</a></li>'
        f"{missing}</ul>"
    )
    for name in ("one", "two"):
        (root / "site" / "books" / f"{name}.html").write_text(
            f'<h1 class="t">Book {name}</h1><a class="back" href="../index.html">back</a>'
        )


async def test_relative_file_urls_and_links_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_chain: RunChain
) -> None:
    _site(tmp_path)
    monkeypatch.chdir(tmp_path)
    result, rows = await run_chain(
        fetch(urls=["file:site/index.html"]),
        (HtmlSelect, {"selector": "li a", "fields": {"title": "::text", "url": "@href"}}),
        fetch(),
        (HtmlSelect, {"selector": "h1", "fields": {"book": "::text", "back": "a@href"}}),
    )
    assert result.ok, result.failure
    assert result.items == (1, 2, 2, 2, 2)
    assert sorted(r["book"] for r in rows) == ["Book one", "Book two"]
    for row in rows:
        assert row["source_url"].startswith((tmp_path / "site" / "books").as_uri())
        assert row["back"] is None  # h1 has no <a> inside


async def test_a_missing_file_fails_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_chain: RunChain
) -> None:
    _site(tmp_path, broken_link=True)
    monkeypatch.chdir(tmp_path)
    result, _ = await run_chain(
        fetch(urls=["file:site/index.html"]),
        (HtmlSelect, {"selector": "li a", "fields": {"title": "::text", "url": "@href"}}),
        fetch(),
    )
    assert result.status == "failed"
    assert result.failure is not None
    assert result.failure.stage_index == 2
    assert "FileNotFoundError" in result.failure.message
    assert "missing.html" in result.failure.message


async def test_the_sample_site_through_absolute_file_urls(run_chain: RunChain) -> None:
    index = (REPO / "sample_site" / "index.html").as_uri()
    result, rows = await run_chain(
        fetch(urls=[index]),
        (HtmlSelect, {"selector": "li.book", "fields": {"url": "a@href", "price": "span.price"}}),
        fetch(),
        (
            HtmlSelect,
            {"selector": "article.product", "fields": {"title": "h1", "author": ".author"}},
        ),
    )
    assert result.ok, result.failure
    books = (REPO / "sample_site" / "index.html").read_text().count('class="book"')
    assert books > 0
    assert result.items == (1, books, books, len(rows), len(rows))
    assert len(rows) == books
    assert all(r["title"] and r["author"] for r in rows)
    assert {r["source_url"].rpartition("/")[0] for r in rows} == {
        index.rpartition("/")[0] + "/books"
    }


async def test_file_json_and_content_type(tmp_path: Path, run_chain: RunChain) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"a": 1}))
    result, pages = await run_chain(fetch(urls=[path.as_uri()]))
    assert result.ok, result.failure
    assert pages[0]["content_type"] == "application/json"
    assert pages[0]["status"] == 200
    assert json.loads(pages[0]["text"]) == {"a": 1}


def test_url_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_url("file:a/b.html") == (tmp_path / "a" / "b.html").as_uri()
    assert absolute_url("file:///x/y.html") == "file:///x/y.html"
    assert absolute_url("https://h/p") == "https://h/p"
    assert redact("https://u:secret@h:1/p?q") == "https://u:***@h:1/p?q"
    assert redact("https://h/p") == "https://h/p"
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    "kwargs", [{"concurrency": 0}, {"timeout": 0}, {"retries": -1}, {"max_bytes": 0}]
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        HttpFetch(**kwargs)  # type: ignore[arg-type]


def test_repr_hides_header_values() -> None:
    assert "s3cret" not in repr(HttpFetch(headers={"Authorization": "Bearer s3cret"}))
