"""Pushes to real servers: Debian's nginx-rtmp records the frames it gets from a push
target; an RTMPS target with a self-signed certificate works with verification off and
fails with a clear reason with it on; a target that accepts and then stops reading is
dropped from the room's path while the room's HLS and a healthy target get every frame."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helpers import make_room, rtmp_url, wait_for
from nginx_rtmp import NginxRtmp, count_frames
from publisher import publish_async, read_hls_async
from test_relay_targets import _add_target, _targets
from test_tls import make_cert

from livecast.rtmp.protocol import PublishRequested, RtmpServerProtocol

pytestmark = pytest.mark.slow
FPS = 30


@pytest.fixture
async def nginx_rtmp() -> AsyncIterator[NginxRtmp]:
    server = NginxRtmp()
    await server.start()
    yield server
    await server.stop()


async def test_push_to_nginx_rtmp_records_the_published_frames(node: Any, nginx_rtmp: NginxRtmp) -> None:
    room = await make_room(node)
    status, body = await _add_target(node, room, name="nginx", url=nginx_rtmp.url, stream_key="relayed1")
    assert status == 201, body
    sent = await publish_async(rtmp_url(node, room["stream_key"]), seconds=3.0, fps=FPS, gop=FPS)
    await wait_for(lambda: _state(node, room, "idle"), what="target idle after the room stopped")
    path = nginx_rtmp.recording("relayed1")
    await wait_for(lambda: path.exists() and path.stat().st_size > 0, what="nginx recording")
    video, audio = await asyncio.to_thread(count_frames, path)
    assert abs(video - sent.video_frames) <= 1, (video, sent, nginx_rtmp.log()[-2000:])
    assert abs(audio - sent.audio_frames) <= 1, (audio, sent)


async def _state(node: Any, room: dict[str, Any], state: str) -> bool:
    return all(t["state"] == state for t in await _targets(node, room))


async def test_rtmps_target_self_signed_verify_off_works_on_fails(node_factory: Any, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "target")
    other = await node_factory(tmp_path / "b", tls={"cert": str(cert), "key": str(key), "rtmps_port": 0})
    origin = await node_factory(tmp_path / "a")
    room = await make_room(origin)
    https = _Https(other.node.http_port)
    try:
        remote = await make_room(https)
    finally:
        await https.http.close()
    port = other.node.rtmps_port
    url = f"rtmps://127.0.0.1:{port}/live"
    await _add_target(origin, room, name="tls-off", url=url, stream_key=remote["stream_key"], verify_tls=False)
    await _add_target(origin, room, name="tls-on", url=url, stream_key=remote["stream_key"] + "x")
    sent = await publish_async(rtmp_url(origin, room["stream_key"]), seconds=3.0, fps=FPS, gop=FPS)
    frames, _, _ = await read_hls_async(f"https://127.0.0.1:{other.node.http_port}/hls/{remote['slug']}/index.m3u8")
    assert abs(frames - sent.video_frames) <= 1, (frames, sent)
    targets = {t["name"]: t for t in await _targets(origin, room)}
    assert targets["tls-on"]["state"] in ("retrying", "idle") and targets["tls-on"]["reconnects"] >= 1, targets
    assert "certificate verification failed" in targets["tls-on"]["reason"], targets


class _Https:
    """The helpers' node interface for a node that serves HTTPS (self-signed)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False))

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


class StallingServer:
    """Accepts one RTMP publish (the project's own sans-IO server protocol), then never
    reads again: its small receive buffer fills and the pusher's writes stall."""

    def __init__(self) -> None:
        self.accepted = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.1", 0))
        self.server = await asyncio.start_server(self._serve, sock=sock)
        self.port = sock.getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proto = RtmpServerProtocol()
        while not self.accepted.is_set():
            data = await reader.read(4096)
            if not data:
                return
            for event in proto.receive(data):
                if isinstance(event, PublishRequested):
                    proto.accept_publish(event)
                    self.accepted.set()
            writer.write(proto.data_to_send())
        await asyncio.sleep(3600)  # simulated work: a peer that never reads again

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_stalled_target_is_dropped_others_get_everything(node_factory: Any, tmp_path: Path) -> None:
    origin = await node_factory(tmp_path / "a", relay={"connect_timeout": 1.0, "send_buffer_bytes": 65536},
                                hls={"segment_duration": 1.0, "window": 20})
    other = await node_factory(tmp_path / "b")
    stall = StallingServer()
    await stall.start()
    try:
        room = await make_room(origin)
        remote = await make_room(other)
        await _add_target(origin, room, name="stalls", url=f"rtmp://127.0.0.1:{stall.port}/live", stream_key="k1")
        await _add_target(origin, room, name="healthy", url=f"rtmp://127.0.0.1:{other.rtmp_port}/live",
                          stream_key=remote["stream_key"])
        sent = await publish_async(rtmp_url(origin, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS,
                                   width=640, height=480, realtime=True)
        assert stall.accepted.is_set()
        targets = {t["name"]: t for t in await _targets(origin, room)}
        assert targets["stalls"]["reconnects"] >= 1 and targets["stalls"]["dropped"] > 0, targets
        assert targets["stalls"]["reason"] == "the target stopped reading", targets
        assert targets["healthy"]["dropped"] == 0 and targets["healthy"]["reconnects"] == 0, targets
        own, _, _ = await read_hls_async(origin.url(f"/hls/{room['slug']}/index.m3u8"))
        relayed, _, _ = await read_hls_async(other.url(f"/hls/{remote['slug']}/index.m3u8"))
        assert abs(own - sent.video_frames) <= 1, (own, sent)
        assert abs(relayed - sent.video_frames) <= 1, (relayed, sent)
    finally:
        await stall.close()
