"""Servers for the high-availability tests: a PostgreSQL schema, Redis, a private PostgreSQL.

- ``pg_url``: a fresh schema on the shared server at 127.0.0.1:5432 (``application_name``
  is the schema too, so a test can find and terminate exactly its own connections).
- ``redis_url``: the Redis server at 127.0.0.1:6379.
- ``private_pg``: a PostgreSQL server of this test session's own (``initdb`` into a
  temporary directory, on a free port) that tests stop and start at will: restarting
  the shared server would break whatever else is using it at the time.

Outside CI a missing server skips with the reason; under ``CI=true`` it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from pipelines.db import dispose_engine

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def make_schema(server: str) -> tuple[str, str]:
    """A new schema on ``server``: (schema, SQLAlchemy URL using it)."""
    schema = f"ha_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(server, connect_timeout=3, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL not reachable at {server}: {_first_line(exc)}")
    base = server.replace("postgresql://", "postgresql+psycopg://", 1)
    return schema, f"{base}?options=-csearch_path%3D{schema}&application_name={schema}"


def drop_schema(server: str, schema: str, url: str) -> None:
    dispose_engine(url)
    try:
        with psycopg.connect(server, connect_timeout=3, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (schema,),
            )
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    except psycopg.Error:
        pass  # a stopped private server takes its schemas with it


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema, url = make_schema(PG_SERVER)
    yield url
    drop_schema(PG_SERVER, schema, url)


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis not reachable at 127.0.0.1:6379: {_first_line(exc)}")
    finally:
        client.close()
    return REDIS_URL


# --- a PostgreSQL server of our own -----------------------------------------------------------


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster that tests may stop, start and restart."""

    bin: Path
    data: Path
    port: int
    user: str | None
    """Run the server as this user (``postgres`` when the tests run as root)."""

    @property
    def server(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._ctl("-o", options, "-l", str(self.data / "server.log"), "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.server, connect_timeout=2):
                return True
        except psycopg.Error:
            return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    if not PG_BIN_DIRS or not (PG_BIN_DIRS[0] / "initdb").exists():
        unavailable("no PostgreSQL server binaries under /usr/lib/postgresql: cannot restart one")
    root = os.geteuid() == 0
    if root and shutil.which("runuser") is None:
        unavailable("running as root without runuser: cannot start a PostgreSQL server")
    base = Path(tempfile.mkdtemp(prefix="pipebot-pg-"))
    data = base / "data"
    user = "postgres" if root else None
    if user:
        shutil.chown(base, user)
    initdb = [str(PG_BIN_DIRS[0] / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    initdb += ["--no-sync", "-E", "UTF8"]
    if user:
        initdb = ["runuser", "-u", user, "--", *initdb]
    try:
        subprocess.run(initdb, check=True, capture_output=True, timeout=120)
        server = PrivatePostgres(PG_BIN_DIRS[0], data, _free_port(), user)
        server.start()
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        unavailable(f"cannot start a private PostgreSQL server: {_first_line(exc)}")
    deadline = time.monotonic() + 30
    while not server.ready():
        if time.monotonic() > deadline:
            unavailable("the private PostgreSQL server did not come up")
        time.sleep(0.1)
    try:
        yield server
    finally:
        try:
            server.stop()
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def private_pg_url(private_pg: PrivatePostgres) -> Iterator[str]:
    if not private_pg.ready():
        private_pg.start()
    schema, url = make_schema(private_pg.server)
    yield url
    if not private_pg.ready():
        private_pg.start()
    drop_schema(private_pg.server, schema, url)
