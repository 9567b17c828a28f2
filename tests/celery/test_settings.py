"""Executor settings from the environment, and what a worker refuses to start with.

None of these needs Redis: bad settings are refused before anything connects.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.errors import SettingsError
from scheduler.executors import executor_from_env
from scheduler.executors.celery_settings import CelerySettings
from scheduler.settings import SchedulerSettings

from .conftest import REPO_ROOT, Project

VALID = """\
pipelines:
  one:
    chain:
      - class: pipelines.transforms.sources.Range
        kwargs: {count: 1}
"""


def test_local_is_the_default_and_needs_no_broker() -> None:
    settings = CelerySettings.from_env({})
    assert (settings.executor, settings.enabled, settings.broker_url) == ("local", False, None)


def test_celery_settings_are_read_and_the_password_is_masked() -> None:
    settings = CelerySettings.from_env(
        {
            "SCHEDULER_EXECUTOR": "Celery",
            "CELERY_BROKER_URL": "redis://:s3cret-pw@broker.example:6380/2",
            "CELERY_QUEUE": "etl",
            "CELERY_VISIBILITY_TIMEOUT": "7200",
            "CELERY_WORKER_LIVENESS": "15",
            "CELERY_TIMEOUT_GRACE": "0",
            "CELERY_WORKER_CONCURRENCY": "3",
        }
    )
    assert settings.enabled and settings.queue == "etl"
    assert (settings.visibility_timeout, settings.liveness, settings.timeout_grace) == (
        7200.0,
        15.0,
        0.0,
    )
    assert settings.concurrency == 3
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in settings.where
    assert settings.where == "redis://:***@broker.example:6380/2"


@pytest.mark.parametrize(
    ("env", "variable", "problem"),
    [
        ({"SCHEDULER_EXECUTOR": "threads"}, "SCHEDULER_EXECUTOR", "'threads' is not one of"),
        ({"SCHEDULER_EXECUTOR": "celery"}, "CELERY_BROKER_URL", "is required"),
        (
            {"SCHEDULER_EXECUTOR": "celery", "CELERY_BROKER_URL": "amqp://u:pw@rabbit//"},
            "CELERY_BROKER_URL",
            "is not a redis:// or rediss:// URL",
        ),
        ({"CELERY_WORKER_LIVENESS": "soon"}, "CELERY_WORKER_LIVENESS", "is not a number"),
        ({"CELERY_VISIBILITY_TIMEOUT": "0"}, "CELERY_VISIBILITY_TIMEOUT", "must be positive"),
        ({"CELERY_WORKER_CONCURRENCY": "0"}, "CELERY_WORKER_CONCURRENCY", "must be 1 or more"),
        ({"CELERY_QUEUE": "a b"}, "CELERY_QUEUE", "not a usable queue name"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        CelerySettings.from_env(env)
    assert caught.value.variable == variable
    assert problem in str(caught.value)
    assert "pw@" not in str(caught.value)


def test_executor_from_env_is_none_for_local(tmp_path: Path) -> None:
    from pipelines.db import dispose_engine, get_engine

    url = f"sqlite:///{tmp_path / 'x.db'}"
    try:
        assert executor_from_env(get_engine(url), {"SCHEDULER_EXECUTOR": "local"}) is None
    finally:
        dispose_engine(url)


def _worker(project: Project, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipebot.worker"],
        cwd=project.root,
        env=project.env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def offline(tmp_path: Path) -> Project:
    """A project whose broker URL points nowhere (these tests never reach Redis)."""
    project = Project(tmp_path, "unused", "redis://:hunter2@127.0.0.1:1/0")
    return project


def test_a_worker_refuses_a_broken_pipelines_yml(offline: Project) -> None:
    offline.config.write_text("pipelines:\n  bad:\n    chain: []\n", encoding="utf-8")
    done = _worker(offline)
    assert done.returncode == 2, done.stderr
    assert "bad" in done.stderr and "Traceback" not in done.stderr


def test_a_worker_needs_a_broker_and_says_which_variable(offline: Project) -> None:
    offline.config.write_text(VALID, encoding="utf-8")
    env = offline.env()
    del env["CELERY_BROKER_URL"]
    done = subprocess.run(
        [sys.executable, "-m", "pipebot.worker"],
        cwd=offline.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: CELERY_BROKER_URL: is required to run a worker"
    )


def test_a_worker_with_an_unreachable_broker_says_so_without_the_password(
    offline: Project,
) -> None:
    offline.config.write_text(VALID, encoding="utf-8")
    done = _worker(offline)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot reach the Celery broker at redis://:***@127.0.0.1:1/0")
    assert "hunter2" not in done.stderr


def test_scheduler_settings_are_untouched_by_the_executor() -> None:
    # the executor's variables live in their own settings; the scheduler's parse as before
    assert SchedulerSettings.from_env({"SCHEDULER_EXECUTOR": "celery"}).timezone
    assert REPO_ROOT.joinpath("pipebot", "worker.py").exists()
