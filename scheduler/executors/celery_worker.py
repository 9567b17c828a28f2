"""A Celery worker process's side of remote runs: take the row, run, write, publish.

``WorkerRuntime`` is made once per worker process (Celery's ``threads`` pool: tasks
arrive on pool threads). Pipelines run as coroutines on one event loop thread, so a
run can be cancelled the way the local executor cancels it. A liveness thread keeps
the process's heartbeat key alive (TTL ``CELERY_WORKER_LIVENESS``) and listens for
cancel requests from the scheduler.

A delivered task is run only if its row is ``running`` and no worker took it yet.
Otherwise it was closed (timed out, cancelled, abandoned) or is a redelivery: of a run
still going on a live worker (dropped) or of one whose worker died (closed as
``abandoned``, never run again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from celery.exceptions import Reject  # type: ignore[import-untyped]
from sqlalchemy import Connection, Engine

from pipelines.pipeline import RunOptions

from ..errors import SettingsError, StoreError
from ..targets import Outcome, Target
from . import celery_rows as rows
from .celery_app import TASK_NAME, WORKER_PREFIX, alive_key, cancel_channel, done_channel
from .celery_settings import CelerySettings
from .celery_writer import BatchWriter

logger = logging.getLogger(__name__)
WRITE_PATIENCE = 300.0
"""Seconds a worker keeps retrying a ledger write before it gives up (and logs it)."""
REMEMBER_CANCELS = 10_000
STOP_WAIT = 5.0
T = TypeVar("T")


class WorkerRuntime:
    """Runs the pipelines of delivered tasks and writes their outcomes to the ledger."""

    def __init__(
        self,
        settings: CelerySettings,
        engine: Engine,
        resolve: Callable[[str], Target | None],
        *,
        hostname: str | None = None,
    ) -> None:
        if settings.broker_url is None:
            raise SettingsError("CELERY_BROKER_URL", "is required to run a worker")
        self.settings = settings
        self.engine = engine
        self.resolve = resolve
        host = hostname or socket.gethostname()
        self.holder = f"{WORKER_PREFIX}{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._redis = redis.Redis.from_url(settings.broker_url, socket_timeout=5)
        self._writer = BatchWriter(engine, self._publish, patience=WRITE_PATIENCE)
        self._loop = asyncio.new_event_loop()
        self._active: dict[str, asyncio.Task[Outcome]] = {}
        self._cancelled: OrderedDict[str, str] = OrderedDict()
        self._inflight: set[str] = set()
        """Runs this process took and has not closed yet (touched on the loop only)."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"WorkerRuntime(holder={self.holder!r}, broker={self.settings.where!r})"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Beat once (raises ``RedisError`` if Redis is unreachable), then start threads."""
        self._beat()
        self._writer.start()
        self._threads = [
            threading.Thread(target=self._run_loop, name="pipebot-worker-loop", daemon=True),
            threading.Thread(target=self._liveness, name="pipebot-worker-alive", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        logger.info("worker %s ready for queue %s", self.holder, self.settings.queue)

    def stop(self) -> None:
        """Cancel runs still going, stop the threads and drop the heartbeat."""
        with self._lock:
            for run_id in list(self._active):
                self._cancelled[run_id] = "cancelled: the worker stopped"
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=STOP_WAIT + 5)
        self._writer.stop()
        try:
            self._redis.delete(alive_key(self.holder))
        except redis.RedisError as exc:
            logger.warning("could not remove the heartbeat of %s: %s", self.holder, exc)
        self._redis.close()

    def register(self, app: Any) -> Any:
        """Register the ``pipebot.run`` task on Celery ``app`` (bound to this runtime)."""

        def run(run_id: str, pipeline: str, options: dict[str, Any]) -> None:
            self.handle(run_id, pipeline, options)

        return app.task(name=TASK_NAME, acks_late=True, ignore_result=True)(run)

    # --- one task -------------------------------------------------------------------------

    def handle(self, run_id: str, pipeline: str, options: Mapping[str, Any]) -> None:
        """Take, run and close one run (called on a Celery pool thread; returns when written).

        The work happens on the runtime's event loop; the pool thread only waits.
        """
        work = self._process(run_id, pipeline, _options(run_id, options))
        try:
            asyncio.run_coroutine_threadsafe(work, self._loop).result()
        except _Unreachable as exc:  # let another try be made once the ledger answers
            raise Reject(str(exc), requeue=True) from None

    async def _process(self, run_id: str, pipeline: str, options: RunOptions) -> None:
        try:
            taken = await self._db(lambda conn: rows.take_in(conn, run_id, self.holder))
        except StoreError as exc:
            raise _Unreachable(f"run {run_id} not taken: {exc}") from None
        if not taken and not await self._ours(run_id):
            return
        self._inflight.add(run_id)
        try:
            await self._execute(run_id, pipeline, options)
        finally:
            self._inflight.discard(run_id)

    async def _execute(self, run_id: str, pipeline: str, options: RunOptions) -> None:
        logger.info("run %s (%s) started on %s", run_id, pipeline, self.holder)
        target = self.resolve(pipeline)
        if target is None:
            outcome = Outcome(
                status="failed",
                error=f"pipeline {pipeline!r} is not in the pipelines.yml of worker {self.holder}",
            )
        else:
            outcome = await self._run(run_id, target, options)
        final = _final(outcome)
        try:
            written = await self._db(
                lambda conn: rows.close_in(conn, run_id, final, self.holder),
                announce=_announcement(run_id, final),
            )
        except StoreError as exc:
            logger.error(
                "result of run %s (%s) could not be written: %s", run_id, final.status, exc
            )
            return
        if written:
            logger.info("run %s finished: %s", run_id, final.status)
        else:
            logger.info(
                "run %s ended %s, but the scheduler had closed it already", run_id, final.status
            )

    async def _run(self, run_id: str, target: Target, options: RunOptions) -> Outcome:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            reason = self._cancelled.get(run_id)
            if reason is None:
                self._active[run_id] = task
        if reason is not None:
            return Outcome(status="cancelled", error=reason)
        try:
            return await target.run(options)
        except asyncio.CancelledError:
            with self._lock:
                reason = self._cancelled.get(run_id, "cancelled")
            return Outcome(status="cancelled", error=reason)
        except Exception as exc:  # a target that raised instead of reporting
            return Outcome(status="failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._active.pop(run_id, None)

    async def _ours(self, run_id: str) -> bool:
        """Why a run was not taken; True if it is ours after all (a commit retried)."""
        try:
            found = await self._db(lambda conn: rows.states_in(conn, [run_id]))
        except StoreError as exc:
            logger.error("run %s not taken and not readable: %s", run_id, exc)
            return False
        state = found.get(run_id)
        if state is None:
            logger.warning("run %s is not in the ledger: not run", run_id)
        elif state.final:
            logger.info("run %s is %s already: not run", run_id, state.status)
        elif state.holder == self.holder and run_id not in self._inflight:
            return True  # taken by a commit that reported failure but went through
        elif state.on_worker and state.holder is not None:
            await self._redelivered(run_id, state.holder)
        else:
            logger.warning("run %s could not be taken (holder %s): not run", run_id, state.holder)
        return False

    async def _redelivered(self, run_id: str, holder: str) -> None:
        """A second delivery (visibility timeout): never run twice; close it if orphaned."""
        try:
            alive = bool(await asyncio.to_thread(self._redis.exists, alive_key(holder)))
        except redis.RedisError as exc:
            logger.warning("run %s redelivered; liveness of %s unknown: %s", run_id, holder, exc)
            return
        if alive:
            logger.warning(
                "run %s redelivered while still running on %s: duplicate dropped "
                "(is CELERY_VISIBILITY_TIMEOUT shorter than the run?)",
                run_id,
                holder,
            )
            return
        outcome = _final(
            Outcome(
                status="abandoned",
                error=f"worker {holder} stopped before the run finished (message redelivered)",
            )
        )
        try:
            closed = await self._db(
                lambda conn: rows.close_in(conn, run_id, outcome, holder),
                announce=_announcement(run_id, outcome),
            )
        except StoreError as exc:
            logger.error("run %s of the dead worker %s not closed: %s", run_id, holder, exc)
            return
        if closed:
            logger.warning("run %s abandoned: %s", run_id, outcome.error)

    async def _db(self, work: Callable[[Connection], T], *, announce: str | None = None) -> T:
        """``work(conn)`` on the batch writer (raises ``StoreError`` after its patience)."""
        return await asyncio.wrap_future(self._writer.submit(work, announce=announce))

    def _publish(self, messages: list[str]) -> None:
        """On the writer thread, after commit: the ``done`` messages, one round trip."""
        channel = done_channel(self.settings.queue)
        with self._redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(channel, message)
            pipe.execute()

    # --- threads --------------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _shutdown(self) -> None:
        tasks = list(self._active.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT)
        self._loop.stop()

    def _beat(self) -> None:
        ttl = max(1, int(self.settings.liveness * 1000))
        self._redis.set(alive_key(self.holder), "1", px=ttl)

    def _liveness(self) -> None:
        """Renew the heartbeat every third of the liveness; take cancel requests between."""
        period = self.settings.liveness / 3
        next_beat = time.monotonic() + period
        pubsub: Any = None
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                if pubsub is None:
                    pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                    pubsub.subscribe(cancel_channel(self.settings.queue))
                wait = max(0.0, min(0.5, next_beat - time.monotonic()))
                message = pubsub.get_message(timeout=wait)
                if message is not None:
                    self._on_cancel(message["data"])
                if time.monotonic() >= next_beat:
                    self._beat()
                    next_beat = time.monotonic() + period
                backoff = 0.1
            except (redis.RedisError, OSError) as exc:
                logger.warning("worker %s lost Redis (%s); retrying", self.holder, exc)
                if pubsub is not None:
                    pubsub.close()
                    pubsub = None
                self._stopping.wait(backoff)
                backoff = min(5.0, backoff * 2)
        if pubsub is not None:
            pubsub.close()

    def _on_cancel(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            run_id, reason = str(message["run_id"]), str(message.get("reason") or "cancelled")
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed cancel request")
            return
        with self._lock:
            self._cancelled[run_id] = reason
            while len(self._cancelled) > REMEMBER_CANCELS:
                self._cancelled.popitem(last=False)
            task = self._active.get(run_id)
        if task is not None:
            logger.info("cancelling run %s: %s", run_id, reason)
            self._loop.call_soon_threadsafe(task.cancel)


class _Unreachable(Exception):
    """The ledger could not be written to take a run."""


def _final(outcome: Outcome) -> Outcome:
    """``outcome`` as the worker records it: written by it, ending now."""
    return replace(outcome, recorded=True, finished_at=datetime.now(UTC))


def _announcement(run_id: str, outcome: Outcome) -> str:
    finished = outcome.finished_at or datetime.now(UTC)
    return json.dumps(
        {
            "run_id": run_id,
            "status": outcome.status,
            "error": outcome.error,
            "items": list(outcome.items),
            "stages": list(outcome.stages),
            "finished_at": finished.isoformat(),
        }
    )


def _options(run_id: str, options: Mapping[str, Any]) -> RunOptions:
    scheduled = options.get("scheduled_for")
    timeout = options.get("timeout")
    return RunOptions(
        run_id=run_id,
        trigger=str(options.get("trigger") or "schedule"),
        scheduled_for=None if scheduled is None else datetime.fromisoformat(scheduled),
        requested_by=options.get("requested_by"),
        timeout=None if timeout is None else float(timeout),
    )
