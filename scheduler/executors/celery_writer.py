"""A worker process's ledger writes: one thread, many operations per transaction.

The runs of a worker process take and close their rows through ``BatchWriter``: the
thread drains what is queued, runs it in one transaction and resolves each caller's
future, so concurrent runs share commits instead of contending for the database's
write lock. While the database fails, the batch is retried with capped backoff for up
to ``patience`` seconds, then each caller gets ``StoreError``. Announcements (the
``done`` messages) are published after the commit that made them true, one Redis
round trip per batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreError
from .celery_rows import describe

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BATCH = 500
BACKOFF_MAX = 5.0
Publish = Callable[[list[str]], None]


class _Job:
    __slots__ = ("work", "future", "announce")

    def __init__(
        self, work: Callable[[Connection], Any], future: Future[Any], announce: str | None
    ) -> None:
        self.work = work
        self.future = future
        self.announce = announce


class BatchWriter:
    """Runs row operations for many threads, batched into shared transactions."""

    def __init__(self, engine: Engine, publish: Publish, *, patience: float = 300.0) -> None:
        self.engine = engine
        self.publish = publish
        self.patience = patience
        self.transactions = 0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="pipebot-worker-db", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (without long retries), then end the thread."""
        self._stopping.set()
        if self._thread.ident is None:  # never started
            return
        self._queue.put(None)
        self._thread.join(timeout)

    def submit(self, work: Callable[[Connection], T], *, announce: str | None = None) -> Future[T]:
        """Queue ``work(conn)``; if it returns True, ``announce`` is published after commit."""
        future: Future[T] = Future()
        self._queue.put(_Job(work, future, announce))
        return future

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            end = False
            while len(batch) < MAX_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    end = True
                    break
                batch.append(job)
            self._commit(batch)
            if end:
                return

    def _commit(self, batch: list[_Job]) -> None:
        deadline = time.monotonic() + self.patience
        backoff = 0.05
        while True:
            try:
                with self.engine.begin() as conn:
                    results = [job.work(conn) for job in batch]
                break
            except SQLAlchemyError as exc:
                late = time.monotonic() + backoff > deadline
                if late or self._stopping.is_set():
                    error = StoreError(f"cannot write to the run ledger: {describe(exc)}")
                    for job in batch:
                        job.future.set_exception(error)
                    return
                logger.warning("run ledger write failed, retrying in %.2fs: %s", backoff, exc)
                time.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
            except Exception as exc:  # a faulty operation: the others are committed alone
                if len(batch) == 1:
                    batch[0].future.set_exception(exc)
                    return
                for job in batch:
                    self._commit([job])
                return
        self.transactions += 1
        announce = [j.announce for j, r in zip(batch, results, strict=True) if r and j.announce]
        if announce:
            try:
                self.publish(announce)
            except Exception as exc:  # the scheduler's ledger poll finds these runs anyway
                logger.warning("could not announce %d finished run(s): %s", len(announce), exc)
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)
