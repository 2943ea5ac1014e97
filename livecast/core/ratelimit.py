"""In-memory sliding-window rate limiter keyed by string (client IP, username, chat user).

``hit(key)`` records one attempt and returns 0.0 when it is allowed, otherwise the
number of seconds until the next attempt would be allowed (nothing is recorded then,
so a client that keeps hammering does not push its own window forward).

Memory is bounded twice: each key keeps at most ``limit`` timestamps, and at most
``max_keys`` keys are kept. Keys are held in least-recently-hit order; a key whose
newest hit is older than the window is equivalent to an absent key and is dropped
first, and when the table is still full the least recently hit key is evicted.

``Limiter`` is the interface the API's limits use (awaited): ``LocalLimiter`` wraps a
``RateLimiter`` (a single node), ``livecast.cluster.ratelimit`` keeps the windows in Redis so
that the cluster's origins count as one.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

Clock = Callable[[], float]


class RateLimiter:
    """At most ``limit`` hits per ``window`` seconds for each key."""

    def __init__(self, limit: int, window: float, *, max_keys: int = 10_000,
                 clock: Clock = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if window <= 0:
            raise ValueError("window must be > 0")
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hits)

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may hit again (0.0 = now); records nothing."""
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            return 0.0
        self._expire(hits, now)
        if len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[0] + self.window - now)

    def hit(self, key: str) -> float:
        """Record one attempt if allowed; return 0.0, or the seconds to wait if refused."""
        wait = self.retry_after(key)
        if wait > 0:
            return wait
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            self._make_room(now)
            hits = deque(maxlen=self.limit)
            self._hits[key] = hits
        else:
            self._hits.move_to_end(key)
        hits.append(now)
        return 0.0

    def refund(self, key: str) -> None:
        """Take back the most recent hit of ``key`` (e.g. the attempt succeeded)."""
        hits = self._hits.get(key)
        if hits:
            hits.pop()
            if not hits:
                del self._hits[key]

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    def _expire(self, hits: deque[float], now: float) -> None:
        cutoff = now - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()

    def _make_room(self, now: float) -> None:
        cutoff = now - self.window
        # Oldest-touched first: drop keys whose newest hit has left the window.
        while self._hits:
            key, hits = next(iter(self._hits.items()))
            if hits and hits[-1] > cutoff:
                break
            del self._hits[key]
        while len(self._hits) >= self.max_keys:
            self._hits.popitem(last=False)


class Limiter(Protocol):
    """A rate limit whose state may live elsewhere (Redis, shared by the cluster's origins):
    the same three calls as ``RateLimiter``, awaited."""

    async def hit(self, key: str) -> float: ...

    async def retry_after(self, key: str) -> float: ...

    async def refund(self, key: str) -> None: ...


# (name, limit, window seconds) -> a limiter; ``name`` keeps limits apart in a shared store.
LimiterFactory = Callable[[str, int, float], Limiter]


class LocalLimiter:
    """A ``RateLimiter`` of this process behind the ``Limiter`` interface (one node's default)."""

    def __init__(self, limit: int, window: float, *, max_keys: int = 10_000) -> None:
        self.local = RateLimiter(limit, window, max_keys=max_keys)

    async def hit(self, key: str) -> float:
        return self.local.hit(key)

    async def retry_after(self, key: str) -> float:
        return self.local.retry_after(key)

    async def refund(self, key: str) -> None:
        self.local.refund(key)


def local_limiter(name: str, limit: int, window: float) -> Limiter:
    """The ``LimiterFactory`` of a single node: every limit in this process."""
    return LocalLimiter(limit, window)
