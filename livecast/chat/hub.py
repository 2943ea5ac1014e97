"""This node's chat sockets: room membership, presence counts and delivery.

A room message is turned into WebSocket frame bytes once and appended to the bounded
outgoing queue of every member; nothing waits for any socket. The hub then flushes
the queues of all clients that have something to send in one pass: one
``transport.write`` per client for everything queued since the last pass. A pass runs
at once when the hub has been idle, otherwise at most every ``FLUSH_INTERVAL`` (so a
busy room costs one write per client per tick, not one per message).

A client whose transport is congested (over its high-water mark: its peer reads
slowly) keeps its frames in its queue and gets its own drain task; when the queue reaches ``chat.send_queue`` frames the
client is disconnected and counted. The publisher and the other clients never wait.

aiohttp's ``WebSocketResponse`` does the handshake, reading, pings and closing; data
frames are written here, unmasked and uncompressed (the response is created with
``compress=False``), between its frames, never inside one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from livecast.chat.bus.base import ChatBus, RoomMessage, Unsubscribe
from livecast.chat.cooldown import Cooldown
from livecast.users import User

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0
FLUSH_INTERVAL = 0.04  # at most 25 writes a second per client
DRAIN_POLL = 0.05


def text_frame(text: str) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455 section 5.2)."""
    payload = text.encode("utf-8")
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def pong_frame(payload: bytes) -> bytes:
    """An unmasked pong frame answering a ping with ``payload`` (at most 125 bytes)."""
    return bytes((0x8A, len(payload))) + payload


class ChatClient:
    """One WebSocket: who it is, where it is, and its outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None,
                 room: str, user: User | None, queue_size: int, address: str = "") -> None:
        self.ws = ws
        self.transport = transport
        self.room = room
        self.user = user
        self.address = address  # the client's address key (livecast.chat.admission.address_key)
        self.joined = 0  # the hub's join sequence number
        self.queue_size = max(1, queue_size)
        self.pending: list[bytes] = []
        self._held: list[tuple[bytes, int]] | None = []  # delivered before the hello frame
        self._drainer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.closing = False  # no more frames are accepted
        # Waits until a congested transport resumes writing: the response's
        # ``StreamWriter.drain`` (returned by ``prepare``); polling when None.
        self.drain_waiter: Callable[[], Awaitable[None]] | None = None

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user else None

    def offer(self, frame: bytes, ref: int = 0) -> bool:
        """Queue one frame; False when the queue is full (the caller drops the client)."""
        if self.closing:
            return True
        if self._held is not None:
            if len(self._held) >= self.queue_size:
                return False
            self._held.append((frame, ref))
            return True
        if len(self.pending) >= self.queue_size:
            self.flush()  # a busy tick rather than a slow peer: write now if the transport takes it
            if len(self.pending) >= self.queue_size:
                return False
        self.pending.append(frame)
        return True

    def start(self, hello: bytes, history_ref: int) -> None:
        """Queue ``hello``, then what was delivered since joining, minus the comments the
        hello's history already holds (ids up to ``history_ref``)."""
        held, self._held = self._held or [], None
        self.pending.append(hello)
        self.pending.extend(frame for frame, ref in held if not (ref and ref <= history_ref))

    @property
    def gone(self) -> bool:
        transport = self.transport
        return transport is None or transport.is_closing() or self.ws.closed

    def flush(self) -> None:
        """Write everything queued in one go, unless the transport is congested."""
        if not self.pending or self._drainer is not None:
            return
        if self.gone:
            self.pending.clear()
            return
        assert self.transport is not None
        if self.congested:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
            return
        pending = self.pending
        self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        pending.clear()

    @property
    def congested(self) -> bool:
        """The transport holds more than its high-water mark (its protocol is paused)."""
        assert self.transport is not None
        return self.transport.get_write_buffer_size() > self.transport.get_write_buffer_limits()[1]

    async def _drain(self) -> None:
        try:
            while not self.gone and self.congested:
                if self.drain_waiter is not None:
                    await self.drain_waiter()  # returns when the transport resumes writing
                if not self.gone and self.congested:
                    await asyncio.sleep(DRAIN_POLL)
        except ConnectionError:
            return
        finally:
            self._drainer = None
        self.flush()

    async def wait_sent(self, timeout: float) -> None:
        """Wait (bounded) until the queue has been written."""
        deadline = time.monotonic() + timeout
        while self.pending and not self.gone and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def close(self, code: int, frame: bytes | None, flush: Callable[[ChatClient], None]) -> asyncio.Task[None]:
        """Send ``frame`` after what is queued, then close with ``code``; bounded in time."""
        if self._closer is None:
            if frame is not None and not self.closing:
                self.offer(frame)
            self.closing = True
            flush(self)
            self._closer = asyncio.get_running_loop().create_task(self._close(code))
        return self._closer

    async def _close(self, code: int) -> None:
        await self.wait_sent(CLOSE_TIMEOUT)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code=code)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once (a peer that does not read gets no close frame)."""
        self.closing = True
        self.pending.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    async def stop(self) -> None:
        """The handler is done: let a close in progress finish (bounded), stop draining."""
        if self._closer is not None:
            await asyncio.wait([self._closer], timeout=CLOSE_TIMEOUT * 2 + 1)
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer


class _Room:
    """A room's sockets (in joining order) and its distinct viewers: sockets by logged-in
    user, anonymous sockets by address."""

    __slots__ = ("clients", "users", "anonymous", "unsubscribe")

    def __init__(self, unsubscribe: Unsubscribe) -> None:
        self.clients: dict[ChatClient, None] = {}
        self.users: Counter[int] = Counter()
        self.anonymous: Counter[str] = Counter()
        self.unsubscribe = unsubscribe

    @property
    def viewers(self) -> int:
        return len(self.users) + len(self.anonymous)

    def count(self, client: ChatClient, delta: int) -> None:
        counter: Counter[Any] = self.anonymous if client.user is None else self.users
        key = client.address if client.user is None else client.user.id
        counter[key] += delta
        if counter[key] <= 0:
            del counter[key]


class ChatHub:
    """Local sockets by room. ``on_presence(room)`` runs whenever a room's viewer count may change."""

    def __init__(self, bus: ChatBus, on_presence: Callable[[str], None], abuse_block: float = 0.0) -> None:
        self.bus = bus
        self.on_presence = on_presence
        self.cooldown = Cooldown(abuse_block)  # addresses kept out after an abuse close
        self._rooms: dict[str, _Room] = {}
        self._dirty: set[ChatClient] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        self._addresses: Counter[str] = Counter()  # this node's sockets by client address
        self._joins = 0
        self.stats: Counter[str] = Counter()

    # -- membership -------------------------------------------------------------------

    def viewers(self, room: str) -> int:
        """Distinct viewers in the room: each logged-in user once, anonymous sockets once per address."""
        members = self._rooms.get(room)
        return members.viewers if members else 0

    def is_present(self, room: str, user_id: int) -> bool:
        members = self._rooms.get(room)
        return bool(members and members.users.get(user_id))

    def anonymous_present(self, room: str, address: str) -> bool:
        """An anonymous socket of ``address`` is in the room (another one adds no viewer)."""
        members = self._rooms.get(room)
        return bool(members and members.anonymous.get(address))

    def sockets_from(self, address: str) -> int:
        """This node's sockets (all rooms) of one client address."""
        return self._addresses.get(address, 0)

    def crowded_anonymous(self, room: str) -> ChatClient | None:
        """The newest anonymous socket of the address holding the most anonymous sockets
        in the room, if it holds more than one."""
        members = self._rooms.get(room)
        if members is None or not members.anonymous:
            return None
        address, count = members.anonymous.most_common(1)[0]
        if count < 2:
            return None
        for client in reversed(members.clients):
            if client.user is None and client.address == address and not client.closing:
                return client
        return None

    def newest_anonymous(self, address: str) -> ChatClient | None:
        """The most recent anonymous socket of ``address`` in any room (scans: rarely called)."""
        found = [c for members in self._rooms.values() for c in members.clients
                 if c.user is None and c.address == address and not c.closing]
        return max(found, key=lambda c: c.joined, default=None)

    def clients(self, room: str | None = None) -> list[ChatClient]:
        if room is not None:
            members = self._rooms.get(room)
            return list(members.clients) if members else []
        return [c for members in self._rooms.values() for c in members.clients]

    def join(self, client: ChatClient) -> None:
        members = self._rooms.get(client.room)
        if members is None:
            room = client.room
            unsubscribe = self.bus.subscribe(room, lambda message: self.deliver(room, message))
            members = self._rooms[room] = _Room(unsubscribe)
        members.clients[client] = None
        members.count(client, +1)
        self._joins += 1
        client.joined = self._joins
        self._addresses[client.address] += 1
        self.stats["connections"] += 1
        self.on_presence(client.room)

    def leave(self, client: ChatClient) -> None:
        self._dirty.discard(client)
        members = self._rooms.get(client.room)
        if members is None or client not in members.clients:
            return
        del members.clients[client]
        members.count(client, -1)
        self._addresses[client.address] -= 1
        if self._addresses[client.address] <= 0:
            del self._addresses[client.address]
        if not members.clients:
            members.unsubscribe()
            del self._rooms[client.room]
        self.on_presence(client.room)

    def change_user(self, client: ChatClient, user: User | None) -> None:
        """The client logged in (auth frame) or was logged out (account disabled)."""
        members = self._rooms.get(client.room)
        if members is not None and client in members.clients:
            members.count(client, -1)
            client.user = user
            members.count(client, +1)
            self.on_presence(client.room)
        else:
            client.user = user

    # -- delivery ---------------------------------------------------------------------

    def deliver(self, room: str, message: RoomMessage) -> None:
        """A bus message for ``room``: queue it for every local member."""
        members = self._rooms.get(room)
        if members is None:
            return
        frame = text_frame(message.text)
        if message.kind == "closed":
            for client in list(members.clients):
                self.close(client, 1000, frame)
            return
        ref, dirty, slow = message.ref, self._dirty, None
        self.stats["frames_out"] += len(members.clients)
        for client in members.clients:
            if client.offer(frame, ref):
                dirty.add(client)
            else:
                slow = [client] if slow is None else [*slow, client]
        for client in slow or ():
            self.drop_slow(client)
        self._schedule_flush()

    def start(self, client: ChatClient, hello: str, history_ref: int) -> None:
        client.start(text_frame(hello), history_ref)
        self._dirty.add(client)
        self._schedule_flush()

    def send(self, client: ChatClient, text: str) -> None:
        """A frame for one client only (replies and errors)."""
        self.send_frame(client, text_frame(text))

    def send_frame(self, client: ChatClient, frame: bytes) -> None:
        """Frame bytes for one client only (a pong)."""
        if client.offer(frame):
            self._dirty.add(client)
            self._schedule_flush()
        else:
            self.drop_slow(client)

    def close(self, client: ChatClient, code: int, frame: bytes | None = None) -> asyncio.Task[None]:
        return client.close(code, frame, self._flush_one)

    def close_text(self, client: ChatClient, code: int, text: str) -> asyncio.Task[None]:
        return self.close(client, code, text_frame(text))

    @property
    def flushed(self) -> bool:
        """No write tick is scheduled: everything offered so far has been flushed (or held back)."""
        return self._flush_handle is None

    def _flush_one(self, client: ChatClient) -> None:
        self._dirty.discard(client)
        client.flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._last_flush + FLUSH_INTERVAL - loop.time()
        if delay <= 0:
            self._flush_handle = loop.call_soon(self._flush)
        else:
            self._flush_handle = loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        dirty, self._dirty = self._dirty, set()
        for client in dirty:
            try:
                client.flush()
            except Exception:  # one broken transport must not stop the others
                log.exception("chat write failed in room %s", client.room)
                client.abort()

    def drop_slow(self, client: ChatClient) -> None:
        self.stats["slow_disconnects"] += 1
        log.warning("chat client in room %s is not reading; disconnected (%d so far)",
                    client.room, self.stats["slow_disconnects"])
        client.abort()
        self.leave(client)

    async def close_all(self, code: int) -> None:
        closers = [self.close(client, code) for client in self.clients()]
        if closers:
            await asyncio.wait(closers, timeout=CLOSE_TIMEOUT * 2 + 1)
        for client in self.clients():
            client.abort()

    def snapshot(self) -> dict[str, Any]:
        return {"rooms": len(self._rooms), "sockets": sum(len(m.clients) for m in self._rooms.values()),
                **self.stats}
