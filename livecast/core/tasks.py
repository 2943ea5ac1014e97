"""Background tasks that are started, named, supervised and stopped in one way.

``cancel_and_wait(task)`` is the one place that cancels a task and waits for it to
finish, without swallowing a cancellation of the caller. ``TaskGroup``-like
``Supervisor`` keeps fire-and-forget tasks referenced (so they are not garbage
collected mid-flight), logs the ones that fail, and cancels what is left on close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Future[Any] | None, timeout: float | None = None) -> None:
    """Cancel ``task`` and wait until it has finished (bounded by ``timeout``, if given).

    The task's own CancelledError stays inside it; a cancellation of the caller propagates."""
    if task is None:
        return
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=timeout)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: an error it ended with was its own to log


class Supervisor:
    """Owns background tasks: keeps them referenced, logs failures, cancels on ``close``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name or self.name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        err = task.exception()
        if err is not None:
            log.error("%s: task %s failed", self.name, task.get_name(), exc_info=err)

    async def wait(self, timeout: float | None = None) -> None:
        """Let the running tasks finish (bounded by ``timeout``)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self) -> None:
        """Cancel every task still running and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
