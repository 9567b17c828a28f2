"""``DiscordSink``: post items to a Discord channel or webhook, passing them on.

The only Discord-aware module of ``pipelines``. Where messages go:

- ``channel_id``: through the running bot when the bot has registered itself with
  ``set_client`` (same loop); otherwise over REST with ``DISCORD_TOKEN`` (a login
  without a gateway connection). Neither: the run fails with ``DiscordSinkUnavailable``.
- ``webhook_url``: ``discord.Webhook`` on its own aiohttp session.

Items become messages by ``template`` (a format string over the item's keys, for the
content) or ``embed`` (title, description, url, colour, fields, footer, image,
thumbnail; strings are format strings over the item's keys); with neither, the item's
JSON. String values from items are Markdown-escaped, and mentions never ping. Items are
batched into as few messages as Discord's limits allow (10 embeds and 6,000 characters,
or 2,000 characters of content, per message).

A rate limit longer than ``max_ratelimit_timeout`` seconds fails the run instead of
sleeping; so does a missing or forbidden channel or webhook (403/404), with a message
that names the channel or the webhook's id, never its token. (Through the running bot,
discord.py applies the bot's own limit, 60 s; every send is also cut off after
``max_ratelimit_timeout`` + 30 s, so a run never waits longer than that per message.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord

from ..core import Transform
from ..errors import PipelineError, TransformContractError
from ..transforms.dedupe import ready_batches

logger = logging.getLogger(__name__)

MESSAGE_CHARS = 2000
EMBEDS_PER_MESSAGE = 10
EMBED_TOTAL_CHARS = 6000
EMBED_FIELDS = 25
TITLE_CHARS = 256
DESCRIPTION_CHARS = 4096
FIELD_NAME_CHARS = 256
FIELD_VALUE_CHARS = 1024
FOOTER_CHARS = 2048
BATCH = 100
"""Most items rendered and posted per round; they are passed on after being posted."""
REQUEST_SLACK = 30.0
"""Seconds a send may take beyond ``max_ratelimit_timeout`` (network, retries)."""
ELLIPSIS = "…"
_WEBHOOK = re.compile(r"/webhooks/(?P<id>\d{1,20})/(?P<token>[\w.-]+)")
_URL = re.compile(r"^https?://\S+$")
_NO_MENTIONS = discord.AllowedMentions.none()

_client: discord.Client | None = None


def set_client(client: discord.Client | None) -> None:
    """Let channel sinks post through this (connected) client: called by the bot."""
    global _client
    _client = client


def clear_client(client: discord.Client) -> None:
    """Forget ``client`` if it is the registered one (the bot closing)."""
    global _client
    if _client is client:
        _client = None


class DiscordSinkError(PipelineError):
    """Discord did not take the messages: refused, rate limited too long, unreachable."""


class DiscordSinkUnavailable(TransformContractError):
    """A channel sink has no way to reach Discord: no running bot and no DISCORD_TOKEN."""

    def __init__(self) -> None:
        super().__init__(
            "DiscordSink cannot post to a channel: no Discord bot is running in this "
            "process and DISCORD_TOKEN is not set"
        )


def redact_webhook_url(url: str) -> str:
    """``…/webhooks/<id>/***``: the token part of a webhook URL is a credential."""
    return _WEBHOOK.sub(lambda m: f"/webhooks/{m.group('id')}/***", url)


class _RedactWebhookTokens(logging.Filter):
    """discord.py logs webhook request URLs (token included) at DEBUG: mask them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "/webhooks/" in record.msg:
            record.msg = redact_webhook_url(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        return True


def _redact_arg(value: object) -> object:
    text = value if isinstance(value, str) else None
    if text is None and type(value).__name__ == "URL":  # yarl.URL
        text = str(value)
    return redact_webhook_url(text) if text is not None and "/webhooks/" in text else value


logging.getLogger("discord.webhook.async_").addFilter(_RedactWebhookTokens())


@dataclass
class Message:
    """One message to send: content and/or up to 10 embeds."""

    content: str | None = None
    embeds: list[discord.Embed] = field(default_factory=list)


Sender = Callable[[Message], Awaitable[None]]


class DiscordSink(Transform):
    """Post items to a Discord channel (via the bot or REST) or to a webhook."""

    def __init__(
        self,
        channel_id: int | None = None,
        webhook_url: str | None = None,
        template: str | None = None,
        embed: Mapping[str, Any] | None = None,
        max_ratelimit_timeout: float = 30.0,
    ) -> None:
        if (channel_id is None) == (webhook_url is None):
            raise ValueError("give exactly one of channel_id or webhook_url")
        if template is not None and embed is not None:
            raise ValueError("give template (message text) or embed, not both")
        if not max_ratelimit_timeout > 0:
            raise ValueError(f"max_ratelimit_timeout must be > 0, got {max_ratelimit_timeout}")
        self.channel_id = _channel_id(channel_id) if channel_id is not None else None
        self._webhook_url = webhook_url
        self._webhook_id: int | None = None
        if webhook_url is not None:
            match = _WEBHOOK.search(webhook_url)
            if match is None:
                raise ValueError(
                    "webhook_url is not a Discord webhook URL (…/webhooks/<id>/<token>)"
                )
            self._webhook_id = int(match.group("id"))
        self.template = template
        self.embed = dict(embed) if embed is not None else None
        self.max_ratelimit_timeout = float(max_ratelimit_timeout)
        self._warned = False
        self._send: Sender | None = None
        self._own_client: discord.Client | None = None
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never show the webhook URL: it is a credential
        webhook = "set" if self._webhook_url else None
        return f"DiscordSink(channel_id={self.channel_id!r}, webhook_url={webhook!r})"

    @property
    def destination(self) -> str:
        """Where messages go, safe to show: ``channel 123`` or ``webhook 456``."""
        if self.channel_id is not None:
            return f"channel {self.channel_id}"
        return f"webhook {self._webhook_id}"

    # --- run hooks ------------------------------------------------------------------------

    async def setup(self) -> None:
        if self._webhook_url is not None:
            self._send = await self._webhook_sender(self._webhook_url)
        else:
            self._send = await self._channel_sender()

    async def stream(self, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async with aclosing(ready_batches(items, BATCH)) as batches:
            async for batch in batches:
                for message in self.messages(batch):
                    await self._post(message)
                for item in batch:
                    yield item

    async def teardown(self) -> None:
        client, self._own_client = self._own_client, None
        session, self._session = self._session, None
        self._send = None
        if client is not None:
            await client.close()
        if session is not None:
            await session.close()

    # --- rendering ------------------------------------------------------------------------

    def messages(self, items: Iterable[Any]) -> list[Message]:
        """The messages for ``items``, packed within Discord's per-message limits."""
        if self.embed is not None:
            return pack_embeds(self.render_embed(item) for item in items)
        return [Message(content=text) for text in pack_text(self.render_text(i) for i in items)]

    def render_text(self, item: Any) -> str:
        """The content line(s) for one item."""
        if self.template is not None:
            text = self._format(self.template, item, escape=True)
            if text is not None:
                return truncate(text, MESSAGE_CHARS)
        body = json.dumps(item, ensure_ascii=False, default=str).replace("```", "ˋˋˋ")
        return f"```json\n{truncate(body, MESSAGE_CHARS - 12)}\n```"

    def render_embed(self, item: Any) -> discord.Embed:
        """One embed for one item, from the ``embed`` spec."""
        spec = self.embed or {}
        embed = discord.Embed(
            title=self._text(spec.get("title"), item, TITLE_CHARS),
            description=self._text(spec.get("description"), item, DESCRIPTION_CHARS),
            url=self._url(spec.get("url"), item),
            colour=self._colour(spec.get("colour", spec.get("color")), item),
        )
        for name, value, inline in self._fields(spec.get("fields"), item):
            embed.add_field(name=name, value=value, inline=inline)
        footer = self._text(spec.get("footer"), item, FOOTER_CHARS)
        if footer:
            embed.set_footer(text=footer)
        if image := self._url(spec.get("image"), item):
            embed.set_image(url=image)
        if thumbnail := self._url(spec.get("thumbnail"), item):
            embed.set_thumbnail(url=thumbnail)
        if not (embed.title or embed.description or embed.fields):
            body = json.dumps(item, ensure_ascii=False, default=str)
            embed.description = truncate(discord.utils.escape_markdown(body), DESCRIPTION_CHARS)
        return fit_embed(embed)

    def _format(self, template: str, item: Any, *, escape: bool) -> str | None:
        try:
            return template.format_map(_Fields(item, escape=escape))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            if not self._warned:
                self._warned = True
                logger.warning("DiscordSink template %r does not fit an item: %s", template, exc)
            return None

    def _text(self, template: object, item: Any, limit: int) -> str | None:
        if template is None:
            return None
        text = self._format(str(template), item, escape=True)
        if not text or not text.strip() or text.strip() == "None":
            return None
        return truncate(text, limit)

    def _url(self, template: object, item: Any) -> str | None:
        if template is None:
            return None
        text = self._format(str(template), item, escape=False)
        return text.strip() if text and _URL.match(text.strip()) else None

    def _colour(self, value: object, item: Any) -> discord.Colour | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return discord.Colour(value & 0xFFFFFF)
        text = self._format(str(value), item, escape=False)
        try:
            return discord.Colour.from_str(text.strip()) if text else None
        except ValueError:
            return None

    def _fields(self, spec: object, item: Any) -> Iterator[tuple[str, str, bool]]:
        if not isinstance(spec, list | tuple):
            return
        for entry in list(spec)[:EMBED_FIELDS]:
            if isinstance(entry, str):  # a bare key: name is the key, value the item's value
                name, value, inline = entry, "{" + entry + "}", True
            elif isinstance(entry, Mapping):
                name = str(entry.get("name", ""))
                value = str(entry.get("value", ""))
                inline = bool(entry.get("inline", True))
            else:
                continue
            shown_name = self._text(name, item, FIELD_NAME_CHARS)
            shown_value = self._text(value, item, FIELD_VALUE_CHARS)
            if shown_name and shown_value:
                yield shown_name, shown_value, inline

    # --- sending --------------------------------------------------------------------------

    async def _post(self, message: Message) -> None:
        send = self._send
        if send is None:
            raise DiscordSinkError("DiscordSink was not set up")
        where = self.destination
        try:
            async with asyncio.timeout(self.max_ratelimit_timeout + REQUEST_SLACK):
                await send(message)
        except discord.RateLimited as exc:
            raise DiscordSinkError(
                f"{where}: rate limited by Discord for {exc.retry_after:.0f} s, longer than "
                f"max_ratelimit_timeout ({self.max_ratelimit_timeout:g} s)"
            ) from None
        except discord.Forbidden as exc:
            raise DiscordSinkError(
                f"{where}: forbidden (403: {_reason(exc)}); check the bot's permissions there"
            ) from None
        except discord.NotFound as exc:
            what = "the channel does not exist or the bot cannot see it"
            if self._webhook_url is not None:
                what = "the webhook was deleted or its URL is wrong"
            raise DiscordSinkError(f"{where}: not found (404: {_reason(exc)}); {what}") from None
        except discord.HTTPException as exc:
            raise DiscordSinkError(
                f"{where}: Discord refused the message (HTTP {exc.status}: {_reason(exc)})"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DiscordSinkError(
                f"{where}: cannot reach Discord ({type(exc).__name__})"
            ) from None
        except TimeoutError:
            raise DiscordSinkError(
                f"{where}: no answer within {self.max_ratelimit_timeout + REQUEST_SLACK:g} s "
                "(rate limited or unreachable)"
            ) from None

    async def _channel_sender(self) -> Sender:
        channel_id = self.channel_id
        assert channel_id is not None
        client = _usable_client()
        if client is None:
            client = await self._rest_client()
        channel = client.get_partial_messageable(channel_id)

        async def send(message: Message) -> None:
            await channel.send(
                content=message.content,
                embeds=message.embeds or discord.utils.MISSING,
                allowed_mentions=_NO_MENTIONS,
            )

        return send

    async def _rest_client(self) -> discord.Client:
        token = os.environ.get("DISCORD_TOKEN", "").strip()
        if token.lower().startswith("bot "):
            token = token[4:].strip()
        if not token:
            raise DiscordSinkUnavailable()
        client = discord.Client(
            intents=discord.Intents.none(),
            allowed_mentions=_NO_MENTIONS,
            max_ratelimit_timeout=self.max_ratelimit_timeout,
        )
        self._own_client = client
        try:
            await client.login(token)
        except discord.LoginFailure:
            raise DiscordSinkError("DISCORD_TOKEN was rejected by Discord") from None
        except discord.HTTPException as exc:
            raise DiscordSinkError(f"cannot log in to Discord (HTTP {exc.status})") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DiscordSinkError(f"cannot reach Discord ({type(exc).__name__})") from None
        return client

    async def _webhook_sender(self, url: str) -> Sender:
        match = _WEBHOOK.search(url)
        assert match is not None
        self._session = aiohttp.ClientSession(
            trace_configs=[_ratelimit_guard(self.max_ratelimit_timeout)]
        )
        webhook = discord.Webhook.partial(
            int(match.group("id")), match.group("token"), session=self._session
        )

        async def send(message: Message) -> None:
            await webhook.send(
                content=message.content or discord.utils.MISSING,
                embeds=message.embeds or discord.utils.MISSING,
                allowed_mentions=_NO_MENTIONS,
            )

        return send


# --- helpers ------------------------------------------------------------------------------


class _Fields(Mapping[str, Any]):
    """Template values: the item's keys (strings escaped), ``item`` itself, None if missing."""

    def __init__(self, item: Any, *, escape: bool) -> None:
        self.item = item
        self.data: Mapping[str, Any] = item if isinstance(item, Mapping) else {}
        self.escape = escape

    def __getitem__(self, key: str) -> Any:
        if key in self.data:
            value = self.data[key]
        elif key == "item":
            value = self.item
        else:
            return None
        if self.escape and isinstance(value, str):
            return discord.utils.escape_mentions(discord.utils.escape_markdown(value))
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """``embed`` cut to the per-embed total of 6,000 characters (fields go first)."""
    while len(embed) > EMBED_TOTAL_CHARS and embed.fields:
        embed.remove_field(len(embed.fields) - 1)
    if len(embed) > EMBED_TOTAL_CHARS and embed.description:
        excess = len(embed) - EMBED_TOTAL_CHARS
        embed.description = truncate(embed.description, max(len(embed.description) - excess, 1))
    return embed


def pack_embeds(embeds: Iterable[discord.Embed]) -> list[Message]:
    """Messages of at most 10 embeds and 6,000 embed characters each."""
    messages: list[Message] = []
    current: list[discord.Embed] = []
    size = 0
    for embed in embeds:
        length = len(embed)
        if current and (len(current) == EMBEDS_PER_MESSAGE or size + length > EMBED_TOTAL_CHARS):
            messages.append(Message(embeds=current))
            current, size = [], 0
        current.append(embed)
        size += length
    if current:
        messages.append(Message(embeds=current))
    return messages


def pack_text(texts: Iterable[str]) -> list[str]:
    """Texts joined by newlines into messages of at most 2,000 characters."""
    messages: list[str] = []
    current = ""
    for text in texts:
        text = truncate(text, MESSAGE_CHARS)
        candidate = f"{current}\n{text}" if current else text
        if len(candidate) > MESSAGE_CHARS:
            messages.append(current)
            candidate = text
        current = candidate
    if current:
        messages.append(current)
    return messages


def _channel_id(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError(f"channel_id must be a Discord channel id (a positive integer), got {value!r}")


def _usable_client() -> discord.Client | None:
    """The registered bot, if it is open and runs on this event loop."""
    client = _client
    if client is None or client.is_closed():
        return None
    if client.loop is not asyncio.get_running_loop():
        return None
    return client


def _reason(exc: discord.HTTPException) -> str:
    return truncate(str(exc.text or exc.response.reason or "no reason given"), 200)


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    for header in ("Retry-After", "X-RateLimit-Reset-After"):
        value = response.headers.get(header)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                continue
    return None


def _ratelimit_guard(limit: float) -> aiohttp.TraceConfig:
    """Fail webhook requests rate-limited for longer than ``limit`` seconds.

    discord.py's webhook adapter sleeps out any 429 however long; the bot's HTTP client
    has ``max_ratelimit_timeout`` for this, the webhook session gets this trace hook.
    """

    async def on_request_end(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        response = params.response
        if response.status != 429:
            return
        retry_after = _retry_after(response)
        if retry_after is None:
            try:
                body = await response.json(content_type=None)
                retry_after = float(body.get("retry_after", 0)) if isinstance(body, dict) else None
            except (ValueError, aiohttp.ClientError):
                retry_after = None
        if retry_after is not None and retry_after > limit:
            response.release()
            raise discord.RateLimited(retry_after)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace
