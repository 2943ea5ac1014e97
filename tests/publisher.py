"""A real RTMP publisher for tests: PyAV encodes (libx264/libx265 + AAC) and FFmpeg's own
RTMP client pushes the FLV to the server, exactly as an encoder would.

PyAV keeps the GIL while FFmpeg connects, so publishing (and reading HLS back) runs in a
child process: a thread would freeze the server under test, which shares this process.
Use ``await publish_async(...)`` / ``await read_hls_async(...)`` from tests; SIGTERM makes
a running publisher stop cleanly (FCUnpublish, deleteStream), like pressing Stop in OBS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import av


@dataclass
class Published:
    video_frames: int
    audio_frames: int
    seconds: float
    started: float = 0.0  # wall clock (time.time()) when the connection was open and media began


def _video_frame(i: int, width: int, height: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    y, u, v = frame.planes
    # A moving gradient: each row differs, and the picture changes every frame.
    row = bytes(((x + i * 4) & 0xFF) for x in range(y.line_size))
    y.update(row * height)
    u.update(bytes([(i * 3) & 0xFF]) * u.buffer_size)
    v.update(bytes([(255 - i * 3) & 0xFF]) * v.buffer_size)
    frame.pts = i
    return frame


def publish(
    url: str,
    *,
    seconds: float = 3.0,
    fps: int = 30,
    width: int = 320,
    height: int = 240,
    video: str | None = "libx264",
    audio: bool = True,
    gop: int | None = None,
    realtime: bool = False,
    stop: threading.Event | None = None,
    clock_origin: float | None = None,
) -> Published:
    """Publish ``seconds`` of media to ``url``; blocking (run it in a thread).

    With ``clock_origin`` (a ``time.time()``), the media timestamps follow that capture
    clock, as a camera's do: an encoder that reconnects at wall time ``t`` goes on at media
    time ``t - clock_origin``, so the media lost in between shows as a gap in timestamps.
    """
    out = av.open(url, "w", format="flv", options={"rw_timeout": "10000000"})
    started = time.time()
    vs = out.add_stream(video, rate=fps) if video else None
    if vs is not None:
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        g = str(gop or fps)
        if video == "libx264":
            vs.options = {"g": g, "keyint_min": g, "tune": "zerolatency", "preset": "ultrafast"}
        elif video in ("libx265", "hevc"):
            vs.options = {"g": g, "preset": "ultrafast",
                          "x265-params": f"keyint={g}:min-keyint={g}:log-level=error:bframes=0"}
        else:
            vs.options = {"g": g}
    aus = out.add_stream("aac", rate=44100, layout="stereo") if audio else None
    n_video = int(round(seconds * fps)) if vs is not None else 0
    n_audio = int(seconds * 44100 / 1024) if aus is not None else 0
    sent_video = sent_audio = 0
    start = time.monotonic()
    skew = max(0.0, started - clock_origin) if clock_origin is not None else 0.0
    v0, a0 = int(skew * fps), int(skew * 44100 / 1024)  # first frame numbers on the capture clock
    vi = ai = 0
    try:
        while vi < n_video or ai < n_audio:
            if stop is not None and stop.is_set():
                break
            v_time = vi / fps if vi < n_video else float("inf")
            a_time = ai * 1024 / 44100 if ai < n_audio else float("inf")
            if realtime:
                delay = min(v_time, a_time) - (time.monotonic() - start)
                if delay > 0:
                    time.sleep(delay)
            if v_time <= a_time:
                assert vs is not None
                for pkt in vs.encode(_video_frame(v0 + vi, width, height)):
                    out.mux(pkt)
                vi += 1
            else:
                assert aus is not None
                frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
                for plane in frame.planes:
                    plane.update(bytes(plane.buffer_size))
                frame.sample_rate = 44100
                frame.pts = (a0 + ai) * 1024
                frame.time_base = Fraction(1, 44100)
                for pkt in aus.encode(frame):
                    out.mux(pkt)
                ai += 1
        sent_video, sent_audio = vi, ai
        if vs is not None:
            for pkt in vs.encode():
                out.mux(pkt)
        if aus is not None:
            for pkt in aus.encode():
                out.mux(pkt)
    finally:
        out.close()
    return Published(sent_video, sent_audio, sent_video / fps if fps else 0.0, started)


def read_hls(url: str) -> tuple[int, float, list[str]]:
    """Read a finished HLS stream with PyAV's HLS demuxer: (video frames, video duration s, codecs)."""
    container = av.open(url, options={"http_persistent": "0"})
    try:
        codecs = [s.codec_context.name for s in container.streams]
        vstream = container.streams.video[0]
        frames = 0
        first = last = None
        step = 0
        for pkt in container.demux(vstream):
            if pkt.size == 0 or pkt.pts is None:
                continue
            frames += 1
            t = float(pkt.pts * vstream.time_base)
            first = t if first is None else min(first, t)
            if last is None or t > last:
                last = t
            if pkt.duration:
                step = float(pkt.duration * vstream.time_base)
        duration = 0.0 if first is None or last is None else last - first + step
        return frames, duration, codecs
    finally:
        container.close()


def read_hls_frames(url: str) -> dict[str, Any]:
    """Decode the video of an HLS stream to its end with PyAV: the presentation time (s) of
    every decoded frame, in order, and the FFmpeg messages of level error or worse."""
    times: list[float] = []
    with av.logging.Capture() as logs:
        container = av.open(url, options={"http_persistent": "0"})
        try:
            vstream = container.streams.video[0]
            for frame in container.decode(vstream):
                if frame.pts is not None:
                    times.append(float(frame.pts * vstream.time_base))
        finally:
            container.close()
    errors = [f"{name}: {message.strip()}" for level, name, message in logs if level <= av.logging.ERROR]
    return {"times": times, "errors": errors}


class PublishFailed(Exception):
    """The publisher process exited with an error (refused, disconnected...)."""


class Publisher:
    """A publisher running in a child process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)

    async def result(self, timeout: float = 120.0) -> Published:
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        if self.proc.returncode != 0:
            raise PublishFailed(err.decode(errors="replace")[-2000:])
        return Published(**json.loads(out.decode().strip().splitlines()[-1]))


async def start_publisher(url: str, **kwargs: Any) -> Publisher:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "publish", url, json.dumps(kwargs),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    return Publisher(proc)


async def publish_async(url: str, **kwargs: Any) -> Published:
    return await (await start_publisher(url, **kwargs)).result()


async def read_hls_async(url: str, timeout: float = 60.0) -> tuple[int, float, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "read", url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise AssertionError(f"reading {url} failed: {err.decode(errors='replace')[-2000:]}")
    frames, duration, codecs = json.loads(out.decode().strip().splitlines()[-1])
    return frames, duration, codecs


async def read_hls_frames_async(url: str, timeout: float = 60.0) -> dict[str, Any]:
    """``read_hls_frames`` in a child process: {"times": [...], "errors": [...]}."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "frames", url, stdout=asyncio.subprocess.PIPE, stderr=None,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise AssertionError(f"decoding {url} failed: {err.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["publish", "read", "frames"])
    ap.add_argument("url")
    ap.add_argument("kwargs", nargs="?", default="{}")
    args = ap.parse_args()
    av.logging.set_level(av.logging.ERROR)
    if args.mode == "read":
        print(json.dumps(read_hls(args.url)))
        return
    if args.mode == "frames":
        print(json.dumps(read_hls_frames(args.url)))
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    result = publish(args.url, stop=stop, **json.loads(args.kwargs))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    _main()
