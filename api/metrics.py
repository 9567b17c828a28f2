"""Prometheus metrics at ``GET /metrics``, fed by the scheduler's events.

Each app gets its own ``CollectorRegistry`` (several apps can live in one test
process). Run metrics come from a scheduler listener; schedule counts, database
reachability and the Discord connection are read at scrape time; event-loop lag comes
from a small task that measures how late ``asyncio.sleep`` wakes up (the worst sample
of the last 15 s, so a scrape every 15-60 s still sees a spike).

Runs that ran end up in ``pipebot_runs_total{pipeline,status}`` (success, failed,
timeout, cancelled); instants that never ran a pipeline are counted apart, each from its
own event: ``pipebot_runs_missed_total`` (``EVENT_JOB_MISSED``),
``pipebot_runs_skipped_total`` (``EVENT_JOB_MAX_INSTANCES``: the overlap policy) and
``pipebot_runs_abandoned_total`` (``EVENT_JOB_ERROR`` with status ``abandoned``: runs
left running by a dead process, closed at start-up).

The Discord gauge is fed by whoever runs the bot, without ``api`` knowing ``bot``:
``watch_discord(app, probe)`` registers a callable read at scrape time, or
``set_discord_connected(app, state)`` pushes a state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from scheduler.errors import SchedulerError
from scheduler.events import (
    EVENT_ALL,
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from scheduler.models import RunRecord
from scheduler.service import PipelineScheduler

from .offload import app_offload

logger = logging.getLogger(__name__)

DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LAG_INTERVAL = 0.5
"""Seconds between event-loop lag samples."""
LAG_WINDOW = 30
"""Samples the lag gauge reports the worst of (15 s: longer than a usual scrape interval)."""
NOT_RUN = ("missed", "skipped", "abandoned")
RAN = frozenset({"success", "failed", "timeout", "cancelled"})
DiscordProbe = Callable[[], bool]
"""Answers "is the bot's gateway connection up?" (read at scrape time, in a worker thread)."""


class Metrics:
    """One app's metrics: a registry, its instruments, and the scheduler listener."""

    def __init__(
        self, scheduler: PipelineScheduler, registry: CollectorRegistry | None = None
    ) -> None:
        self.scheduler = scheduler
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "pipebot_runs",
            "Runs that ran, by pipeline and final status.",
            ["pipeline", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "pipebot_run_duration_seconds",
            "Run durations by pipeline.",
            ["pipeline"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.lateness = Histogram(
            "pipebot_run_lateness_seconds",
            "Start minus scheduled time of scheduled runs, by pipeline.",
            ["pipeline"],
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.not_run = {
            status: Counter(
                f"pipebot_runs_{status}",
                f"Instants recorded as {status} (the pipeline did not run), by pipeline.",
                ["pipeline"],
                registry=r,
            )
            for status in NOT_RUN
        }
        self.last_success = Gauge(
            "pipebot_last_success_timestamp_seconds",
            "Unix time the last successful run of each pipeline finished.",
            ["pipeline"],
            registry=r,
        )
        self.loop_lag = Gauge(
            "pipebot_event_loop_lag_seconds",
            f"Worst lateness of a {LAG_INTERVAL:g}s asyncio.sleep over the last "
            f"{LAG_INTERVAL * LAG_WINDOW:g}s.",
            registry=r,
        )
        r.register(_ScrapeCollector(self))
        self.discord_connected: bool | None = None
        """None until the bot reports: no Discord gauge is exported without a bot."""
        self.discord_probe: DiscordProbe | None = None
        """Read at scrape time; wins over ``discord_connected`` when set."""
        self._last_success: dict[str, float] = {}

    def discord_state(self) -> bool | None:
        """The bot's gateway state now: the probe's answer, else the last pushed state."""
        probe = self.discord_probe
        if probe is None:
            return self.discord_connected
        try:
            return bool(probe())
        except Exception:  # a probe must not break the scrape
            logger.warning("metrics: the Discord probe failed", exc_info=True)
            return False

    def on_event(self, event: JobEvent) -> None:
        """Scheduler listener: count runs and instants that did not run."""
        pipeline = event.pipeline or event.schedule or "-"
        if event.code & EVENT_JOB_MISSED:
            self.not_run["missed"].labels(pipeline).inc()
        elif event.code & EVENT_JOB_MAX_INSTANCES:
            self.not_run["skipped"].labels(pipeline).inc()
        elif event.code & EVENT_JOB_ERROR and event.status == "abandoned":
            self.not_run["abandoned"].labels(pipeline).inc()
        elif event.record is not None and event.record.status in RAN:
            self._observe(event.record)

    def _observe(self, record: RunRecord) -> None:
        self.runs.labels(record.pipeline, record.status).inc()
        if record.duration is not None:
            self.duration.labels(record.pipeline).observe(record.duration)
        if (
            record.trigger == "schedule"
            and record.scheduled_for is not None
            and record.started_at is not None
        ):
            late = (record.started_at - record.scheduled_for).total_seconds()
            self.lateness.labels(record.pipeline).observe(max(late, 0.0))
        if record.status == "success" and record.finished_at is not None:
            self.succeeded(record.pipeline, record.finished_at.timestamp())

    def succeeded(self, pipeline: str, at: float) -> None:
        """Move the last-success gauge forward (never back: events and seeding race)."""
        if at > self._last_success.get(pipeline, 0.0):
            self._last_success[pipeline] = at
            self.last_success.labels(pipeline).set(at)

    def last_successes(self) -> dict[str, float]:
        """The newest successful run of each known pipeline, read from the ledger."""
        pipelines = set(self.scheduler.pipelines())
        pipelines.update(self.scheduler.scheduled_pipelines())
        found: dict[str, float] = {}
        for pipeline in sorted(pipelines):
            rows = self.scheduler.get_runs(pipeline=pipeline, status="success", limit=1)
            if rows and rows[0].finished_at is not None:
                found[pipeline] = rows[0].finished_at.timestamp()
        return found

    def exposition(self) -> bytes:
        """The text exposition format (blocking: reads the database)."""
        return generate_latest(self.registry)


class _ScrapeCollector(Collector):
    """Values read when scraped: schedules by state, database reachability, Discord."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        schedules = GaugeMetricFamily("pipebot_schedules", "Schedules by state.", labels=["state"])
        database = GaugeMetricFamily(
            "pipebot_database_up", "1 when the schedule store answered this scrape."
        )
        try:
            listed = self._metrics.scheduler.list_schedules()
        except SchedulerError as exc:
            logger.warning("metrics: cannot read schedules: %s", exc)
            database.add_metric([], 0)
        else:
            enabled = sum(info.enabled for info in listed)
            schedules.add_metric(["enabled"], enabled)
            schedules.add_metric(["paused"], len(listed) - enabled)
            database.add_metric([], 1)
            yield schedules
        yield database
        connected = self._metrics.discord_state()
        if connected is not None:
            yield GaugeMetricFamily(
                "pipebot_discord_connected",
                "1 while the bot's gateway connection is up.",
                value=int(connected),
            )


METRICS_KEY = web.AppKey("pipebot_metrics", Metrics)


def setup_metrics(app: web.Application, scheduler: PipelineScheduler) -> None:
    """Serve ``GET /metrics`` and subscribe to ``scheduler``'s events.

    Call it before ``scheduler.astart()`` so runs marked abandoned at start-up count.
    """
    metrics = Metrics(scheduler)
    app[METRICS_KEY] = metrics
    offload = app_offload(app)
    lag_tasks: list[asyncio.Task[None]] = []
    listener = metrics.on_event  # one bound method: EventBus removes listeners by identity
    scheduler.add_listener(listener, EVENT_ALL)

    async def handle(request: web.Request) -> web.Response:
        body = await offload(metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def on_startup(app: web.Application) -> None:
        lag_tasks.append(
            asyncio.create_task(measure_loop_lag(metrics.loop_lag), name="pipebot-loop-lag")
        )
        try:
            seeds = await offload(metrics.last_successes)
        except SchedulerError as exc:
            logger.warning("metrics: cannot read the last successful runs: %s", exc)
            return
        for pipeline, at in seeds.items():
            metrics.succeeded(pipeline, at)

    async def on_cleanup(app: web.Application) -> None:
        scheduler.remove_listener(listener)
        for task in lag_tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lag_tasks.clear()

    app.router.add_get("/metrics", handle)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)


def set_discord_connected(target: web.Application | Metrics, connected: bool) -> None:
    """Push the bot's gateway state (``on_ready``/``on_resumed``: True, ``on_disconnect``:
    False) to the metrics of ``target``, an app set up by ``setup_metrics``."""
    _metrics_of(target).discord_connected = connected


def watch_discord(target: web.Application | Metrics, probe: DiscordProbe | None) -> None:
    """Read ``probe()`` at every scrape for ``pipebot_discord_connected`` (None: stop).

    The composition root passes a look at its bot, e.g. ``lambda: bot.is_ready() and not
    bot.is_closed() and bot.ws is not None and bot.ws.open``; ``api`` never imports it.
    """
    _metrics_of(target).discord_probe = probe


def _metrics_of(target: web.Application | Metrics) -> Metrics:
    return target if isinstance(target, Metrics) else target[METRICS_KEY]


async def measure_loop_lag(
    gauge: Gauge, interval: float = LAG_INTERVAL, window: int = LAG_WINDOW
) -> None:
    """Forever: sleep ``interval``, note how much later than asked the loop woke us, and
    set ``gauge`` to the worst of the last ``window`` samples (scrapes see the spikes)."""
    loop = asyncio.get_running_loop()
    samples: deque[float] = deque(maxlen=window)
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        samples.append(max(loop.time() - started - interval, 0.0))
        gauge.set(max(samples))
