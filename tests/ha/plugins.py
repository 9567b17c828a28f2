"""Transforms the high-availability tests run from pipelines.yml (``tests.ha.plugins``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pipelines.core import Transform


class Stamp(Transform):
    """Appends ``<pid> <scheduled_for or -> <trigger>`` to ``path`` for every run it joins.

    The line is written when the run really executes, so the tests can tell an instant
    executed twice (by two processes) from one that was only claimed twice.
    """

    def __init__(self, path: str, seconds: float = 0.0) -> None:
        self.path = path
        self.seconds = seconds

    def process(self, item: Any) -> Any:
        instant = self.context.scheduled_for
        stamp = instant.isoformat() if instant is not None else "-"
        with Path(self.path).open("a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {stamp} {self.context.trigger}\n")
        if self.seconds:
            time.sleep(self.seconds)
        return item
