"""The multi-node chat bus: Redis pub/sub between the nodes that hold chat sockets.

Redis layout (one Redis database per cluster):

- ``livecast:chat:room:<slug>``: pub/sub channel of a room's events. A message is
  ``<node>\\n<ref>\\n<kind>\\n<frame JSON>``; ``node`` is the publishing node's random id
  ("" for messages Redis itself publishes).
- ``livecast:chat:presence``: pub/sub channel of viewer totals, ``<slug> <total>``
  (every node listens, so the origin's room API knows rooms it holds no socket of).
- ``livecast:chat:viewers:<slug>``: hash, field per node ``<count>:<redis ms>``, and
  field ``=`` with the last total announced. A Lua script updates a node's field,
  drops the fields not refreshed within ``ttl`` (a dead node's viewers vanish), sums
  the rest and, when the total changed, publishes the ``viewers`` frame and the
  presence line, atomically (so the last frame always carries the newest total).

A node delivers its own messages to its local subscribers at once (not via Redis) and
skips them when they come back, so its own clients keep their chat while Redis is
away. Publishing never blocks: messages go to a bounded queue that one writer task
sends in order, in pipelines; when the queue is full a message is dropped and
counted. One reader task owns the node's single pub/sub connection; it subscribes
each room while the node has a subscriber in it. Both reconnect with exponential
backoff; the reader resubscribes every live room after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from livecast.chat.bus.base import Handler, RoomMessage, Unsubscribe
from livecast.chat.bus.memory import InProcessBus
from livecast.core.backoff import Backoff
from livecast.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PREFIX = "livecast:chat:"
PRESENCE = PREFIX + "presence"
QUEUE_SIZE = 10_000
BATCH = 256
POLL = 0.1  # the reader applies (un)subscriptions at least this often
READY_TIMEOUT = 2.0
CLOSE_FLUSH = 1.0
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

# KEYS: viewers hash, room channel, presence channel.
# ARGV: node id, this node's count, ttl in ms, room slug.
_VIEWERS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. now)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local total, last = 0, -1
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local field, value = all[i], all[i + 1]
  if field == '=' then
    last = tonumber(value)
  else
    local count, ts = string.match(value, '^(%d+):(%d+)$')
    if count and now - tonumber(ts) <= ttl then
      total = total + tonumber(count)
    else
      redis.call('HDEL', KEYS[1], field)
    end
  end
end
if total ~= last then
  redis.call('HSET', KEYS[1], '=', total)
  redis.call('PUBLISH', KEYS[2], '\\n0\\nviewers\\n{"type":"viewers","count":' .. total .. '}')
  redis.call('PUBLISH', KEYS[3], ARGV[4] .. ' ' .. total)
end
redis.call('PEXPIRE', KEYS[1], ttl * 4)
return total
"""


def room_channel(room: str) -> str:
    return f"{PREFIX}room:{room}"


def viewers_key(room: str) -> str:
    return f"{PREFIX}viewers:{room}"


def encode_message(node: str, message: RoomMessage) -> str:
    return f"{node}\n{message.ref}\n{message.kind}\n{message.text}"


def decode_message(data: bytes) -> tuple[str, RoomMessage] | None:
    try:
        node, ref, kind, text = data.decode("utf-8", "replace").split("\n", 3)
        return node, RoomMessage(kind, text, int(ref))
    except ValueError:
        return None


class RedisBus:
    def __init__(self, url: str, *, heartbeat: float = 2.0, ttl: float = 7.0) -> None:
        self.url = url
        self.heartbeat = max(0.05, heartbeat)
        self.ttl_ms = max(1, int(max(ttl, heartbeat * 2) * 1000))
        self.node_id = uuid.uuid4().hex[:16]
        self.local = InProcessBus()
        self.stats: Counter[str] = Counter()
        self.connected = False  # the subscription connection is up
        self.down = False  # it failed and has not come back yet
        self._queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue(QUEUE_SIZE)
        self._confirmed: set[str] = set()  # rooms whose SUBSCRIBE Redis confirmed
        self._counts: dict[str, int] = {}  # this node's viewers per room
        self._reported: dict[str, int] = {}  # the counts Redis holds for this node
        self._totals: dict[str, int] = {}  # cluster totals last heard of
        self._tasks: list[asyncio.Task[None]] = []
        self._pub: aioredis.Redis | None = None
        self._sub: aioredis.Redis | None = None
        self._last_drop_log = 0.0
        self._sending = False  # the writer holds a batch it has not sent yet

    # -- ChatBus --------------------------------------------------------------------

    def publish(self, room: str, message: RoomMessage) -> None:
        self.local.publish(room, message)
        self._enqueue(("pub", room, encode_message(self.node_id, message)))

    def subscribe(self, room: str, handler: Handler) -> Unsubscribe:
        return self.local.subscribe(room, handler)  # the reader (un)subscribes in Redis

    async def ready(self, room: str) -> None:
        """Wait (bounded) for Redis to confirm the room's subscription; at once while
        Redis is known to be away."""
        deadline = time.monotonic() + READY_TIMEOUT
        while (not self.down and room not in self._confirmed and room in self.local.rooms()
               and time.monotonic() < deadline):
            await asyncio.sleep(0.01)

    def set_viewers(self, room: str, count: int) -> None:
        self._counts[room] = count
        self._enqueue(("viewers", room, ""))

    def viewers(self, room: str, local: int) -> int:
        total = self._totals.get(room)
        if total is None:
            return local
        return max(local, total - self._reported.get(room, 0) + local)

    def rooms(self) -> list[str]:
        return self.local.rooms()

    async def start(self) -> None:
        options: dict[str, Any] = {"socket_connect_timeout": 2.0, "retry": Retry(NoBackoff(), 0)}
        self._pub = aioredis.from_url(self.url, socket_timeout=5.0, **options)
        self._sub = aioredis.from_url(self.url, health_check_interval=10, **options)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read(), name="chat-bus-reader"),
                       loop.create_task(self._write(), name="chat-bus-writer"),
                       loop.create_task(self._beat(), name="chat-bus-heartbeat")]

    async def close(self) -> None:
        deadline = time.monotonic() + CLOSE_FLUSH
        while (self._sending or not self._queue.empty()) and not self.down and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # let the writer send the last events (bounded)
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        if self._pub is not None:
            with contextlib.suppress(*_ERRORS):  # take this node's viewers out at once
                async with asyncio.timeout(1.0):
                    for room in [r for r, n in self._reported.items() if n]:
                        self._counts[room] = 0
                        await self._run_batch([("viewers", room, "")])
        for client in (self._pub, self._sub):
            if client is not None:
                with contextlib.suppress(*_ERRORS):
                    await client.aclose()
        await self.local.close()
        log.info("chat bus closed: %s", dict(self.stats))

    # -- writing --------------------------------------------------------------------

    def _enqueue(self, item: tuple[str, str, str]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats["dropped"] += 1
            now = time.monotonic()
            if now - self._last_drop_log > 1.0:
                self._last_drop_log = now
                log.warning("chat bus queue is full (Redis slow or away); %d message(s) dropped so far",
                            self.stats["dropped"])

    async def _write(self) -> None:
        retry = Backoff(FIRST_BACKOFF, MAX_BACKOFF)
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._sending = True
            while True:
                try:
                    await self._run_batch(batch)
                    retry.reset()
                    self._sending = False
                    break
                except _ERRORS as err:
                    self.stats["write_errors"] += 1
                    delay = retry.next()
                    log.warning("chat bus: cannot publish to Redis (%s); retrying in %.1f s", err, delay)
                    await asyncio.sleep(delay)

    async def _run_batch(self, batch: list[tuple[str, str, str]]) -> None:
        assert self._pub is not None
        pipe = self._pub.pipeline(transaction=False)
        viewer_rooms: list[str] = []
        for kind, room, data in batch:
            if kind == "pub":
                pipe.publish(room_channel(room), data)
            elif room not in viewer_rooms:  # one update per room per batch: the newest count
                viewer_rooms.append(room)
        counts = {room: self._counts.get(room, 0) for room in viewer_rooms}
        for room in viewer_rooms:
            pipe.eval(_VIEWERS_LUA, 3, viewers_key(room), room_channel(room), PRESENCE,
                      self.node_id, counts[room], self.ttl_ms, room)
        results = await pipe.execute()
        self.stats["published"] += len(batch) - len(viewer_rooms)
        for room, total in zip(viewer_rooms, results[len(results) - len(viewer_rooms):], strict=False):
            self._reported[room] = counts[room]
            self._totals[room] = int(total)
            if counts[room] == 0 and self._counts.get(room) == 0:
                del self._counts[room]
                self._reported.pop(room, None)

    async def _beat(self) -> None:
        """Refresh this node's counts before they expire; also re-total rooms whose other
        nodes may have died (their stale counts are dropped and the new total announced)."""
        while True:
            await asyncio.sleep(self.heartbeat)
            rooms = set(self._counts) | {room for room, total in self._totals.items() if total > 0}
            for room in rooms:
                self._enqueue(("viewers", room, ""))
            for room in [r for r, t in self._totals.items() if t <= 0 and r not in self._counts]:
                del self._totals[room]

    # -- reading --------------------------------------------------------------------

    async def _read(self) -> None:
        retry = Backoff(FIRST_BACKOFF, MAX_BACKOFF)
        while True:
            assert self._sub is not None
            pubsub = self._sub.pubsub()
            try:
                await self._listen(pubsub)
            except _ERRORS as err:
                if self.connected:
                    retry.reset()
                self.stats["read_errors"] += 1
                self.down = True
                log.warning("chat bus: Redis subscription lost or refused (%s); reconnecting in %.1f s",
                            err, retry.current)
            finally:
                self.connected = False
                self._confirmed.clear()
                with contextlib.suppress(*_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(retry.next())

    async def _listen(self, pubsub: Any) -> None:
        subscribed: set[str] = set(self.local.rooms())
        await pubsub.subscribe(PRESENCE, *(room_channel(r) for r in subscribed))
        first = True
        while True:
            wanted = set(self.local.rooms())
            if wanted - subscribed:
                await pubsub.subscribe(*(room_channel(r) for r in wanted - subscribed))
            if subscribed - wanted:
                await pubsub.unsubscribe(*(room_channel(r) for r in subscribed - wanted))
                self._confirmed -= subscribed - wanted
            subscribed = wanted
            message = await pubsub.get_message(timeout=POLL)
            if message is None:
                continue
            if first:
                first = False
                self.connected = True
                if self.down:
                    self.down = False
                    log.info("chat bus: Redis subscription restored")
                    self.stats["reconnects"] += 1
            self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        channel = channel.decode("utf-8", "replace") if isinstance(channel, bytes) else str(channel)
        kind = message.get("type")
        if kind == "subscribe" and channel.startswith(PREFIX + "room:"):
            self._confirmed.add(channel[len(PREFIX) + 5:])
            return
        if kind != "message":
            return
        data = message.get("data")
        if not isinstance(data, bytes):
            return
        if channel == PRESENCE:
            room, _, total = data.decode("utf-8", "replace").rpartition(" ")
            with contextlib.suppress(ValueError):
                self._totals[room] = int(total)
            return
        decoded = decode_message(data)
        if decoded is None:
            self.stats["malformed"] += 1
            return
        node, room_message = decoded
        if node != self.node_id:  # this node's own messages were delivered when published
            self.stats["received"] += 1
            self.local.publish(channel[len(PREFIX) + 5:], room_message)
