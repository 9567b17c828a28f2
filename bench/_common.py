"""Small helpers shared by the benchmarks: medians, percentiles, RSS, event-loop stalls."""

from __future__ import annotations

import asyncio
import math
import resource
import statistics
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None (None if there are none)."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def percentile(ordered: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (``share`` in 0..1)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def rss_kb() -> int:
    """Resident set size of this process now, in KiB (Linux ``VmRSS``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return peak_rss_kb()


def peak_rss_kb() -> int:
    """Peak resident set size of this process so far, in KiB (``ru_maxrss`` on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class StallMonitor:
    """The longest event-loop stall: how much later than asked a ticking task wakes up."""

    def __init__(self, tick: float = 0.005) -> None:
        self.tick = tick
        self.longest = 0.0
        """Seconds of the worst overshoot since the last ``arm``."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stall-monitor")

    async def next_window(self) -> float:
        """Start a new measuring window; returns the longest stall of the previous one.

        Waits two ticks first, so a stall that ended just now is counted where it began.
        """
        await asyncio.sleep(2 * self.tick)
        previous, self.longest = self.longest, 0.0
        return previous

    async def stop(self) -> float:
        """Stop ticking; returns the longest stall of the current window."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        return self.longest

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(self.tick)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last - self.tick)
            last = now


HISTORY_CHUNK = 20_000
_STATUSES = ["success"] * 90 + ["failed"] * 7 + ["skipped"] * 3


def seed_history(url: str, schedules: int, rows: int, pipelines: Sequence[str]) -> None:
    """``rows`` finished runs, one a second, the newest five minutes ago, round-robin over
    schedules ``job-00000``... and ``pipelines``; run ids are fixed (``run_id_of``)."""
    from sqlalchemy import insert

    from pipelines.db import get_engine
    from scheduler.tables import runs

    newest = datetime.now(UTC) - timedelta(minutes=5)
    with get_engine(url).begin() as conn:
        for start in range(0, rows, HISTORY_CHUNK):
            batch = []
            for n in range(start, min(start + HISTORY_CHUNK, rows)):
                at = newest - timedelta(seconds=rows - n)
                status = _STATUSES[n % len(_STATUSES)]
                batch.append(
                    {
                        "run_id": run_id_of(n),
                        "schedule": f"job-{n % schedules:05d}",
                        "pipeline": pipelines[n % len(pipelines)],
                        "trigger": "schedule",
                        "status": status,
                        "scheduled_for": at,
                        "started_at": at,
                        "finished_at": at + timedelta(milliseconds=250),
                        "requested_by": None,
                        "error": "RuntimeError: upstream 503" if status == "failed" else None,
                        "items": "[12]",
                        "stages": None,
                        "holder": "bench",
                        "fence": None,
                    }
                )
            conn.execute(insert(runs), batch)


def run_id_of(n: int) -> str:
    """The id ``seed_history`` gives its ``n``-th row (0: the oldest)."""
    return uuid.UUID(int=n + 1, version=4).hex
