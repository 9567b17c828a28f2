"""Pipeline throughput, memory and HttpFetch page rate; prints one compact table.

    python bench/pipeline_throughput.py --items 1000000 --pages 1000 --concurrency 50 --repeat 5

(a) items/second of a 4-stage pipebot chain (async ``Range`` source + three no-op
    per-item transforms), with async ``process`` and with sync ``process`` declared
    ``blocking = False``, beside a bare chain of async generators measured in the
    same run; medians of ``--repeat`` runs.
(b) peak memory of a ``--memory-items`` run in a fresh subprocess: the growth of
    ``ru_maxrss`` over the idle process (imports done, loop running).
(c) pages/second of ``HttpFetch`` against a loopback aiohttp server running in a
    separate subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.core import Transform  # noqa: E402
from pipelines.pipeline import Pipeline, StageSpec  # noqa: E402
from pipelines.transforms.http import HttpFetch  # noqa: E402
from pipelines.transforms.sources import Range  # noqa: E402

PAGE = "<html><body>" + "<p>pipebot benchmark page</p>" * 64 + "</body></html>"


class AsyncNoop(Transform):
    async def process(self, item: Any) -> Any:
        return item


class InlineNoop(Transform):
    blocking = False

    def process(self, item: Any) -> Any:
        return item


# (a) throughput


async def bare_source(count: int) -> AsyncIterator[int]:
    for number in range(count):
        yield number


async def bare_pass(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for item in items:
        yield item


async def run_bare(count: int) -> int:
    seen = 0
    async for _ in bare_pass(bare_pass(bare_pass(bare_source(count)))):
        seen += 1
    return seen


def chain_of(noop: type, count: int) -> Pipeline:
    stages = (StageSpec(Range, {"count": count}), *(StageSpec(noop) for _ in range(3)))
    return Pipeline(f"bench-{noop.__name__}", stages)


async def run_chain(noop: type, count: int) -> int:
    result = await chain_of(noop, count).run()
    if not result.ok:
        raise SystemExit(f"benchmark run failed: {result.summary()}")
    return result.items_out


async def rate(run: Callable[[int], Awaitable[int]], count: int, repeat: int) -> float:
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        seen = await run(count)
        elapsed = time.perf_counter() - started
        if seen != count:
            raise SystemExit(f"expected {count} items, got {seen}")
        rates.append(count / elapsed)
    return statistics.median(rates)


# (b) memory, in a child process


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def memory_child(count: int) -> None:
    await asyncio.sleep(0)
    baseline = max_rss_mb()
    await run_chain(AsyncNoop, count)
    print(f"{baseline:.3f} {max_rss_mb():.3f}")


def measure_memory(count: int) -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child-memory", str(count)],
        capture_output=True,
        text=True,
        check=True,
    )
    baseline, peak = (float(part) for part in done.stdout.split())
    return baseline, peak


# (c) HttpFetch against a server in a child process


async def serve_child() -> None:
    from aiohttp import web

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/page/{n}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.to_thread(sys.stdin.read)  # serve until the parent closes stdin
    await runner.cleanup()


async def page_rate(pages: int, concurrency: int, repeat: int) -> float:
    server = subprocess.Popen(
        [sys.executable, __file__, "--child-serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(await asyncio.to_thread(server.stdout.readline))
        urls = [f"http://127.0.0.1:{port}/page/{n}" for n in range(pages)]
        fetch = StageSpec(HttpFetch, {"urls": urls, "concurrency": concurrency, "retries": 0})
        pipeline = Pipeline("bench-http", (fetch,))
        rates = []
        for _ in range(repeat):
            result = await pipeline.run()
            if not result.ok or result.items_out != pages:
                raise SystemExit(f"HttpFetch run failed: {result.summary()}")
            rates.append(pages / result.duration)
        return statistics.median(rates)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# table


async def main(args: argparse.Namespace) -> None:
    items, repeat = args.items, args.repeat
    version = sys.version.split()[0]
    print(f"pipebot benchmark: items={items:,} repeat={repeat} (medians), python {version}")
    await run_bare(10_000)  # warm up
    await run_chain(AsyncNoop, 10_000)
    bare = await rate(run_bare, items, repeat)
    async_chain = await rate(lambda n: run_chain(AsyncNoop, n), items, repeat)
    inline_chain = await rate(lambda n: run_chain(InlineNoop, n), items, repeat)
    print()
    print(f"{'4-stage chain':<40}{'items/s':>12}{'vs bare':>10}")
    for label, value in (
        ("bare async generators", bare),
        ("pipebot, async process", async_chain),
        ("pipebot, sync process, blocking=False", inline_chain),
    ):
        print(f"{label:<40}{value:>12,.0f}{value / bare:>9.2f}x")

    baseline, peak = measure_memory(args.memory_items)
    delta = peak - baseline
    verdict = "ok" if delta < 100 else "OVER TARGET"
    print()
    print(
        f"peak memory, {args.memory_items:,} items (fresh process): idle {baseline:.1f} MB, "
        f"peak {peak:.1f} MB, delta {delta:.2f} MB (target < 100 MB: {verdict})"
    )

    pages = await page_rate(args.pages, args.concurrency, repeat)
    print(
        f"HttpFetch loopback (server in a subprocess): {args.pages:,} pages, "
        f"concurrency {args.concurrency}: {pages:,.0f} pages/s"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="items per chain run")
    parser.add_argument("--pages", type=int, default=1000, help="pages per HttpFetch run")
    parser.add_argument("--concurrency", type=int, default=50, help="HttpFetch concurrency")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument(
        "--memory-items", type=int, default=1_000_000, help="items of the memory run"
    )
    parser.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-serve", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.child_memory is not None:
        asyncio.run(memory_child(arguments.child_memory))
    elif arguments.child_serve:
        asyncio.run(serve_child())
    else:
        asyncio.run(main(arguments))
