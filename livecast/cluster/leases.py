"""Which origin holds each live room, in Redis, with a lease the holder renews.

Two keys per room:

- ``livecast:lease:{slug}``: the holder's node id, expiring after ``lease_seconds``
  unless renewed (every third of it). A dead origin's leases lapse by themselves.
- ``livecast:timeline:{slug}``: the room's HLS timeline as the holder last wrote it
  (session prefix, next media sequence, discontinuities so far), kept for an hour, so
  that a publish of the room on any origin continues the same playlist.

``claim`` takes a room over in one script (whoever held it) and announces it on the
``livecast:kick`` channel: the previous holder drops its publisher, so there are never
two live publishers of one room. A holder whose renewal finds another node's id has
been taken over and drops its publisher too. When Redis is unreachable the node keeps
serving the rooms it holds and reports itself degraded (``degraded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from livecast.core.backoff import Backoff
from livecast.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

LEASE = "livecast:lease:"
TIMELINE = "livecast:timeline:"
KICK_CHANNEL = "livecast:kick"
TIMELINE_TTL = 3600

# KEYS: lease, timeline; ARGV: node, lease ms. Returns {previous holder or "", timeline or ""}.
_CLAIM = """
local old = redis.call('GET', KEYS[1]) or ''
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {old, redis.call('GET', KEYS[2]) or ''}
"""
# KEYS: lease; ARGV: node, lease ms. 1 if still held (and renewed), 0 if another node holds it.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
# KEYS: lease, timeline; ARGV: node, timeline json, ttl s. Written only by the holder.
_ADVANCE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""
# KEYS: lease, timeline; ARGV: node, lease ms. {1, timeline or ""} when the room was free
# (now held by ARGV[1]), {0, ""} when another node holds it (a pull source's claim).
_CLAIM_FREE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ''} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, redis.call('GET', KEYS[2]) or ''}
"""
# KEYS: lease; ARGV: node
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Timeline:
    """Where a room's playlist stands: what the next origin continues from."""

    prefix: str
    next_sequence: int
    discontinuities: int  # discontinuity tags so far, listed or not
    updated: float = 0.0  # unix time of the write
    ended: bool = False  # the publisher stopped (not: its origin died)
    broadcast: str = ""  # one id per broadcast, kept by the origins that continue it

    @classmethod
    def parse(cls, raw: str | bytes) -> Timeline | None:
        try:
            data = json.loads(raw)
            return cls(str(data["prefix"]), int(data["next_sequence"]), int(data["discontinuities"]),
                       float(data.get("updated", 0.0)), bool(data.get("ended", False)),
                       str(data.get("broadcast", "")))
        except (ValueError, KeyError, TypeError):
            return None


LostHandler = Callable[[str], None]
LEASES: web.AppKey[RoomLeases] = web.AppKey("room_leases")


class RoomLeases:
    """``self_url()`` is this origin's HTTP base URL as other origins reach it; a lease's
    value is ``"{node id} {url}"``, so any origin can pull a room from its holder."""

    def __init__(self, url: str, lease_seconds: float, self_url: Callable[[], str]) -> None:
        self.url = url
        self.lease_seconds = lease_seconds
        self.ident = uuid.uuid4().hex[:12]
        self._self_url = self_url
        self._holders: dict[str, tuple[float, str | None]] = {}  # slug -> (looked up at, holder URL)
        self.held: set[str] = set()
        self.broadcasts: dict[str, str] = {}  # slug -> the broadcast this node publishes
        self._taken: set[str] = set()  # rooms taken from this node whose local stop is still to come
        self.degraded = False
        self.claims = 0
        self.takeovers = 0  # rooms this node took from another live holder
        self.failovers = 0  # rooms this node continued after the holder's lease lapsed
        self.lost = 0  # rooms taken from this node
        self._on_lost: list[LostHandler] = []
        # Whether a room still has a publisher here: a claim whose publish never began (the
        # encoder left during the claim, the publish was refused after it) is let go.
        self.active: Callable[[str], bool] = lambda slug: True
        self._client = aioredis.from_url(url, socket_timeout=lease_seconds / 2,
                                         socket_connect_timeout=lease_seconds / 2)
        self._scripts = {name: self._client.register_script(src) for name, src in
                         (("claim", _CLAIM), ("renew", _RENEW), ("advance", _ADVANCE), ("release", _RELEASE),
                          ("claim_free", _CLAIM_FREE))}
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[str, Timeline] = {}
        self._wake = asyncio.Event()

    @property
    def node(self) -> str:
        return f"{self.ident} {self._self_url()}"

    @property
    def _ms(self) -> int:
        return int(self.lease_seconds * 1000)

    def on_lost(self, handler: LostHandler) -> None:
        """``handler(slug)`` runs when another node takes a room this node holds."""
        self._on_lost.append(handler)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._renew_forever(), name="lease-renew"),
                       asyncio.create_task(self._listen_forever(), name="lease-kicks"),
                       asyncio.create_task(self._write_forever(), name="lease-timeline")]

    async def close(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        for slug in list(self.held):
            await self.release(slug)
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    # -- holding ---------------------------------------------------------------

    async def claim(self, slug: str) -> Timeline | None:
        """Hold ``slug`` from now on; the timeline to continue, if the room had one.
        None too when Redis is unreachable (the publish goes on, degraded)."""
        try:
            old, raw = await self._scripts["claim"](keys=[LEASE + slug, TIMELINE + slug], args=[self.node, self._ms])
            if old and _text(old) != self.node:
                await self._client.publish(KICK_CHANNEL, json.dumps({"slug": slug, "node": self.node}))
                self.takeovers += 1
                log.info("room %s: taken over from origin %s", slug, _text(old))
            elif not old and raw:
                self.failovers += 1
                log.info("room %s: continuing its timeline (the previous holder's lease lapsed)", slug)
        except (RedisError, OSError) as err:
            self._degrade(err)
            self._hold(slug, None)
            return None
        self._recover()
        self.claims += 1
        timeline = Timeline.parse(raw) if raw else None
        self._hold(slug, timeline)
        return timeline

    async def claim_free(self, slug: str) -> tuple[bool, Timeline | None]:
        """Hold ``slug`` only if no node holds it (a pull source's turn, never a takeover):
        (won, the timeline to continue). Not won when Redis does not answer."""
        try:
            won, raw = await self._scripts["claim_free"](keys=[LEASE + slug, TIMELINE + slug],
                                                         args=[self.node, self._ms])
        except (RedisError, OSError) as err:
            self._degrade(err)
            return False, None
        self._recover()
        if not int(won):
            return False, None
        self.claims += 1
        timeline = Timeline.parse(raw) if raw else None
        if timeline is not None and not timeline.ended:
            self.failovers += 1
            log.info("room %s: continuing its timeline (the previous holder's lease lapsed)", slug)
        self._hold(slug, timeline)
        return True, timeline

    def _hold(self, slug: str, timeline: Timeline | None) -> None:
        """Held from now on; a broadcast still going on (not ended) keeps its id."""
        self.held.add(slug)
        self._taken.discard(slug)
        going_on = timeline is not None and not timeline.ended and timeline.broadcast
        self.broadcasts[slug] = timeline.broadcast if timeline is not None and going_on else uuid.uuid4().hex[:16]

    def taken_over(self, slug: str) -> bool:
        """True once after another node took ``slug`` from this one (its local stop is not
        the broadcast's end)."""
        if slug in self._taken:
            self._taken.discard(slug)
            return True
        return False

    def advance(self, slug: str, timeline: Timeline) -> None:
        """Record where the room's playlist stands (written soon, coalesced)."""
        if slug in self.held:
            self._pending[slug] = timeline
            self._wake.set()

    async def release(self, slug: str) -> None:
        """The room's publisher stopped here: its timeline is marked ended, the lease freed."""
        if slug not in self.held:
            return
        self.held.discard(slug)
        self.broadcasts.pop(slug, None)  # ended: a later start here (a pull, say) is another broadcast
        pending = self._pending.pop(slug, None) or await self._timeline(slug)
        try:
            if pending is not None:
                await self._write(slug, dataclasses.replace(pending, ended=True))
            await self._scripts["release"](keys=[LEASE + slug], args=[self.node])
        except (RedisError, OSError) as err:
            self._degrade(err)

    async def _timeline(self, slug: str) -> Timeline | None:
        try:
            raw = await self._client.get(TIMELINE + slug)
        except (RedisError, OSError) as err:
            self._degrade(err)
            return None
        return Timeline.parse(raw) if raw else None

    async def moving(self, slug: str, within: float) -> bool:
        """True while ``slug`` has no holder but its last holder died mid-stream less than
        ``within`` seconds ago (its publisher may come back on any origin)."""
        timeline = await self._timeline(slug)
        return timeline is not None and not timeline.ended and time.time() - timeline.updated <= within

    async def held_anywhere(self, slug: str) -> bool | None:
        """Whether any node holds ``slug`` now; None when Redis does not answer."""
        try:
            return bool(await self._client.exists(LEASE + slug))
        except (RedisError, OSError) as err:
            self._degrade(err)
            return None

    async def holder_url(self, slug: str) -> str | None:
        """The HTTP base URL of the other origin holding ``slug``; None when this one holds
        it, nobody does, or Redis is unreachable. Cached for a third of a lease."""
        if slug in self.held:
            return None
        now = time.monotonic()
        cached = self._holders.get(slug)
        if cached is not None and now - cached[0] < self.lease_seconds / 3:
            return cached[1]
        try:
            raw = await self._client.get(LEASE + slug)
        except (RedisError, OSError) as err:
            self._degrade(err)
            return None
        ident, _, url = _text(raw).partition(" ") if raw else ("", "", "")
        found = url if url and ident != self.ident else None
        if len(self._holders) > 10_000:
            self._holders.clear()
        self._holders[slug] = (now, found)
        return found

    # -- background ------------------------------------------------------------

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not self.held:  # nothing to renew: still find out whether Redis answers
                try:
                    await self._client.ping()
                except (RedisError, OSError) as err:
                    self._degrade(err)
                else:
                    self._recover()
            for slug in [s for s in self.held if not self.active(s)]:
                log.info("room %s: no publisher here any more; releasing its lease", slug)
                await self.release(slug)
            for slug in list(self.held):
                try:
                    still = await self._scripts["renew"](keys=[LEASE + slug], args=[self.node, self._ms])
                except (RedisError, OSError) as err:
                    self._degrade(err)
                    break
                self._recover()
                if not still and slug in self.held:
                    self._lose(slug)

    async def _listen_forever(self) -> None:
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                pubsub = self._client.pubsub()
                await pubsub.subscribe(KICK_CHANNEL)
                backoff.reset()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._kicked(message.get("data"))
            except (RedisError, OSError) as err:
                self._degrade(err)
                await asyncio.sleep(backoff.next())

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                slug, timeline = self._pending.popitem()
                try:
                    await self._write(slug, timeline)
                except (RedisError, OSError) as err:
                    self._degrade(err)

    async def _write(self, slug: str, timeline: Timeline) -> None:
        stamped = dataclasses.replace(timeline, updated=time.time(),
                                      broadcast=timeline.broadcast or self.broadcasts.get(slug, ""))
        await self._scripts["advance"](keys=[LEASE + slug, TIMELINE + slug],
                                       args=[self.node, json.dumps(asdict(stamped)), TIMELINE_TTL])

    def _kicked(self, data: object) -> None:
        try:
            message = json.loads(data if isinstance(data, (str, bytes)) else "")
            slug, node = str(message["slug"]), str(message["node"])
        except (ValueError, KeyError, TypeError):
            return
        if node != self.node and slug in self.held:
            self._lose(slug)

    def _lose(self, slug: str) -> None:
        self.held.discard(slug)
        self.broadcasts.pop(slug, None)
        self._taken.add(slug)
        self._pending.pop(slug, None)
        self.lost += 1
        log.info("room %s: taken over by another origin; dropping the local publisher", slug)
        for handler in list(self._on_lost):
            try:
                handler(slug)
            except Exception:
                log.exception("lease-lost handler failed")

    def _degrade(self, err: BaseException) -> None:
        if not self.degraded:
            log.warning("Redis unreachable (%s): serving the rooms held here, degraded", type(err).__name__)
        self.degraded = True

    def _recover(self) -> None:
        if self.degraded:
            log.info("Redis reachable again")
        self.degraded = False


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
