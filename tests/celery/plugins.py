"""Transforms the Celery tests run on real workers (``allowed_modules: [tests.celery.plugins]``).

Each writes one line per run, ``<pid> <run id> <trigger>``, so a test can tell which
process ran what, and how often.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from pipelines.core import Transform


class Record(Transform):
    """Passes items through; appends one line per run to ``path`` at teardown."""

    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, item: Any) -> Any:
        return item

    def teardown(self) -> None:
        _note(self.path, self)


class Gate(Transform):
    """Notes the run in ``log``, then holds every item while the file ``hold`` exists.

    It waits on the event loop, so cancelling the run stops it at once.
    """

    blocking = False

    def __init__(self, hold: str, log: str) -> None:
        self.hold = hold
        self.log = log
        self.noted = False

    async def process(self, item: Any) -> Any:
        if not self.noted:
            _note(self.log, self)
            self.noted = True
        while Path(self.hold).exists():
            await asyncio.sleep(0.05)
        return item


def _note(path: str, stage: Transform) -> None:
    context = stage.context
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()} {context.run_id} {context.trigger}\n")
