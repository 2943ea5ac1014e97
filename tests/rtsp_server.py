"""A minimal RTSP server for pull tests (RTP over the RTSP connection, "interleaved").

Debian's ffmpeg cannot serve RTSP to a player, so the test serves it: FFmpeg encodes a
test pattern (H.264) and sends RTP to a local UDP port when a client PLAYs; this server
answers OPTIONS/DESCRIBE/SETUP/PLAY/TEARDOWN and forwards each RTP packet over the
client's TCP connection ($, channel, length, packet). The SDP comes from FFmpeg itself
(``-sdp_file``, from a short run with the same encoder settings). When FFmpeg ends, the
connection is closed: the stream is over.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path


def _ffmpeg(seconds: float, fps: int, port: int, sdp: Path | None, realtime: bool) -> list[str]:
    cmd = ["ffmpeg", "-loglevel", "error"] + (["-re"] if realtime else [])
    cmd += ["-f", "lavfi", "-i", f"testsrc=size=320x240:rate={fps}", "-t", str(seconds),
            "-c:v", "libx264", "-g", str(fps), "-preset", "ultrafast", "-tune", "zerolatency",
            "-flags", "+global_header", "-f", "rtp"]
    if sdp is not None:
        cmd += ["-sdp_file", str(sdp)]
    return cmd + [f"rtp://127.0.0.1:{port}?pkt_size=1200"]


class RtspServer:
    def __init__(self, workdir: Path, seconds: float = 3.0, fps: int = 30) -> None:
        self.workdir = workdir
        self.seconds = seconds
        self.fps = fps
        self.sdp = ""
        self.port = 0
        self.frames = int(seconds * fps)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    async def start(self) -> None:
        sdp_file = self.workdir / "stream.sdp"
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        try:
            await asyncio.to_thread(subprocess.run, _ffmpeg(0.2, self.fps, sink.getsockname()[1], sdp_file, False),
                                    check=True, timeout=30)
        finally:
            sink.close()
        lines = [ln for ln in sdp_file.read_text().splitlines() if ln and not ln.startswith("c=")]
        lines.insert(next(i for i, ln in enumerate(lines) if ln.startswith("m=")), "a=control:*")
        lines.append("a=control:streamid=0")
        self.sdp = "\r\n".join(lines) + "\r\n"
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method = lines[0].split(" ", 1)[0]
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                reply = {"CSeq": headers.get("cseq", "0")}
                body = ""
                if method == "OPTIONS":
                    reply["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN"
                elif method == "DESCRIBE":
                    body = self.sdp
                    reply.update({"Content-Type": "application/sdp", "Content-Base": self.url + "/"})
                elif method == "SETUP":
                    reply.update({"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1", "Session": "1234"})
                elif method == "PLAY":
                    reply["Session"] = "1234"
                elif method == "TEARDOWN":
                    await self._answer(writer, reply, "")
                    return
                await self._answer(writer, reply, body)
                if method == "PLAY":
                    await self._stream(writer)
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, headers: dict[str, str], body: str) -> None:
        if body:
            headers["Content-Length"] = str(len(body.encode()))
        text = "RTSP/1.0 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n" + body
        writer.write(text.encode())
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        proc = await asyncio.create_subprocess_exec(*_ffmpeg(self.seconds, self.fps, udp.getsockname()[1], None, True))
        try:
            while True:
                recv = asyncio.ensure_future(loop.sock_recv(udp, 65536))
                done, _ = await asyncio.wait({recv, asyncio.ensure_future(proc.wait())},
                                             return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    break
                packet = recv.result()
                writer.write(b"$\x00" + len(packet).to_bytes(2, "big") + packet)
                await writer.drain()
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            udp.close()
