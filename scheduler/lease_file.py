"""The ``file`` lease: an exclusive ``fcntl.flock`` on one file, for one host.

The kernel releases the lock when the holder's process dies, so a standby takes over
within its poll interval. A paused (SIGSTOP) holder keeps the lock: use the postgres
or redis backend where a hung holder must be replaced. The file keeps a counter that
each new holder increments: the fencing token. The file is never deleted (a standby
could otherwise lock a file that is no longer the one at the path).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import ClassVar

from .lease import NOT_YET, NotYet, RenewingLease


class FileLease(RenewingLease):
    backend: ClassVar[str] = "file"

    def __init__(self, path: Path, name: str, ttl: float) -> None:
        super().__init__(name, ttl)
        self.path = path
        self._fd: int | None = None

    async def _try_acquire(self) -> int | None | NotYet:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return NOT_YET
        if not self._same_file():  # replaced while we waited: lock the new one
            await self._close()
            return NOT_YET
        return self._next_fence()

    def _same_file(self) -> bool:
        if self._fd is None:
            return False
        try:
            return os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return False

    def _next_fence(self) -> int:
        assert self._fd is not None
        os.lseek(self._fd, 0, os.SEEK_SET)
        text = os.read(self._fd, 64).decode("ascii", "replace").split()
        fence = (int(text[0]) if text and text[0].isdigit() else 0) + 1
        data = f"{fence} {os.getpid()}\n".encode()
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, data)
        os.ftruncate(self._fd, len(data))
        return fence

    async def _renew(self) -> bool:
        return self._same_file()

    async def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the flock
