"""Chat fan-out benchmark: K WebSocket readers in one room, M comments a second.

The server runs as its own process (``python -m livecast serve`` on a fresh data dir,
settings through LIVECAST_* variables). Posters are registered through the API; readers
connect anonymously, spread over worker processes so the client side is not one core.
Each comment carries its send time; a sample of readers turns arrival times into
delivery latency. Server CPU comes from /proc/PID/stat over the measured window.

    python bench/chat.py --clients 2000 --rate 50 --seconds 20

Not a test: it prints figures for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from benchnode import free_port, spawn_server, wait_ready

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench password 1"
SAMPLE_EVERY = 10  # one reader in SAMPLE_EVERY records latencies
CONNECT_CONCURRENCY = 50


def raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, want)) if hard != resource.RLIM_INFINITY else max(soft, want)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))



def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_server(data_dir: str, port: int, clients: int, profile: str | None = None,
                 uvloop: bool = False) -> subprocess.Popen[bytes]:
    """``python -m livecast serve`` with bench settings; the child's descriptor limit is
    raised before it starts (it needs one per socket too)."""
    env = {
        **os.environ,
        "LIVECAST_AUTH_BCRYPT_ROUNDS": "4",
        "LIVECAST_CHAT_SEND_QUEUE": "1024",
        "LIVECAST_CHAT_RATE_COUNT": "1000",
        "LIVECAST_CHAT_RATE_SECONDS": "1",
        "LIVECAST_CHAT_MAX_SOCKETS_PER_ADDRESS": "0",  # every reader is on loopback
        "LIVECAST_AUTH_REGISTER_PER_ADDRESS": "1000",  # every poster registers from loopback
        "LIVECAST_LOG_LEVEL": "warning",
        "LIVECAST_SERVER_UVLOOP": "1" if uvloop else "0",
        "PYTHONPATH": str(ROOT),
    }
    runner = ["-m", "cProfile", "-o", profile] if profile else []
    return spawn_server(ROOT, env, data_dir, port, runner=runner,
                        preexec_fn=lambda: raise_nofile(clients * 2 + 1024))




async def register(http: aiohttp.ClientSession, base: str, username: str) -> str:
    async with http.post(base + "/api/v1/auth/register", json={"username": username, "password": PASSWORD}) as r:
        assert r.status == 201, await r.text()
    async with http.post(base + "/api/v1/auth/login", json={"username": username, "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        token = str((await r.json())["token"])
    http.cookie_jar.clear()
    return token


# -- reader workers (separate processes) -------------------------------------------
#
# Readers speak just enough WebSocket by hand (handshake, unmasked server frames, pong)
# so that a client costs a few microseconds per message: aiohttp's client, with a
# future per message, would make the client side the bottleneck on a small machine.


COMMENT_MARK = b'{"type":"comment"'
PING = b"\x89\x00"  # aiohttp's heartbeat: an empty ping
PONG = b"\x8a\x80\x00\x00\x00\x00"  # empty, masked with a zero key


class RawReader(asyncio.Protocol):
    """Counts comment frames; sampled readers parse every frame and record latencies.

    Unsampled readers count the comment marker with ``bytes.count`` (it can only start a
    frame: inside JSON strings quotes are escaped), which keeps the client side cheap.
    """

    def __init__(self, stats: dict[str, Any], sample: bool) -> None:
        self.stats = stats
        self.sample = sample
        self.buf = bytearray()
        self.carry = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(RuntimeError(bytes(self.buf[:200]).decode(errors="replace")))
                return
            data = bytes(self.buf[end + 4:])
            self.buf.clear()
            self.upgraded.set_result(None)
        if self.sample:
            self._parse(data)
            return
        chunk = self.carry + data
        if self.stats["measuring"]:
            self.stats["received"] += chunk.count(COMMENT_MARK)
        if PING in chunk and self.transport is not None:
            self.transport.write(PONG)
        self.carry = chunk[-(len(COMMENT_MARK) - 1):]

    def _parse(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, size = 0, len(buf)
        stats = self.stats
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            end = pos + head + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1 and stats["measuring"] and buf.startswith(COMMENT_MARK, pos + head):
                stats["received"] += 1
                frame = json.loads(bytes(buf[pos + head:end]))
                sent = float(frame["text"].split()[1])
                stats["latencies"].append((sent, time.time() - sent))
            elif opcode == 9 and self.transport is not None:
                self.transport.write(PONG)
            pos = end
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed during handshake"))
        elif self.stats["measuring"]:
            self.stats["closed"] += 1


def reader_worker(host: str, port: int, path: str, count: int, index: int, ready: Any, start: Any, stop: Any,
                  results: Any) -> None:
    raise_nofile(count + 256)
    try:  # the client side's cost is mostly per read event: uvloop makes it cheaper
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    results.put(asyncio.run(_readers(host, port, path, count, index, ready, start, stop)))


async def _readers(host: str, port: int, path: str, count: int, index: int, ready: Any, start: Any,
                   stop: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {"received": 0, "latencies": [], "closed": 0, "measuring": False}
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()

    async def open_one(i: int) -> asyncio.Transport:
        async with gate:
            transport, proto = await loop.create_connection(
                lambda: RawReader(stats, (index + i) % SAMPLE_EVERY == 0), host, port)
            transport.write(request)
            await proto.upgraded
            return transport

    transports = await asyncio.gather(*[open_one(i) for i in range(count)])
    ready.release()
    await loop.run_in_executor(None, start.wait)
    stats["measuring"] = True
    cpu0 = time.process_time()
    await loop.run_in_executor(None, stop.wait)
    stats["measuring"] = False
    stats["cpu"] = time.process_time() - cpu0
    for t in transports:
        t.close()
    await asyncio.sleep(0.1)
    return {k: stats[k] for k in ("received", "latencies", "closed", "cpu")}


# -- posters (main process) ---------------------------------------------------------


async def post_comments(url: str, tokens: list[str], rate: float, seconds: float) -> int:
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(url, headers={"Authorization": f"Bearer {t}"}) for t in tokens]
        drains = [asyncio.ensure_future(_drain(ws)) for ws in sockets]
        interval = 1.0 / rate
        total = max(1, int(rate * seconds))
        begin = time.monotonic()
        for sent in range(total):
            delay = begin + sent * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ws = sockets[sent % len(sockets)]
            await ws.send_str(json.dumps({"type": "comment", "text": f"bench {time.time():.6f} {sent}"}))
        await asyncio.sleep(max(0.0, begin + total * interval - time.monotonic()))
        for d in drains:
            d.cancel()
        for ws in sockets:
            await ws.close()
        return total


async def _drain(ws: Any) -> None:
    errors = 0
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT and msg.data.startswith('{"type":"error"'):
            errors += 1
            if errors <= 3:
                print("poster got", msg.data, file=sys.stderr)


async def setup_room(base: str, posters: int) -> tuple[str, list[str]]:
    async with aiohttp.ClientSession() as http:
        owner = await register(http, base, "bench_owner")
        async with http.post(base + "/api/v1/rooms", json={"title": "Bench room"},
                             headers={"Authorization": f"Bearer {owner}"}) as r:
            assert r.status == 201, await r.text()
            slug = str((await r.json())["room"]["slug"])
        tokens = [await register(http, base, f"bench_poster_{i}") for i in range(posters)]
    return slug, tokens


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000, help="reading sockets (K)")
    parser.add_argument("--rate", type=float, default=50.0, help="comments per second (M)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration")
    parser.add_argument("--posters", type=int, default=10, help="posting users")
    parser.add_argument("--workers", type=int, default=max(1, min(4, (os.cpu_count() or 2))),
                        help="reader processes")
    parser.add_argument("--uvloop", action="store_true", help="let the server use uvloop (server.uvloop)")
    parser.add_argument("--timeline", action="store_true", help="print latency per second of sending")
    parser.add_argument("--profile", metavar="FILE", help="run the server under cProfile, stats to FILE")
    args = parser.parse_args()
    raise_nofile(args.clients + 1024)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="livecast-bench-") as data_dir:
        server = start_server(data_dir, port, args.clients, args.profile, args.uvloop)
        try:
            wait_ready(base, server)
            slug, tokens = asyncio.run(setup_room(base, args.posters))
            run(args, server, port, slug, tokens)
        finally:
            server.terminate()
            server.wait(timeout=30)


def run(args: argparse.Namespace, server: subprocess.Popen[bytes], port: int, slug: str,
        tokens: list[str]) -> None:
    base = f"http://127.0.0.1:{port}"
    path = f"/api/v1/rooms/{slug}/chat"
    url = f"ws://127.0.0.1:{port}{path}"
    ctx = mp.get_context("spawn")
    ready, start, stop, results = ctx.Semaphore(0), ctx.Event(), ctx.Event(), ctx.Queue()
    shares = [args.clients // args.workers + (i < args.clients % args.workers) for i in range(args.workers)]
    offset = 0
    procs = []
    for share in shares:
        p = ctx.Process(target=reader_worker,
                        args=("127.0.0.1", port, path, share, offset, ready, start, stop, results))
        p.start()
        procs.append(p)
        offset += share
    t0 = time.monotonic()
    for _ in procs:
        ready.acquire()
    connect_s = time.monotonic() - t0
    with urllib.request.urlopen(f"{base}/api/v1/rooms/{slug}") as r:
        viewers = json.load(r)["room"]["viewers"]
    print(f"{args.clients} readers connected in {connect_s:.1f} s over {args.workers} processes; "
          f"room shows {viewers} viewers; server RSS {rss_mib(server.pid):.0f} MiB")

    start.set()
    time.sleep(0.5)
    cpu0, busy0, w0 = cpu_seconds(server.pid), machine_busy(), time.monotonic()
    sent = asyncio.run(post_comments(url, tokens, args.rate, args.seconds))
    window = time.monotonic() - w0
    cpu1, busy1 = cpu_seconds(server.pid), machine_busy()
    time.sleep(2.0)  # let the last comments arrive
    stop.set()
    stats = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)

    received = sum(s["received"] for s in stats)
    samples = sorted(x for s in stats for x in s["latencies"])
    latencies = [lat for _, lat in samples]
    expected = sent * args.clients
    print(f"sent {sent} comments in {window:.1f} s ({sent / window:.1f}/s) to {args.clients} readers")
    print(f"delivered {received} of {expected} ({100 * received / max(1, expected):.2f} %), "
          f"{received / window:,.0f} messages/s")
    print(f"latency (send -> reader, {len(latencies)} samples): p50 {1000 * pct(latencies, 0.5):.1f} ms, "
          f"p99 {1000 * pct(latencies, 0.99):.1f} ms, max {1000 * max(latencies, default=float('nan')):.1f} ms"
          + (f", mean {1000 * statistics.fmean(latencies):.1f} ms" if latencies else ""))
    print(f"server CPU {cpu1 - cpu0:.2f} s over {window:.1f} s = {100 * (cpu1 - cpu0) / window:.0f} % of one core; "
          f"RSS {rss_mib(server.pid):.0f} MiB; readers closed by the server: {sum(s['closed'] for s in stats)}")
    reader_cpu = sum(s["cpu"] for s in stats)
    machine = 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    print(f"reader processes CPU {reader_cpu:.2f} s (over {window + 2:.1f} s); whole machine "
          f"{machine:.0f} % busy ({os.cpu_count()} CPUs) while sending")
    if args.timeline and samples:
        first = samples[0][0]
        by_second: dict[int, list[float]] = {}
        for sent, lat in samples:
            by_second.setdefault(int(sent - first), []).append(lat)
        for second, lats in sorted(by_second.items()):
            print(f"  t={second:3d} s  p50 {1000 * pct(lats, 0.5):7.1f} ms  max {1000 * max(lats):7.1f} ms")


if __name__ == "__main__":
    main()
