"""In-memory segment storage with byte accounting.

A ``SegmentStore`` holds the fetchable files of one room: the listed segments,
retired ones (out of the window, kept for a grace number of segments) and the
fMP4 init segments they refer to (freed with their last user). A shared
``ByteBudget`` counts bytes across rooms for the global bound.

``release_free_memory`` hands freed segment bytes back to the OS (glibc).
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import platform
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)



def release_free_memory() -> bool:
    """glibc: hand free heap pages back to the OS (``malloc_trim``); False elsewhere.

    Freed segments leave holes in the heap that would otherwise stay in the RSS as rooms
    come and go. Trimming now and then, off the request path, keeps the RSS flat; fixing
    glibc's mmap threshold instead would do it too, but measured 3x slower segment
    delivery (every large response buffer became a fresh, page-faulted mapping).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        log.debug("malloc_trim not available")
        return False
    return True


@dataclass(frozen=True)
class SegmentData:
    data: bytes | bytearray  # read-only by convention (a TS segment is not copied out of its buffer)
    content_type: str
    duration: float


class ByteBudget:
    """Bytes held by every store together, and a clock for 'globally oldest'."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._ticks = itertools.count()

    def tick(self) -> int:
        return next(self._ticks)

    @property
    def over(self) -> bool:
        return self.used > self.limit


class SegmentStore:
    def __init__(self, budget: ByteBudget) -> None:
        self.bytes = 0
        self._budget = budget
        self._items: dict[str, SegmentData] = {}
        self._init_of: dict[str, str] = {}  # segment name -> init name
        self._init_users: dict[str, int] = {}
        self._retired: deque[tuple[int, str]] = deque()  # (budget tick, name), oldest first

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def get(self, name: str) -> SegmentData | None:
        return self._items.get(name)

    def put(self, name: str, item: SegmentData, init: str | None = None) -> None:
        if name in self._items:
            raise KeyError(f"{name} is already stored")  # a URL never changes content
        self._items[name] = item
        self._account(len(item.data))
        if init is not None:
            self._init_of[name] = init
            self._init_users[init] = self._init_users.get(init, 0) + 1

    def retire(self, name: str) -> None:
        """The segment left the playlist; it stays fetchable until freed."""
        if name in self._items:
            self._retired.append((self._budget.tick(), name))

    @property
    def retired_count(self) -> int:
        return len(self._retired)

    def oldest_retired(self) -> tuple[int, str] | None:
        return self._retired[0] if self._retired else None

    def free_oldest_retired(self) -> list[str]:
        _, name = self._retired.popleft()
        return self.free(name)

    def free(self, name: str) -> list[str]:
        """Drop a segment (and its init if nothing else uses it); returns the names freed."""
        item = self._items.pop(name, None)
        if item is None:
            return []
        freed = [name]
        self._account(-len(item.data))
        init = self._init_of.pop(name, None)
        if init is not None:
            users = self._init_users[init] - 1
            if users:
                self._init_users[init] = users
            else:
                del self._init_users[init]
                init_item = self._items.pop(init, None)
                if init_item is not None:
                    self._account(-len(init_item.data))
                    freed.append(init)
        return freed

    def clear(self) -> list[str]:
        names = list(self._items)
        self._account(-self.bytes)
        self._items.clear()
        self._init_of.clear()
        self._init_users.clear()
        self._retired.clear()
        return names

    def _account(self, delta: int) -> None:
        self.bytes += delta
        self._budget.used += delta
