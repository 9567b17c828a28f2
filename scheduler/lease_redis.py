"""The ``redis`` lease: ``SET NX PX`` with an owner token, renewed before it expires.

Acquiring sets the key only if it is absent, with a random token and the TTL, and in
the same script ``INCR``\\s the fencing counter: each new holder gets a higher token.
Renewal and release are compare-and-set scripts, so only the owner can extend or
delete the key; a holder that stops renewing (dead, paused, cut off) loses it when the
key expires, and a standby's next ``SET NX`` wins.
"""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

from redis.asyncio import Redis

from .lease import NOT_YET, NotYet, RenewingLease

_ACQUIRE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('incr', KEYS[2])
end
return false
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisLease(RenewingLease):
    backend: ClassVar[str] = "redis"

    def __init__(self, redis_url: str, name: str, ttl: float) -> None:
        super().__init__(name, ttl)
        self._url = redis_url
        self.key = f"{name}:lease"
        self.fence_key = f"{name}:fence"
        self._token = secrets.token_hex(16)
        self._client: Redis | None = None

    def _redis(self) -> Redis:
        if self._client is None:
            timeout = max(0.5, self.ttl / 3)
            self._client = Redis.from_url(
                self._url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        return self._client

    async def _call(self, script: str, *args: Any) -> Any:
        client = self._redis()
        keys_and_args = (self.key, self.fence_key, self._token, int(self.ttl * 1000), *args)
        return await client.eval(script, 2, *keys_and_args)

    async def _try_acquire(self) -> int | None | NotYet:
        self._token = secrets.token_hex(16)  # a fresh owner for every term
        fence = await self._call(_ACQUIRE)
        return NOT_YET if fence is None else int(fence)

    async def _renew(self) -> bool:
        return bool(await self._call(_RENEW))

    async def _release(self) -> None:
        await self._call(_RELEASE)

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
