"""An overloaded ladder must not delay the source (issue #17): source segments listed on time.

A ``livecast serve`` child gets a real-time RTMP publisher (tests/publisher.py, a moving
test pattern at ``--height``p``--fps``) twice: without a ladder, then with a ladder whose
"heavy" rung (2 px shorter than the source, x264 ``veryslow``) cannot keep up next to a cheap
240p one. The source playlist is polled every 20 ms; a segment's delay is the time it was
first seen listed minus the end of its media (EXT-X-PROGRAM-DATE-TIME, the server's arrival
time of its first frame, plus EXTINF), i.e. how long after its last packet it became
listed (plus up to one poll interval). Target: p99 under 250 ms with the ladder, and the
heavy rendition dropped (stream warning ``rendition_dropped``).

    PYTHONPATH=$PWD python bench/transcode_overload.py --seconds 20 --height 720 --fps 60
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from benchnode import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
POLL = 0.02


def config(ladder: bool, height: int) -> str:
    text = "[hls]\nsegment_duration = 1.0\nwindow = 30\n"
    if ladder:
        text += ("[transcode]\nenabled = true\nmax_lag = 2.0\nrenditions = [\n"
                 f'  {{ name = "heavy", height = {height - 2}, video_bitrate = 3000000, preset = "veryslow" }},\n'
                 '  { name = "240p", height = 240, video_bitrate = 300000, preset = "ultrafast" },\n]\n')
    return text


def pdt(line: str) -> float:
    return datetime.datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()


async def poll(session: aiohttp.ClientSession, url: str, seen: dict[str, float], ends: dict[str, float],
               stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with session.get(url) as r:
                text = await r.text() if r.status == 200 else ""
        except aiohttp.ClientError:
            text = ""
        now = time.time()
        start = duration = None
        for line in text.splitlines():
            if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
                start = pdt(line)
            elif line.startswith("#EXTINF:"):
                duration = float(line[8:].split(",")[0])
            elif line and not line.startswith("#") and start is not None and duration is not None:
                seen.setdefault(line, now)
                ends[line] = start + duration
        await asyncio.sleep(POLL)


async def run(ladder: bool, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "livecast.toml"
        cfg.write_text(config(ladder, args.height))
        http, rtmp = free_port(), free_port()
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        proc = subprocess.Popen([sys.executable, "-m", "livecast", "serve", "--config", str(cfg), "--data-dir",
                                 tmp, "--host", "127.0.0.1", "--http-port", str(http), "--rtmp-port", str(rtmp)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{http}"
        try:
            wait_ready(base, proc)
            return await measure(base, rtmp, args)
        finally:
            proc.terminate()
            proc.wait(10)


async def measure(base: str, rtmp: int, args: argparse.Namespace) -> dict[str, Any]:
    account = {"username": "bench", "password": "correct horse 1"}
    async with aiohttp.ClientSession() as session:
        await session.post(base + "/api/v1/auth/register", json=account)
        async with session.post(base + "/api/v1/auth/login", json=account) as r:
            token = (await r.json())["token"]
        session.cookie_jar.clear()
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(base + "/api/v1/rooms", json={"title": "Bench"}, headers=headers) as r:
            room = (await r.json())["room"]
        seen: dict[str, float] = {}
        ends: dict[str, float] = {}
        stop = asyncio.Event()
        poller = asyncio.create_task(poll(session, f"{base}/hls/{room['slug']}/index.m3u8", seen, ends, stop))
        publish = {"seconds": args.seconds, "fps": args.fps, "gop": args.fps, "width": args.height * 16 // 9,
                   "height": args.height, "realtime": True}
        pub = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "tests" / "publisher.py"), "publish",
            f"rtmp://127.0.0.1:{rtmp}/live/{room['stream_key']}", json.dumps(publish),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(args.seconds * 0.8)
        async with session.get(f"{base}/api/v1/rooms/{room['slug']}", headers=headers) as r:
            body = (await r.json()).get("room", {})
        await pub.wait()
        await asyncio.sleep(1.0)
        stop.set()
        await poller
    delays = sorted((seen[name] - ends[name]) * 1000 for name in seen if name in ends)[1:]  # not the first
    stream = body.get("stream") or {}
    return {"segments": len(delays), "p50": delays[len(delays) // 2], "p99": delays[int(0.99 * (len(delays) - 1))],
            "max": delays[-1], "warnings": stream.get("warnings"),
            "dropped": {r["name"]: r["dropped"] for r in body.get("renditions", []) if r.get("dropped")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=60)
    args = ap.parse_args()
    for ladder in (False, True):
        result = asyncio.run(run(ladder, args))
        label = "overloaded ladder" if ladder else "no ladder"
        print(f"{label:18s} {result['segments']} segments listed after their last packet: p50 {result['p50']:.0f} ms, "
              f"p99 {result['p99']:.0f} ms, max {result['max']:.0f} ms; warnings {result['warnings']}; "
              f"dropped {result['dropped']}")


if __name__ == "__main__":
    main()
