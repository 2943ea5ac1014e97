"""Edge delivery benchmark: N simulated HLS players against one edge, fed by one origin.

Measures, for one live 3 Mbit/s stream: upstream (edge -> origin) requests and bytes per
viewer, edge CPU at N viewers and the extrapolated viewers per edge CPU core, and whether
the players got N x the stream's bitrate without stalls.

An origin and an edge run as separate ``livecast serve`` processes (uvloop on, as in
production). ffmpeg publishes a real-time 720p30 H.264 + AAC clip at ~3 Mbit/s CBR into
the origin (encoded once into bench/.cache, then looped with ``-re -c copy``). Simulated
players run in client processes (asyncio + aiohttp, many per process): like hls.js, each
loads the playlist, starts 3 segments from the live edge, fetches every new segment once
and reloads the playlist after a target duration (half of one when it had not changed).
A player stalls when its playhead (real time since its first segment) passes the media
it has fetched; it "fell behind" when the next segment it needs left the playlist.

Measured over a window after every player is running: edge CPU seconds (user + system,
/proc/<pid>/stat), bytes the edge served (its ``livecast_http_response_bytes_total``),
upstream requests and bytes (its ``livecast_edge_upstream_requests_total`` and
``livecast_edge_upstream_bytes_total``), and the players' own counts.

    python bench/edge.py --viewers 100 --seconds 30
    python bench/edge.py --viewers 500 --seconds 30 --clients 2

Not a test: prints figures for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
sys.path.insert(0, str(HERE.parent / "tests"))

from procs import NodeProcess, node_sections  # noqa: E402  (the tests' process launcher)

CLK_TCK = os.sysconf("SC_CLK_TCK")
START_BEHIND = 3  # segments from the live edge a player starts at (hls.js liveSyncDurationCount)


# -- the stream ------------------------------------------------------------------------

def make_clip(path: Path, seconds: int = 60) -> None:
    """720p30 H.264 (2 s GOP, CBR 2.87 Mbit/s) + AAC 128 kbit/s: ~3 Mbit/s, encoded once."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.flv")
    subprocess.run([
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30,noise=alls=10:allf=t",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds), "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2872k", "-maxrate", "2872k", "-bufsize", "2872k",
        "-x264-params", "nal-hrd=cbr", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "flv", str(tmp),
    ], check=True)
    tmp.rename(path)


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        raise RuntimeError(f"process {pid} exited during the measurement") from None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (steal counts as busy)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


def clients_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def scrape(node: NodeProcess, session: aiohttp.ClientSession) -> dict[str, float]:
    async with session.get(node.url("/metrics")) as r:
        text = await r.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("livecast_edge_upstream_requests_total", "livecast_edge_upstream_bytes_total",
                          "livecast_edge_upstream_errors_total"):
                out[s.name] = s.value
            elif s.name == "livecast_http_response_bytes_total":
                out[f"bytes:{s.labels['route']}"] = s.value
            elif s.name == "livecast_edge_cache_lookups_total":
                out[f"lookup:{s.labels['kind']}:{s.labels['result']}"] = s.value
    return out


# -- simulated players (client processes) ----------------------------------------------

@dataclass
class PlayerStats:
    playlist_requests: int = 0
    segments: int = 0
    segment_bytes: int = 0
    playlist_bytes: int = 0
    media_seconds: float = 0.0  # EXTINF seconds of the segments fetched
    errors: int = 0
    stalls: int = 0
    stall_seconds: float = 0.0
    fell_behind: int = 0
    # The same counts, only for responses completed inside the measurement window.
    window_bytes: int = 0
    window_requests: int = 0
    stalled_players: int = 0


_EXTINF = re.compile(r"#EXTINF:([\d.]+)")


def parse_playlist(text: str) -> tuple[int, float, list[tuple[int, float, str]]]:
    sequence, target, duration = 0, 2.0, 0.0
    entries: list[tuple[int, float, str]] = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif m := _EXTINF.match(line):
            duration = float(m.group(1))
        elif line and not line.startswith("#"):
            entries.append((sequence + len(entries), duration, line.strip()))
    return sequence, target, entries


async def player(session: aiohttp.ClientSession, base: str, slug: str, start_delay: float, stop_at: float,
                 window: tuple[float, float], stats: PlayerStats) -> None:
    await asyncio.sleep(start_delay)
    playlist_url = f"{base}/hls/{slug}/index.m3u8"
    next_seq: int | None = None
    play_start: float | None = None
    buffered = 0.0
    stalled = False

    def count(n: int) -> None:
        if window[0] <= time.time() <= window[1]:
            stats.window_bytes += n
            stats.window_requests += 1

    while time.time() < stop_at:
        loaded = time.monotonic()
        target = 2.0
        try:
            async with session.get(playlist_url) as r:
                body = await r.read()
                status = r.status
            stats.playlist_requests += 1
            stats.playlist_bytes += len(body)
            count(len(body))
            if status != 200:
                raise aiohttp.ClientResponseError(r.request_info, (), status=status)
            sequence, target, entries = parse_playlist(body.decode())
        except (aiohttp.ClientError, asyncio.TimeoutError, UnicodeDecodeError, ValueError):
            stats.errors += 1
            await asyncio.sleep(1.0)
            continue
        if not entries:
            await asyncio.sleep(target / 2)
            continue
        if next_seq is None:
            next_seq = max(sequence, entries[-1][0] - (START_BEHIND - 1))
        if next_seq < sequence:
            stats.fell_behind += 1
            next_seq = sequence
        fresh = [e for e in entries if e[0] >= next_seq]
        for seq, duration, uri in fresh:
            if time.time() >= stop_at:
                break
            size = 0
            try:
                async with session.get(f"{base}/hls/{slug}/{uri}") as r:
                    async for chunk in r.content.iter_any():
                        size += len(chunk)
                    ok = r.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            count(size)
            if not ok:
                stats.errors += 1
                break
            stats.segments += 1
            stats.segment_bytes += size
            stats.media_seconds += duration
            next_seq = seq + 1
            now = time.monotonic()
            if play_start is None:
                play_start = now  # playback starts with the first segment
            elif now - play_start > buffered:  # the playhead ran out of media: rebuffering
                deficit = now - play_start - buffered
                stats.stalls += 1
                stats.stall_seconds += deficit
                play_start += deficit
                stalled = True
            buffered += duration
        # hls.js: reload after a target duration, or half of one when nothing was new.
        delay = (target if fresh else target / 2) - (time.monotonic() - loaded)
        await asyncio.sleep(max(0.0, min(delay, stop_at - time.time())))
    if stalled:
        stats.stalled_players += 1


async def run_client(base: str, slug: str, viewers: int, ramp: float, stop_at: float,
                     window: tuple[float, float]) -> PlayerStats:
    stats = PlayerStats()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        await asyncio.gather(*(player(session, base, slug, random.uniform(0, ramp), stop_at, window, stats)
                               for _ in range(viewers)))
    return stats


def client_main(args: argparse.Namespace) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    spec = json.loads(args.client)
    stats = asyncio.run(run_client(spec["base"], spec["slug"], spec["viewers"], spec["ramp"], spec["stop_at"],
                                   (spec["window"][0], spec["window"][1])))
    print(json.dumps(asdict(stats)))


# -- orchestration -----------------------------------------------------------------------

async def make_room(origin: NodeProcess, session: aiohttp.ClientSession) -> dict[str, Any]:
    creds = {"username": f"bench{int(time.time() * 1000) % 10**8}", "password": "benchmark-pass"}
    async with session.post(origin.url("/api/v1/auth/register"), json=creds) as r:
        assert r.status == 201, await r.text()
    async with session.post(origin.url("/api/v1/auth/login"), json=creds) as r:
        token = (await r.json())["token"]
    async with session.post(origin.url("/api/v1/rooms"), json={"title": "edge bench"},
                            headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 201, await r.text()
        return dict((await r.json())["room"])


async def wait_segments(node: NodeProcess, session: aiohttp.ClientSession, slug: str, count: int,
                        timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with session.get(node.url(f"/hls/{slug}/index.m3u8")) as r:
            text = await r.text()
            if r.status == 200 and len(parse_playlist(text)[2]) >= count:
                return text
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the stream did not reach {count} segments on {node.base}")


async def bench(args: argparse.Namespace) -> None:
    clip = CACHE / "clip-720p30-3M-60s.flv"
    make_clip(clip)
    work = Path(tempfile.mkdtemp(prefix="lc-edgebench-"))
    quiet: dict[str, dict[str, Any]] = {"log": {"level": "warning"}, "server": {"uvloop": True}}
    origin = NodeProcess(work / "origin", node_sections(work / "origin" / "data", "origin", "",
                                                        hls={"segment_duration": args.segment}, **quiet))
    await origin.start()
    edge = NodeProcess(work / "edge", node_sections(work / "edge" / "data", "edge", origin.base, **quiet))
    await edge.start()
    publisher: asyncio.subprocess.Process | None = None
    clients: list[asyncio.subprocess.Process] = []
    session = aiohttp.ClientSession()
    try:
        room = await make_room(origin, session)
        slug = room["slug"]
        publisher = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
            "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{origin.rtmp_port}/live/{room['stream_key']}",
            stdin=asyncio.subprocess.DEVNULL)
        await wait_segments(edge, session, slug, START_BEHIND + 1)

        target = args.segment
        ramp = target  # players join spread over one target duration
        warmup = ramp + 2 * target
        now = time.time()
        window = (now + warmup, now + warmup + args.seconds)
        stop_at = window[1] + 3.0  # players outlive the window: their CPU is read at its end
        per_client = [args.viewers // args.clients + (1 if i < args.viewers % args.clients else 0)
                      for i in range(args.clients)]
        for n in per_client:
            spec = {"base": edge.base, "slug": slug, "viewers": n, "ramp": ramp, "stop_at": stop_at,
                    "window": window}
            clients.append(await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", json.dumps(spec), stdout=asyncio.subprocess.PIPE))

        await asyncio.sleep(max(0.0, window[0] - time.time()))
        assert edge.proc is not None and origin.proc is not None
        client_pids = [proc.pid for proc in clients]
        cpu0, ocpu0, ccpu0 = cpu_seconds(edge.proc.pid), cpu_seconds(origin.proc.pid), clients_cpu(client_pids)
        mach0 = machine_cpu()
        m0, t0 = await scrape(edge, session), time.monotonic()
        await asyncio.sleep(max(0.0, window[1] - time.time()))
        cpu1, ocpu1, ccpu1 = cpu_seconds(edge.proc.pid), cpu_seconds(origin.proc.pid), clients_cpu(client_pids)
        mach1 = machine_cpu()
        m1, t1 = await scrape(edge, session), time.monotonic()

        totals = PlayerStats()
        for proc in clients:
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"a client process failed ({proc.returncode})")
            one = json.loads(out.decode().strip().splitlines()[-1])
            for key, value in one.items():
                setattr(totals, key, getattr(totals, key) + value)
    finally:
        await session.close()
        for proc in clients:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if publisher is not None and publisher.returncode is None:
            publisher.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(publisher.wait(), 10)
            except asyncio.TimeoutError:
                publisher.kill()
        await edge.stop()
        await origin.stop()
        shutil.rmtree(work, ignore_errors=True)

    def delta(key: str) -> float:
        return m1.get(key, 0.0) - m0.get(key, 0.0)

    n, elapsed, minutes = args.viewers, t1 - t0, (t1 - t0) / 60
    cpu = cpu1 - cpu0
    served = delta("bytes:hls_segment") + delta("bytes:hls_playlist")
    up_requests, up_bytes = delta("livecast_edge_upstream_requests_total"), delta("livecast_edge_upstream_bytes_total")
    stream_bps = totals.segment_bytes * 8 / totals.media_seconds if totals.media_seconds else 0.0
    delivered_bps = served * 8 / elapsed
    cores = cpu / elapsed
    print(f"viewers {n} in {args.clients} client process(es); window {elapsed:.1f} s; segment {args.segment:g} s; "
          f"machine {os.cpu_count()} CPUs")
    print(f"stream (segments as delivered): {stream_bps / 1e6:.2f} Mbit/s")
    print(f"edge CPU: {cpu:.2f} s = {100 * cores:.1f}% of one core "
          f"({1e6 * cpu / max(1, totals.window_requests):.0f} us per request); "
          f"origin CPU {100 * (ocpu1 - ocpu0) / elapsed:.1f}%; "
          f"player processes {100 * (ccpu1 - ccpu0) / elapsed:.0f}%; whole machine "
          f"{100 * (mach1[0] - mach0[0]) / max(1e-9, mach1[1] - mach0[1]):.0f}% busy")
    print(f"edge served {delivered_bps / 1e6:.1f} Mbit/s = "
          f"{delivered_bps / (n * stream_bps) if stream_bps else 0:.3f} x "
          f"(viewers x stream bitrate); players received {totals.window_bytes * 8 / elapsed / 1e6:.1f} Mbit/s, "
          f"{totals.window_requests / elapsed:.0f} req/s")
    print(f"upstream: {up_requests:.0f} requests ({up_requests / minutes:.0f}/min, "
          f"{up_requests / n / minutes:.3f} per viewer per minute), {up_bytes / 1e6:.1f} MB "
          f"({up_bytes / n / minutes / 1e6:.3f} MB per viewer per minute, {up_bytes * 8 / elapsed / 1e6:.2f} Mbit/s "
          f"= {up_bytes / served if served else 0:.4f} of the bytes served), "
          f"errors {delta('livecast_edge_upstream_errors_total'):.0f}")
    print(f"edge cache lookups: playlist {delta('lookup:playlist:hit'):.0f} hit / "
          f"{delta('lookup:playlist:miss'):.0f} miss, "
          f"segment {delta('lookup:segment:hit'):.0f} hit / {delta('lookup:segment:miss'):.0f} miss")
    print(f"players: {totals.segments} segments, {totals.playlist_requests} playlist loads, errors {totals.errors}, "
          f"stalls {totals.stalls} ({totals.stall_seconds:.1f} s) in {totals.stalled_players} players, "
          f"fell behind {totals.fell_behind}")
    ratio = delivered_bps / (n * stream_bps) if stream_bps else 0.0
    # Segments arrive in bursts, one per segment duration: allow one segment's worth of slack.
    slack = args.segment / elapsed + 0.03
    problems = [what for what, bad in (("delivered != viewers x bitrate", abs(ratio - 1) > slack),
                                       ("stalls", totals.stalls > 0), ("errors", totals.errors > 0),
                                       ("players fell behind", totals.fell_behind > 0)) if bad]
    if cores > 0:
        print(f"viewers per edge CPU core at {stream_bps / 1e6:.1f} Mbit/s: {n / cores:.0f}"
              + (f"  (NOT VALID: {', '.join(problems)}; check the CPU of the player processes and the machine)"
                 if problems else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--viewers", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    ap.add_argument("--clients", type=int, default=1, help="player processes")
    ap.add_argument("--segment", type=float, default=2.0, help="HLS segment duration (target)")
    args = ap.parse_args()
    if args.client:
        client_main(args)
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
