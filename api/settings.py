"""HTTP API settings from the environment (``.env`` is loaded by the entry points).

| variable | default | meaning |
| --- | --- | --- |
| ``API_ENABLED`` | ``true`` | serve the HTTP API next to the scheduler |
| ``API_HOST`` | ``127.0.0.1`` | address to bind |
| ``API_PORT`` | ``8080`` | port to bind (0: any free port) |
| ``API_TOKEN`` | | bearer token of the client named ``api`` |
| ``API_TOKENS`` | | more clients as ``name:token`` pairs: ``ops:tok1,ci:tok2`` |

Without any token the API is read-only and answers loopback clients only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipelines.secret import Secret
from scheduler.errors import SettingsError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_TOKEN_NAME = "api"
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
READY_ENGINE_SECONDS = 30.0
"""``/readyz`` turns red when the engine has not made a pass for this long."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A client: the name changes are audited under, and its bearer token."""

    name: str
    secret: Secret


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Where the API listens and whom it lets in; every field but one has a variable."""

    enabled: bool = True
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tokens: tuple[ApiToken, ...] = ()
    ready_engine_seconds: float = READY_ENGINE_SECONDS
    """Oldest engine pass ``/readyz`` accepts (keep it above ``SCHEDULER_POLL_SECONDS``)."""

    @property
    def read_only(self) -> bool:
        """No token configured: reads from loopback only, no changes."""
        return not self.tokens

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        env = os.environ if environ is None else environ
        return cls(
            enabled=_flag(env, "API_ENABLED", True),
            host=env.get("API_HOST", "").strip() or DEFAULT_HOST,
            port=_port(env),
            tokens=_tokens(env),
        )


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(name, f"must be true or false, got {raw!r}")


def _port(env: Mapping[str, str]) -> int:
    raw = env.get("API_PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or int(raw) > 65535:
        raise SettingsError("API_PORT", f"must be a port number 0..65535, got {raw!r}")
    return int(raw)


def _tokens(env: Mapping[str, str]) -> tuple[ApiToken, ...]:
    pairs: list[tuple[str, str]] = []
    single = env.get("API_TOKEN", "").strip()
    if single:
        pairs.append((DEFAULT_TOKEN_NAME, single))
    for index, item in enumerate(env.get("API_TOKENS", "").split(",")):
        item = item.strip()
        if not item:
            continue
        name, sep, token = item.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not token:
            raise SettingsError("API_TOKENS", f"entry {index + 1} is not name:token")
        if not TOKEN_NAME.match(name):
            raise SettingsError(
                "API_TOKENS", f"entry {index + 1}: name must be letters, digits, _ . - (1-64)"
            )
        pairs.append((name, token))
    names = [name for name, _ in pairs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise SettingsError("API_TOKENS", f"the client name {duplicate!r} is given twice")
    if len({token for _, token in pairs}) != len(pairs):
        raise SettingsError("API_TOKENS", "two clients share a token (each needs its own)")
    return tuple(ApiToken(name, Secret(token)) for name, token in pairs)
