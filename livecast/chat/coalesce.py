"""Rate-limited, coalesced notifications per key (likes totals, viewer counts).

``mark(key)`` says "this key changed". The callback runs at once if the key was not
announced within ``interval`` seconds, otherwise once at the end of that interval,
however many marks arrived meanwhile; it reads the current value when it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Coalescer:
    def __init__(self, interval: float, callback: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.callback = callback
        self._clock = clock
        self._last: dict[str, float] = {}
        self._pending: dict[str, asyncio.TimerHandle] = {}

    def mark(self, key: str) -> None:
        if key in self._pending:
            return
        now = self._clock()
        due = self._last.get(key, -self.interval) + self.interval
        if now >= due:
            self._fire(key)
        else:
            loop = asyncio.get_running_loop()
            self._pending[key] = loop.call_later(due - now, self._fire, key)

    def _fire(self, key: str) -> None:
        self._pending.pop(key, None)
        self._last[key] = self._clock()
        try:
            self.callback(key)
        except Exception:
            log.exception("coalesced notification for %s failed", key)

    def prune(self) -> None:
        """Forget keys not announced for a while (bounded memory)."""
        cutoff = self._clock() - max(self.interval * 4, 10.0)
        for key in [k for k, t in self._last.items() if t < cutoff and k not in self._pending]:
            del self._last[key]

    def forget(self, key: str) -> None:
        handle = self._pending.pop(key, None)
        if handle is not None:
            handle.cancel()
        self._last.pop(key, None)

    def close(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
