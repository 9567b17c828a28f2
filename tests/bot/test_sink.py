"""DiscordSink without Discord: rendering, batching, validation, redaction, no destination."""

from __future__ import annotations

import logging
from typing import Any

import discord
import pytest

from pipelines.pipeline import Pipeline, StageSpec
from pipelines.sinks import discord as sink_module
from pipelines.sinks.discord import (
    DiscordSink,
    Message,
    pack_embeds,
    pack_text,
    redact_webhook_url,
)
from pipelines.transforms.sources import StaticItems

WEBHOOK = "https://discord.com/api/webhooks/123456789012345678/" + "T0ken-secret_" * 6


def test_exactly_one_destination_and_one_style() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        DiscordSink()
    with pytest.raises(ValueError, match="exactly one"):
        DiscordSink(channel_id=1, webhook_url=WEBHOOK)
    with pytest.raises(ValueError, match="not both"):
        DiscordSink(channel_id=1, template="{a}", embed={"title": "{a}"})
    with pytest.raises(ValueError, match="max_ratelimit_timeout"):
        DiscordSink(channel_id=1, max_ratelimit_timeout=0)
    with pytest.raises(ValueError, match="channel_id"):
        DiscordSink(channel_id="general")  # type: ignore[arg-type]
    assert DiscordSink(channel_id="42").channel_id == 42  # type: ignore[arg-type]


def test_a_bad_webhook_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as caught:
        DiscordSink(webhook_url="https://example.com/hook?secret=abc")
    assert "secret=abc" not in str(caught.value)


def test_webhook_url_never_shows() -> None:
    sink = DiscordSink(webhook_url=WEBHOOK)
    assert "T0ken" not in repr(sink)
    assert "T0ken" not in str(sink)
    assert sink.destination == "webhook 123456789012345678"
    assert redact_webhook_url(WEBHOOK) == (
        "https://discord.com/api/webhooks/123456789012345678/***"
    )


def test_template_text_escapes_item_values() -> None:
    sink = DiscordSink(channel_id=1, template="**{title}** {price:.2f} {missing}")
    text = sink.render_text({"title": "_sale_ @everyone", "price": 3.5})
    assert text.startswith("**\\_sale\\_ @\u200beveryone**")
    assert "3.50" in text
    assert text.endswith("None")


def test_a_template_that_does_not_fit_falls_back_to_json(caplog: pytest.LogCaptureFixture) -> None:
    sink = DiscordSink(channel_id=1, template="{price:.2f}")
    with caplog.at_level(logging.WARNING):
        first = sink.render_text({"price": "cheap"})
        sink.render_text({"price": "free"})
    assert first.startswith("```json\n") and '"cheap"' in first
    assert caplog.text.count("does not fit") == 1


def test_without_template_each_item_is_json_within_2000() -> None:
    sink = DiscordSink(channel_id=1)
    text = sink.render_text({"body": "x" * 5000, "fence": "```"})
    assert len(text) <= 2000
    assert text.count("```") == 2


def test_text_messages_are_packed_within_2000() -> None:
    sink = DiscordSink(channel_id=1, template="{n}: " + "y" * 300)
    messages = sink.messages({"n": i} for i in range(20))
    assert all(isinstance(m, Message) and m.content for m in messages)
    assert all(len(m.content or "") <= 2000 for m in messages)
    assert sum((m.content or "").count("y" * 300) for m in messages) == 20
    assert pack_text(["a", "b"]) == ["a\nb"]


def test_pack_text_cuts_long_lines_and_keeps_every_line() -> None:
    lines = [f"line {i} " + "x" * 90 for i in range(100)]
    messages = pack_text(lines)
    assert all(len(m) <= 2000 for m in messages)
    assert "\n".join(messages).count("line ") == 100
    assert pack_text(["y" * 5000]) == ["y" * 1999 + "…"]
    assert pack_text([]) == []


def test_embed_from_item_keys() -> None:
    sink = DiscordSink(
        channel_id=1,
        embed={
            "title": "{title}",
            "description": "{summary}",
            "url": "{link}",
            "colour": "#ff0000",
            "fields": [{"name": "Price", "value": "{price} kr", "inline": True}, "stock"],
            "footer": "from {site}",
            "thumbnail": "{image}",
        },
    )
    embed = sink.render_embed(
        {
            "title": "Big *sale*",
            "summary": "s" * 5000,
            "link": "https://shop.example/a",
            "price": 10,
            "stock": 3,
            "site": "shop",
            "image": "not a url",
        }
    )
    assert embed.title == "Big \\*sale\\*"
    assert embed.url == "https://shop.example/a"
    assert embed.colour == discord.Colour(0xFF0000)
    assert len(embed.description or "") <= 4096
    assert [(f.name, f.value, f.inline) for f in embed.fields] == [
        ("Price", "10 kr", True),
        ("stock", "3", True),
    ]
    assert embed.footer.text == "from shop"
    assert embed.thumbnail.url is None  # not a URL: left out rather than refused by Discord
    assert len(embed) <= 6000


def test_an_empty_embed_shows_the_item() -> None:
    sink = DiscordSink(channel_id=1, embed={"title": "{nothing}", "colour": 0x123456})
    embed = sink.render_embed({"a": 1})
    assert embed.title is None
    assert embed.description == '{"a": 1}'


def test_embeds_are_packed_ten_and_6000_per_message() -> None:
    sink = DiscordSink(channel_id=1, embed={"title": "{n}", "description": "{body}"})
    messages = sink.messages({"n": i, "body": "b" * 1000} for i in range(25))
    assert [len(m.embeds) for m in messages] == [5, 5, 5, 5, 5]
    for message in messages:
        assert sum(len(e) for e in message.embeds) <= 6000
    small = pack_embeds(discord.Embed(title=str(i)) for i in range(21))
    assert [len(m.embeds) for m in small] == [10, 10, 1]


async def test_a_channel_sink_without_bot_or_token_fails_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.setattr(sink_module, "_client", None)
    pipeline = Pipeline(
        "to-discord",
        (
            StageSpec(StaticItems, {"items": [{"a": 1}]}),
            StageSpec(DiscordSink, {"channel_id": 5}),
        ),
    )
    result = await pipeline.run()
    assert result.status == "failed"
    assert result.failure is not None
    assert (result.failure.stage_index, result.failure.error_type) == (1, "DiscordSinkUnavailable")
    assert "DISCORD_TOKEN is not set" in result.failure.message


def test_set_and_clear_client() -> None:
    client: Any = object()
    other: Any = object()
    sink_module.set_client(client)
    sink_module.clear_client(other)
    assert sink_module._client is client
    sink_module.clear_client(client)
    assert sink_module._client is None
