"""Memory soak: N rooms with real-time publishers that come and go; server RSS over time.

Each room has a publisher that pushes the 1080p30 ~6 Mbit/s clip of bench/ingest.py
in real time (paced by packet dts, the clip looped) for a random 20-90 s, stops,
waits a random 0-20 s (longer than hls.reconnect_grace, set low here, so rooms
also expire) and starts again. Every 5 s the server's RSS is read from /proc and
each room's playlist is fetched: the bytes of the segments a live playlist lists
are that stream's window bytes (sizes from HEAD, cached: a URL never changes).

    python bench/soak.py                       # 10 rooms, 600 s
    python bench/soak.py --rooms 4 --duration 120
    python bench/soak.py --in-process --rooms 10 [--tracemalloc]   # where the bytes go

--in-process feeds 1080p units (tests/media_gen.py) straight into HlsService, no
server, no sockets, and splits the per-stream growth into stored segments (listed,
retired), the segment being muxed, Python allocations (tracemalloc) and the rest
(FFmpeg's C allocations and allocator overhead, from RSS).

Target (perf issue): RSS per live stream <= 2 x window bytes + 2 MiB, and no growth
(slope of a linear fit over the second half of the samples ~ 0).
Not a test: it prints figures for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # noqa: E402

MIB = 1024 * 1024


def push_paced(clip: str, url: str, seconds: float) -> None:
    """Remux the clip (looped) into an RTMP publish at real-time pace for `seconds`."""
    out = av.open(url, "w", format="flv")
    inp = av.open(clip)
    streams = [s for s in inp.streams if s.type in ("video", "audio")]
    mapping = {s.index: out.add_stream_from_template(s) for s in streams}
    start = time.monotonic()
    offset = 0.0  # seconds added to the clip's timestamps on each loop
    try:
        while True:
            last = 0.0
            for pkt in inp.demux():
                if pkt.dts is None or pkt.stream.index not in mapping:
                    continue
                tb = pkt.time_base
                t = float(pkt.dts * tb)
                last = max(last, t + float((pkt.duration or 0) * tb))
                if offset + t >= seconds:
                    return
                delay = start + offset + t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                shift = round(offset / tb)
                pkt.dts += shift
                if pkt.pts is not None:
                    pkt.pts += shift
                pkt.stream = mapping[pkt.stream.index]
                out.mux(pkt)
            offset += last
            inp.close()
            inp = av.open(clip)
    finally:
        inp.close()
        out.close()


class Room:
    """One room's publisher life: push, pause, push again, until told to stop."""

    def __init__(self, clip: Path, url: str, rng: random.Random, args: argparse.Namespace) -> None:
        self.clip, self.url, self.rng, self.args = clip, url, rng, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.sessions = 0
        self.failures = 0

    def run(self, stop: threading.Event) -> None:
        stop.wait(self.rng.uniform(0, 10))  # stagger the starts
        while not stop.is_set():
            seconds = self.rng.uniform(self.args.min_push, self.args.max_push)
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--push", str(self.clip), self.url, f"{seconds:.1f}"],
                stderr=subprocess.DEVNULL,
            )
            self.sessions += 1
            while self.proc.poll() is None:
                if stop.wait(0.5):
                    self.proc.terminate()
                    self.proc.wait(10)
                    return
            if self.proc.returncode != 0:
                self.failures += 1
            stop.wait(self.rng.uniform(0, self.args.max_pause))


def window_bytes(server: ingest.LivecastServer, sizes: dict[str, int]) -> tuple[list[int], int]:
    """(window bytes of each live playlist, number of rooms with a playlist at all)."""
    live, held = [], 0
    base = f"http://127.0.0.1:{server.http}/hls"
    for slug in server.slugs:
        try:
            with urllib.request.urlopen(f"{base}/{slug}/index.m3u8", timeout=5) as r:
                text = r.read().decode()
        except urllib.error.HTTPError:
            continue  # no playlist: never published, or expired
        held += 1
        if "#EXT-X-ENDLIST" in text:
            continue
        total = 0
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            url = f"{base}/{slug}/{line}"
            if url not in sizes:
                try:
                    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5) as r:
                        sizes[url] = int(r.headers["Content-Length"])
                except urllib.error.HTTPError:
                    continue  # rotated away between the two requests
            total += sizes[url]
        live.append(total)
    return live, held


def in_process(args: argparse.Namespace) -> None:
    import gc
    import tracemalloc

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from media_gen import cached_units, shift_units  # type: ignore[import-not-found]

    from livecast.config import Settings
    from livecast.hls import HlsService
    from livecast.core.media import Track

    seconds = 2
    units = cached_units(seconds, width=1920, height=1080, bitrate=4_500_000)  # ~6 Mbit/s of video
    configs = [u for u in units if u.config]
    start = next(u.dts for u in units if u.track is Track.VIDEO and not u.config)
    clip = [u for u in units if not u.config and start <= u.dts < start + seconds * 1000]
    now = [0.0]
    settings = Settings()
    service = HlsService(settings, monotonic=lambda: now[0])
    gc.collect()
    if args.tracemalloc:
        tracemalloc.start(1)
    rss0 = ingest.proc_rss_kib([os.getpid()]) * 1024
    snap0 = tracemalloc.take_snapshot() if args.tracemalloc else None
    writers = [service.publish_started(f"room{i}", has_video=True, has_audio=True) for i in range(args.rooms)]
    for w in writers:
        for u in configs:
            w.write(u)
    chunks = int(args.media_seconds / seconds)
    for k in range(chunks):
        shifted = shift_units(clip, k * seconds * 1000)
        for w in writers:
            for u in shifted:
                w.write(u)
        del shifted
    del units
    gc.collect()
    rss1 = ingest.proc_rss_kib([os.getpid()]) * 1024
    n = args.rooms
    rooms = [w._session.room for w in writers]
    stored = sum(r.store.bytes for r in rooms) / n
    listed = 0.0
    for room in rooms:
        for entry in room.playlist.entries if room.playlist is not None else []:
            item = room.store.get(entry.uri)
            listed += len(item.data) if item is not None else 0
    listed /= n
    muxing = sum(w._session.segmenter._muxer._buffer.getbuffer().nbytes for w in writers
                 if w._session.segmenter._muxer is not None) / n
    gate = sum(len(w._session.segmenter.gate._pending) for w in writers)
    py = 0.0
    if snap0 is not None:
        snap1 = tracemalloc.take_snapshot()
        diff = snap1.compare_to(snap0, "lineno")
        py = sum(d.size_diff for d in diff) / n
        print("tracemalloc, top growth per stream:")
        for d in diff[:8]:
            print(f"  {d.size_diff / n / MIB:7.3f} MiB  {d.count_diff / n:7.1f} blocks  {d.traceback[0]}")
    per = (rss1 - rss0) / n
    print(f"{n} streams, {chunks * seconds} s of 1080p media each, window {settings.hls.window}, "
          f"grace {settings.hls.grace_segments}, segment {settings.hls.segment_duration} s")
    print("| per stream | MiB |")
    print("|---|---|")
    print(f"| RSS growth | {per / MIB:.2f} |")
    print(f"| segments stored (listed + retired) | {stored / MIB:.2f} |")
    print(f"| - listed (window bytes) | {listed / MIB:.2f} |")
    print(f"| - retired (grace) | {(stored - listed) / MIB:.2f} |")
    print(f"| segment being muxed (BytesIO) | {muxing / MIB:.2f} |")
    print(f"| units buffered in start gates (all streams) | {gate} |")
    if snap0 is not None:
        print(f"| Python allocations (tracemalloc) | {py / MIB:.2f} |")
        print(f"| - beyond stored + muxing | {(py - stored - muxing) / MIB:.2f} |")
        print(f"| C side + allocator (RSS - tracemalloc) | {(per - py) / MIB:.2f} |")
    else:
        print(f"| RSS beyond stored + muxing | {(per - stored - muxing) / MIB:.2f} |")
    print(f"| target 2 x window + 2 MiB | {(2 * listed + 2 * MIB) / MIB:.2f} |")
    for w in writers:
        service.publish_stopped(w.slug, w)
    now[0] += settings.hls.reconnect_grace + 1
    service.sweep()
    del writers, rooms
    gc.collect()
    rss2 = ingest.proc_rss_kib([os.getpid()]) * 1024
    print(f"after all rooms expired: RSS {(rss2 - rss0) / n / MIB:+.2f} MiB per stream vs before")


def slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=False)) / den if den else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--push", nargs=3, metavar=("CLIP", "URL", "SECONDS"), help=argparse.SUPPRESS)
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--duration", type=float, default=600.0, help="soak length in seconds")
    ap.add_argument("--interval", type=float, default=5.0, help="sampling interval in seconds")
    ap.add_argument("--min-push", type=float, default=20.0)
    ap.add_argument("--max-push", type=float, default=90.0)
    ap.add_argument("--max-pause", type=float, default=20.0)
    ap.add_argument("--reconnect-grace", type=float, default=10.0,
                    help="hls.reconnect_grace for the server (below --max-pause so some rooms expire)")
    ap.add_argument("--segment", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the samples here")
    ap.add_argument("--in-process", action="store_true", help="feed HlsService directly, no server")
    ap.add_argument("--tracemalloc", action="store_true", help="with --in-process: trace Python allocations")
    ap.add_argument("--media-seconds", type=float, default=60.0, help="with --in-process: media per stream")
    args = ap.parse_args()
    if args.push:
        push_paced(args.push[0], args.push[1], float(args.push[2]))
        return
    if args.in_process:
        in_process(args)
        return
    clip = ingest.CACHE / "clip-1080p30-6M-60s.flv"
    ingest.make_clip(clip, 60)
    os.environ["LIVECAST_HLS_RECONNECT_GRACE"] = str(args.reconnect_grace)
    server = ingest.LivecastServer(segment=args.segment, container="mpegts")
    rng = random.Random(args.seed)
    stop = threading.Event()
    samples: list[dict[str, float]] = []
    try:
        urls = server.urls(args.rooms)
        time.sleep(1.0)
        base_kib = ingest.proc_rss_kib(server.pids)
        print(f"rooms {args.rooms}, {args.duration:.0f} s, reconnect_grace {args.reconnect_grace} s, "
              f"baseline RSS {base_kib / 1024:.1f} MiB", flush=True)
        rooms = [Room(clip, url, random.Random(rng.random()), args) for url in urls]
        threads = [threading.Thread(target=r.run, args=(stop,), daemon=True) for r in rooms]
        for t in threads:
            t.start()
        sizes: dict[str, int] = {}
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < args.duration:
            rss = ingest.proc_rss_kib(server.pids) * 1024
            live, held = window_bytes(server, sizes)
            row = {"t": round(elapsed, 1), "rss": rss, "live": len(live), "held": held,
                   "window": statistics.fmean(live) if live else 0.0}
            samples.append(row)
            per = (rss - base_kib * 1024) / len(live) / MIB if live else float("nan")
            print(f"t={elapsed:6.1f}s rss={rss / MIB:7.1f} MiB live={len(live):2d} held={held:2d} "
                  f"window={row['window'] / MIB:5.2f} MiB/stream rss/live={per:6.1f} MiB", flush=True)
            time.sleep(max(0.0, args.interval - (time.monotonic() - t0 - elapsed)))
        peak_kib = ingest.proc_rss_kib(server.pids, "VmHWM")
    finally:
        stop.set()
        for r in rooms if "rooms" in locals() else []:
            if r.proc is not None and r.proc.poll() is None:
                r.proc.terminate()
        server.stop()
    report(samples, base_kib * 1024, peak_kib * 1024, rooms, args)


def report(samples: list[dict[str, float]], base: int, peak: int, rooms: list[Room], args: argparse.Namespace) -> None:
    if args.json:
        args.json.write_text(json.dumps({"baseline": base, "peak": peak, "samples": samples}, indent=1))
    rss = [s["rss"] for s in samples]
    half = samples[len(samples) // 2:]
    k = slope([s["t"] for s in half], [s["rss"] for s in half])  # bytes per second
    windows = [s["window"] for s in samples if s["live"]]
    window = statistics.median(windows) if windows else 0.0
    enough = [s for s in samples if s["live"] >= max(1, args.rooms // 2)]
    per = statistics.median((s["rss"] - base) / s["live"] / MIB for s in enough) if enough else float("nan")
    # ended rooms within reconnect_grace still hold their window + grace: per held room is the fairer figure
    per_held = statistics.median((s["rss"] - base) / s["held"] / MIB for s in enough) if enough else float("nan")
    target = 2 * window + 2 * MIB
    print()
    print(f"publisher sessions: {sum(r.sessions for r in rooms)}, failed: {sum(r.failures for r in rooms)}")
    print("| figure | value |")
    print("|---|---|")
    print(f"| duration, rooms, sample interval | {args.duration:.0f} s, {args.rooms}, {args.interval:.0f} s |")
    print(f"| baseline RSS (rooms created, nothing published) | {base / MIB:.1f} MiB |")
    print(f"| RSS first / last sample | {rss[0] / MIB:.1f} / {rss[-1] / MIB:.1f} MiB |")
    print(f"| RSS min / max sample, VmHWM | {min(rss) / MIB:.1f} / {max(rss) / MIB:.1f} MiB, {peak / MIB:.1f} MiB |")
    print(f"| RSS slope, 2nd half (linear fit) | {k * 60 / MIB:+.2f} MiB/min |")
    print(f"| live streams per sample (median / max) | {statistics.median(s['live'] for s in samples):.0f}"
          f" / {max(s['live'] for s in samples)} |")
    print(f"| window bytes per live stream (median) | {window / MIB:.2f} MiB |")
    print(f"| (RSS - baseline) / live streams, median over samples with >= {max(1, args.rooms // 2)} live"
          f" | {per:.1f} MiB |")
    print(f"| (RSS - baseline) / rooms holding a playlist (live or within reconnect grace) | {per_held:.1f} MiB |")
    print(f"| target 2 x window + 2 MiB | {target / MIB:.1f} MiB |")
    print(f"| within target (per live / per held room) | {'yes' if per <= target / MIB else 'no'}"
          f" / {'yes' if per_held <= target / MIB else 'no'} |")


if __name__ == "__main__":
    main()
