"""TLS on real sockets: RTMPS publish (PyAV/FFmpeg) to a self-signed certificate made in the
test, HLS read back over HTTPS, and a SIGHUP certificate reload in a ``livecast serve``
process while a real-time RTMPS publish keeps going."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import make_room, segment_uris
from publisher import publish_async, read_hls_async, start_publisher

from livecast.keys import BOUND_PORTS
from livecast.server import banner

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]

FPS = 30


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh self-signed certificate (new key each time) for localhost and 127.0.0.1."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def der(pem_path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem_path.read_text())


class HttpsNode:
    """What tests/helpers.py needs (``http``, ``url``) for a node serving HTTPS."""

    def __init__(self, port: int, cafile: Path | None) -> None:
        self.port = port
        ctx: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(cafile)) if cafile else False
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    async def playlist_when(self, slug: str, text: str, timeout: float = 20.0) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        body = ""
        while loop.time() < deadline:
            async with self.http.get(self.url(f"/hls/{slug}/index.m3u8")) as r:
                body = await r.text()
                if r.status == 200 and text in body:
                    return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"playlist never showed {text!r}:\n{body}")


async def test_rtmps_publish_plays_over_https(node_factory: Any, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "server")
    node = await node_factory(tls={"cert": str(cert), "key": str(key), "rtmps_port": 0},
                              hls={"segment_duration": 1.0, "window": 10})
    ports = node.node.app[BOUND_PORTS]
    assert ports["rtmps"] not in (ports["rtmp"], node.node.http_port)
    text = banner(node.node, node.settings)
    assert f"https://127.0.0.1:{node.node.http_port}/" in text
    assert f"rtmps://127.0.0.1:{ports['rtmps']}/live" in text

    https = HttpsNode(node.node.http_port, cafile=cert)  # verifies the served certificate
    try:
        room = await make_room(https)
        sent = await publish_async(f"rtmps://127.0.0.1:{ports['rtmps']}/live/{room['stream_key']}",
                                   seconds=2.0, fps=FPS, gop=FPS)
        playlist = await https.playlist_when(room["slug"], "#EXT-X-ENDLIST")
        assert len(segment_uris(playlist)) >= 2
        frames, _, codecs = await read_hls_async(https.url(f"/hls/{room['slug']}/index.m3u8"))
        assert "h264" in codecs and frames == sent.video_frames
        # Plain RTMP stays on next to RTMPS.
        plain = await publish_async(f"rtmp://127.0.0.1:{ports['rtmp']}/live/{room['stream_key']}", seconds=0.5)
        assert plain.video_frames > 0
    finally:
        await https.http.close()


async def _read_banner(proc: asyncio.subprocess.Process, timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    lines: list[str] = []

    async def read() -> None:
        while True:
            line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
            if not line:
                raise AssertionError("server exited before its banner:\n" + "".join(lines))
            lines.append(line)
            if "Stop with Ctrl-C" in line:
                return

    await asyncio.wait_for(read(), timeout)
    return "".join(lines)


async def test_sighup_reloads_certificate_without_dropping_a_live_stream(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "live")
    config = tmp_path / "livecast.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nhttp_port = 0\nrtmp_port = 0\ndata_dir = "{tmp_path / "data"}"\n'
        f'uvloop = false\n[auth]\nbcrypt_rounds = 4\n[hls]\nsegment_duration = 1.0\nwindow = 10\n'
        f'[tls]\ncert = "{cert}"\nkey = "{key}"\nrtmps_port = 0\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livecast", "serve", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
    )
    https: HttpsNode | None = None
    try:
        text = await _read_banner(proc)
        web_port = int(re.search(r"https://127\.0\.0\.1:(\d+)/", text).group(1))  # type: ignore[union-attr]
        rtmps_port = int(re.search(r"rtmps://127\.0\.0\.1:(\d+)/live", text).group(1))  # type: ignore[union-attr]
        https = HttpsNode(web_port, cafile=None)
        room = await make_room(https)
        slug = room["slug"]

        publisher = await start_publisher(f"rtmps://127.0.0.1:{rtmps_port}/live/{room['stream_key']}",
                                          seconds=5.0, fps=FPS, gop=FPS, realtime=True)
        await https.playlist_when(slug, "#EXTINF")  # live and segmenting
        old = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", web_port))
        assert ssl.PEM_cert_to_DER_cert(old) == der(cert)

        new_cert, new_key = make_cert(tmp_path, "next")
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        proc.send_signal(signal.SIGHUP)
        seen = b""
        for _ in range(50):
            seen = ssl.PEM_cert_to_DER_cert(
                await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", web_port)))
            if seen == der(cert):
                break
            await asyncio.sleep(0.1)
        assert seen == der(cert), "new HTTPS connections still get the old certificate"
        assert proc.returncode is None
        async with https.http.get(https.url(f"/hls/{slug}/index.m3u8")) as r:
            assert "#EXT-X-ENDLIST" not in await r.text()  # the reload happened mid-stream
        # New RTMPS connections get the new certificate too (same context).
        rtmps_now = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", rtmps_port))
        assert ssl.PEM_cert_to_DER_cert(rtmps_now) == der(cert)

        sent = await publisher.result(timeout=30)  # the publish ran to its end over the old TLS session
        assert sent.video_frames == 5 * FPS
        playlist = await https.playlist_when(slug, "#EXT-X-ENDLIST")
        assert "#EXT-X-DISCONTINUITY" not in playlist.splitlines()  # one unbroken publish
        frames, _, _ = await read_hls_async(https.url(f"/hls/{slug}/index.m3u8"))
        assert frames == sent.video_frames
    finally:
        if https is not None:
            await https.http.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


def test_settings_and_reload_failure_keep_the_current_certificate(tmp_path: Path) -> None:
    from livecast.config import ConfigError, TlsSettings, load_settings
    from livecast.tls import ServerTls, TlsError

    with pytest.raises(ConfigError, match="tls.cert and tls.key"):
        load_settings(None, environ={"LIVECAST_TLS_CERT": "/x.pem"})
    with pytest.raises(TlsError):
        ServerTls(TlsSettings(cert=str(tmp_path / "missing.crt"), key=str(tmp_path / "missing.key")))
    cert, key = make_cert(tmp_path, "a")
    server = ServerTls(TlsSettings(cert=str(cert), key=str(key)))
    context = server.context
    cert.write_text("not a certificate")
    assert server.reload() is False and server.context is context
