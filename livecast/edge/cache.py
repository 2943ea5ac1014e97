"""A bytes-bounded LRU of HTTP objects with expiry, and request coalescing.

``ObjectCache`` holds what an edge fetched from its origin. ``Coalescer`` makes sure
that any number of concurrent misses for one key cause exactly one fetch: the first
caller starts it as its own task (so a viewer hanging up does not cancel it for the
others) and everyone awaits the same future.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
ENTRY_OVERHEAD = 200  # bytes of bookkeeping counted per entry


@dataclass
class CachedObject:
    status: int
    body: bytes
    content_type: str
    cache_control: str
    expires: float | None  # monotonic time; None = until evicted
    stored: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        return len(self.body) + ENTRY_OVERHEAD

    @property
    def data(self) -> bytes:  # the SegmentSource's Segment protocol
        return self.body

    def fresh(self, now: float) -> bool:
        return self.expires is None or now < self.expires

    def age(self, now: float) -> float:
        return max(0.0, now - self.stored)


class ObjectCache:
    """Least-recently-used eviction once the bodies exceed ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._items: OrderedDict[Hashable, CachedObject] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> CachedObject | None:
        """The entry, fresh or stale (callers decide); marks it recently used."""
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: Hashable, item: CachedObject) -> None:
        if item.size > self.max_bytes // 4:
            return  # one object may not push out a quarter of the cache
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._items[key] = item
        self.bytes += item.size
        while self.bytes > self.max_bytes and self._items:
            _, evicted = self._items.popitem(last=False)
            self.bytes -= evicted.size
            self.evictions += 1

    def discard(self, key: Hashable) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old.size


class Coalescer(Generic[T]):
    """One in-flight fetch per key; late callers join it."""

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}
        self.started = 0
        self.joined = 0

    def __len__(self) -> int:
        return len(self._inflight)

    async def run(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
        future = self._inflight.get(key)
        if future is None:
            self.started += 1
            future = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            task = asyncio.ensure_future(fetch())
            task.add_done_callback(lambda t: self._settle(key, future, t))
        else:
            self.joined += 1
        return await asyncio.shield(future)

    def _settle(self, key: Hashable, future: asyncio.Future[T], task: asyncio.Future[T]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if future.done():
            return
        if task.cancelled():
            future.cancel()
        elif task.exception() is not None:
            future.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            future.set_result(task.result())
        if not future.cancelled():
            future.exception()  # retrieved here: nobody may be waiting any more
