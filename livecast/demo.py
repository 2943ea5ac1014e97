"""``livecast serve --demo``: a room called ``demo`` with a live test pattern in it, so a
new user sees a stream in the browser without OBS.

At start-up the server makes (idempotently) a streamer ``demo`` and a room ``demo``, then
runs a publisher in a child process: PyAV encodes colour bars, a running clock and a
440 Hz tone with a beep every second (libx264 + AAC) and FFmpeg's RTMP client pushes it to
this server's own RTMP port on loopback, in real time, exactly as OBS would. A child
process, not a thread: PyAV keeps the GIL while FFmpeg connects, which would freeze the
server's event loop. The child is restarted with backoff if it dies and stopped on
shutdown.

``python -m livecast.demo RTMP_URL`` runs the publisher alone (``-`` reads the URL from stdin).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import secrets
import signal
import sys
import time
from array import array
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from typing import Any

from aiohttp import web

from livecast.core.backoff import Backoff
from livecast.core.errors import RoomNotFound
from livecast.core.tasks import cancel_and_wait
from livecast.keys import BOUND_PORTS, ROOMS, SETTINGS, USERS

log = logging.getLogger(__name__)

DEMO_USER = "demo"
DEMO_SLUG = "demo"
DEMO_TITLE = "LiveCast demo"
DEMO_DESCRIPTION = "A test pattern with a clock and a tone, published by this server to itself over RTMP."
WIDTH, HEIGHT, FPS = 640, 360, 30
SAMPLE_RATE = 44100
BACKOFF_MIN, BACKOFF_MAX = 1.0, 30.0
HEALTHY_AFTER = 30.0  # a child that ran this long resets the backoff
STOP_TIMEOUT = 5.0


# -- server side -----------------------------------------------------------------------


def setup(app: web.Application) -> Callable[[web.Application], AsyncIterator[None]]:
    """The demo's lifecycle; run it after the RTMP listener's (it needs the port)."""
    return _demo_ctx


async def ensure_demo_room(app: web.Application) -> str:
    """The demo room's stream key; creates the user and the room the first time."""
    users, rooms = app[USERS], app[ROOMS]
    try:
        return (await rooms.require(DEMO_SLUG)).stream_key
    except RoomNotFound:
        pass
    owner = await users.get_by_username(DEMO_USER)
    if owner is None:
        password = secrets.token_urlsafe(12)
        owner = await users.create_user(DEMO_USER, password, role="streamer")
        print(f"Demo account created: username {DEMO_USER}, password {password} (shown once)", flush=True)
    room = await rooms.create(owner, DEMO_TITLE, DEMO_DESCRIPTION, DEMO_SLUG)
    log.info("created the demo room /r/%s", room.slug)
    return room.stream_key


def _local_host(bound: str) -> str:
    """How this machine reaches its own RTMP listener bound to ``bound``."""
    if bound in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bound == "::":
        return "[::1]"
    return f"[{bound}]" if ":" in bound else bound


async def _log_output(stream: asyncio.StreamReader | None) -> None:
    if stream is None:
        return
    try:
        async for line in stream:
            text = line.decode(errors="replace").rstrip()
            if text:
                log.warning("demo publisher: %s", text[:500])
    except ValueError:  # a line longer than the reader's limit: stop echoing, the child goes on
        log.warning("demo publisher: output too long to log")


async def _stop_child(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def run_publisher_forever(app: web.Application) -> None:
    """Start the child publisher; restart it with backoff whenever it exits."""
    retry = Backoff(BACKOFF_MIN, BACKOFF_MAX)
    while True:
        try:
            key = await ensure_demo_room(app)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not prepare the demo room")
            await asyncio.sleep(BACKOFF_MAX)
            continue
        url = f"rtmp://{_local_host(app[SETTINGS].server.host)}:{app[BOUND_PORTS]['rtmp']}/live/{key}"
        # The URL (it holds the stream key) goes over stdin, not argv, so `ps` does not show it.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "livecast.demo", "-",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None
        proc.stdin.write(url.encode() + b"\n")
        proc.stdin.close()
        started = time.monotonic()
        reader = asyncio.get_running_loop().create_task(_log_output(proc.stderr))
        try:
            code = await proc.wait()
        finally:
            if proc.returncode is None:  # cancelled: shutting down
                await _stop_child(proc)
            await cancel_and_wait(reader)
        if time.monotonic() - started > HEALTHY_AFTER:
            retry.reset()
        delay = retry.next()
        log.warning("demo publisher exited with code %s; restarting in %.0f s", code, delay)
        await asyncio.sleep(delay)


async def _demo_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(run_publisher_forever(app), name="demo-publisher")
    log.info("demo mode: publishing a test pattern into /r/%s", DEMO_SLUG)
    yield
    await cancel_and_wait(task)


# -- the test pattern (child process) ---------------------------------------------------

# Seven-segment digits: which of the segments a..g are lit.
#  aaa
# f   b
#  ggg
# e   c
#  ddd
_DIGITS = {
    "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg",
    "5": "acdfg", "6": "acdefg", "7": "abc", "8": "abcdefg", "9": "abcdfg",
}
# 75 % colour bars as (Y, U, V): white, yellow, cyan, green, magenta, red, blue.
_BARS = [(180, 128, 128), (168, 44, 136), (145, 147, 44), (133, 63, 52),
         (63, 193, 204), (51, 109, 212), (28, 212, 120)]


def _segments(digit_w: int, digit_h: int, t: int) -> dict[str, tuple[int, int, int, int]]:
    """Segment rectangles (x0, y0, x1, y1) inside one digit cell; ``t`` is the stroke."""
    mid = digit_h // 2
    return {
        "a": (0, 0, digit_w, t),
        "b": (digit_w - t, 0, digit_w, mid),
        "c": (digit_w - t, mid, digit_w, digit_h),
        "d": (0, digit_h - t, digit_w, digit_h),
        "e": (0, mid, t, digit_h),
        "f": (0, 0, t, mid),
        "g": (0, mid - t // 2, digit_w, mid + t - t // 2),
    }


class Pattern:
    """Draws frames: static colour bars on top, a clock and a moving bar below."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT) -> None:
        self.width, self.height = width, height
        self.bars_h = height * 3 // 5
        self.digit_w, self.digit_h, self.stroke = width // 16, height // 5, max(2, width // 80)
        self.segs = _segments(self.digit_w, self.digit_h, self.stroke)
        self.y = bytearray(width * height)
        self.u = bytearray((width // 2) * (height // 2))
        self.v = bytearray((width // 2) * (height // 2))
        bar_w = width / len(_BARS)
        y_row = bytes(_BARS[min(int(x / bar_w), len(_BARS) - 1)][0] for x in range(width))
        u_row = bytes(_BARS[min(int(2 * x / bar_w), len(_BARS) - 1)][1] for x in range(width // 2))
        v_row = bytes(_BARS[min(int(2 * x / bar_w), len(_BARS) - 1)][2] for x in range(width // 2))
        for row in range(self.bars_h):
            self.y[row * width:(row + 1) * width] = y_row
        for row in range(self.bars_h // 2):
            self.u[row * (width // 2):(row + 1) * (width // 2)] = u_row
            self.v[row * (width // 2):(row + 1) * (width // 2)] = v_row
        self.lower = bytes([24]) * (width * (height - self.bars_h))  # dark grey band
        for row in range(self.bars_h // 2, height // 2):
            self.u[row * (width // 2):(row + 1) * (width // 2)] = bytes([128]) * (width // 2)
            self.v[row * (width // 2):(row + 1) * (width // 2)] = bytes([128]) * (width // 2)

    def _fill(self, x0: int, y0: int, x1: int, y1: int, value: int) -> None:
        w = self.width
        x0, x1 = max(0, x0), min(w, x1)
        line = bytes([value]) * (x1 - x0)
        for row in range(max(0, y0), min(self.height, y1)):
            self.y[row * w + x0:row * w + x1] = line

    def draw(self, index: int, clock: str) -> tuple[bytes, bytes, bytes]:
        """Planes (Y, U, V) for frame ``index`` showing ``clock`` (digits, ':' and '.')."""
        w, h = self.width, self.height
        self.y[self.bars_h * w:] = self.lower
        # A bar sweeping across the band, one screen width every two seconds.
        x = (index * w // (2 * FPS)) % w
        self._fill(x, h - 12, x + 24, h - 4, 200)
        gap = self.digit_w // 3
        total = sum(self.digit_w + gap if ch.isdigit() else gap * 2 for ch in clock) - gap
        cx, top = (w - total) // 2, self.bars_h + (h - self.bars_h - self.digit_h) // 2 - 6
        for ch in clock:
            if ch.isdigit():
                for name in _DIGITS[ch]:
                    sx0, sy0, sx1, sy1 = self.segs[name]
                    self._fill(cx + sx0, top + sy0, cx + sx1, top + sy1, 235)
                cx += self.digit_w + gap
            else:
                dot = self.stroke
                rows = (self.digit_h // 3, self.digit_h * 2 // 3) if ch == ":" else (self.digit_h - dot,)
                for row in rows:
                    self._fill(cx, top + row, cx + dot, top + row + dot, 235)
                cx += gap * 2
        return bytes(self.y), bytes(self.u), bytes(self.v)


def tone_second() -> bytes:
    """One second of float32 samples: a quiet 440 Hz tone, a 1 kHz beep in the first 100 ms."""
    samples = array("f")
    for n in range(SAMPLE_RATE):
        t = n / SAMPLE_RATE
        freq, level = (1000.0, 0.3) if t < 0.1 else (440.0, 0.1)
        samples.append(level * math.sin(2 * math.pi * freq * t))
    return samples.tobytes()


def publish(url: str, stop: Any, seconds: float | None = None) -> None:
    """Publish the pattern in real time until ``stop`` is set (or ``seconds`` have passed)."""
    import av

    out = av.open(url, "w", format="flv")
    try:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        vs.bit_rate = 800_000
        vs.options = {"g": str(FPS), "keyint_min": str(FPS), "preset": "ultrafast", "tune": "zerolatency"}
        aus = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        aus.bit_rate = 96_000
        pattern, tone = Pattern(), tone_second()
        tone += tone[:4096 * 4]  # so a frame that wraps around the second is one slice
        samples_per_frame = 1024
        start = time.monotonic()
        wall_start = time.time()
        vi = ai = 0
        parent = os.getppid()
        while not stop.is_set():
            v_time, a_time = vi / FPS, ai * samples_per_frame / SAMPLE_RATE
            now = min(v_time, a_time)
            if seconds is not None and now >= seconds:
                break
            delay = now - (time.monotonic() - start)
            if delay > 0:
                time.sleep(delay)
            if v_time <= a_time:
                if vi % FPS == 0 and os.getppid() != parent:
                    break  # the server is gone
                stamp = wall_start + v_time
                clock = time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp * 10) % 10}"
                frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
                for plane, data in zip(frame.planes, pattern.draw(vi, clock), strict=True):
                    _copy_plane(plane, data, plane.width)
                frame.pts = vi
                frame.time_base = Fraction(1, FPS)
                for pkt in vs.encode(frame):
                    out.mux(pkt)
                vi += 1
            else:
                sound = av.AudioFrame(format="fltp", layout="stereo", samples=samples_per_frame)
                offset = (ai * samples_per_frame) % SAMPLE_RATE * 4
                chunk = tone[offset:offset + samples_per_frame * 4]
                for sample_plane in sound.planes:
                    sample_plane.update(chunk)
                sound.sample_rate = SAMPLE_RATE
                sound.pts = ai * samples_per_frame
                sound.time_base = Fraction(1, SAMPLE_RATE)
                for pkt in aus.encode(sound):
                    out.mux(pkt)
                ai += 1
        for stream in (vs, aus):
            for pkt in stream.encode():
                out.mux(pkt)
    finally:
        out.close()


def _copy_plane(plane: Any, data: bytes, width: int) -> None:
    """Copy tightly packed rows into a plane whose rows may be padded (line_size > width)."""
    if plane.line_size == width:
        plane.update(data)
        return
    padded = bytearray(plane.buffer_size)
    for row in range(len(data) // width):
        padded[row * plane.line_size:row * plane.line_size + width] = data[row * width:(row + 1) * width]
    plane.update(bytes(padded))


def main(argv: list[str] | None = None) -> int:
    import threading

    parser = argparse.ArgumentParser(prog="python -m livecast.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="rtmp://HOST:PORT/live/STREAM_KEY, or - to read it from standard input")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: until SIGTERM)")
    args = parser.parse_args(argv)
    url = sys.stdin.readline().strip() if args.url == "-" else args.url
    import av

    av.logging.set_level(av.logging.ERROR)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        publish(url, stop, args.seconds)
    except av.error.FFmpegError as err:
        print(f"publishing to the server failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
