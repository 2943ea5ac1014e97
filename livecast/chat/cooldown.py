"""Client addresses kept out of chat for a while after one of their sockets was closed
for abuse (over the frame budget, or too many refused frames).

A flooder closed with 1008 that reconnects at once would otherwise cost a handshake,
a hello with history and a fresh frame budget every few milliseconds. For
``chat.abuse_block_seconds`` its address (the same key as the per-address cap) gets
HTTP 429 with ``Retry-After`` before any upgrade. Memory is bounded: at most
``MAX_KEYS`` addresses are held, the oldest dropped first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_KEYS = 100_000


class Cooldown:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._until: dict[str, float] = {}

    def block(self, key: str) -> None:
        """Keep ``key`` out for ``seconds`` from now (no-op when the setting is 0)."""
        if self.seconds <= 0:
            return
        now = self.clock()
        self._until.pop(key, None)  # re-insert: the dict stays ordered by expiry
        self._until[key] = now + self.seconds
        if len(self._until) > MAX_KEYS:
            self._prune(now)

    def retry_after(self, key: str) -> float:
        """Seconds ``key`` is still kept out (0: free to connect)."""
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._until[key]
            return 0.0
        return left

    def _prune(self, now: float) -> None:
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]
        while len(self._until) > MAX_KEYS:
            del self._until[next(iter(self._until))]

    def __len__(self) -> int:
        return len(self._until)
