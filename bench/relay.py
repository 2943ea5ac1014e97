"""CPU per push target per stream-minute: LiveCast's relay vs nginx-rtmp's ``push`` (issue 18).

One sink nginx-rtmp receives every pushed copy. Each relay under test (a ``livecast serve``
child with N push targets on its room; an nginx-rtmp with N ``push`` lines) gets the same
realtime publish from Debian's ffmpeg (a 720p30 H.264 + AAC test pattern, ~2.5 Mbps, remuxed
from a file made once, so the publisher's own CPU is small and equal). The relay's process
CPU (``procstat.cpu_seconds``: every thread's time on a CPU, in nanoseconds; nginx: master
and workers) is measured over the publish with 0 and with N targets; (CPU(N) - CPU(0)) / N /
minutes is the cost of one target. Each round runs LiveCast with 0 and N targets and nginx-rtmp
with 0 and N pushes back to back, so both meet the same load from whatever else runs; every
round is printed, then the medians.

    python bench/relay.py --targets 4 --seconds 30 --rounds 3

Not a test: it prints the figures (target: LiveCast at most 1.0x nginx-rtmp per target).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchnode import free_port
from procstat import children, cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"

NGINX = """
load_module {module};
worker_processes 1;
error_log {prefix}/error.log error;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
{pushes}
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, pushes: list[str]) -> None:
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="lcbench-nginx-"))
        os.chmod(self.prefix, 0o755)
        lines = "\n".join(f"            push {url};" for url in pushes)
        (self.prefix / "nginx.conf").write_text(NGINX.format(module=MODULE, prefix=self.prefix, port=self.port,
                                                             pushes=lines))
        self.proc = subprocess.Popen(["nginx", "-c", str(self.prefix / "nginx.conf"), "-p", f"{self.prefix}/",
                                      "-g", f"daemon off; pid {self.prefix}/nginx.pid;"])
        wait_port(self.port)

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(10)
        shutil.rmtree(self.prefix, ignore_errors=True)


class Livecast:
    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="lcbench-relay-")
        self.http, self.rtmp = free_port(), free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT), LIVECAST_AUTH_BCRYPT_ROUNDS="4", LIVECAST_LOG_LEVEL="warning",
                   LIVECAST_RELAY_MAX_TARGETS_PER_ROOM="50")
        env.pop("LIVECAST_CONFIG", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "livecast", "serve", "--host", "127.0.0.1",
                                      "--http-port", str(self.http), "--rtmp-port", str(self.rtmp),
                                      "--data-dir", self.tmp], env=env, stdout=subprocess.DEVNULL)
        wait_port(self.http)
        wait_port(self.rtmp)
        user = "relaybench"
        self._api("/api/v1/auth/register", {"username": user, "password": "benchmark-pass"})
        self.token = self._api("/api/v1/auth/login", {"username": user, "password": "benchmark-pass"})["token"]
        self.room = self._api("/api/v1/rooms", {"title": "relay bench"})["room"]

    def _api(self, path: str, body: dict[str, object]) -> dict[str, object]:
        headers = {"Content-Type": "application/json"}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", json.dumps(body).encode(), headers)
        with urllib.request.urlopen(req) as r:
            return dict(json.loads(r.read()))

    def add_target(self, url: str, key: str) -> None:
        slug = self.room["slug"]
        self._api(f"/api/v1/rooms/{slug}/targets", {"name": key, "url": url, "stream_key": key})

    @property
    def publish_url(self) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp}/live/{self.room['stream_key']}"

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_port(port: int, timeout: float = 30.0) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"port {port} never opened")


def make_clip(path: Path, seconds: int) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k", "-g", "60", "-c:a", "aac",
                    "-f", "flv", str(path)], check=True)


def publish(clip: Path, url: str, pids: list[int]) -> tuple[float, float]:
    """Publish the clip in real time; (relay CPU seconds, wall seconds) over the publish."""
    before, start = cpu_seconds(pids), time.monotonic()
    subprocess.run(["ffmpeg", "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy", "-f", "flv", url],
                   check=True)
    time.sleep(1.0)  # the relay's queues drain
    return cpu_seconds(pids) - before, time.monotonic() - start


def run_livecast(clip: Path, targets: int, sink: Nginx) -> tuple[float, float]:
    node = Livecast()
    try:
        for i in range(targets):
            node.add_target(f"rtmp://127.0.0.1:{sink.port}/live", f"lc{i}")
        return publish(clip, node.publish_url, node.pids)
    finally:
        node.stop()


def run_nginx(clip: Path, targets: int, sink: Nginx) -> tuple[float, float]:
    relay = Nginx([f"rtmp://127.0.0.1:{sink.port}/live/ng{i}" for i in range(targets)])
    try:
        return publish(clip, f"rtmp://127.0.0.1:{relay.port}/live/src", relay.pids)
    finally:
        relay.stop()


def one_round(clip: Path, targets: int, sink: Nginx) -> dict[str, float]:
    """CPU-s per target per stream-minute of each relay in one round."""
    found = {}
    for name, run in (("livecast", run_livecast), ("nginx-rtmp", run_nginx)):
        base, _ = run(clip, 0, sink)
        loaded, wall = run(clip, targets, sink)
        found[name] = (loaded - base) / targets / (wall / 60)
        print(f"  {name:10s}: CPU {base:.3f} s with 0 targets, {loaded:.3f} s with {targets} over {wall:.0f} s "
              f"-> {found[name]:.4f} CPU-s per target per stream-minute", flush=True)
    return found


def ratio(found: dict[str, float]) -> float:
    return found["livecast"] / found["nginx-rtmp"] if found["nginx-rtmp"] > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lcbench-clip-"))
    clip = work / "clip.flv"
    make_clip(clip, args.seconds)
    sink = Nginx([])
    try:
        rounds = []
        for i in range(args.rounds):
            print(f"round {i + 1}:", flush=True)
            rounds.append(one_round(clip, args.targets, sink))
            print(f"  livecast / nginx-rtmp per target: {ratio(rounds[-1]):.2f}x", flush=True)
        medians = {name: statistics.median(r[name] for r in rounds) for name in ("livecast", "nginx-rtmp")}
        print(f"median of {args.rounds} rounds: livecast {medians['livecast']:.4f}, nginx-rtmp "
              f"{medians['nginx-rtmp']:.4f} CPU-s per target per stream-minute; "
              f"livecast / nginx-rtmp {ratio(medians):.2f}x (median of the rounds' ratios "
              f"{statistics.median(ratio(r) for r in rounds):.2f}x; target: at most 1.0x)")
    finally:
        sink.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
