"""Bad RTMP clients over real sockets: each is disconnected, while a real publisher in
another room carries on unharmed and the server keeps answering."""

from __future__ import annotations

import asyncio
import os

import pytest
from helpers import make_room, rtmp_url, wait_playlist
from publisher import read_hls_async, start_publisher
from rtmp_craft import (
    HANDSHAKE_SIZE,
    c0c1,
    c2,
    chunk,
    command_message,
    message,
    set_chunk_size,
)

from livecast.rtmp.amf import decode_values
from livecast.rtmp.chunks import ChunkReader

pytestmark = pytest.mark.slow


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float = 10.0) -> bool:
    """True when the server closes the connection (EOF or reset) within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def _open(node) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", node.rtmp_port)


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(c0c1())
    s0s1s2 = await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
    writer.write(c2(s0s1s2[1:1 + HANDSHAKE_SIZE]))


async def _publish(node, key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, list[str]]:
    """Crafted connect/createStream/publish; returns the onStatus codes seen."""
    reader, writer = await _open(node)
    await _handshake(reader, writer)
    writer.write(command_message("connect", 1, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"}))
    writer.write(command_message("createStream", 2, None))
    writer.write(command_message("publish", 3, None, key, "live", stream_id=1, csid=8))
    await writer.drain()
    parser = ChunkReader(max_chunk_size=0x7FFFFFFF)
    codes: list[str] = []
    async with asyncio.timeout(10):
        while not any(c.startswith("NetStream.Publish") for c in codes):
            data = await reader.read(65536)
            if not data:
                break
            for msg in parser.feed(data):
                if msg.type_id == 20:
                    values = decode_values(msg.payload)
                    if values and values[0] == "onStatus":
                        codes.append(values[3]["code"])
    return reader, writer, codes


async def test_bad_clients_are_dropped_and_a_real_publisher_is_unaffected(node_factory) -> None:
    node = await node_factory(
        hls={"segment_duration": 1.0, "window": 30},
        ingest={"handshake_timeout": 1.0, "max_message_bytes": 1 << 20},
    )
    good, victim = await make_room(node, "good"), await make_room(node, "victim")
    pub = await start_publisher(rtmp_url(node, good["stream_key"]), seconds=6.0, realtime=True)
    await wait_playlist(node, good["slug"], lambda t: ".ts" in t)

    # 1. garbage instead of a handshake (wrong version byte)
    r, w = await _open(node)
    w.write(b"\x07" + os.urandom(4000))
    assert await _closed_by_server(r)

    # 2. a handshake that never finishes (C0C1 then silence) -> handshake timeout
    r, w = await _open(node)
    w.write(c0c1())
    assert await _closed_by_server(r, timeout=8)

    # 3. an absurd chunk size right after the handshake
    r, w = await _open(node)
    await _handshake(r, w)
    w.write(set_chunk_size(0x7FFFFFFF))
    assert await _closed_by_server(r)

    # 4. an absurd message length (16 MiB - 1 > max_message_bytes)
    r, w = await _open(node)
    await _handshake(r, w)
    w.write(chunk(0, 6, b"\x17\x01", length=0xFFFFFF, type_id=9, stream_id=1))
    assert await _closed_by_server(r)

    # 5. a valid publish, then a flood of tiny audio messages
    r, w, codes = await _publish(node, victim["stream_key"])
    assert "NetStream.Publish.Start" in codes
    flood = b"".join(message(b"\xaf\x01", csid=4, ts=i, type_id=8) for i in range(6000))
    w.write(flood)
    assert await _closed_by_server(r)

    # 6. a publish with a wrong key gets BadName and is closed
    r, w, codes = await _publish(node, "lc_wrong")
    assert "NetStream.Publish.BadName" in codes
    assert await _closed_by_server(r)

    sent = await pub.result()
    await wait_playlist(node, good["slug"], lambda t: "#EXT-X-ENDLIST" in t)
    frames, _, _ = await read_hls_async(node.url(f"/hls/{good['slug']}/index.m3u8"))
    assert frames == sent.video_frames
    async with node.http.get(node.url("/healthz")) as resp:
        assert resp.status == 200


async def test_idle_publisher_is_disconnected(node_factory) -> None:
    node = await node_factory(ingest={"idle_timeout": 1.5})
    room = await make_room(node)
    r, _w, codes = await _publish(node, room["stream_key"])
    assert "NetStream.Publish.Start" in codes
    assert await _closed_by_server(r, timeout=8)
    # The room went back offline.
    for _ in range(50):
        async with node.http.get(node.url(f"/api/v1/rooms/{room['slug']}")) as resp:
            if (await resp.json())["room"]["live"] is False:
                break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("room still live after its publisher was dropped")


async def test_max_publishers_refuses_extra_rooms(node_factory) -> None:
    node = await node_factory(ingest={"max_publishers": 1})
    a, b = await make_room(node), await make_room(node)
    _ra, wa, codes_a = await _publish(node, a["stream_key"])
    assert "NetStream.Publish.Start" in codes_a
    rb, _wb, codes_b = await _publish(node, b["stream_key"])
    assert "NetStream.Publish.Rejected" in codes_b
    assert await _closed_by_server(rb)
    wa.close()

