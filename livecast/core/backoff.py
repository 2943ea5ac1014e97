"""Exponential backoff: the delays a retrying loop sleeps between attempts.

One object per retrying loop; ``next()`` gives the delay to sleep now and doubles the
next one up to ``maximum``; ``reset()`` after a success. Jitter (a fraction of the
delay, random either way) keeps many clients that failed together from retrying in
lock-step.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(self, first: float, maximum: float, *, factor: float = 2.0, jitter: float = 0.0,
                 rand: Callable[[], float] = random.random) -> None:
        if first <= 0 or maximum < first or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("need 0 < first <= maximum, factor >= 1 and 0 <= jitter < 1")
        self.first = first
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rand = rand
        self._current = first
        self.attempts = 0

    @property
    def current(self) -> float:
        """The delay the next ``next()`` returns, before jitter."""
        return self._current

    def next(self) -> float:
        """The delay to wait now; the following one grows by ``factor`` up to ``maximum``."""
        delay = self._current
        self._current = min(self._current * self.factor, self.maximum)
        self.attempts += 1
        if self.jitter:
            delay *= 1 + self.jitter * (2 * self._rand() - 1)
        return delay

    def reset(self) -> None:
        self._current = self.first
        self.attempts = 0
