"""Rate limits shared by the cluster's origins through Redis (``cluster.redis``).

Each limit is a sliding window in a sorted set ``livecast:rl:{name}:{key}`` (one member
per allowed hit, scored by Redis's own clock, so origins with skewed clocks agree). One
Lua script expires, counts and records atomically: two origins hit at the same moment
never both pass the last free slot.

When Redis does not answer, the limits fall back to this origin's in-memory windows
(``LocalLimiter``) and a warning is logged once per outage: a Redis outage neither locks
everybody out (failing closed would make Redis a single point of failure for logins)
nor lifts the limits (failing open would invite password guessing exactly then); each
origin still throttles on its own, so the cluster allows at most ``origins x limit``.
"""

from __future__ import annotations

import logging
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from livecast.core.ratelimit import Limiter, LocalLimiter

log = logging.getLogger(__name__)

PREFIX = "livecast:rl:"

# KEYS: window; ARGV: limit, window ms, "hit" or "peek", unique member suffix.
# Returns 0 (allowed; recorded if "hit") or the milliseconds until a slot frees up.
_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
if ARGV[3] == 'hit' then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
end
return 0
"""


class RedisLimits:
    """A ``LimiterFactory`` whose limiters share one Redis client (and one outage state)."""

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        self._client = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._script = self._client.register_script(_WINDOW)
        self.degraded = False

    def __call__(self, name: str, limit: int, window: float) -> Limiter:
        return SharedLimiter(self, name, limit, window)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except (RedisError, OSError):
            pass

    async def window(self, key: str, limit: int, window_ms: int, mode: str) -> float:
        """Seconds to wait (0.0: allowed). Raises RedisError/OSError when Redis is away."""
        waited = await self._script(keys=[key], args=[limit, window_ms, mode, uuid.uuid4().hex[:12]])
        self._recover()
        return int(waited) / 1000.0

    async def pop_newest(self, key: str) -> None:
        await self._client.zpopmax(key)

    def fail(self, err: BaseException) -> None:
        if not self.degraded:
            log.warning("rate limits: Redis unreachable (%s); each origin limits on its own until it is back",
                        type(err).__name__)
        self.degraded = True

    def _recover(self) -> None:
        if self.degraded:
            log.info("rate limits: Redis reachable again; limits are shared by the cluster")
        self.degraded = False


class SharedLimiter:
    """At most ``limit`` hits per ``window`` seconds for each key, counted cluster-wide."""

    def __init__(self, store: RedisLimits, name: str, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self._store = store
        self._prefix = f"{PREFIX}{name}:"
        self.limit = limit
        self._window_ms = max(1, int(window * 1000))
        self.fallback = LocalLimiter(limit, window)

    async def hit(self, key: str) -> float:
        try:
            return await self._store.window(self._prefix + key, self.limit, self._window_ms, "hit")
        except (RedisError, OSError) as err:
            self._store.fail(err)
            return await self.fallback.hit(key)

    async def retry_after(self, key: str) -> float:
        try:
            return await self._store.window(self._prefix + key, self.limit, self._window_ms, "peek")
        except (RedisError, OSError) as err:
            self._store.fail(err)
            return await self.fallback.retry_after(key)

    async def refund(self, key: str) -> None:
        try:
            await self._store.pop_newest(self._prefix + key)
        except (RedisError, OSError) as err:
            self._store.fail(err)
            await self.fallback.refund(key)
