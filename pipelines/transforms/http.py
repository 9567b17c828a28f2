"""``HttpFetch``: fetch pages over HTTP(S) or from ``file:`` URLs, concurrently and politely.

Each input item is a URL string or a dict with a ``"url"`` key (its other keys are
carried into the output); the ``urls`` kwarg is fetched first, so the stage also
works as a source. One dict comes out per page, as soon as it is fetched (output
order may differ from input order)::

    {"url": ..., "status": 200, "content_type": "text/html", "text": "...",
     "elapsed": 0.012, **carried_keys}

``url`` is the final URL after redirects; a relative ``file:`` URL
(``file:sample_site/index.html``, relative to the working directory) comes out as an
absolute ``file:///...`` URL so that ``urllib.parse.urljoin`` resolves links from it.

Connection errors, timeouts, 429 and 5xx are retried with exponential backoff and
jitter (``Retry-After`` honoured, capped); other 4xx and oversized bodies fail at
once; after the last retry ``FetchError`` is raised and the run fails.
"""

from __future__ import annotations

import asyncio
import logging
import math
import mimetypes
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

import aiohttp

from ..core import Transform
from ..errors import PipelineError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_USER_AGENT = "pipebot/0.1"
MAX_BACKOFF = 60.0
"""Longest sleep between two attempts, before jitter."""
_READ_CHUNK = 64 * 1024


class FetchError(PipelineError):
    """A URL could not be fetched (after its retries, when the failure was retryable)."""

    def __init__(self, url: str, reason: str, *, attempts: int = 1, status: int | None = None):
        self.url = redact(url)
        self.reason = reason
        self.attempts = attempts
        self.status = status
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"GET {self.url} failed{tries}: {reason}")


class _Retryable(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Request:
    url: str
    carried: dict[str, Any]


def redact(url: str) -> str:
    """``url`` without the password of its user info, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def file_url_path(url: str) -> Path:
    """The local path of a ``file:`` URL; a relative one is taken from the working dir."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise FetchError(url, f"file: URLs on another host ({parts.netloc}) are not supported")
    return Path(os.path.abspath(url2pathname(parts.path)))


def absolute_url(url: str) -> str:
    """``url`` itself, or for a relative ``file:`` URL the absolute ``file:///`` one."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.path.startswith("/"):
        return url
    return file_url_path(url).as_uri()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date)."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


class HttpFetch(Transform):
    """Fetch each URL; at most ``concurrency`` requests in flight; see the module doc."""

    def __init__(
        self,
        urls: Sequence[str] | str | None = None,
        concurrency: int = 10,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        per_host_delay: float = 0.0,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        user_agent: str = DEFAULT_USER_AGENT,
        max_retry_after: float = 30.0,
    ) -> None:
        _require(concurrency >= 1, f"concurrency must be >= 1, got {concurrency}")
        _require(timeout > 0, f"timeout must be > 0, got {timeout}")
        _require(retries >= 0, f"retries must be >= 0, got {retries}")
        _require(backoff >= 0, f"backoff must be >= 0, got {backoff}")
        _require(per_host_delay >= 0, f"per_host_delay must be >= 0, got {per_host_delay}")
        _require(max_bytes >= 1, f"max_bytes must be >= 1, got {max_bytes}")
        _require(max_retry_after >= 0, f"max_retry_after must be >= 0, got {max_retry_after}")
        self.urls = [urls] if isinstance(urls, str) else list(urls or ())
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.per_host_delay = per_host_delay
        self.headers = dict(headers or {})
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self.max_retry_after = max_retry_after
        self._session: aiohttp.ClientSession | None = None
        self._host_locks: dict[str, asyncio.Lock] = {}
        self._host_last: dict[str, float] = {}

    def __repr__(self) -> str:  # headers may hold credentials: names only
        return (
            f"HttpFetch(concurrency={self.concurrency}, timeout={self.timeout}, "
            f"retries={self.retries}, headers={sorted(self.headers)})"
        )

    async def setup(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": self.user_agent, **self.headers},
            connector=aiohttp.TCPConnector(limit=self.concurrency),
        )

    async def teardown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def _log(self) -> logging.Logger:
        context = getattr(self, "context", None)
        return context.logger if context is not None else logger

    async def stream(self, items: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
        """Fetch ``urls`` then every input item, yielding pages as they complete.

        A pump task reads the input and starts one task per URL once a slot is free;
        a slot is freed when its page is handed on, so at most ``concurrency`` pages
        are being fetched or waiting here, however slow the consumer is.
        """
        slots = asyncio.Semaphore(self.concurrency)
        outcomes: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        async def fetch_one(request: _Request) -> None:
            try:
                outcomes.put_nowait(("page", await self._fetch(request)))
            except Exception as exc:
                outcomes.put_nowait(("error", exc))

        async def pump() -> None:
            started = 0
            try:
                async with aclosing(self._requests(items)) as requests:
                    async for request in requests:
                        await slots.acquire()
                        task = asyncio.create_task(fetch_one(request))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                        started += 1
                outcomes.put_nowait(("end", started))
            except Exception as exc:  # upstream errors pass through unchanged
                outcomes.put_nowait(("error", exc))

        pumping = asyncio.create_task(pump())
        delivered, total = 0, -1
        try:
            while delivered != total:
                kind, value = await outcomes.get()
                if kind == "error":
                    raise value
                if kind == "end":
                    total = value
                    continue
                delivered += 1
                slots.release()
                yield value
        finally:
            for task in (pumping, *tasks):
                task.cancel()
            await asyncio.gather(pumping, *tasks, return_exceptions=True)

    async def _requests(self, items: AsyncIterator[Any]) -> AsyncGenerator[_Request, None]:
        for url in self.urls:
            yield _Request(url, {})
        async for item in items:
            yield _as_request(item)

    async def _fetch(self, request: _Request) -> dict[str, Any]:
        scheme = urlsplit(request.url).scheme.lower()
        if scheme == "file":
            page = await asyncio.to_thread(self._read_file, request.url)
        elif scheme in ("http", "https"):
            page = await self._fetch_http(request.url)
        else:
            raise FetchError(request.url, f"unsupported URL scheme {scheme or '(none)'!r}")
        return {**request.carried, **page}

    def _read_file(self, url: str) -> dict[str, Any]:
        started = time.monotonic()
        path = file_url_path(url)
        try:
            with path.open("rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except OSError as exc:
            raise FetchError(url, f"{type(exc).__name__}: {exc.strerror or exc}") from exc
        if len(data) > self.max_bytes:
            raise FetchError(url, f"body exceeds max_bytes={self.max_bytes}")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return {
            "url": path.as_uri(),
            "status": 200,
            "content_type": content_type,
            "text": data.decode("utf-8", errors="replace"),
            "elapsed": time.monotonic() - started,
        }

    async def _fetch_http(self, url: str) -> dict[str, Any]:
        host = urlsplit(url).netloc.lower()
        attempt = 0
        while True:
            await self._polite(host)
            try:
                return await self._get(url)
            except _Retryable as failure:
                if attempt >= self.retries:
                    raise FetchError(url, failure.reason, attempts=attempt + 1) from (
                        failure.__cause__ or failure
                    )
                delay = self._delay(attempt, failure.retry_after)
                attempt += 1
                self._log.warning(
                    "GET %s: %s; retry %d/%d in %.2fs",
                    redact(url),
                    failure.reason,
                    attempt,
                    self.retries,
                    delay,
                )
                await asyncio.sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return min(MAX_BACKOFF, self.backoff * 2.0**attempt) * random.uniform(0.5, 1.5)

    async def _polite(self, host: str) -> None:
        """Wait until ``per_host_delay`` has passed since the last request to ``host``."""
        if self.per_host_delay <= 0:
            return
        lock = self._host_locks.setdefault(host, asyncio.Lock())
        async with lock:
            wait = self._host_last.get(host, -math.inf) + self.per_host_delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._host_last[host] = time.monotonic()

    async def _get(self, url: str) -> dict[str, Any]:
        session = self._session
        if session is None:
            raise RuntimeError("HttpFetch.setup() has not run")
        started = time.monotonic()
        try:
            async with session.get(url) as response:
                self._check_status(url, response)
                body = await self._read_body(url, response)
                return {
                    "url": str(response.url),
                    "status": response.status,
                    "content_type": response.content_type,
                    "text": _decode(body, response.charset),
                    "elapsed": time.monotonic() - started,
                }
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise _Retryable(_describe(exc)) from exc
        except aiohttp.ClientError as exc:
            raise FetchError(url, _describe(exc)) from exc

    def _check_status(self, url: str, response: aiohttp.ClientResponse) -> None:
        status = response.status
        if status == 429 or status >= 500:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            raise _Retryable(f"HTTP {status} {response.reason or ''}".rstrip(), wait)
        if status >= 400:
            raise FetchError(url, f"HTTP {status} {response.reason or ''}".rstrip(), status=status)

    async def _read_body(self, url: str, response: aiohttp.ClientResponse) -> bytes:
        too_big = f"body exceeds max_bytes={self.max_bytes}"
        length = response.content_length
        if length is not None and length > self.max_bytes:
            raise FetchError(url, too_big, status=response.status)
        body = bytearray()
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchError(url, too_big, status=response.status)
        return bytes(body)


def _as_request(item: Any) -> _Request:
    if isinstance(item, str):
        return _Request(item, {})
    if isinstance(item, Mapping) and isinstance(item.get("url"), str):
        return _Request(item["url"], {k: v for k, v in item.items() if k != "url"})
    raise TypeError(
        "HttpFetch input items must be URL strings or dicts with a 'url' string, "
        f"got {type(item).__name__}"
    )


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", errors="replace")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
