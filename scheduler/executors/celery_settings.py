"""Settings of the Celery executor and its workers, from the environment.

The scheduler reads ``SCHEDULER_EXECUTOR`` and the ``CELERY_*`` variables below; the
workers read the same ones (``CELERY_WORKER_*`` only matter to them). Results go to the
run ledger, so Celery needs no result backend (``CELERY_RESULT_BACKEND`` is not read).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ..errors import SettingsError

EXECUTORS = ("local", "celery")
BROKER_SCHEMES = ("redis", "rediss")


@dataclass(frozen=True)
class CelerySettings:
    """How runs are sent to Celery workers; every field has an environment variable."""

    executor: str = "local"
    """``SCHEDULER_EXECUTOR``: ``local`` (in the scheduler process) or ``celery``."""
    broker_url: str | None = None
    """``CELERY_BROKER_URL``: the Redis broker (``redis://`` or ``rediss://``)."""
    queue: str = "pipebot"
    """``CELERY_QUEUE``: the queue runs are sent to (and the prefix of pipebot's keys)."""
    visibility_timeout: float = 3600.0
    """``CELERY_VISIBILITY_TIMEOUT``: seconds before an unacknowledged run is redelivered."""
    liveness: float = 10.0
    """``CELERY_WORKER_LIVENESS``: a worker silent this long is dead; its runs abandoned."""
    timeout_grace: float = 2.0
    """``CELERY_TIMEOUT_GRACE``: seconds past a run's timeout before the scheduler ends it."""
    poll_interval: float = 1.0
    """``CELERY_POLL_SECONDS``: how often the scheduler checks the ledger and liveness."""
    concurrency: int = 8
    """``CELERY_WORKER_CONCURRENCY``: runs one worker process executes at once."""

    def __repr__(self) -> str:
        broker = None if self.broker_url is None else redact(self.broker_url)
        return (
            f"CelerySettings(executor={self.executor!r}, broker_url={broker!r}, "
            f"queue={self.queue!r})"
        )

    @property
    def enabled(self) -> bool:
        return self.executor == "celery"

    @property
    def where(self) -> str:
        """The broker URL with its password masked, for logs and errors."""
        return redact(self.broker_url or "")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CelerySettings:
        env = os.environ if environ is None else environ
        executor = (env.get("SCHEDULER_EXECUTOR") or "local").strip().lower()
        if executor not in EXECUTORS:
            raise SettingsError(
                "SCHEDULER_EXECUTOR", f"{executor!r} is not one of {', '.join(EXECUTORS)}"
            )
        broker = env.get("CELERY_BROKER_URL") or None
        if broker is not None and urlsplit(broker).scheme not in BROKER_SCHEMES:
            raise SettingsError(
                "CELERY_BROKER_URL", f"{redact(broker)!r} is not a redis:// or rediss:// URL"
            )
        if executor == "celery" and broker is None:
            raise SettingsError("CELERY_BROKER_URL", "is required with SCHEDULER_EXECUTOR=celery")
        queue = (env.get("CELERY_QUEUE") or "pipebot").strip()
        if not queue or any(c.isspace() or c in "*?[]" for c in queue):
            raise SettingsError("CELERY_QUEUE", f"{queue!r} is not a usable queue name")
        return cls(
            executor=executor,
            broker_url=broker,
            queue=queue,
            visibility_timeout=_seconds(env, "CELERY_VISIBILITY_TIMEOUT", 3600.0),
            liveness=_seconds(env, "CELERY_WORKER_LIVENESS", 10.0),
            timeout_grace=_seconds(env, "CELERY_TIMEOUT_GRACE", 2.0, allow_zero=True),
            poll_interval=_seconds(env, "CELERY_POLL_SECONDS", 1.0),
            concurrency=_whole(env, "CELERY_WORKER_CONCURRENCY", 8),
        )


def redact(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = f"{user}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _seconds(env: Mapping[str, str], name: str, default: float, allow_zero: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"{raw!r} is not a number of seconds") from None
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise SettingsError(name, f"must be positive, got {raw!r}")
    return value


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"{raw!r} is not a whole number") from None
    if value < 1:
        raise SettingsError(name, f"must be 1 or more, got {raw!r}")
    return value
