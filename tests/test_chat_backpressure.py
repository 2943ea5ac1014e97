"""A client that stops reading is disconnected and never delays the others."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from typing import Any

import pytest
from helpers import make_room
from livecast.chat.ws import CHAT
from test_chat_support import connect, next_frame

COMMENTS = 300
TEXT_CHARS = 30_000


async def _stalled_client(node: Any, slug: str) -> socket.socket:
    """A raw WebSocket client with a tiny receive buffer that never reads after the handshake."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", node.node.http_port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /api/v1/rooms/{slug}/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)  # byte by byte: leave the frames unread
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def _wait_closed(sock: socket.socket) -> None:
    """Read (now) until the server has dropped the connection."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            if not await loop.sock_recv(sock, 65536):
                return
        except ConnectionError:
            return


@pytest.mark.slow
async def test_slow_reader_is_dropped_and_others_keep_receiving(node_factory: Any) -> None:
    node = await node_factory(chat={"send_queue": 32, "rate_count": 100_000, "max_comment_chars": TEXT_CHARS,
                                    "max_frame_bytes": TEXT_CHARS + 200, "frame_burst": 10 * COMMENTS})
    room = await make_room(node)
    slug = room["slug"]
    stalled = await _stalled_client(node, slug)
    poster, _ = await connect(node, slug, room)
    readers = [(await connect(node, slug))[0] for _ in range(2)]
    body = "x" * (TEXT_CHARS - 10)

    async def read_all(ws: Any) -> int:
        seen = 0
        while seen < COMMENTS:
            await next_frame(ws, "comment")
            seen += 1
        return seen

    async def send_all() -> None:
        for i in range(COMMENTS):
            await poster.send_json({"type": "comment", "text": f"{i:06d}{body}"})

    tasks = [asyncio.ensure_future(read_all(ws)) for ws in (poster, *readers)]
    await send_all()
    # Generous bound: the point is that nobody is stalled behind the stalled client.
    assert await asyncio.wait_for(asyncio.gather(*tasks), 60) == [COMMENTS] * 3
    hub = node.node.app[CHAT].hub
    assert hub.stats["slow_disconnects"] == 1
    assert len(hub.clients(slug)) == 3  # sockets: viewers count anonymous sockets once per address
    await asyncio.wait_for(_wait_closed(stalled), 10)
    stalled.close()
    for ws in (poster, *readers):
        await ws.close()
