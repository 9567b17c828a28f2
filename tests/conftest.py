"""Database fixtures shared by the suites: a SQLite file and a PostgreSQL schema.

PostgreSQL tests use a fresh schema per test (``search_path`` set in the URL) and drop
it afterwards. They skip when the server at 127.0.0.1:5432 is unreachable, except
under ``CI=true``, where they fail: in CI they must run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pipelines.db import dispose_engine

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(PG_SERVER, connect_timeout=3, autocommit=True)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = f"PostgreSQL not reachable at 127.0.0.1:5432: {reason}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A URL of an empty SQLite file, for tests about SQLite itself (file locks)."""
    url = f"sqlite:///{tmp_path / 'pipebot.db'}"
    yield url
    dispose_engine(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database; engines made for it are disposed afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pipebot.db'}"
        yield url
        dispose_engine(url)
        return
    schema = f"t_{uuid.uuid4().hex}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{PG_URL}?options=-csearch_path%3D{schema}&application_name={schema}"
    try:
        yield url
    finally:
        dispose_engine(url)
        with _pg_admin() as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
