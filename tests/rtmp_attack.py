"""Crafted RTMP clients for abuse tests: connections from a chosen loopback address
(any 127.x.y.z is loopback on Linux), keep-alive pings, a crafted publish."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from rtmp_craft import HANDSHAKE_SIZE, c0c1, c2, command_message, ping_request

from livecast.rtmp.amf import decode_values
from livecast.rtmp.chunks import ChunkReader

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_rtmp(node: Any, source: str) -> Conn | None:
    """A connection from ``source`` that finished the handshake; None if the server
    refused it (closed or reset before the handshake completed)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.rtmp_port, local_addr=(source, 0))
    except OSError:
        return None
    try:
        writer.write(c0c1())
        s0s1s2 = await asyncio.wait_for(reader.readexactly(1 + 2 * HANDSHAKE_SIZE), 5)
        writer.write(c2(s0s1s2[1:1 + HANDSHAKE_SIZE]))
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        writer.close()
        return None
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


@contextlib.asynccontextmanager
async def keep_alive(conns: list[Conn], every: float) -> AsyncIterator[None]:
    """Send a small valid message (a ping request) on every connection every ``every`` s."""

    async def loop() -> None:
        while True:
            for _, writer in conns:
                if not writer.is_closing():
                    with contextlib.suppress(OSError):
                        writer.write(ping_request(0))
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        for _, writer in conns:
            writer.close()


async def crafted_publish(node: Any, key: str, source: str = "127.0.0.1") -> Conn:
    """connect, createStream and publish with ``key``; returns once NetStream.Publish.Start arrives."""
    conn = await open_rtmp(node, source)
    assert conn is not None
    reader, writer = conn
    writer.write(command_message("connect", 1, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"}))
    writer.write(command_message("createStream", 2, None))
    writer.write(command_message("publish", 3, None, key, "live", stream_id=1, csid=8))
    parser = ChunkReader(max_chunk_size=0x7FFFFFFF)
    async with asyncio.timeout(10):
        while True:
            data = await reader.read(65536)
            assert data, "closed before the publish was accepted"
            for msg in parser.feed(data):
                values = decode_values(msg.payload) if msg.type_id == 20 else []
                if values and values[0] == "onStatus":
                    assert values[3]["code"] == "NetStream.Publish.Start", values[3]
                    return conn
