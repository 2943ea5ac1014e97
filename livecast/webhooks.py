"""Webhooks: signed JSON POSTs of domain events, and the ``on_publish`` authorisation hook.

Every request body is ``{"event", "id", "ts", "data"}`` (never a stream key or token) and
carries ``X-LiveCast-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with
``webhooks.secret``, plus ``X-LiveCast-Event`` and ``X-LiveCast-Delivery`` (the id).

The EventBus subscriber only enqueues into a bounded queue (full: the event is dropped
and logged), so ingest and chat never wait. One worker task takes events off the queue
and starts one delivery per URL (at most ``MAX_IN_FLIGHT`` at a time) on one shared
``aiohttp.ClientSession``; a delivery retries with exponential backoff.

A delivery's id is derived from the event's identity when it has one (a comment's or a
gift's id; on a cluster also a broadcast's; ``identify``): every origin that sees the same event makes the
same id. With ``claims`` set (a cluster sharing Redis), a delivery is sent only by the
origin that claims its id first, so an event several origins would send goes out once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from livecast.config import WebhookSettings
from livecast.core.backoff import Backoff
from livecast.core.events import (
    CommentCreated,
    GiftSent,
    RelayStateChanged,
    RoomCreated,
    StreamStarted,
    StreamStopped,
)
from livecast.core.tasks import cancel_and_wait
from livecast.keys import EVENTS, SETTINGS

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-LiveCast-Signature"
EVENT_HEADER = "X-LiveCast-Event"
DELIVERY_HEADER = "X-LiveCast-Delivery"
PUBLISH_EVENT = "publish.authorise"
MAX_IN_FLIGHT = 16
DRAIN_SECONDS = 2.0  # on shutdown, how long queued events may still be delivered
_RETRY_STATUSES = frozenset({408, 425, 429})


def sign(secret: str, body: bytes) -> str:
    """The ``X-LiveCast-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, body), signature)


def event_data(event: object) -> tuple[str, dict[str, Any]] | None:
    """The webhook name and data of a domain event, or None if it is not sent."""
    if isinstance(event, StreamStarted):
        return "stream.started", {"room": event.slug, "peer": event.info.get("peer")}
    if isinstance(event, StreamStopped):
        return "stream.stopped", {"room": event.slug}
    if isinstance(event, RoomCreated):
        return "room.created", {"room": event.slug, "title": event.title, "owner": event.owner}
    if isinstance(event, CommentCreated):
        return "comment.created", {"room": event.slug, "id": event.comment_id, "user": event.user,
                                   "text": event.text, "ts": event.ts}
    if isinstance(event, GiftSent):
        return "gift.sent", {"room": event.slug, "id": event.gift_id, "user": event.user, "gift": event.gift,
                             "quantity": event.quantity, "value": event.value, "ts": event.ts}
    if isinstance(event, RelayStateChanged):
        data: dict[str, Any] = {"room": event.slug, "state": event.state, "reason": event.reason}
        if event.kind == "target":
            data.update({"target": event.target_id, "name": event.name})
        return f"relay.{event.kind}", data
    return None


def event_identity(event: object) -> str | None:
    """What makes an event the same on every origin that sees it (its row in the shared
    database); None: nothing does (a fresh random delivery id; e.g. a room created, deleted
    and created again under the same name is two events)."""
    if isinstance(event, CommentCreated):
        return f"comment:{event.slug}:{event.comment_id}"
    if isinstance(event, GiftSent):
        return f"gift:{event.slug}:{event.gift_id}"
    return None


# An event's cluster-wide identity: None = none (sent), "" = not to be sent from this origin.
Identify = Callable[[object], str | None]


class Claims(Protocol):
    """Claims a delivery id once across the cluster (Redis SET NX with an expiry)."""

    async def claim(self, delivery_id: str) -> bool:
        """True for the first claimant; also True when the store cannot be asked (a
        duplicate is better than a lost event)."""
        ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Delivery:
    """One serialised event: the exact bytes every URL receives."""

    __slots__ = ("body", "id", "name", "shared")

    def __init__(self, name: str, data: dict[str, Any], identity: str | None = None) -> None:
        self.name = name
        self.shared = identity is not None  # other origins may make the same delivery
        self.id = hashlib.sha256(f"{name} {identity}".encode()).hexdigest()[:32] if identity else uuid.uuid4().hex
        self.body = json.dumps({"event": name, "id": self.id, "ts": _now(), "data": data},
                               separators=(",", ":"), ensure_ascii=False).encode()

    def headers(self, secret: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", EVENT_HEADER: self.name, DELIVERY_HEADER: self.id,
                   "User-Agent": "LiveCast-Webhooks"}
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, self.body)
        return headers


class Webhooks:
    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=settings.queue_size)
        self.session: aiohttp.ClientSession | None = None
        self.dropped = 0
        self.delivered = 0
        self.failed = 0
        self.claimed_elsewhere = 0  # shared deliveries another origin sent
        self.identify: Identify = event_identity
        self.claims: Claims | None = None
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    # -- events -----------------------------------------------------------------------

    def on_event(self, event: object) -> None:
        """EventBus subscriber: serialise and enqueue, never wait."""
        if not self.settings.urls:
            return
        found = event_data(event)
        if found is None:
            return
        identity = self.identify(event)
        if identity == "":
            log.debug("webhook %s for %s: not sent from this origin", found[0], type(event).__name__)
            return
        self.enqueue(*found, identity=identity)

    def enqueue(self, name: str, data: dict[str, Any], identity: str | None = None) -> None:
        try:
            self.queue.put_nowait(Delivery(name, data, identity))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("webhook queue full (%d): dropped %s (%d dropped so far)",
                        self.queue.maxsize, name, self.dropped)

    async def _run(self) -> None:
        while True:
            item = await self.queue.get()
            if item.shared and self.claims is not None and not await self.claims.claim(item.id):
                self.claimed_elsewhere += 1
                log.debug("webhook %s %s: sent by another origin", item.name, item.id)
                continue
            for url in self.settings.urls:
                await self._slots.acquire()
                task = asyncio.get_running_loop().create_task(self._deliver(url, item))
                self._in_flight.add(task)
                task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()

    async def _deliver(self, url: str, item: Delivery) -> None:
        cfg = self.settings
        headers = item.headers(cfg.secret)
        # Doubles every retry, without a cap of its own: max_attempts bounds it.
        delays = Backoff(cfg.backoff, cfg.backoff * 2 ** min(cfg.max_attempts, 30)) if cfg.backoff > 0 else None
        for attempt in range(1, cfg.max_attempts + 1):
            status, problem = await self._post(url, item.body, headers, cfg.timeout)
            if not problem:
                self.delivered += 1
                return
            retry = status is None or status >= 500 or status in _RETRY_STATUSES
            if not retry or attempt == cfg.max_attempts:
                self.failed += 1
                log.warning("webhook %s %s to %s failed after %d attempt(s): %s",
                            item.name, item.id, url, attempt, problem)
                return
            delay = delays.next() if delays is not None else 0.0
            log.info("webhook %s to %s: %s; retry %d in %.1f s", item.name, url, problem, attempt, delay)
            await asyncio.sleep(delay)

    async def _post(self, url: str, body: bytes, headers: dict[str, str],
                    timeout: float) -> tuple[int | None, str]:
        """POST once: (HTTP status or None, "" on a 2xx answer else what went wrong)."""
        if self.session is None:
            return None, "not started"
        try:
            async with self.session.post(url, data=body, headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await resp.read()
                return resp.status, "" if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except TimeoutError:
            return None, f"no answer within {timeout} s"
        except aiohttp.ClientError as err:
            return None, f"{type(err).__name__}: {err}"

    # -- publish authorisation --------------------------------------------------------

    async def authorise_publish(self, slug: str, peer: str, app: str) -> bool:
        """Ask ``on_publish`` whether this publish may start: 2xx allows, anything else denies."""
        cfg = self.settings
        if not cfg.on_publish:
            return True
        item = Delivery(PUBLISH_EVENT, {})
        item.body = json.dumps({"room": slug, "peer": peer, "app": app}, separators=(",", ":")).encode()
        status, problem = await self._post(cfg.on_publish, item.body, item.headers(cfg.secret),
                                           cfg.on_publish_timeout)
        if not problem:
            return True
        if status is not None:
            log.warning("on_publish denied room %s from %s (%s)", slug, peer, problem)
            return False
        allow = cfg.on_publish_fail_open
        log.warning("on_publish for room %s from %s failed (%s): %s", slug, peer, problem,
                    "allowing (fail open)" if allow else "denying")
        return allow

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="webhooks")

    async def close(self) -> None:
        """Give queued and in-flight deliveries a moment, then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while (not self.queue.empty() or self._in_flight) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._worker is not None:
            await cancel_and_wait(self._worker)
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self.queue.qsize():
            log.warning("webhooks: %d queued event(s) not delivered at shutdown", self.queue.qsize())
        if self.session is not None:
            await self.session.close()


WEBHOOKS: web.AppKey[Webhooks] = web.AppKey("webhooks")


def setup(app: web.Application) -> Callable[[web.Application], AsyncIterator[None]]:
    """Add webhooks to an origin app; returns its lifecycle, for the app's wiring to run."""
    app[WEBHOOKS] = Webhooks(app[SETTINGS].webhooks)
    return _webhooks_ctx


async def _webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    hooks = app[WEBHOOKS]
    cfg = hooks.settings
    if not cfg.urls and not cfg.on_publish:
        yield
        return
    await hooks.start()
    unsubscribe = app[EVENTS].subscribe(hooks.on_event)
    log.info("webhooks: %d URL(s)%s", len(cfg.urls), ", on_publish check on" if cfg.on_publish else "")
    try:
        yield
    finally:
        unsubscribe()
        await hooks.close()
