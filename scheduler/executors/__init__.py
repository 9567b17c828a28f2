"""Where runs execute. The dispatcher's ``Executor`` protocol lives in ``dispatch``.

- ``LocalExecutor`` (``scheduler.dispatch``, the default): on the scheduler's event loop.
- ``CeleryExecutor`` (``celery``): the scheduler claims the instant and sends the run to
  a Celery worker (``celery_worker``), which runs the pipeline and writes the result to
  the ledger row; the scheduler learns of it by Redis pub/sub, with a ledger poll behind.

``executor_from_env`` picks one from ``SCHEDULER_EXECUTOR`` (``celery_settings``).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine

from ..dispatch import Executor
from .celery_settings import CelerySettings


def executor_from_env(engine: Engine, environ: Mapping[str, str] | None = None) -> Executor | None:
    """The executor ``SCHEDULER_EXECUTOR`` asks for; None for the local one.

    Raises ``SettingsError`` naming the variable when the settings cannot be used.
    """
    settings = CelerySettings.from_env(environ)
    if not settings.enabled:
        return None
    from .celery import CeleryExecutor  # imports celery: only when it is asked for

    return CeleryExecutor(settings, engine)
