"""Chat socket limits on a real node: the per-socket frame budget (pings included),
unmasked client frames, and the comment text rules."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import aiohttp
import pytest

from livecast.chat.ws import CHAT
from helpers import make_room, register_and_login, wait_for
from test_chat_support import TIMEOUT, chat_url, connect, next_frame, post


# -- raw WebSocket bytes ------------------------------------------------------------------


def client_frame(opcode: int, payload: bytes, masked: bool = True) -> bytes:
    """One final client frame (payload under 126 bytes), masked unless told otherwise."""
    assert len(payload) < 126
    if not masked:
        return bytes((0x80 | opcode, len(payload))) + payload
    key = os.urandom(4)
    return bytes((0x80 | opcode, 0x80 | len(payload))) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(size)


async def raw_chat(node: Any, slug: str, early: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A chat socket over a plain TCP connection, after its hello frame. ``early`` is sent
    right behind the upgrade request, before the server has answered it (then the hello
    is left to the caller)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.node.http_port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /api/v1/rooms/{slug}/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
                 + early)
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert status.startswith(b"HTTP/1.1 101"), status
    if not early:
        opcode, payload = await asyncio.wait_for(read_server_frame(reader), TIMEOUT)
        assert opcode == 1 and json.loads(payload)["type"] == "hello"
    return reader, writer


async def frames_until_close(reader: asyncio.StreamReader) -> tuple[list[dict[str, Any]], int | None]:
    """The text frames (JSON) up to the close frame, and its close code (None: no close frame)."""
    texts: list[dict[str, Any]] = []
    while True:
        try:
            opcode, payload = await asyncio.wait_for(read_server_frame(reader), TIMEOUT)
        except asyncio.IncompleteReadError:
            return texts, None
        if opcode == 8:
            return texts, int.from_bytes(payload[:2], "big")
        if opcode == 1:
            texts.append(json.loads(payload))


@pytest.mark.slow
async def test_unmasked_frame_closes_the_connection_with_1002(node: Any) -> None:
    room = await make_room(node)
    reader, writer = await raw_chat(node, room["slug"])
    writer.write(client_frame(1, b'{"type":"ping"}'))  # masked: answered
    assert await frames_until_ping(reader) == {"type": "pong"}
    writer.write(client_frame(1, b'{"type":"ping"}', masked=False))
    texts, code = await frames_until_close(reader)
    assert [t["code"] for t in texts if t["type"] == "error"] == ["protocol_error"]
    assert code == 1002
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # and the server closed the TCP connection
    writer.close()
    assert node.node.app[CHAT].hub.stats["closed_protocol_error"] == 1


async def frames_until_ping(reader: asyncio.StreamReader) -> dict[str, Any]:
    while True:
        opcode, payload = await asyncio.wait_for(read_server_frame(reader), TIMEOUT)
        if opcode == 1 and json.loads(payload)["type"] == "pong":
            return dict(json.loads(payload))


async def test_unmasked_frame_sent_before_the_handshake_answer_is_caught(node: Any) -> None:
    """Bytes that arrive with the upgrade request are checked too."""
    room = await make_room(node)
    reader, writer = await raw_chat(node, room["slug"], early=client_frame(9, b"x", masked=False))
    texts, code = await frames_until_close(reader)
    assert code == 1002 and [t["code"] for t in texts if t["type"] == "error"] == ["protocol_error"]
    assert all(t["type"] != "comment" for t in texts)
    writer.close()


async def test_control_frames_are_answered_with_pong_and_keep_the_socket(node: Any) -> None:
    room = await make_room(node)
    reader, writer = await raw_chat(node, room["slug"])
    writer.write(client_frame(9, b"abc") + client_frame(10, b"unsolicited"))
    opcode, payload = 1, b""
    while opcode == 1:  # text frames (viewers) may come first
        opcode, payload = await asyncio.wait_for(read_server_frame(reader), TIMEOUT)
    assert (opcode, payload) == (10, b"abc")
    writer.write(client_frame(1, b'{"type":"ping"}'))
    assert await frames_until_ping(reader) == {"type": "pong"}
    writer.close()


@pytest.mark.slow
async def test_ping_flood_closes_the_flooder_with_1008_while_others_get_comments(node_factory: Any) -> None:
    node = await node_factory(chat={"rate_count": 1000, "frames_per_second": 20, "frame_burst": 60})
    room = await make_room(node)
    slug = room["slug"]
    poster, _ = await connect(node, slug, room)
    reader, _ = await connect(node, slug)
    flooder, _ = await connect(node, slug, autoping=False)

    async def flood() -> int:
        sent = 0
        try:
            while not flooder.closed:
                await flooder.ping(b"p")
                sent += 1
                if sent % 50 == 0:
                    await asyncio.sleep(0)
        except (ConnectionError, RuntimeError):
            pass
        return sent

    async def flooder_frames() -> tuple[list[str], int | None]:
        codes: list[str] = []
        while True:
            msg = await flooder.receive()
            if msg.type == aiohttp.WSMsgType.TEXT and msg.json()["type"] == "error":
                codes.append(msg.json()["code"])
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                return codes, msg.data
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return codes, None

    flooding = asyncio.create_task(flood())
    watching = asyncio.create_task(flooder_frames())
    texts = [f"during the flood {i}" for i in range(30)]
    for text in texts:
        await post(poster, text)
    for text in texts:
        await next_frame(reader, "comment", lambda f, t=text: f["text"] == t)  # type: ignore[misc]
    codes, close_code = await asyncio.wait_for(watching, TIMEOUT)
    sent = await asyncio.wait_for(flooding, TIMEOUT)
    assert codes == ["too_many_frames"] and close_code == 1008
    assert sent >= 60
    async with node.http.get(node.url("/metrics")) as r:
        assert "livecast_chat_closed_flood_total 1.0" in await r.text()
    # For a while its address gets 429 before any upgrade; another address does not.
    try:
        await node.http.ws_connect(chat_url(node, slug))
        raise AssertionError("the flooder's address was let in again at once")
    except aiohttp.WSServerHandshakeError as err:
        assert err.status == 429 and err.headers is not None and int(err.headers["Retry-After"]) >= 1
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as other:
        elsewhere, _ = await connect(node, slug, session=other)
        await elsewhere.close()
    # The others are still there and still talking.
    await post(poster, "after the flood")
    await next_frame(reader, "comment", lambda f: f["text"] == "after the flood")
    for ws in (poster, reader):
        await ws.close()


async def test_text_frames_count_toward_the_same_budget(node_factory: Any) -> None:
    node = await node_factory(chat={"frames_per_second": 1, "frame_burst": 5})
    room = await make_room(node)
    ws, _ = await connect(node, room["slug"])
    for _ in range(4):  # within the burst: answered
        await ws.send_json({"type": "ping"})
    for _ in range(4):
        await next_frame(ws, "pong")
    for _ in range(20):
        await ws.send_json({"type": "ping"})
    codes = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        if msg.json()["type"] == "error":
            codes.append(msg.json()["code"])
    assert codes == ["too_many_frames"] and (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1008)


async def test_comment_text_loses_bidi_overrides_and_zero_width_characters(node_factory: Any) -> None:
    node = await node_factory()
    room = await make_room(node)
    fan = await register_and_login(node)
    ws, _ = await connect(node, room["slug"], fan)
    await ws.send_json({"type": "comment",
                        "text": "\u202egnp.exe\u202c fine\u2066 \u200bzero\u2060 \u0085c1 \u200dzwj \u200crtl\u200f"})
    frame = await next_frame(ws, "comment")
    assert frame["text"] == "gnp.exe fine zero c1 \u200dzwj \u200crtl\u200f"
    await ws.send_json({"type": "comment", "text": "\u202e\u2067\u200b\ufeff"})
    assert (await next_frame(ws, "error"))["code"] == "empty_comment"
    await ws.close()


@pytest.mark.slow
async def test_heartbeat_still_works_without_autoping(node: Any, monkeypatch: Any) -> None:
    """The server answers pings itself (autoping off); its own heartbeat must still keep
    clients that answer and drop the ones that never do."""
    monkeypatch.setattr("livecast.chat.ws.HEARTBEAT", 0.5)
    room = await make_room(node)
    slug = room["slug"]
    alive, _ = await connect(node, slug, room)  # answers the server's pings while it reads
    counter, _ = await connect(node, slug, autoping=False)  # answers them by hand, counting them
    seen: list[str] = []

    async def read() -> None:
        async for message in alive:
            if message.type == aiohttp.WSMsgType.TEXT and message.json()["type"] == "comment":
                seen.append(message.json()["text"])

    pings: list[None] = []

    async def answer_by_hand() -> None:
        async for message in counter:
            if message.type == aiohttp.WSMsgType.PING:
                pings.append(None)
                await counter.pong(message.data)

    reading = asyncio.create_task(read())
    answering = asyncio.create_task(answer_by_hand())
    silent, _ = await connect(node, slug, autoping=False)  # never answers
    msg = await asyncio.wait_for(silent.receive(), TIMEOUT)
    while msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PING):
        msg = await asyncio.wait_for(silent.receive(), TIMEOUT)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    before = len(pings)  # several heartbeats later the answering clients are still there
    await wait_for(lambda: len(pings) >= before + 3, timeout=TIMEOUT, what="three more heartbeats")
    await alive.send_json({"type": "comment", "text": "still here"})
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.05)
    assert seen == ["still here"] and not alive.closed
    await alive.close()
    assert not counter.closed
    await counter.close()
    await answering
    await reading
