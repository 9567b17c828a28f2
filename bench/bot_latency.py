"""Discord bot latency and DiscordSink throughput, through the fake Discord of the tests.

    PYTHONPATH=. python bench/bot_latency.py [--schedules 10000] [--history 0] [--runs 50]
                                             [--jobs 20] [--messages 500] [--retry-after 1.0]
                                             [--profile]

Everything runs in this process on one event loop, as ``pipebot serve`` runs it: the
fake Discord (REST + gateway on loopback, ``tests/fakediscord``), a ``PipelineScheduler``
on a temporary SQLite file holding ``--schedules`` daily cron schedules, and a real
``PipeBot`` logged in to the fake; ``--history`` run-history rows (spread over those
schedules) are inserted straight into ``runs`` first. Times are taken on the fake's side,
as Discord would see them: from the moment the fake dispatches INTERACTION_CREATE on the
gateway to the moment the bot's first callback (the acknowledgement) arrives, and to the
moment the final answer arrives (the edit of the deferred response).

- ``/run``: ``--runs`` runs of a two-item pipeline, one after the other.
- ``/jobs``: ``--jobs`` calls with every schedule in the database; after each, the caller
  presses "next" and then "last": from the click to the bot's answer (the message updated
  with that page), which is when a page other than the first is read.
- DiscordSink: ``--messages`` messages (one item each) to a channel through the running
  bot, then to a webhook, with a 429 (``retry_after`` ``--retry-after`` s) answered to
  every 50th request; messages/second over the whole run. The fake also advertises a
  bucket of 50 requests a second per route (``X-RateLimit-*``), which discord.py honours:
  that is the ceiling (about 49/s when the 429s are short), not the sink.

``--profile`` prints cProfile of the bot's work behind one ``/jobs`` (in this process).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

with warnings.catch_warnings():  # discord.py 2.x imports audioop, deprecated in 3.11+
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    import discord.gateway
    import discord.http

import yarl  # noqa: E402
from _common import median, percentile, seed_history  # noqa: E402

from bot.app import PipeBot  # noqa: E402
from bot.settings import BotSettings  # noqa: E402
from pipelines.db import dispose_engine  # noqa: E402
from pipelines.pipeline import Pipeline, StageSpec  # noqa: E402
from pipelines.sinks.discord import DiscordSink  # noqa: E402
from pipelines.transforms.sources import StaticItems  # noqa: E402
from scheduler.schedules import make_schedule  # noqa: E402
from scheduler.service import PipelineScheduler  # noqa: E402
from scheduler.settings import SchedulerSettings  # noqa: E402
from tests.fakediscord import FakeDiscord, InteractionHandle, running  # noqa: E402

CALLBACK = "/interactions/{interaction_id}/{token}/callback"
ORIGINAL = "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"
MANAGE_GUILD = 1 << 5


def point_discord_at(fake: FakeDiscord) -> None:
    """What the tests do with monkeypatch: REST base and gateway URL to the fake."""
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)


class BenchBot(PipeBot):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause before a re-IDENTIFY (there is none here anyway)."""


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    mid, p95 = median(ordered), percentile(ordered, 0.95)
    assert mid is not None and p95 is not None
    return (
        f"{name:<50} median {mid * 1000:8.1f} ms   p95 {p95 * 1000:8.1f} ms   "
        f"(n={len(values)}, max {ordered[-1] * 1000:.1f} ms)"
    )


async def timings(fake: FakeDiscord, handle: InteractionHandle) -> tuple[float, float]:
    """(first response, final answer) in seconds after dispatch, on the fake's clock."""
    await handle.original(timeout=60)
    created = handle.record.created_at
    first = next(r for r in handle.callbacks if r.status)
    token = handle.token
    edits = [
        r
        for r in fake.requests
        if r.route == ORIGINAL and r.params.get("webhook_token") == token and r.status == 200
    ]
    final = edits[-1].at if edits else first.at
    return first.at - created, final - created


async def press(fake: FakeDiscord, message: dict[str, Any], label: str) -> float:
    """Seconds from the click on the button ``label`` to the bot's answer (the new page)."""
    components = [c for row in message["components"] for c in row["components"]]
    custom_id = next(c["custom_id"] for c in components if c.get("label") == label)
    handle = await fake.click(message["id"], custom_id)
    await handle.response(timeout=60)
    answered = next(r for r in handle.callbacks if r.status)
    return answered.at - handle.record.created_at


async def bench_commands(
    fake: FakeDiscord, bot: PipeBot, scheduler: PipelineScheduler, args: argparse.Namespace
) -> None:
    first: list[float] = []
    final: list[float] = []
    for _ in range(args.runs):
        handle = await fake.interact("run", {"pipeline": "news"})
        ack, done = await timings(fake, handle)
        first.append(ack)
        final.append(done)
    print(summary("/run: interaction -> first response (defer)", first))
    print(summary("/run: interaction -> result embed", final))

    first, final = [], []
    following: list[float] = []
    last: list[float] = []
    for _ in range(args.jobs):
        handle = await fake.interact("jobs")
        ack, done = await timings(fake, handle)
        first.append(ack)
        final.append(done)
        message = await handle.original(timeout=60)
        if message.get("components"):  # more than one page
            following.append(await press(fake, message, "›"))
            last.append(await press(fake, fake.message(message["id"]), "»"))
    count = scheduler.count_schedules()
    print(summary(f"/jobs ({count} schedules): -> first response", first))
    print(summary(f"/jobs ({count} schedules): -> page 1 shown", final))
    if following:
        print(summary(f"/jobs ({count} schedules): next -> page 2 shown", following))
        print(summary(f"/jobs ({count} schedules): last -> last page shown", last))

    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        handle = await fake.interact("jobs")
        await handle.original(timeout=60)
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())


async def bench_sink(fake: FakeDiscord, args: argparse.Namespace, **target: Any) -> float:
    """Messages per second of one DiscordSink run posting ``--messages`` messages."""
    items = [{"n": i, "text": "x" * 1500} for i in range(args.messages)]  # one per message
    pipeline = Pipeline(
        "to-discord",
        (
            StageSpec(StaticItems, {"items": items}),
            StageSpec(DiscordSink, {"template": "{n} {text}", **target}),
        ),
    )
    rule = fake.rate_limit("POST *", every=50, retry_after=args.retry_after)
    before = len(fake.requests)
    started = time.perf_counter()
    result = await pipeline.run()
    elapsed = time.perf_counter() - started
    fake.rate_limits.remove(rule)
    if result.status != "success":
        raise SystemExit(f"the sink run failed: {result.failure}")
    sent = [r for r in fake.requests[before:] if r.method == "POST"]
    posted = sum(1 for r in sent if r.status == 200 or r.status == 204)
    limited = sum(1 for r in sent if r.status == 429)
    assert posted == args.messages, (posted, args.messages)
    rate = posted / elapsed
    where = "channel (via the bot)" if "channel_id" in target else "webhook"
    print(
        f"DiscordSink -> {where:<22} {rate:8.1f} messages/s "
        f"({posted} messages, {limited} x 429 retry_after {args.retry_after:g} s, "
        f"{elapsed:.2f} s)"
    )
    return rate


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        scheduler = PipelineScheduler(
            SchedulerSettings(
                database_url=url,
                timezone="UTC",
                history_days=None,  # keep every seeded row: no retention pass at start
                history_rows=None,
            )
        )
        items = {"items": [{"title": "a"}, {"title": "b"}]}
        scheduler.register("news", Pipeline("news", (StageSpec(StaticItems, items),)))
        scheduler.add_schedules(
            [
                make_schedule(
                    f"job-{i:05d}",
                    "news",
                    "cron",
                    {"expression": f"{i % 60} {i % 24} * * *"},
                    timezone="UTC",
                    owner="chat",
                )
                for i in range(args.schedules)
            ]
        )
        if args.history and args.schedules:
            seed_history(url, args.schedules, args.history, ["news"])
        fake = FakeDiscord()
        await fake.start()
        point_discord_at(fake)
        operator = fake.role("Pipeline Operator")
        fake.set_role_permissions(operator, MANAGE_GUILD)
        settings = BotSettings(
            guild_id=int(fake.guild.id), admin_role_ids=frozenset({int(operator["id"])})
        )
        bot = BenchBot(scheduler, settings, guild_ready_timeout=0.05)
        try:
            async with running(bot, fake):
                await bench_commands(fake, bot, scheduler, args)
                general = fake.channel("general")
                await bench_sink(fake, args, channel_id=int(general["id"]))
                await bench_sink(fake, args, webhook_url=fake.add_webhook(general)["url"])
        finally:
            bot.detach()
            await scheduler.astop(grace=1)
            await fake.close()
            dispose_engine(url)
        if fake.violations:
            print("the bot broke Discord's rules:", *fake.violations, sep="\n  ")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument(
        "--history", type=int, default=0, help="run-history rows to insert (e.g. 1000000)"
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--profile", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    print(
        f"python {platform.python_version()}, discord.py {discord.__version__}, "
        f"{os.cpu_count()} CPU(s); fake Discord on loopback, SQLite"
    )
    asyncio.run(main(arguments))
