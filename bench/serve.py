"""Delivery benchmark: wrk against one LiveCast process and one nginx worker serving the
same bytes (one HLS segment and its playlist).

LiveCast gets a real stream (the ingest clip, first seconds) over RTMP so its segment and
playlist are the real in-memory objects; nginx serves byte-identical copies from tmpfs.
Besides wrk's figures it prints each server's CPU time per request (user and kernel, from
/proc), which says where the difference is even on a busy machine.

    python bench/serve.py --seconds 10 --connections 50
    python bench/serve.py --seconds 10 --connections 50 --before /tmp/before --rounds 3

``--before TREE`` serves from another checkout (``git archive <commit> | tar -x -C TREE``)
and from this tree, both live at once, and runs wrk against them in turn (A, B, A, B, ...)
instead of against nginx.

Not a test: prints figures for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest  # noqa: E402  (same directory: clip, servers, helpers)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def wrk(url: str, seconds: int, connections: int, pid: int) -> dict[str, float]:
    user0, sys0 = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    req_s = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[transfer.group(2)]
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    user1, sys1 = cpu_seconds(pid)
    done = int(re.search(r"(\d+) requests in", out).group(1))
    return {"req_s": req_s, "bytes_s": float(transfer.group(1)) * scale, "p99_ms": p99_ms,
            "non_2xx": int(errors.group(1)) if errors else 0,
            "user_us": 1e6 * (user1 - user0) / done, "sys_us": 1e6 * (sys1 - sys0) / done}


class NginxStatic:
    def __init__(self, root: Path) -> None:
        self.port = ingest.free_port()
        self.tmp = tempfile.mkdtemp(prefix="nxdeliv-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        os.chmod(self.tmp, 0o777)
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
  tcp_nopush on;
  keepalive_requests 1000000;
  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
  server {{
    listen 127.0.0.1:{self.port};
    root {root};
    location ~ \\.m3u8$ {{ add_header Cache-Control no-cache; add_header Access-Control-Allow-Origin *; }}
    location ~ \\.ts$ {{ add_header Cache-Control "public, max-age=86400, immutable";
                         add_header Access-Control-Allow-Origin *; }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", self.tmp], stderr=subprocess.DEVNULL)
        ingest.wait_port(self.port)

    def worker_pid(self) -> int:
        """The one worker process (the master only supervises)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        for _ in range(50):
            pids = children.read_text().split()
            if pids:
                return int(pids[0])
            time.sleep(0.1)
        raise RuntimeError("nginx started no worker")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _row(server: str, what: str, r: dict[str, float]) -> str:
    return (f"{server:8s} {what:8s}: {r['req_s']:9.0f} req/s  {r['bytes_s'] / 1e6:8.1f} MB/s  "
            f"p99 {r['p99_ms']:7.2f} ms  non-2xx {r['non_2xx']}  "
            f"CPU/request {r['user_us']:6.1f} us user {r['sys_us']:6.1f} us sys")


def _live_segment(lc: ingest.LivecastServer, short: Path) -> tuple[str, str]:
    """Publish the short clip once; (the playlist's base URL, its first segment's name)."""
    url = lc.urls(1)[0]
    ingest.run_publishers(short, [url])
    time.sleep(0.5)
    base = f"http://127.0.0.1:{lc.http}/hls/{lc.slugs[0]}/"
    playlist = urllib.request.urlopen(base + "index.m3u8").read()
    return base, [ln for ln in playlist.decode().splitlines() if ln and not ln.startswith("#")][0]


def compare_trees(args: argparse.Namespace, short: Path) -> None:
    """Two LiveCast servers, from ``args.before`` and from this tree, measured in turn."""
    servers = {"before": ingest.LivecastServer(segment=2.0, container="mpegts", tree=args.before),
               "after": None}
    try:
        servers["after"] = ingest.LivecastServer(segment=2.0, container="mpegts")
        targets = {name: _live_segment(lc, short) for name, lc in servers.items() if lc}
        print(f"wrk -t1 -c{args.connections} -d{args.seconds}s; {args.rounds} rounds; before = {args.before}")
        rows: dict[tuple[str, str], list[dict[str, float]]] = {}
        for rnd in range(args.rounds):
            for what in ("segment", "playlist"):
                for name, lc in servers.items():
                    assert lc is not None
                    base, segment_name = targets[name]
                    r = wrk(base + (segment_name if what == "segment" else "index.m3u8"),
                            args.seconds, args.connections, lc.proc.pid)
                    rows.setdefault((name, what), []).append(r)
                    print(f"round {rnd + 1} " + _row(name, what, r), flush=True)
        for (name, what), rs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0] != "before")):
            print("median  " + _row(name, what, {k: statistics.median(r[k] for r in rs) for k in rs[0]}))
    finally:
        for lc in servers.values():
            if lc:
                lc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration per measurement")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--before", type=Path, metavar="TREE", help="compare with the server of another checkout")
    ap.add_argument("--rounds", type=int, default=3, help="with --before: rounds of each")
    args = ap.parse_args()
    clip = ingest.CACHE / "clip-1080p30-6M-60s.flv"
    ingest.make_clip(clip, 60)
    short = ingest.CACHE / "clip-1080p30-6M-8s.flv"
    ingest.make_clip(short, 8)

    os.environ["LIVECAST_HLS_RECONNECT_GRACE"] = "3600"  # keep the ended playlist while we measure
    if args.before:
        compare_trees(args, short)
        return
    lc = ingest.LivecastServer(segment=2.0, container="mpegts")
    www = Path(tempfile.mkdtemp(prefix="deliv-www-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    os.chmod(www, 0o755)
    nginx = None
    try:
        url = lc.urls(1)[0]
        ingest.run_publishers(short, [url])
        time.sleep(0.5)
        base = f"http://127.0.0.1:{lc.http}/hls/{lc.slugs[0]}/"
        playlist = urllib.request.urlopen(base + "index.m3u8").read()
        segment_name = [ln for ln in playlist.decode().splitlines() if ln and not ln.startswith("#")][0]
        segment = urllib.request.urlopen(base + segment_name).read()
        (www / "index.m3u8").write_bytes(playlist)
        (www / segment_name).write_bytes(segment)
        for p in www.iterdir():
            os.chmod(p, 0o644)
        nginx = NginxStatic(www)
        nbase = f"http://127.0.0.1:{nginx.port}/"
        print(f"segment {segment_name}: {len(segment)} bytes; playlist {len(playlist)} bytes; "
              f"wrk -t1 -c{args.connections} -d{args.seconds}s; uvloop on")
        rows = {}
        nginx_pid = nginx.worker_pid()
        for what, name in (("segment", segment_name), ("playlist", "index.m3u8")):
            rows[("livecast", what)] = wrk(base + name, args.seconds, args.connections, lc.proc.pid)
            rows[("nginx", what)] = wrk(nbase + name, args.seconds, args.connections, nginx_pid)
        for (server, what), r in rows.items():
            print(_row(server, what, r))
        seg_ratio = rows[("livecast", "segment")]["bytes_s"] / rows[("nginx", "segment")]["bytes_s"]
        pl_ratio = rows[("livecast", "playlist")]["req_s"] / rows[("nginx", "playlist")]["req_s"]
        print(f"segment throughput livecast/nginx: {seg_ratio:.2f}x; playlist req/s livecast/nginx: {pl_ratio:.2f}x")
    finally:
        if nginx:
            nginx.stop()
        lc.stop()
        shutil.rmtree(www, ignore_errors=True)


if __name__ == "__main__":
    main()
