"""RTMP abuse without a stream key, over real sockets: unauthenticated peers cannot lock a
real encoder out, cannot hold memory, and are closed when they miss their deadline or
byte budget; every refusal shows in /metrics. The attackers bind to other loopback
addresses (any 127.x.y.z is loopback on Linux), the real publisher comes from 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import make_room, room_json, rtmp_url, wait_playlist
from publisher import read_hls_async, start_publisher
from rtmp_attack import Conn, closed_by_server, keep_alive, open_rtmp
from rtmp_craft import command_message, ping_request
from test_metrics import scrape, value

pytestmark = pytest.mark.slow


async def open_rtmp_checked(node: Any, source: str) -> Conn:
    conn = await open_rtmp(node, source)
    assert conn is not None
    return conn


async def publish_and_check(node: Any, seconds: float = 4.0) -> None:
    """A real publisher with a valid key goes live and keeps every frame."""
    room = await make_room(node)
    pub = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=seconds, realtime=True)
    await wait_playlist(node, room["slug"], lambda t: ".ts" in t)
    assert (await room_json(node, room["slug"]))["live"] is True
    sent = await pub.result()
    await wait_playlist(node, room["slug"], lambda t: "#EXT-X-ENDLIST" in t)
    frames, _, _ = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
    assert frames == sent.video_frames


async def test_a_valid_key_publisher_connects_while_300_unauthenticated_sockets_from_one_address_are_open(
    node_factory,
) -> None:
    node = await node_factory(hls={"segment_duration": 1.0, "window": 30})
    attempts = [await open_rtmp(node, "127.0.0.2") for _ in range(300)]
    held = [c for c in attempts if c is not None]
    assert len(held) == 8  # ingest.max_pending_per_address
    async with keep_alive(held, every=2.0):
        await publish_and_check(node)
        families = await scrape(node)
        assert all(not w.is_closing() for _, w in held)  # the attacker's 8 are not disturbed either
    assert value(families, "livecast_rtmp_refused_total", reason="pending_per_address") == 292
    assert value(families, "livecast_rtmp_pending_connections") == 8
    assert value(families, "livecast_publishers") == 0


async def test_a_full_pending_table_evicts_the_busiest_address_and_never_refuses_a_publisher(node_factory) -> None:
    node = await node_factory(hls={"segment_duration": 1.0, "window": 30}, ingest={"max_pending_per_address": 4})
    # 300 pending sockets from 75 addresses: over the 256 global cap, so some get evicted.
    attempts = [await open_rtmp(node, f"127.0.1.{i // 4 + 1}") for i in range(300)]
    held = [c for c in attempts if c is not None]
    assert len(held) == 300  # nobody refused outright, the oldest were evicted instead
    async with keep_alive(held, every=2.0):
        await publish_and_check(node)
        families = await scrape(node)
    assert value(families, "livecast_rtmp_refused_total", reason="pending_evicted") >= 44
    assert value(families, "livecast_rtmp_pending_connections") <= 256


async def test_a_pending_peer_is_closed_at_its_deadline_and_over_its_byte_budget(node_factory) -> None:
    node = await node_factory(ingest={"auth_timeout": 1.5})
    slow = await open_rtmp(node, "127.0.0.3")
    assert slow is not None
    # Within budget, never idle, but never publishing: closed at the deadline.
    async with keep_alive([slow], every=0.3):
        assert await closed_by_server(slow[0], timeout=6.0)
    greedy = await open_rtmp(node, "127.0.0.4")
    assert greedy is not None
    # Small valid messages past the 64 KiB budget, before any publish: closed at once.
    greedy[1].write(command_message("connect", 1, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"}))
    greedy[1].write(ping_request(0) * 7000)
    assert await closed_by_server(greedy[0], timeout=1.0)
    families = await scrape(node)
    assert value(families, "livecast_rtmp_refused_total", reason="auth_timeout") == 1
    assert value(families, "livecast_rtmp_refused_total", reason="preauth_bytes") == 1
    assert value(families, "livecast_rtmp_pending_connections") == 0
    # A publisher is not pending: the deadline does not apply to it.
    await publish_and_check(node, seconds=3.0)
    families = await scrape(node)
    assert value(families, "livecast_rtmp_refused_total", reason="auth_timeout") == 1


async def test_refusals_are_counted_each_time_and_logged_once(node_factory, caplog) -> None:
    node = await node_factory()
    for _ in range(20):  # a key-guessing loop from one address
        reader, writer = await open_rtmp_checked(node, "127.0.0.5")
        writer.write(command_message("connect", 1, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"}))
        writer.write(command_message("createStream", 2, None))
        writer.write(command_message("publish", 3, None, "lc_guess", "live", stream_id=1, csid=8))
        assert await closed_by_server(reader, timeout=5.0)
        writer.close()
    for _ in range(20):  # garbage after the handshake
        reader, writer = await open_rtmp_checked(node, "127.0.0.5")
        writer.write(b"\x43" + bytes(64))  # fmt 1 chunk on a chunk stream that never had a header
        assert await closed_by_server(reader, timeout=5.0)
        writer.close()
    families = await scrape(node)
    assert value(families, "livecast_rtmp_refused_total", reason="bad_key") == 20
    assert value(families, "livecast_rtmp_refused_total", reason="protocol_error") == 20
    lines = [r.getMessage() for r in caplog.records if "127.0.0.5" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "unknown stream key" in lines[0] and "protocol error" in lines[1]
    assert "lc_guess" not in caplog.text
