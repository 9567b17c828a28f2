"""``JsonLinesSink``: write each item as one JSON line, passing items on."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any, Literal, TextIO

from ..core import Transform
from ..transforms.dedupe import ready_batches

logger = logging.getLogger(__name__)

Mode = Literal["append", "overwrite"]
MODES: tuple[str, ...] = ("append", "overwrite")
NEW_FILE_MODE = 0o644
WRITE_BATCH = 256
"""Most lines written per worker-thread call."""


class JsonLinesSink(Transform):
    """Append to ``path``, or in ``overwrite`` mode replace it atomically at the end.

    Overwrite mode writes to a temporary file beside ``path`` and renames it over
    ``path`` only when the input is exhausted, so a failed run leaves the old file
    untouched (the rename happens only when the input really ended, never when the run
    stops early). Values JSON cannot encode (dates, ...) are written with ``str``.
    Parent directories are created. File work runs in worker threads, in batches.
    """

    def __init__(
        self, path: str | os.PathLike[str], mode: Mode = "append", ensure_ascii: bool = False
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.ensure_ascii = ensure_ascii
        self._lock = threading.Lock()
        self._handle: TextIO | None = None
        self._temp: Path | None = None

    async def stream(self, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        handle = await asyncio.to_thread(self._open)
        encode = json.JSONEncoder(ensure_ascii=self.ensure_ascii, default=str).encode
        async with aclosing(ready_batches(items, WRITE_BATCH)) as batches:
            async for batch in batches:
                await asyncio.to_thread(self._write, handle, encode, batch)
                for item in batch:
                    yield item
        await asyncio.to_thread(self._commit)

    def teardown(self) -> None:
        """Close the file; in overwrite mode drop the temporary file of an unfinished run."""
        with self._lock:
            handle, self._handle = self._handle, None
            temp, self._temp = self._temp, None
        if handle is not None:
            handle.close()
        if temp is not None:
            temp.unlink(missing_ok=True)
            logger.warning("%s not replaced: the run did not finish", self.path)

    def _open(self) -> TextIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.mode == "append":
            handle = self.path.open("a", encoding="utf-8", newline="\n")
        else:
            fd, name = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
            self._temp = Path(name)
            handle = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        with self._lock:
            self._handle = handle
        return handle

    def _write(self, handle: TextIO, encode: Callable[[Any], str], batch: list[Any]) -> None:
        text = "".join([encode(item) + "\n" for item in batch])
        with self._lock:
            if self._handle is handle:  # not closed by a teardown meanwhile
                handle.write(text)

    def _commit(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
            temp, self._temp = self._temp, None
        if handle is None:
            return
        with handle:
            handle.flush()
            os.fsync(handle.fileno())
        if temp is not None:
            mode = self.path.stat().st_mode & 0o777 if self.path.exists() else NEW_FILE_MODE
            os.chmod(temp, mode)
            os.replace(temp, self.path)
