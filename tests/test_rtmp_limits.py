"""Ingest limits in the sans-IO core, fed crafted bytes: an unauthenticated peer gets a
small byte budget, small messages and few partial chunk streams; an accepted publisher
gets encoder-sized limits, with the bytes held in partial messages capped in total."""

from __future__ import annotations

import pytest
from rtmp_craft import (
    Client,
    abort,
    chunk,
    command_message,
    message,
    ping_request,
    set_chunk_size,
)

from livecast.rtmp.chunks import ChunkReader, LimitExceeded, ProtocolError
from livecast.rtmp.limits import PendingConnections, Refusals
from livecast.rtmp.protocol import PublishRequested, RtmpServerProtocol, VideoData

LIMITS = {"max_message_bytes": 200_000, "max_partial_bytes": 300_000, "preauth_max_bytes": 20_000,
          "preauth_max_message_bytes": 4096, "preauth_max_partial_streams": 2}


def connected(chunk_size: int = 65536) -> Client:
    client = Client(RtmpServerProtocol(**LIMITS))
    client.connect()
    client.send(set_chunk_size(chunk_size))
    return client


def publishing(chunk_size: int = 65536) -> Client:
    client = connected(chunk_size)
    client.send(command_message("createStream", 4, None))
    client.send(command_message("publish", 5, None, "key", "live", stream_id=1, csid=8))
    req = client.events[-1]
    assert isinstance(req, PublishRequested)
    client.proto.accept_publish(req)
    client.replies()
    assert client.proto.authorised
    return client


def reason(client: Client, data: bytes) -> str:
    with pytest.raises(LimitExceeded) as info:
        client.send(data)
    return info.value.reason


def test_a_pending_peer_may_not_send_a_large_message() -> None:
    assert reason(connected(), chunk(0, 6, b"x" * 100, length=4097)) == "message_size"
    # The same message is fine once a publish was accepted.
    client = publishing()
    body = b"\x17\x01" + bytes(4095)
    assert client.send(message(body, csid=6, chunk_size=65536)) == [VideoData(1, 0, body)]


def test_a_pending_peer_may_hold_few_partial_messages() -> None:
    client = connected(chunk_size=128)
    client.send(chunk(0, 6, bytes(128), length=4000) + chunk(0, 7, bytes(128), length=4000))
    assert reason(client, chunk(0, 9, bytes(128), length=4000)) == "partial_streams"
    client = publishing(chunk_size=128)
    many = b"".join(chunk(0, csid, bytes(128), length=4000) for csid in range(10, 30))
    assert client.send(many) == []


def test_a_pending_peer_has_a_byte_budget_even_in_small_valid_messages() -> None:
    client = connected()
    with pytest.raises(LimitExceeded) as info:
        for i in range(20_000):
            client.send(ping_request(i))
            client.replies()
    assert info.value.reason == "preauth_bytes"
    assert 20_000 < client.proto.bytes_received <= 20_000 + len(ping_request(0))
    with pytest.raises(ProtocolError):  # dead after the first error
        client.send(ping_request(0))


def test_a_publisher_has_no_preauth_budget() -> None:
    client = publishing()
    body = b"\x17\x01" + bytes(100_000)
    for ts in range(0, 400, 40):  # 1 MB, far over the 20 kB pre-auth budget
        assert client.send(message(body, csid=6, ts=ts, chunk_size=65536)) == [VideoData(1, ts, body)]


def test_a_publisher_may_not_hold_more_than_max_partial_bytes() -> None:
    client = publishing()
    client.send(chunk(0, 6, bytes(65536), length=200_000) + chunk(0, 7, bytes(65536), length=200_000))
    client.send(chunk(3, 6, bytes(65536)) + chunk(3, 7, bytes(65536)))  # 262144 held
    assert reason(client, chunk(3, 6, bytes(65536))) == "partial_bytes"


def test_completed_and_aborted_messages_release_their_partial_bytes() -> None:
    reader = ChunkReader(max_partial_bytes=10_000, max_partial_streams=2)
    reader.feed(set_chunk_size(1000))
    reader.feed(chunk(0, 6, bytes(1000), length=3000) + chunk(0, 7, bytes(1000), length=3000))
    assert (reader.partial_bytes, reader.partial_streams) == (2000, 2)
    reader.feed(abort(7))
    assert (reader.partial_bytes, reader.partial_streams) == (1000, 1)
    out = reader.feed(chunk(3, 6, bytes(1000)) + chunk(3, 6, bytes(1000)))
    assert len(out) == 1 and len(out[0].payload) == 3000
    assert (reader.partial_bytes, reader.partial_streams, reader.peak_partial_bytes) == (0, 0, 3000)
    assert reader.buffered == 0
    # Over and over within the cap: the accounting never drifts.
    for _ in range(50):
        reader.feed(message(bytes(9000), csid=8, chunk_size=1000) + message(bytes(2500), csid=9, chunk_size=1000))
    assert (reader.partial_bytes, reader.partial_streams) == (0, 0)


def test_the_16_mib_partial_message_attack_is_stopped_before_connect() -> None:
    """The reported attack: after the handshake, partial 16 MiB messages on many chunk streams."""
    client = Client(RtmpServerProtocol())  # the defaults
    client.handshake(set_chunk_size(65536))
    assert reason(client, chunk(0, 6, bytes(60_000), length=0xFFFFFF - 1, type_id=9)) == "message_size"


def test_pending_connections_evict_the_oldest_of_the_busiest_address() -> None:
    pending: PendingConnections[str] = PendingConnections()
    for name, host in [("a1", "A"), ("b1", "B"), ("b2", "B"), ("c1", "C"), ("b3", "B")]:
        pending.add(name, host)
    assert len(pending) == 5 and pending.count("B") == 3 and "b2" in pending
    assert pending.victim() == "b1"
    pending.discard("b1")
    pending.discard("b2")
    assert pending.victim() in ("a1", "b3", "c1") and pending.count("B") == 1
    for name in ("a1", "b3", "c1"):
        pending.discard(name)
    assert len(pending) == 0 and pending.victim() is None and pending.count("B") == 0


def test_refusals_are_counted_every_time_and_logged_once_per_address(caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals(interval=60.0)
    refusals.summarise(1000.0)
    for i in range(100):
        refusals.note("auth_timeout", "10.0.0.1", f"10.0.0.1:{i} disconnected")
    refusals.note("auth_timeout", "10.0.0.2", "10.0.0.2:1 disconnected")
    assert refusals.totals["auth_timeout"] == 101 and refusals.totals["pending_evicted"] == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "livecast.rtmp.limits"]
    assert len(lines) == 2
    refusals.summarise(1030.0)
    assert len([r for r in caplog.records if r.name == "livecast.rtmp.limits"]) == 2
    refusals.summarise(1061.0)
    summary = caplog.records[-1].getMessage()
    assert "99 more" in summary and "auth_timeout 99" in summary
    refusals.note("auth_timeout", "10.0.0.1", "10.0.0.1:7 disconnected")  # a new interval: logged again
    assert caplog.records[-1].getMessage().startswith("rtmp 10.0.0.1:7")
