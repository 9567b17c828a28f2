"""``CeleryExecutor``: the scheduler's side of running pipelines on Celery workers.

The dispatcher has claimed the run's row before ``execute`` is called. The run is sent
as a task (id = run id) and the call waits for its outcome, which arrives

- by a ``done`` message a worker publishes once it wrote the row (Redis pub/sub), or
- by the ledger poll every ``CELERY_POLL_SECONDS`` (a message lost while the
  subscription was down), which also closes as ``abandoned`` the runs held by a worker
  whose heartbeat expired. Every ``orphan_sweep`` seconds it does the same for runs
  nobody here waits for (sent by a scheduler process that stopped since).

Past the run's timeout (plus ``CELERY_TIMEOUT_GRACE``, counted from sending, so time
in the queue counts) the row is closed as ``timeout`` and the task is revoked: a
``cancel`` message stops it on the worker holding it, and a worker that receives it
later finds its row closed and drops it. (Celery's own ``control.revoke`` is not used:
without a result backend each worker logs a warning per revoke, workers started later
never learn of it, and it cannot stop a task on the threads pool.) Cancelling
``execute`` (overlap ``cancel_other``, shutdown) does the same, and the dispatcher
records the run ``cancelled``. Targets that are not
configured pipelines (code callables) run here, as with the local executor: a worker
only knows the pipelines of its pipelines.yml.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis
from sqlalchemy import Engine

from pipelines.pipeline import RunOptions

from ..errors import SchedulerError
from ..targets import Outcome, PipelineTarget, Target
from . import celery_rows as rows
from .celery_app import ALIVE_PREFIX, TASK_NAME, alive_key, cancel_channel, done_channel, make_app
from .celery_settings import CelerySettings

logger = logging.getLogger(__name__)
SUBSCRIBE_WAIT = 2.0
"""Seconds the first run waits for the ``done`` subscription before relying on polls."""
BACKOFF_MAX = 5.0
ORPHAN_SWEEP = 30.0


class CeleryExecutor:
    """Sends runs to Celery workers and waits for the outcome they write to the ledger."""

    def __init__(self, settings: CelerySettings, engine: Engine) -> None:
        if settings.broker_url is None:
            raise SchedulerError("the Celery executor needs CELERY_BROKER_URL")
        self.settings = settings
        self._engine = engine
        self._app = make_app(settings)
        self._broker = settings.broker_url
        self._waiters: dict[str, asyncio.Future[Outcome]] = {}
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipebot-celery")
        self._sync: redis.Redis | None = None
        self._redis: aioredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._starting: asyncio.Lock | None = None
        self._closed = False
        self._sender_closed = False
        self.sent = 0
        """Runs sent to the broker (tests, metrics)."""
        self.orphan_sweep = ORPHAN_SWEEP
        """Seconds between sweeps for runs of dead workers that nobody here waits for."""

    def __repr__(self) -> str:
        return f"CeleryExecutor(broker={self.settings.where!r}, queue={self.settings.queue!r})"

    # --- Executor -------------------------------------------------------------------------

    async def execute(self, pipeline: str, target: Target, options: RunOptions) -> Outcome:
        if not isinstance(target, PipelineTarget) or options.run_id is None:
            return await target.run(options)
        if self._closed:
            raise SchedulerError("the Celery executor is closed")
        await self._start()
        run_id = options.run_id
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._waiters[run_id] = future
        try:
            return await self._remote(run_id, pipeline, options, future)
        except asyncio.CancelledError:
            self._stop_remote(run_id, "cancelled by the scheduler")
            raise
        finally:
            self._waiters.pop(run_id, None)

    async def _remote(
        self, run_id: str, pipeline: str, options: RunOptions, future: asyncio.Future[Outcome]
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._sender, self._send, run_id, pipeline, options)
        except Exception as exc:  # kombu and redis raise several kinds when unreachable
            logger.error("run %s could not be sent to %s: %s", run_id, self.settings.where, exc)
            return Outcome(status="failed", error=f"could not send the run to Celery: {exc}")
        timeout = options.timeout
        if timeout is None:
            return await future
        try:
            async with asyncio.timeout(timeout + self.settings.timeout_grace):
                return await future
        except TimeoutError:
            return await self._expire(run_id, timeout)

    async def aclose(self) -> None:
        """Stop listening and polling; close connections. Runs on workers go on."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if not self._sender_closed:
            self._sender_closed = True
            await asyncio.get_running_loop().run_in_executor(self._sender, self._close_sync)
            self._sender.shutdown(wait=True)

    # --- workers --------------------------------------------------------------------------

    def live_holders(self) -> set[str]:
        """Holders of the worker processes alive now (blocking; raises ``RedisError``)."""
        client = self._client()
        return {
            key.decode()[len(ALIVE_PREFIX) :]
            for key in client.scan_iter(match=f"{ALIVE_PREFIX}*", count=500)
        }

    # --- sending --------------------------------------------------------------------------

    def _send(self, run_id: str, pipeline: str, options: RunOptions) -> None:
        """In the sender thread: publish the task (kombu blocks; retries briefly)."""
        scheduled = options.scheduled_for
        payload = {
            "trigger": options.trigger,
            "scheduled_for": None if scheduled is None else scheduled.isoformat(),
            "requested_by": options.requested_by,
            "timeout": options.timeout,
        }
        self._app.send_task(
            TASK_NAME,
            args=[run_id, pipeline, payload],
            task_id=run_id,
            queue=self.settings.queue,
            argsrepr=repr([run_id, pipeline]),  # the default safe repr costs more than it shows
            kwargsrepr="{}",
        )
        self.sent += 1

    def _stop_remote(self, run_id: str, reason: str) -> None:
        """Tell the worker holding ``run_id`` to cancel it (no wait)."""
        if self._sender_closed:
            return
        job: Future[None] = self._sender.submit(self._stop_sync, run_id, reason)
        job.add_done_callback(_log_failure)

    def _stop_sync(self, run_id: str, reason: str) -> None:
        message = json.dumps({"run_id": run_id, "reason": reason})
        self._client().publish(cancel_channel(self.settings.queue), message)

    def _client(self) -> redis.Redis:
        if self._sync is None:
            self._sync = redis.Redis.from_url(self._broker, socket_timeout=10)
        return self._sync

    def _close_sync(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        self._app.close()

    # --- outcomes -------------------------------------------------------------------------

    async def _start(self) -> None:
        if self._tasks:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._tasks:
                return
            self._redis = aioredis.Redis.from_url(self._broker)
            self._tasks = [
                asyncio.create_task(self._listen(), name="pipebot-celery-listen"),
                asyncio.create_task(self._watch(), name="pipebot-celery-watch"),
            ]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SUBSCRIBE_WAIT):
                    await self._subscribed.wait()

    async def _listen(self) -> None:
        """Resolve waiters from ``done`` messages; resubscribe after connection errors."""
        assert self._redis is not None
        backoff = 0.1
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(done_channel(self.settings.queue))
                    self._subscribed.set()
                    backoff = 0.1
                    while True:
                        message = await pubsub.get_message(timeout=None)
                        if message is not None:
                            self._on_done(message["data"])
            except (redis.RedisError, OSError) as exc:
                self._subscribed.clear()
                logger.warning(
                    "Celery results channel on %s lost (%s); polling the ledger meanwhile",
                    self.settings.where,
                    exc,
                )
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)

    def _on_done(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            run_id = message["run_id"]
            finished = datetime.fromisoformat(message["finished_at"])
            outcome = Outcome(
                status=message["status"],
                error=message.get("error"),
                items=tuple(message.get("items") or ()),
                stages=tuple(message.get("stages") or ()),
                recorded=True,
                finished_at=finished,
            )
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignored a malformed Celery result message: %s", exc)
            return
        self._resolve(run_id, outcome)

    def _resolve(self, run_id: str, outcome: Outcome) -> None:
        future = self._waiters.get(run_id)
        if future is not None and not future.done():
            future.set_result(outcome)

    async def _watch(self) -> None:
        """Every poll interval: outcomes the messages missed, and runs of dead workers."""
        loop = asyncio.get_running_loop()
        swept = loop.time()
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                if loop.time() - swept >= self.orphan_sweep:
                    swept = loop.time()
                    await self._sweep()
                waiting = list(self._waiters)
                if waiting:
                    await self._poll(waiting)
            except (SchedulerError, redis.RedisError, OSError) as exc:
                logger.warning("Celery executor could not check running runs: %s", exc)

    async def _sweep(self) -> None:
        """Abandon runs of dead workers that no ``execute`` here is waiting for."""
        held = await asyncio.to_thread(rows.held_by_workers, self._engine)
        orphans = {run_id: h for run_id, h in held.items() if run_id not in self._waiters}
        if not orphans:
            return
        dead = await self._dead(orphans.values())
        for run_id, holder in orphans.items():
            if holder in dead:
                await self._abandon(run_id, holder)

    async def _poll(self, run_ids: list[str]) -> None:
        found = await asyncio.to_thread(rows.states, self._engine, run_ids)
        held: dict[str, str] = {}
        for run_id, state in found.items():
            if state.final:
                self._resolve(run_id, state.outcome)
            elif state.on_worker and state.holder is not None:
                held[run_id] = state.holder
        if not held:
            return
        dead = await self._dead(held.values())
        for run_id, holder in held.items():
            if holder in dead:
                await self._abandon(run_id, holder)

    async def _dead(self, holders: Iterable[str]) -> set[str]:
        assert self._redis is not None
        unique = sorted(set(holders))
        async with self._redis.pipeline(transaction=False) as pipe:
            for holder in unique:
                pipe.exists(alive_key(holder))
            answers = await pipe.execute()
        return {holder for holder, alive in zip(unique, answers, strict=True) if not alive}

    async def _abandon(self, run_id: str, holder: str) -> None:
        error = (
            f"worker {holder} stopped before the run finished "
            f"(no heartbeat for CELERY_WORKER_LIVENESS)"
        )
        outcome = Outcome(status="abandoned", error=error, recorded=True, finished_at=_now())
        if await asyncio.to_thread(rows.close, self._engine, run_id, outcome, holder=holder):
            logger.warning("run %s abandoned: %s", run_id, error)
            self._resolve(run_id, outcome)

    async def _expire(self, run_id: str, timeout: float) -> Outcome:
        """The deadline passed: close the row as timed out unless the worker was first."""
        error = f"run exceeded {timeout:g}s (ended by the scheduler; it ran on Celery)"
        outcome = Outcome(status="timeout", error=error, recorded=True, finished_at=_now())
        try:
            closed = await asyncio.to_thread(rows.close, self._engine, run_id, outcome)
        except SchedulerError as exc:  # the ledger's writer will retry the result
            logger.warning("run %s timed out; writing it later: %s", run_id, exc)
            self._stop_remote(run_id, error)
            return Outcome(status="timeout", error=error)
        if closed:
            self._stop_remote(run_id, error)
            return outcome
        state = (await asyncio.to_thread(rows.states, self._engine, [run_id])).get(run_id)
        return outcome if state is None else state.outcome


def _now() -> datetime:
    return datetime.now(UTC)


def _log_failure(job: Future[Any]) -> None:
    exc = job.exception()
    if exc is not None:
        logger.warning("could not tell Celery workers to stop a run: %s", exc)
