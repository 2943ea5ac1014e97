"""VOD benchmark: recorded-segment throughput of LiveCast's /vod/ from disk and from S3
(a local SeaweedFS), against nginx serving the same segment files from disk.

One real publish (the ingest benchmark's cached 1080p30 6 Mbit/s clip, pushed as fast as the
server takes it) is recorded; then C concurrent clients GET its segments round-robin for a
few seconds from each server, and requests/s and MB/s are printed.

    python bench/vod.py --seconds 20 --clients 16 --duration 5

Not a test: it prints figures for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from ingest import CACHE, LivecastServer, free_port, make_clip, push, wait_port
from seaweed import SeaweedFS

RECORDING_ON = {"LIVECAST_RECORDING_ENABLED": "true", "LIVECAST_RECORDING_MIN_FREE_BYTES": "0"}


def record_one(server: LivecastServer, clip: Path) -> tuple[int, list[str]]:
    """Publish the clip once; wait until its recording is complete; (id, segment names)."""
    url = server.urls(1)[0]
    subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "ingest.py"), "--push", str(clip), url],
                   check=True)
    slug = server.slugs[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/api/v1/rooms/{slug}/recordings") as r:
            found = json.loads(r.read())["recordings"]
        if found and found[0]["status"] == "complete":
            rid = found[0]["id"]
            with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/vod/{rid}/index.m3u8") as r:
                names = [line for line in r.read().decode().splitlines() if line and not line.startswith("#")]
            return rid, names
        time.sleep(0.2)
    raise RuntimeError("the recording did not complete")


async def load(urls: list[str], clients: int, seconds: float) -> tuple[float, float]:
    """(requests/s, MB/s) of ``clients`` concurrent GET loops over ``urls``."""
    done = 0
    received = 0
    stop = time.monotonic() + seconds

    async def client(offset: int) -> None:
        nonlocal done, received
        i = offset
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < stop:
                async with session.get(urls[i % len(urls)]) as r:
                    body = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{r.status} for {urls[i % len(urls)]}")
                done += 1
                received += len(body)
                i += 1

    start = time.monotonic()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.monotonic() - start
    return done / wall, received / wall / 1e6


class NginxFiles:
    """nginx (1 worker, sendfile) serving a directory of segment files."""

    def __init__(self, root: Path) -> None:
        self.tmp = tempfile.mkdtemp(prefix="nxvod-")
        self.port = free_port()
        shutil.copytree(root, Path(self.tmp) / "vod")
        os.chmod(self.tmp, 0o755)
        conf = Path(self.tmp) / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  server {{ listen 127.0.0.1:{self.port}; root {self.tmp}; }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", self.tmp], stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--push", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=int, default=20, help="clip length")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of load per server")
    args = ap.parse_args()
    if args.push:
        push(*args.push)
        return
    clip = CACHE / f"clip-1080p30-6M-{args.seconds}s.flv"
    make_clip(clip, args.seconds)
    weed = SeaweedFS()
    results: dict[str, tuple[float, float]] = {}
    try:
        disk = LivecastServer(2.0, "mpegts", RECORDING_ON)
        try:
            rid, names = record_one(disk, clip)
            base = f"http://127.0.0.1:{disk.http}/vod/{rid}/"
            results["livecast /vod from disk"] = asyncio.run(load([base + n for n in names], args.clients,
                                                                  args.duration))
            files = Path(disk.tmp) / "recordings" / "recordings" / str(rid)
            if shutil.which("nginx"):
                nginx = NginxFiles(files)
                try:
                    urls = [f"http://127.0.0.1:{nginx.port}/vod/{n}" for n in names]
                    results["nginx static files"] = asyncio.run(load(urls, args.clients, args.duration))
                finally:
                    nginx.stop()
        finally:
            disk.stop()
        s3 = LivecastServer(2.0, "mpegts", {**RECORDING_ON, "LIVECAST_RECORDING_STORAGE": f"s3://{weed.bucket}/v",
                                            "LIVECAST_S3_ENDPOINT": weed.endpoint})
        try:
            rid, names = record_one(s3, clip)
            base = f"http://127.0.0.1:{s3.http}/vod/{rid}/"
            results["livecast /vod from S3"] = asyncio.run(load([base + n for n in names], args.clients,
                                                                args.duration))
        finally:
            s3.stop()
    finally:
        weed.stop()
    size = sum(1 for _ in names)
    print(f"{size} segments of a {args.seconds} s 1080p30 6 Mbit/s recording (~2 s each), {args.clients} clients, "
          f"{args.duration:.0f} s per server:")
    for name, (rps, mbps) in results.items():
        print(f"  {name:24s} {rps:8.0f} req/s  {mbps:8.1f} MB/s")


if __name__ == "__main__":
    main()
