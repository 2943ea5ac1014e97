"""Latency benchmark: how long after a frame is sent it can be fetched over HTTP, for
standard HLS and Low-Latency HLS; and what 5,000 held LL-HLS blocking requests cost.

A publisher child process encodes 640x360 30 fps H.264 (libx264, preset ultrafast, tune
zerolatency, 1 s GOP) + AAC with PyAV in real time and pushes it over RTMP; it records
the wall time (time.time()) at which each video packet is handed to the RTMP muxer.
Meanwhile this process fetches the playlist and records the first time (wall clock,
when the response arrived) that each segment URI and each EXT-X-PART URI is listed.
The media timeline is rebuilt from the cumulative EXTINF durations (from the first
segment, which starts at the publisher's first frame) and, within a segment, from the
parts' DURATIONs. A frame becomes fetchable when the first segment or part containing
it is listed; delay = fetchable - sent. Frames of the last two segment durations are
left out (the end of a stream is listed at once, on ENDLIST), and so are those of the
first second: the stream's start is reported on its own ("first frame": how long after
the first frame was sent a client could fetch it; an edge remembers a room that was not
live yet for a second).

Fetch methods (the same for every server):
  poll   a plain GET of the playlist every 10 ms (keep-alive);
  block  (LL-HLS only) a blocking playlist reload chain, as hls.js does in lowLatencyMode:
         ask for _HLS_msn/_HLS_part of the part after the last one listed, repeat.

Setups: LiveCast standard HLS (mpegts) with 1 s and 2 s segments; LiveCast LL-HLS (fmp4,
0.2 s parts) with 1 s and 2 s segments, fetched from the origin and through an edge
node (a separate process pulling from the origin); nginx-rtmp standard HLS with the same
fragment lengths (when nginx and libnginx-mod-rtmp are installed; served by the same
nginx over HTTP from tmpfs).

Held requests: against the LL origin (2 s segments, so the requests can all be in place
before the segment they wait for exists), client processes open N connections and each
sends one blocking request for part 0 of the segment after next; the server's RSS is
read before and while they are all held, its CPU time over the hold (connect, hold,
answer) against an idle window of the same length with the same stream running, and
every answer's status is counted.

    python bench/latency.py                  # everything, 30 s per setup, 5,000 held
    python bench/latency.py --seconds 20 --held 5000 --no-nginx

Not a test: it prints figures for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ingest import LivecastServer, NginxServer, free_port, proc_cpu, proc_rss_kib, wait_port  # noqa: E402

POLL_S = 0.010
WARMUP_S = 1.0  # frames of the first second are left out of p50/p95/max (stream start: "first frame")
SECRET = "bench-latency-secret-0123456789"


# -- the real-time publisher (child process) -----------------------------------------


def publish(url: str, seconds: float, out_path: str, width: int = 640, height: int = 360, fps: int = 30) -> None:
    """Encode and push ``seconds`` of video+audio in real time; write each video frame's
    (pts seconds, wall time it was handed to the RTMP muxer) to ``out_path`` as JSON."""
    import av

    av.logging.set_level(av.logging.ERROR)
    out = av.open(url, "w", format="flv")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.options = {"g": str(fps), "keyint_min": str(fps), "tune": "zerolatency", "preset": "ultrafast",
                  "sc_threshold": "0"}
    aus = out.add_stream("aac", rate=44100, layout="stereo")
    n_video = int(seconds * fps)
    n_audio = int(seconds * 44100 / 1024)
    sent: list[tuple[float, float]] = []
    vi = ai = 0
    start = time.monotonic()
    noise = os.urandom(1 << 16)
    paused = [False]  # SIGUSR1 pauses the stream (the connection stays up), SIGUSR2 resumes it
    signal.signal(signal.SIGUSR1, lambda *_: paused.__setitem__(0, True))
    signal.signal(signal.SIGUSR2, lambda *_: paused.__setitem__(0, False))
    while vi < n_video or ai < n_audio:
        if paused[0]:
            pause_start = time.monotonic()
            while paused[0]:
                time.sleep(0.005)
            start += time.monotonic() - pause_start
        v_time = vi / fps if vi < n_video else float("inf")
        a_time = ai * 1024 / 44100 if ai < n_audio else float("inf")
        delay = min(v_time, a_time) - (time.monotonic() - start)
        if delay > 0:
            time.sleep(delay)
        if v_time <= a_time:
            frame = av.VideoFrame(width, height, "yuv420p")
            y, u, v = frame.planes
            row = bytes(((x + vi * 4) & 0xFF) for x in range(y.line_size))
            luma = bytearray(row * height)
            off = (vi * 977) % (len(noise) - 4096)
            luma[20 * y.line_size:20 * y.line_size + 4096] = noise[off:off + 4096]
            y.update(bytes(luma))
            u.update(bytes([(vi * 3) & 0xFF]) * u.buffer_size)
            v.update(bytes([(255 - vi * 3) & 0xFF]) * v.buffer_size)
            frame.pts = vi
            for pkt in vs.encode(frame):
                sent.append((float(pkt.pts * pkt.time_base), time.time()))
                out.mux(pkt)
            vi += 1
        else:
            af = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            for plane in af.planes:
                plane.update(bytes(plane.buffer_size))
            af.sample_rate = 44100
            # One frame late: the AAC encoder's priming packet then has pts 0, not -1024
            # (a negative timestamp would shift the whole FLV timeline by 23 ms).
            af.pts = (ai + 1) * 1024
            af.time_base = Fraction(1, 44100)
            for pkt in aus.encode(af):
                out.mux(pkt)
            ai += 1
    for stream in (vs, aus):
        for pkt in stream.encode():
            if stream is vs:
                sent.append((float(pkt.pts * pkt.time_base), time.time()))
            out.mux(pkt)
    end = time.time()
    out.close()
    Path(out_path).write_text(json.dumps({"frames": sent, "end": end}))


# -- playlist tracking ----------------------------------------------------------------


@dataclass
class Listing:
    media_sequence: int
    segments: list[tuple[int, str, float, list[tuple[str, float]]]]  # seq, uri, duration, parts
    open_parts: list[tuple[str, float]]  # parts of segment last+1 (in progress)
    ended: bool

    @property
    def next_part(self) -> tuple[int, int]:
        """(msn, part) of the part after the last one listed: what a blocking reload asks for."""
        last = self.segments[-1][0] if self.segments else self.media_sequence - 1
        return last + 1, len(self.open_parts)


def _attr(line: str, name: str) -> str:
    for item in line.split(":", 1)[1].split(","):
        key, _, value = item.partition("=")
        if key.strip() == name:
            return value.strip().strip('"')
    return ""


def parse_listing(text: str) -> Listing:
    sequence = 0
    skip = 0
    segments: list[tuple[int, str, float, list[tuple[str, float]]]] = []
    parts: list[tuple[str, float]] = []
    duration = 0.0
    ended = False
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SKIP:"):
            skip = int(_attr(line, "SKIPPED-SEGMENTS") or 0)
        elif line.startswith("#EXT-X-PART:"):
            parts.append((_attr(line, "URI"), float(_attr(line, "DURATION"))))
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif line.startswith("#EXT-X-ENDLIST"):
            ended = True
        elif not line.startswith("#"):
            segments.append((sequence + skip + len(segments), line, duration, parts))
            parts = []
    return Listing(sequence, segments, parts, ended)


@dataclass
class Tracker:
    """First time each segment and part was seen listed."""

    base: int | None = None  # sequence number of the stream's first segment
    seg_dur: dict[int, float] = field(default_factory=dict)
    seg_seen: dict[int, float] = field(default_factory=dict)
    part_seen: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)  # -> (duration, seen)
    part_uris: set[str] = field(default_factory=set)
    requests: int = 0
    failures: list[str] = field(default_factory=list)  # blocking reloads not answered 200

    def see(self, listing: Listing, now: float) -> None:
        self.requests += 1
        if self.base is None:
            self.base = listing.media_sequence
        for seq, _uri, dur, parts in listing.segments:
            if seq not in self.seg_seen:
                self.seg_seen[seq] = now
                self.seg_dur[seq] = dur
            self._parts(seq, parts, now)
        last = listing.segments[-1][0] if listing.segments else listing.media_sequence - 1
        self._parts(last + 1, listing.open_parts, now)

    def _parts(self, seq: int, parts: list[tuple[str, float]], now: float) -> None:
        for i, (uri, dur) in enumerate(parts):
            if uri not in self.part_uris:
                self.part_uris.add(uri)
                self.part_seen[(seq, i)] = (dur, now)

    def fetchable(self, frames: list[tuple[float, float]], max_pts: float, min_pts: float = 0.0) -> list[float]:
        """Delays (s) of frames with min_pts <= pts < max_pts: first listing of their segment
        or part - send time."""
        assert self.base is not None, "no playlist was ever seen"
        if self.base != min(self.seg_seen, default=self.base):
            raise RuntimeError("the first playlist seen did not start with the first segment")
        items: list[tuple[float, float, float]] = []  # media start, end, seen
        start = 0.0
        seq = self.base
        while seq in self.seg_dur:
            dur = self.seg_dur[seq]
            items.append((start, start + dur, self.seg_seen[seq]))
            pstart = start
            i = 0
            while (seq, i) in self.part_seen:
                pdur, seen = self.part_seen[(seq, i)]
                items.append((pstart, pstart + pdur, seen))
                pstart += pdur
                i += 1
            start += dur
            seq += 1
        delays = []
        self.worst = (0.0, -1.0)  # (pts, delay) of the slowest frame
        for pts, sent in frames:
            if not min_pts <= pts < max_pts:
                continue
            listed = [s for a, b, s in items if a - 1e-4 <= pts < b - 1e-4]
            if not listed:
                raise RuntimeError(f"frame at {pts:.3f} s is in no listed segment (listed up to {start:.3f} s)")
            delays.append(min(listed) - sent)
            if delays[-1] > self.worst[1]:
                self.worst = (pts, delays[-1])
        return delays


async def poll_playlist(session: Any, url: str, tracker: Tracker, stop: asyncio.Event) -> None:
    while not stop.is_set():
        began = time.monotonic()
        try:
            async with session.get(url) as r:
                text = await r.text()
                now = time.time()
                if r.status == 200:
                    tracker.see(parse_listing(text), now)
        except Exception:  # noqa: BLE001 - the server may be starting or stopping
            pass
        await asyncio.sleep(max(0.0, POLL_S - (time.monotonic() - began)))


async def block_playlist(session: Any, url: str, tracker: Tracker, stop: asyncio.Event) -> None:
    """Follow the playlist with blocking reloads, as an LL-HLS client does."""
    import aiohttp

    listing: Listing | None = None
    while not stop.is_set():
        query = ""
        if listing is not None and not listing.ended:
            msn, part = listing.next_part
            query = f"?_HLS_msn={msn}&_HLS_part={part}"
        try:
            async with session.get(url + query, timeout=aiohttp.ClientTimeout(total=10)) as r:
                text = await r.text()
                now = time.time()
                if r.status == 200:
                    listing = parse_listing(text)
                    tracker.see(listing, now)
                    if listing.ended:
                        await asyncio.sleep(0.1)
                    continue
                if query:  # (a plain request before the stream starts is a 404)
                    tracker.failures.append(f"{r.status} {query} {text[:120]}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            tracker.failures.append(f"{err!r} {query}")
        listing = None
        await asyncio.sleep(POLL_S)


# -- servers ------------------------------------------------------------------------


class Livecast(LivecastServer):
    """bench/ingest.py's launcher with more settings (LIVECAST_* environment variables)."""

    def __init__(self, segment: float, container: str, env: dict[str, str] | None = None) -> None:
        saved = dict(os.environ)
        os.environ.update(env or {})
        try:
            super().__init__(segment, container)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def playlist_url(self, base: str | None = None) -> str:
        return f"{base or f'http://127.0.0.1:{self.http}'}/hls/{self.slugs[0]}/index.m3u8"


class Edge:
    """A LiveCast edge node (its own process) pulling HLS from ``origin``."""

    name = "livecast-edge"

    def __init__(self, origin: Livecast) -> None:
        self.tmp = tempfile.mkdtemp(prefix="lcedge-")
        self.http = free_port()
        env = dict(os.environ, LIVECAST_SERVER_ROLE="edge", LIVECAST_SERVER_ORIGIN=f"http://127.0.0.1:{origin.http}",
                   LIVECAST_CLUSTER_SECRET=SECRET, LIVECAST_LOG_LEVEL="warning", LIVECAST_AUTH_BCRYPT_ROUNDS="4")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livecast", "serve", "--host", "127.0.0.1", "--http-port", str(self.http),
             "--rtmp-port", str(free_port()), "--data-dir", self.tmp],
            env=env, stdout=subprocess.DEVNULL,
        )
        wait_port(self.http)
        self.pids = [self.proc.pid]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)
        shutil.rmtree(self.tmp, ignore_errors=True)


class NginxHttp(NginxServer):
    """nginx-rtmp (bench/ingest.py's configuration) plus an http server for its HLS files."""

    def __init__(self, segment: float) -> None:
        super().__init__(segment)
        # Same nginx binary, a second instance for HTTP over the same tmpfs directory.
        self.http = free_port()
        conf = Path(self.tmp) / "http.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
master_process on;
pid {self.tmp}/nginx-http.pid;
error_log {self.tmp}/error-http.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
  server {{
    listen 127.0.0.1:{self.http};
    location /hls/ {{ alias {self.tmp}/hls/; add_header Cache-Control no-cache; }}
  }}
}}
""")
        self.http_proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", self.tmp], stderr=subprocess.DEVNULL)
        wait_port(self.http)

    def playlist_url(self) -> str:
        return f"http://127.0.0.1:{self.http}/hls/stream0/index.m3u8"

    def stop(self) -> None:
        self.http_proc.send_signal(signal.SIGQUIT)
        try:
            self.http_proc.wait(10)
        except subprocess.TimeoutExpired:
            self.http_proc.kill()
        super().stop()


# -- one latency run -------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


async def latency_run(label: str, rtmp_url: str, playlist_url: str, method: str, seconds: float,
                      segment: float) -> dict[str, Any]:
    import aiohttp

    tracker = Tracker()
    stop = asyncio.Event()
    out = tempfile.NamedTemporaryFile(prefix="lcpub-", suffix=".json", delete=False)
    out.close()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        fetch = poll_playlist if method == "poll" else block_playlist
        task = asyncio.create_task(fetch(session, playlist_url, tracker, stop))
        pub = await asyncio.create_subprocess_exec(sys.executable, __file__, "--publish", rtmp_url, str(seconds),
                                                   out.name)
        if await pub.wait() != 0:
            raise RuntimeError(f"{label}: the publisher failed")
        await asyncio.sleep(1.0)
        stop.set()
        await task
    data = json.loads(Path(out.name).read_text())
    os.unlink(out.name)
    frames = [tuple(f) for f in data["frames"]]
    first = tracker.fetchable(frames[:1], 1.0)[0]  # stream start: the playlist appears
    delays = tracker.fetchable(frames, seconds - 2 * segment, WARMUP_S)
    if tracker.failures:
        print(f"  ({label}, {method}: {len(tracker.failures)} reloads failed, e.g. {tracker.failures[:3]})")
    return {"setup": label, "method": method, "frames": len(delays), "failures": len(tracker.failures),
            "worst_pts": tracker.worst[0], "first_frame": first, "p50": pct(delays, 0.5),
            "p95": pct(delays, 0.95), "max": max(delays), "min": min(delays), "requests": tracker.requests}


def ll_env(segment: float, part: float) -> dict[str, str]:
    return {"LIVECAST_HLS_LOW_LATENCY": "true", "LIVECAST_HLS_PART_TARGET": str(part),
            "LIVECAST_CLUSTER_SECRET": SECRET}


async def run_livecast(label: str, segment: float, container: str, env: dict[str, str], methods: list[str],
                       seconds: float, edge: bool = False) -> list[dict[str, Any]]:
    server = Livecast(segment, container, env)
    rows = []
    edge_node = None
    try:
        if edge:
            edge_node = Edge(server)
        for method in methods:
            rtmp = server.urls(1)[0]  # a fresh room per run: the playlist starts at the first segment
            url = server.playlist_url(f"http://127.0.0.1:{edge_node.http}" if edge_node else None)
            rows.append(await latency_run(label, rtmp, url, method, seconds, segment))
            print_row(rows[-1])
    finally:
        if edge_node is not None:
            edge_node.stop()
        server.stop()
    return rows


async def run_nginx(segment: float, seconds: float) -> dict[str, Any]:
    server = NginxHttp(segment)
    try:
        row = await latency_run(f"nginx-rtmp HLS, {segment:g} s fragments", server.urls(1)[0], server.playlist_url(),
                                "poll", seconds, segment)
    finally:
        server.stop()
    print_row(row)
    return row


def print_row(r: dict[str, Any]) -> None:
    print(f"  {r['setup']:<44s} {r['method']:<6s} frames {r['frames']:5d}  p50 {r['p50'] * 1000:7.0f} ms  "
          f"p95 {r['p95'] * 1000:7.0f} ms  max {r['max'] * 1000:7.0f} ms at {r['worst_pts']:.2f} s  "
          f"(min {r['min'] * 1000:3.0f} ms; first frame {r['first_frame'] * 1000:.0f} ms)", flush=True)


# -- held blocking requests --------------------------------------------------------------


async def _hold_client(port: int, path: str, n: int, rate: float) -> None:
    """Child: open n connections, send one blocking request on each, report, read answers."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").encode()
    gate = asyncio.Semaphore(32)  # connects in flight
    results: list[tuple[int, float]] = []
    errors: list[str] = []

    async def one(streams: list[Any], delay: float) -> None:
        await asyncio.sleep(delay)  # paced: a burst would overflow the server's accept queue
        async with gate:
            for attempt in range(5):
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    break
                except OSError as err:
                    if attempt == 4:
                        errors.append(repr(err))
                        return
                    await asyncio.sleep(0.05)
            writer.write(request)
            await writer.drain()
        streams.append((reader, writer))

    streams: list[Any] = []
    await asyncio.gather(*(one(streams, i / rate) for i in range(n)))
    print(json.dumps({"sent": len(streams), "at": time.time(), "errors": errors[:3]}), flush=True)

    async def answer(reader: Any, writer: Any) -> None:
        try:
            data = await reader.read()
            status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
        except Exception:  # noqa: BLE001
            status = -1
        results.append((status, time.time()))
        writer.close()

    await asyncio.gather(*(answer(r, w) for r, w in streams))
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    times = [t for _, t in results]
    print(json.dumps({"statuses": statuses, "first": min(times, default=0), "last": max(times, default=0),
                      "errors": len(errors)}), flush=True)


def listen_overflows() -> int:
    """The kernel's count of connections dropped because an accept queue was full."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=False))["ListenOverflows"])
    return 0


async def held_requests(total: int, clients: int, seconds: float, rate: float = 1000.0,
                        segment: float = 4.0) -> dict[str, Any]:
    """Hold ``total`` blocking requests for the next part against an LL-HLS origin.

    The origin holds a request at most three target durations and refuses one asking
    more than ~3 s of parts ahead, while placing thousands of connections takes seconds:
    so the segments last 4 s (held up to 12 s) and the publisher pauses (its RTMP connection
    stays up) and the requests ask for the part after the last one listed, the next one the
    stream will make. They are placed at ``rate`` per second (a burst overflows the accept
    queue and costs SYN retransmits).
    Then the publisher resumes and every held request is answered with that part.
    """
    import aiohttp

    server = Livecast(segment, "fmp4", ll_env(segment, 0.2))
    pub = None
    out = None
    try:
        rtmp = server.urls(1)[0]
        url = server.playlist_url()
        out = tempfile.NamedTemporaryFile(prefix="lcpub-", suffix=".json", delete=False)
        out.close()
        pub = await asyncio.create_subprocess_exec(sys.executable, __file__, "--publish", rtmp, str(seconds), out.name)
        pids = server.pids
        async with aiohttp.ClientSession() as session:
            async def listing() -> Listing:
                async with session.get(url) as r:
                    return parse_listing(await r.text())

            while True:  # let the stream settle (a few segments)
                await asyncio.sleep(0.5)
                try:
                    if len((await listing()).segments) >= 3:
                        break
                except (aiohttp.ClientError, ValueError, IndexError):
                    pass
            # Baselines: the stream running, then paused; no held requests.
            cpu0, t0 = proc_cpu(pids), time.monotonic()
            await asyncio.sleep(3.0)
            run_rate = (proc_cpu(pids) - cpu0) / (time.monotonic() - t0)
            pub.send_signal(signal.SIGUSR1)
            await asyncio.sleep(0.5)
            cpu0, t0 = proc_cpu(pids), time.monotonic()
            await asyncio.sleep(2.0)
            pause_rate = (proc_cpu(pids) - cpu0) / (time.monotonic() - t0)
            before = await listing()
            target, part = before.next_part
            path = url.split(f":{server.http}", 1)[1] + f"?_HLS_msn={target}&_HLS_part={part}"
            rss_before = proc_rss_kib(pids)
            overflows = listen_overflows()
            cpu_a, t_a = proc_cpu(pids), time.monotonic()
            share = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
            procs = [await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--hold", str(server.http), path, str(n), str(rate / clients),
                stdout=asyncio.subprocess.PIPE) for n in share]
            sent = []
            for p in procs:
                assert p.stdout is not None
                sent.append(json.loads(await p.stdout.readline()))
            placed_s = time.monotonic() - t_a
            overflows = listen_overflows() - overflows
            await asyncio.sleep(0.5)
            rss_held = proc_rss_kib(pids)
            cpu_b, t_b = proc_cpu(pids), time.monotonic()
            held_at = time.time()
            still_waiting = (await listing()).next_part == (target, part)
            pub.send_signal(signal.SIGUSR2)
            finals = []
            for p in procs:
                assert p.stdout is not None
                finals.append(json.loads(await p.stdout.readline()))
                await p.wait()
            cpu_c, t_c = proc_cpu(pids), time.monotonic()
        statuses: dict[str, int] = {}
        for f in finals:
            for k, v in f["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        first_answer = min(f["first"] for f in finals)
        last_answer = max(f["last"] for f in finals)
        n_sent = sum(s["sent"] for s in sent)
        place_cpu = cpu_b - cpu_a - pause_rate * (t_b - t_a)
        answer_cpu = cpu_c - cpu_b - run_rate * (t_c - t_b)
        return {
            "requests": total, "sent": n_sent, "statuses": statuses, "clients": clients,
            "asked_for": f"_HLS_msn={target}&_HLS_part={part}",
            "still_held_when_measured": still_waiting and first_answer > held_at,
            "placed_s": placed_s, "held_s": t_b - t_a, "listen_overflows": overflows, "segment_s": segment,
            "rss_before_mib": rss_before / 1024, "rss_held_mib": rss_held / 1024,
            "bytes_per_request": (rss_held - rss_before) * 1024 / max(n_sent, 1),
            "cpu_run_per_s": run_rate, "cpu_pause_per_s": pause_rate,
            "cpu_place_hold_s": cpu_b - cpu_a, "cpu_answer_s": cpu_c - cpu_b, "answer_wall_s": t_c - t_b,
            "place_us_per_request": place_cpu / max(n_sent, 1) * 1e6,
            "answer_us_per_request": answer_cpu / max(n_sent, 1) * 1e6,
            "answer_spread_ms": (last_answer - first_answer) * 1000,
        }
    finally:
        if pub is not None and pub.returncode is None:
            pub.send_signal(signal.SIGUSR2)
            pub.send_signal(signal.SIGTERM)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pub.wait(), 10)
        server.stop()
        if out is not None:
            with contextlib.suppress(OSError):
                os.unlink(out.name)


# -- main ------------------------------------------------------------------------------------


async def amain(args: argparse.Namespace) -> None:
    have_nginx = (not args.no_nginx and shutil.which("nginx") is not None
                  and Path("/usr/lib/nginx/modules/ngx_rtmp_module.so").exists())
    rows: list[dict[str, Any]] = []
    parts = {args.only} if args.only else {"standard", "ll", "edge", "held"}
    if args.no_edge:
        parts.discard("edge")
    if not args.held:
        parts.discard("held")
    print(f"{os.cpu_count()} CPUs, load average before the run: {os.getloadavg()[0]:.2f} "
          "(anything else running shifts these figures)")
    print(f"publisher: 640x360 30 fps H.264 (1 s GOP, zerolatency) + AAC, {args.seconds:g} s real time per run; "
          f"poll every {POLL_S * 1000:.0f} ms", flush=True)
    for seg in args.segments if "standard" in parts else []:
        rows += await run_livecast(f"LiveCast HLS mpegts, {seg:g} s segments", seg, "mpegts", {}, ["poll"],
                                   args.seconds)
        if have_nginx:
            rows.append(await run_nginx(seg, args.seconds))
    for seg in args.segments if "ll" in parts else []:
        rows += await run_livecast(f"LiveCast LL-HLS, {seg:g} s seg, 0.2 s parts", seg, "fmp4", ll_env(seg, 0.2),
                                   ["poll", "block"], args.seconds)
    if "edge" in parts:
        seg = args.segments[0]
        rows += await run_livecast(f"LiveCast LL-HLS via edge, {seg:g} s seg, 0.2 s", seg, "fmp4", ll_env(seg, 0.2),
                                   ["block", "poll"], args.seconds, edge=True)
    if not have_nginx and "standard" in parts:
        print("no nginx-rtmp baseline in this run (--no-nginx, or nginx / libnginx-mod-rtmp not installed)")
    if rows:
        print()
        print("| setup | fetch | frames | p50 | p95 | max | first frame |")
        print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setup']} | {r['method']} | {r['frames']} | {r['p50'] * 1000:.0f} ms | {r['p95'] * 1000:.0f} ms "
              f"| {r['max'] * 1000:.0f} ms | {r['first_frame'] * 1000:.0f} ms |")
    if "held" in parts:
        print(f"\nholding {args.held} blocking requests ({args.clients} client processes) ...", flush=True)
        h = await held_requests(args.held, args.clients, 40.0)
        print(json.dumps(h, indent=1))
        print(f"| held requests | {h['sent']:,} of {h['requests']:,} sent; answers {h['statuses']} |")
        print(f"| RSS before / held | {h['rss_before_mib']:.1f} / {h['rss_held_mib']:.1f} MiB "
              f"({h['bytes_per_request']:.0f} bytes per held request) |")
        print(f"| server CPU to accept and hold (idle paused stream: {h['cpu_pause_per_s']:.3f} CPU-s/s) | "
              f"{h['cpu_place_hold_s']:.2f} CPU-s in {h['held_s']:.1f} s: "
              f"{h['place_us_per_request']:.0f} µs per request |")
        print(f"| server CPU to answer (idle running stream: {h['cpu_run_per_s']:.3f} CPU-s/s) | "
              f"{h['cpu_answer_s']:.2f} CPU-s in {h['answer_wall_s']:.1f} s: "
              f"{h['answer_us_per_request']:.0f} µs per request |")
        print(f"| all answered within | {h['answer_spread_ms']:.0f} ms of the first answer |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publish", nargs=3, metavar=("URL", "SECONDS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--hold", nargs=4, metavar=("PORT", "PATH", "N", "RATE"), help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=30.0, help="real-time publish length per run")
    ap.add_argument("--segments", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--held", type=int, default=5000, help="held blocking requests (0: skip)")
    ap.add_argument("--clients", type=int, default=4, help="client processes for the held requests")
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--no-edge", action="store_true")
    ap.add_argument("--only", choices=["standard", "ll", "edge", "held"], help="run one part only")
    args = ap.parse_args()
    if args.publish:
        publish(args.publish[0], float(args.publish[1]), args.publish[2])
        return
    if args.hold:
        asyncio.run(_hold_client(int(args.hold[0]), args.hold[1], int(args.hold[2]), float(args.hold[3])))
        return
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
