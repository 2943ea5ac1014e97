"""Ingest benchmark: server CPU-seconds per stream-minute and peak memory per stream.

N publishers push the same 1080p30 ~6 Mbps H.264/AAC clip over RTMP as fast as the
server takes it. The server runs as its own process; its CPU time is read from
/proc before and after. When nginx with libnginx-mod-rtmp is installed, the same
clip is pushed to nginx (1 worker, hls on, same fragment length, HLS on tmpfs) in
the same run and the ratio is printed.

    python bench/ingest.py --publishers 1 --runs 3
    python bench/ingest.py --publishers 20 --runs 3
    python bench/ingest.py --publishers 4 --runs 3 --record      # recording to disk and to S3
    python bench/ingest.py --publishers 4 --runs 3 --record --realtime --seconds 20   # paced, side by side
    python bench/ingest.py --publishers 20 --runs 3 --before /tmp/before   # this tree vs another

``--before TREE`` runs the server from another checkout (``git archive <commit> | tar -x -C
TREE``) and from this tree, interleaved run by run, and prints both and their ratio.

``--record`` measures the same server without recording, recording to disk and recording to
S3 (a local SeaweedFS, whose own CPU is not counted) and prints the extra CPU of recording,
split into the event loop's thread and the server's other threads (disk writes, SQLite).
With ``--realtime`` the three servers run side by side, their publishers started together,
so that they share the machine's moments; as fast as possible they run one after another.

Not a test: it prints figures for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
from procstat import loop_and_threads
from procstat import rss_kib as proc_rss_kib
from procstat import tick_seconds as proc_cpu

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"


def make_clip(path: Path, seconds: int, bitrate: str = "6M") -> None:
    """A 1080p30 H.264 (2 s GOP) + AAC clip at ~6 Mbps, encoded once and cached."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.flv")
    out = av.open(str(tmp), "w", format="flv")
    vs = out.add_stream("libx264", rate=30)
    vs.width, vs.height, vs.pix_fmt = 1920, 1080, "yuv420p"
    vs.bit_rate = int(bitrate.rstrip("M")) * 1_000_000
    vs.options = {"g": "60", "preset": "ultrafast", "x264-params": "nal-hrd=cbr:vbv-maxrate=6000:vbv-bufsize=6000"}
    aus = out.add_stream("aac", rate=48000, layout="stereo")
    aus.bit_rate = 128_000
    audio_samples = 0
    noise = os.urandom(1 << 20)
    ramp = bytes(range(256)) * 10
    for i in range(seconds * 30):
        frame = av.VideoFrame(1920, 1080, "yuv420p")
        y = frame.planes[0]
        # A moving ramp with a block of fresh noise: realistic detail at low encode cost;
        # CBR (nal-hrd) pads the rest of the 6 Mbit/s as a real CBR encoder would.
        row = ramp[i % 256: i % 256 + y.line_size]
        luma = bytearray(row * 1080)
        off = (i * 7919) % (len(noise) - 65536)
        for r in range(256):
            start = (200 + r) * y.line_size + 400
            luma[start:start + 256] = noise[off + r * 256: off + r * 256 + 256]
        y.update(bytes(luma))
        for p in frame.planes[1:]:
            p.update(bytes([128]) * p.buffer_size)
        frame.pts = i
        for pkt in vs.encode(frame):
            out.mux(pkt)
        while audio_samples < (i + 1) * 48000 / 30:
            af = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            for p in af.planes:
                p.update(bytes(p.buffer_size))
            af.sample_rate = 48000
            af.pts = audio_samples
            audio_samples += 1024
            af.time_base = Fraction(1, 48000)
            for pkt in aus.encode(af):
                out.mux(pkt)
    for s in (vs, aus):
        for pkt in s.encode():
            out.mux(pkt)
    out.close()
    tmp.rename(path)


def push(clip: str, url: str, realtime: bool = False) -> None:
    """Remux the clip into an RTMP publish, no pacing unless ``realtime`` (run as a subprocess)."""
    inp = av.open(clip)
    out = av.open(url, "w", format="flv")
    mapping = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
    start = time.monotonic()
    for pkt in inp.demux():
        if pkt.dts is None or pkt.stream.index not in mapping:
            continue
        if realtime and (ahead := float(pkt.dts * pkt.time_base) - (time.monotonic() - start)) > 0:
            time.sleep(ahead)
        pkt.stream = mapping[pkt.stream.index]
        out.mux(pkt)
    out.close()
    inp.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


def run_publishers(clip: Path, urls: list[str], realtime: bool = False) -> float:
    start = time.monotonic()
    pace = ["--realtime"] if realtime else []
    procs = [subprocess.Popen([sys.executable, __file__, "--push", str(clip), url, *pace]) for url in urls]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("a publisher failed")
    return time.monotonic() - start


class LivecastServer:
    name = "livecast"

    def __init__(self, segment: float, container: str, env_overrides: dict[str, str] | None = None,
                 tree: Path | None = None) -> None:
        """``tree``: the checkout whose ``livecast`` the server runs (default: this one)."""
        self.tmp = tempfile.mkdtemp(prefix="lcbench-")
        self.http, self.rtmp = free_port(), free_port()
        env = dict(os.environ, LIVECAST_HLS_SEGMENT_DURATION=str(segment), LIVECAST_HLS_CONTAINER=container,
                   LIVECAST_AUTH_BCRYPT_ROUNDS="4", LIVECAST_LOG_LEVEL="warning",
                   LIVECAST_INGEST_MAX_PUBLISHERS="1000",
                   # every publisher comes from 127.0.0.1: lift #13's per-address pending cap
                   LIVECAST_INGEST_MAX_PENDING="1000", LIVECAST_INGEST_MAX_PENDING_PER_ADDRESS="1000")
        env.update(env_overrides or {})
        self.env = env
        tree = (tree or HERE.parent).resolve()
        # ``python -m`` puts the working directory first on sys.path: run from the tree itself
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livecast", "serve", "--host", "127.0.0.1", "--http-port", str(self.http),
             "--rtmp-port", str(self.rtmp), "--data-dir", self.tmp],
            env=env, stdout=subprocess.DEVNULL, cwd=tree,
        )
        wait_port(self.http)
        wait_port(self.rtmp)
        self.pids = [self.proc.pid]

    def _api(self, path: str, body: dict, token: str | None = None) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json",
                                      **({"Authorization": f"Bearer {token}"} if token else {})})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def urls(self, n: int) -> list[str]:
        user = f"bench{int(time.time() * 1000) % 10**8}"
        self._api("/api/v1/auth/register", {"username": user, "password": "benchmark-pass"})
        token = self._api("/api/v1/auth/login", {"username": user, "password": "benchmark-pass"})["token"]
        rooms = [self._api("/api/v1/rooms", {"title": f"bench {user} {i}"}, token)["room"] for i in range(n)]
        self.slugs = [r["slug"] for r in rooms]
        return [f"rtmp://127.0.0.1:{self.rtmp}/live/{r['stream_key']}" for r in rooms]

    def segments_made(self, n: int) -> list[int]:
        """Segments each room's playlist accounts for (media sequence + listed); ENDLIST required."""
        made = []
        for slug in self.slugs[:n]:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/hls/{slug}/index.m3u8") as r:
                text = r.read().decode()
            seq = int(text.split("#EXT-X-MEDIA-SEQUENCE:")[1].split()[0])
            listed = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
            made.append(seq + listed if "#EXT-X-ENDLIST" in text else -1)
        return made

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every room's latest recording (if any) is complete: its CPU is counted."""
        if self.env.get("LIVECAST_RECORDING_ENABLED", "").lower() not in ("1", "true", "yes"):
            return  # not recording (and an older tree, run with --before, has no such route)
        deadline = time.monotonic() + timeout
        for slug in self.slugs:
            while time.monotonic() < deadline:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/api/v1/rooms/{slug}/recordings") as r:
                    found = json.loads(r.read())["recordings"]
                if not found or found[0]["status"] != "recording":
                    break
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)
        shutil.rmtree(self.tmp, ignore_errors=True)


class NginxServer:
    name = "nginx-rtmp"

    def __init__(self, segment: float) -> None:
        self.tmp = tempfile.mkdtemp(prefix="nxbench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        os.chmod(self.tmp, 0o777)  # nginx's worker runs as an unprivileged user
        self.rtmp = free_port()
        modules = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
        conf = Path(self.tmp) / "nginx.conf"
        conf.write_text(f"""
load_module {modules};
worker_processes 1;
daemon off;
master_process on;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/error.log warn;
events {{ worker_connections 4096; }}
rtmp {{
  server {{
    listen 127.0.0.1:{self.rtmp};
    chunk_size 4096;
    application live {{
      live on;
      hls on;
      hls_path {self.tmp}/hls;
      hls_fragment {int(segment * 1000)}ms;
      hls_playlist_length {int(segment * 6000)}ms;
      hls_nested on;
    }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", self.tmp], stderr=subprocess.DEVNULL)
        wait_port(self.rtmp)
        time.sleep(0.3)
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        self.pids = [self.proc.pid, *map(int, children)]

    def urls(self, n: int) -> list[str]:
        return [f"rtmp://127.0.0.1:{self.rtmp}/live/stream{i}" for i in range(n)]

    def segments_made(self, n: int) -> list[int]:
        """Segment files nginx wrote per stream (it deletes old ones; count by sequence number)."""
        made = []
        for i in range(n):
            names = [p.stem for p in (Path(self.tmp) / "hls" / f"stream{i}").glob("*.ts")]
            made.append(max((int(x) for x in names if x.isdigit()), default=-1) + 1)
        return made

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_reading(server) -> tuple[float, float, float]:
    """The server's CPU seconds so far: all its processes, its first process's main thread
    (LiveCast's event loop) and that process's other threads."""
    return (proc_cpu(server.pids), *loop_and_threads(server.pids[0]))


def cpu_figures(before: tuple[float, float, float], after: tuple[float, float, float], minutes: float) -> dict:
    cpu, loop, threads = (b - a for a, b in zip(before, after, strict=True))
    return {"cpu_s": cpu, "cpu_per_stream_min": cpu / minutes, "loop_per_stream_min": loop / minutes,
            "threads_per_stream_min": threads / minutes}


def check_segments(name: str, made: list[int], clip_seconds: float, segment: float) -> None:
    expected = int(clip_seconds / segment) - 1
    if min(made) < expected:
        raise RuntimeError(f"{name} produced too few segments per stream: {made} (expected >= {expected})")


def measure(server_cls, clip: Path, clip_seconds: float, n: int, realtime: bool = False, **kw) -> dict:
    server = server_cls(**kw)
    try:
        urls = server.urls(n)
        time.sleep(0.5)
        rss_before = proc_rss_kib(server.pids)
        cpu0 = cpu_reading(server)
        wall = run_publishers(clip, urls, realtime)
        time.sleep(1.0)  # let the last segments be cut
        getattr(server, "settle", lambda: None)()  # recordings: until the last segment is stored
        cpu1 = cpu_reading(server)
        peak = proc_rss_kib(server.pids, "VmHWM")
        made = server.segments_made(n)
    finally:
        server.stop()
    check_segments(server.name, made, clip_seconds, kw["segment"])
    return {"segments_min": min(made), "wall_s": wall, **cpu_figures(cpu0, cpu1, n * clip_seconds / 60),
            "peak_rss_mib": peak / 1024, "rss_growth_per_stream_mib": max(peak - rss_before, 0) / 1024 / n}


def measure_together(variants: dict[str, dict[str, str]], clip: Path, clip_seconds: float, n: int,
                     segment: float, container: str) -> dict[str, dict]:
    """One LiveCast server per variant, all running at once, each sent ``n`` real-time
    publishers started together: every variant sees the same moments of the machine (another
    guest's load, the disk's writeback), which one-after-another runs do not."""
    servers: dict[str, LivecastServer] = {}
    try:
        for name, env in variants.items():
            servers[name] = LivecastServer(segment, container, env_overrides=env)
        urls = {name: server.urls(n) for name, server in servers.items()}
        time.sleep(0.5)
        cpu0 = {name: cpu_reading(server) for name, server in servers.items()}
        # interleaved, so that no variant's publishers start later than another's
        wall = run_publishers(clip, [u for group in zip(*urls.values(), strict=True) for u in group], True)
        time.sleep(1.0)  # let the last segments be cut
        for server in servers.values():
            server.settle()
        results = {}
        for name, server in servers.items():
            cpu1 = cpu_reading(server)
            check_segments(name, server.segments_made(n), clip_seconds, segment)
            results[name] = {"wall_s": wall, **cpu_figures(cpu0[name], cpu1, n * clip_seconds / 60)}
        return results
    finally:
        for server in servers.values():
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--push", nargs=2, metavar=("CLIP", "URL"), help=argparse.SUPPRESS)
    ap.add_argument("--publishers", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=60, help="clip length")
    ap.add_argument("--segment", type=float, default=2.0)
    ap.add_argument("--container", default="mpegts", choices=["mpegts", "fmp4"])
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--record", action="store_true", help="compare no recording, recording to disk and to S3")
    ap.add_argument("--before", type=Path, metavar="TREE", help="compare with the server of another checkout")
    ap.add_argument("--realtime", action="store_true", help="publishers pace the clip in real time")
    args = ap.parse_args()
    if args.push:
        push(*args.push, realtime=args.realtime)
        return
    if args.record:
        record_overhead(args)
        return
    if args.before:
        compare_trees(args)
        return
    clip = CACHE / f"clip-1080p30-6M-{args.seconds}s.flv"
    make_clip(clip, args.seconds)
    info = av.open(str(clip))
    clip_seconds = float(info.duration / 1_000_000)
    mbps = clip.stat().st_size * 8 / clip_seconds / 1e6
    info.close()
    print(f"clip: {clip.name} {clip_seconds:.1f} s, {mbps:.2f} Mbit/s; "
          f"publishers: {args.publishers}; runs: {args.runs}")
    have_nginx = (not args.no_nginx and shutil.which("nginx") is not None
                  and Path("/usr/lib/nginx/modules/ngx_rtmp_module.so").exists())
    results: dict[str, list[dict]] = {"livecast": [], "nginx-rtmp": []}
    for run in range(args.runs):
        results["livecast"].append(measure(LivecastServer, clip, clip_seconds, args.publishers,
                                           segment=args.segment, container=args.container))
        if have_nginx:
            results["nginx-rtmp"].append(measure(NginxServer, clip, clip_seconds, args.publishers,
                                                 segment=args.segment))
        print(f"run {run + 1}: " + "; ".join(
            f"{name} {r[-1]['cpu_per_stream_min']:.3f} cpu-s/stream-min" for name, r in results.items() if r))
    summary = {}
    for name, rows in results.items():
        if not rows:
            continue
        summary[name] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        s = summary[name]
        print(f"{name:11s} median: {s['cpu_per_stream_min']:.3f} CPU-s per stream-minute "
              f"(total {s['cpu_s']:.2f} CPU-s, wall {s['wall_s']:.1f} s), peak RSS {s['peak_rss_mib']:.0f} MiB, "
              f"RSS growth {s['rss_growth_per_stream_mib']:.1f} MiB/stream")
    if "nginx-rtmp" in summary:
        ratio = summary["livecast"]["cpu_per_stream_min"] / summary["nginx-rtmp"]["cpu_per_stream_min"]
        print(f"ratio livecast / nginx-rtmp CPU: {ratio:.2f}x")
    else:
        print("nginx with libnginx-mod-rtmp not installed: no baseline in this run")


def compare_trees(args: argparse.Namespace) -> None:
    """The server of ``args.before`` and of this tree, run after run (A, B, A, B, ...)."""
    clip = CACHE / f"clip-1080p30-6M-{args.seconds}s.flv"
    make_clip(clip, args.seconds)
    info = av.open(str(clip))
    clip_seconds = float(info.duration / 1_000_000)
    info.close()
    trees = {"before": args.before.resolve(), "after": HERE.parent.resolve()}
    print(f"publishers: {args.publishers}; runs: {args.runs}; before = {trees['before']}, after = {trees['after']}")
    rows: dict[str, list[dict]] = {name: [] for name in trees}
    for run in range(args.runs):
        for name, tree in trees.items():
            r = measure(LivecastServer, clip, clip_seconds, args.publishers, segment=args.segment,
                        container=args.container, tree=tree)
            rows[name].append(r)
            print(f"run {run + 1} {name:6s}: {r['cpu_per_stream_min']:.3f} CPU-s per stream-minute, "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB, RSS growth {r['rss_growth_per_stream_mib']:.1f} MiB/stream, "
                  f"wall {r['wall_s']:.1f} s", flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rows.items()}
    for name, m in med.items():
        print(f"{name:6s} median: {m['cpu_per_stream_min']:.3f} CPU-s per stream-minute, "
              f"peak RSS {m['peak_rss_mib']:.0f} MiB, RSS growth {m['rss_growth_per_stream_mib']:.1f} MiB/stream")
    a, b = med["after"], med["before"]
    print(f"after / before: CPU {a['cpu_per_stream_min'] / b['cpu_per_stream_min']:.2f}x, "
          f"RSS growth per stream {a['rss_growth_per_stream_mib'] / b['rss_growth_per_stream_mib']:.2f}x")


RECORDING_ON = {"LIVECAST_RECORDING_ENABLED": "true", "LIVECAST_RECORDING_MIN_FREE_BYTES": "0"}


def record_overhead(args: argparse.Namespace) -> None:
    """CPU per stream-minute: not recording vs recording to disk vs recording to S3."""
    from seaweed import SeaweedFS

    clip = CACHE / f"clip-1080p30-6M-{args.seconds}s.flv"
    make_clip(clip, args.seconds)
    with av.open(str(clip)) as info:
        clip_seconds = float(info.duration / 1_000_000)
    weed = SeaweedFS()
    variants = {
        "no recording": {},
        "record to disk": RECORDING_ON,
        "record to S3": {**RECORDING_ON, "LIVECAST_RECORDING_STORAGE": f"s3://{weed.bucket}/bench",
                         "LIVECAST_S3_ENDPOINT": weed.endpoint},
    }
    rows: dict[str, list[float]] = {name: [] for name in variants}
    loop: dict[str, list[float]] = {name: [] for name in variants}
    threads: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for run in range(args.runs):
            if args.realtime:  # the three servers side by side, publishing at the same moments
                results = measure_together(variants, clip, clip_seconds, args.publishers,
                                           segment=args.segment, container=args.container)
            else:  # one after another: each would slow the others down
                results = {name: measure(LivecastServer, clip, clip_seconds, args.publishers,
                                         segment=args.segment, container=args.container, env_overrides=env)
                           for name, env in variants.items()}
            for name, result in results.items():
                rows[name].append(result["cpu_per_stream_min"])
                loop[name].append(result["loop_per_stream_min"])
                threads[name].append(result["threads_per_stream_min"])
            print(f"run {run + 1}: " + "; ".join(f"{n} {r[-1]:.3f}" for n, r in rows.items()) + " cpu-s/stream-min")
    finally:
        weed.stop()
    base = statistics.median(rows["no recording"])
    print(f"publishers {args.publishers}, clip {clip_seconds:.0f} s 1080p30 6 Mbit/s, {args.container}, "
          f"{'real time' if args.realtime else 'as fast as possible'}, {args.runs} runs (medians):")
    for name, values in rows.items():
        value = statistics.median(values)
        print(f"  {name:15s} {value:.3f} CPU-s per stream-minute ({(value / base - 1) * 100:+.1f}% vs no recording;"
              f" event loop {statistics.median(loop[name]):.3f}, other threads {statistics.median(threads[name]):.3f})")


if __name__ == "__main__":
    main()
