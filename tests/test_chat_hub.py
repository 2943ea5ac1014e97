"""The chat bus, hub presence and coalescing, with in-memory fakes for sockets."""

from __future__ import annotations

import asyncio

import pytest
from helpers import wait_for

from livecast.chat.bus.base import RoomMessage
from livecast.chat.bus.memory import InProcessBus
from livecast.chat.coalesce import Coalescer
from livecast.chat.hub import FLUSH_INTERVAL, ChatClient, ChatHub, text_frame
from livecast.users import User


class FakeSocket:
    def __init__(self) -> None:
        self.closed = False
        self.close_code: int | None = None

    async def close(self, code: int = 1000) -> bool:
        self.closed, self.close_code = True, code
        return True


class FakeTransport:
    """Collects written bytes; ``stalled`` makes it report a full buffer like a peer that stopped reading."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0
        self.aborted = False
        self.stalled = False

    def write(self, data: bytes) -> None:
        self.data += data
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return 10**6 if self.stalled else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 16 * 1024, 64 * 1024

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def texts(self) -> list[str]:
        """The payloads of the (unmasked, final, text) frames written so far."""
        out, data, pos = [], bytes(self.data), 0
        while pos < len(data):
            assert data[pos] == 0x81 and data[pos + 1] < 0x80
            size, pos = data[pos + 1], pos + 2
            if size == 126:
                size, pos = int.from_bytes(data[pos:pos + 2], "big"), pos + 2
            elif size == 127:
                size, pos = int.from_bytes(data[pos:pos + 8], "big"), pos + 8
            out.append(data[pos:pos + size].decode())
            pos += size
        return out


def _user(uid: int) -> User:
    return User(uid, f"user{uid}", "viewer", 0, False, "2025-01-01T00:00:00Z")


def _client(room: str = "r1", user: User | None = None, queue: int = 8,
            address: str = "") -> tuple[ChatClient, FakeTransport]:
    transport = FakeTransport()
    return ChatClient(FakeSocket(), transport, room, user, queue, address), transport  # type: ignore[arg-type]


async def _settle(hub: ChatHub) -> None:
    """Until the hub's write tick has run (it runs at most every FLUSH_INTERVAL)."""
    await wait_for(lambda: hub.flushed, timeout=FLUSH_INTERVAL * 100, what="the hub's write tick")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frame_lengths(size: int) -> None:
    transport = FakeTransport()
    transport.write(text_frame("é" * (size // 2) + "x" * (size % 2)))
    assert transport.texts() == ["é" * (size // 2) + "x" * (size % 2)]


def test_bus_delivers_per_room_until_unsubscribed() -> None:
    bus = InProcessBus()
    got: list[tuple[str, str]] = []
    stop_a = bus.subscribe("a", lambda m: got.append(("a", m.text)))
    bus.subscribe("b", lambda m: got.append(("b", m.text)))
    bus.subscribe("a", lambda m: 1 / 0)  # a broken handler does not stop delivery
    bus.publish("a", RoomMessage("comment", "1"))
    bus.publish("b", RoomMessage("comment", "2"))
    stop_a()
    bus.publish("a", RoomMessage("comment", "3"))
    assert got == [("a", "1"), ("b", "2")]


async def test_presence_counts_logged_in_users_once() -> None:
    changes: list[str] = []
    hub = ChatHub(InProcessBus(), changes.append)
    alice = _user(1)
    clients = [_client(user=alice)[0], _client(user=alice)[0], _client(address="10.0.0.1")[0],
               _client(address="10.0.0.2")[0], _client("r2")[0]]
    for c in clients:
        hub.join(c)
    assert hub.viewers("r1") == 3 and hub.viewers("r2") == 1
    hub.leave(clients[0])
    assert hub.viewers("r1") == 3
    hub.leave(clients[1])
    assert hub.viewers("r1") == 2
    hub.change_user(clients[2], _user(2))
    assert hub.viewers("r1") == 2 and hub.is_present("r1", 2)
    hub.leave(clients[2])
    hub.leave(clients[3])
    assert hub.viewers("r1") == 0 and "r1" not in hub.bus.rooms()  # type: ignore[attr-defined]
    assert changes.count("r1") == 9  # 4 joins, 4 leaves, 1 login


async def test_joining_client_gets_hello_first_without_duplicates() -> None:
    bus = InProcessBus()
    hub = ChatHub(bus, lambda room: None)
    client, transport = _client()
    hub.join(client)
    bus.publish("r1", RoomMessage("comment", "c5", 5))  # already in the history
    bus.publish("r1", RoomMessage("comment", "c6", 6))
    bus.publish("r1", RoomMessage("likes", "likes"))
    hub.start(client, "hello", history_ref=5)
    await _settle(hub)
    assert transport.texts() == ["hello", "c6", "likes"]


async def test_busy_room_is_written_once_per_tick() -> None:
    bus = InProcessBus()
    hub = ChatHub(bus, lambda room: None)
    client, transport = _client(queue=100)
    hub.join(client)
    hub.start(client, "hello", 0)
    await _settle(hub)
    for i in range(20):
        bus.publish("r1", RoomMessage("comment", f"c{i}", i + 1))
    await _settle(hub)
    assert transport.texts() == ["hello"] + [f"c{i}" for i in range(20)]
    assert transport.writes <= 3


async def test_full_queue_drops_only_that_client() -> None:
    bus = InProcessBus()
    hub = ChatHub(bus, lambda room: None)
    slow, slow_transport = _client(queue=4)
    fast, fast_transport = _client(queue=4)
    for c in (slow, fast):
        hub.join(c)
        hub.start(c, "hello", 0)
    await _settle(hub)
    slow_transport.stalled = True
    for i in range(10):
        bus.publish("r1", RoomMessage("comment", f"c{i}", i + 1))
        await asyncio.sleep(0.01)
    await _settle(hub)
    assert slow_transport.aborted and hub.stats["slow_disconnects"] == 1
    assert hub.viewers("r1") == 1
    assert fast_transport.texts() == ["hello"] + [f"c{i}" for i in range(10)]
    assert slow_transport.texts() == ["hello"]
    await slow.stop()


async def test_congested_client_catches_up_when_its_peer_reads_again() -> None:
    bus = InProcessBus()
    hub = ChatHub(bus, lambda room: None)
    client, transport = _client(queue=50)
    hub.join(client)
    hub.start(client, "hello", 0)
    await _settle(hub)
    transport.stalled = True
    for i in range(5):
        bus.publish("r1", RoomMessage("comment", f"c{i}", i + 1))
    await _settle(hub)
    assert transport.texts() == ["hello"] and len(client.pending) == 5
    transport.stalled = False
    expected = ["hello"] + [f"c{i}" for i in range(5)]
    await wait_for(lambda: transport.texts() == expected, what="the queued frames written")
    assert transport.texts() == expected
    assert not transport.aborted


async def test_closed_room_message_closes_members() -> None:
    bus = InProcessBus()
    hub = ChatHub(bus, lambda room: None)
    client, transport = _client()
    hub.join(client)
    hub.start(client, "hello", 0)
    bus.publish("r1", RoomMessage("closed", "bye"))
    await client.stop()
    assert transport.texts() == ["hello", "bye"] and client.ws.close_code == 1000  # type: ignore[attr-defined]


async def test_coalescer_limits_rate_and_keeps_latest() -> None:
    clock = [100.0]
    fired: list[tuple[str, float]] = []
    values = {"a": 0}

    def callback(key: str) -> None:
        fired.append((key, values[key]))

    coalescer = Coalescer(0.05, callback, clock=lambda: clock[0])
    values["a"] = 1
    coalescer.mark("a")  # first change: at once
    for v in range(2, 20):
        values["a"] = v
        coalescer.mark("a")  # within the interval: one deferred call
    assert fired == [("a", 1)]
    clock[0] += 0.05
    await wait_for(lambda: len(fired) >= 2, what="the deferred call")
    assert fired == [("a", 1), ("a", 19)]
    coalescer.close()


def test_make_bus_refuses_unknown_bus() -> None:
    from livecast.app.buses import make_bus
    from livecast.chat.bus.redis import RedisBus
    from livecast.config import ChatSettings, ConfigError

    assert isinstance(make_bus(ChatSettings()), InProcessBus)
    assert isinstance(make_bus(ChatSettings(bus="redis://:secret@host:6379/0")), RedisBus)
    with pytest.raises(ConfigError) as info:
        make_bus(ChatSettings(bus="nats://:secret@host:4222"))
    assert "secret" not in str(info.value)
