"""``WriteFlusher``: the targets' batches written back to back, once every target has queued its own.

Each push target's task queues its batch's messages and asks the flusher to write them;
the flusher writes every waiting target in one callback at the loop's next turn. So the
targets' sockets get their bytes at the same instant, one ``writev`` each, instead of
spread over the turn between the tasks' Python work: when several targets go to the same
host (or, on a benchmark, the same local process), the receiver is woken once per batch,
not once per target; which is most of what a push costs per batch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Flushable(Protocol):
    def write_pending(self) -> None: ...


class WriteFlusher:
    """One per relay manager (one loop): writes the queued bytes of every target that asked."""

    def __init__(self) -> None:
        self._due: list[Flushable] = []

    def add(self, sink: Flushable) -> None:
        if not self._due:
            asyncio.get_running_loop().call_soon(self._run)
        if sink not in self._due:
            self._due.append(sink)

    def _run(self) -> None:
        due, self._due = self._due, []
        for sink in due:
            try:
                sink.write_pending()
            except Exception:
                log.exception("writing to push target %r failed", sink)
