"""The one-shot runner: every (or each named) enabled pipeline once, then exit.

Exit codes: 0 all succeeded, 1 any failed, 2 configuration error, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pipelines.config import load_config
from pipelines.core import RunResult
from pipelines.errors import ConfigError, Problem
from pipelines.pipeline import Pipeline, RunOptions
from pipelines.state import SqlStateStore
from scheduler.schedules import block_validator
from scheduler.settings import SchedulerSettings

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def format_result(result: RunResult) -> str:
    """One line per pipeline: status, items out, duration, and where it failed."""
    mark = "ok  " if result.ok else "FAIL"
    line = (
        f"{mark} {result.pipeline:<24} {result.status:<9} "
        f"items={result.items_out:<8} {result.duration:7.2f}s"
    )
    if result.failure is not None:
        line += f"  {result.failure}"
    return line


def load_pipelines(path: Path, settings: SchedulerSettings, names: Sequence[str]) -> list[Pipeline]:
    """The enabled pipelines of ``path`` (or those named), ready to run."""
    config = load_config(path, validate_schedule=block_validator(settings.timezone))
    store = SqlStateStore(settings.database_url)
    enabled = {
        name: p.build(state_store=store, database_url=settings.database_url)
        for name, p in config.pipelines.items()
        if p.enabled or name in names
    }
    unknown = [n for n in names if n not in config.pipelines]
    if unknown:
        known = ", ".join(sorted(config.pipelines))
        raise ConfigError(
            [Problem(f"pipelines.{n}", f"no such pipeline (configured: {known})") for n in unknown]
        )
    return [enabled[n] for n in names] if names else list(enabled.values())


async def run_all(pipelines: Sequence[Pipeline], out: TextIO) -> int:
    """Run ``pipelines`` concurrently, print each result as it ends; the exit code."""
    loop = asyncio.get_running_loop()
    tasks = [
        asyncio.create_task(p.run(RunOptions(trigger="legacy")), name=p.name) for p in pipelines
    ]
    main = asyncio.current_task()
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        for task in tasks:
            task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupt)
        loop.add_signal_handler(signal.SIGTERM, interrupt)
    failed = False
    try:
        for finished in asyncio.as_completed(tasks):
            try:
                result = await finished
            except asyncio.CancelledError:
                if main is not None and main.cancelling():
                    raise
                continue
            failed |= not result.ok
            print(format_result(result), file=out, flush=True)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
    if interrupted:
        print("interrupted: running pipelines were cancelled", file=out, flush=True)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK
