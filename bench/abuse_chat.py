"""Ping flood against chat: do the other viewers still get their comments on time?

A server runs as its own process (``python -m livecast serve`` on a fresh data dir).
F flooders (separate processes, raw sockets, each from its own loopback address
127.0.1.x) send masked WebSocket pings as fast as they can; with ``--reconnect`` a
flooder that is closed (or refused) connects again at once. N normal
clients read the room with aiohttp while one logged-in poster sends R comments a second,
each carrying its send time. Printed: the normal clients' comment delivery p50/p99/max,
how many comments arrived, and, per flooder, its connections and how and when each ended.

    python bench/abuse_chat.py --flooders 4 --clients 20 --rate 20 --seconds 10
    python bench/abuse_chat.py --no-limit ...   # the frame budget set out of reach (as before)

The per-address socket cap is off here (every client is on loopback). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from benchnode import free_port, spawn_server, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password 1"
PING = b"\x89\x80\x00\x00\x00\x00"  # an empty ping, masked with a zero key
PINGS_PER_WRITE = 2000



def start_server(data_dir: str, port: int, no_limit: bool, abuse_block: float | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LIVECAST_AUTH_BCRYPT_ROUNDS": "4",
        "LIVECAST_CHAT_RATE_COUNT": "1000",
        "LIVECAST_CHAT_RATE_SECONDS": "1",
        "LIVECAST_CHAT_MAX_SOCKETS_PER_ADDRESS": "0",
        "LIVECAST_LOG_LEVEL": "warning",
        "LIVECAST_SERVER_UVLOOP": "0",
        "PYTHONPATH": str(ROOT),
    }
    if no_limit:
        env["LIVECAST_CHAT_FRAMES_PER_SECOND"] = "1e12"
        env["LIVECAST_CHAT_FRAME_BURST"] = str(10**12)
        abuse_block = 0.0
    if abuse_block is not None:
        env["LIVECAST_CHAT_ABUSE_BLOCK_SECONDS"] = str(abuse_block)
    return spawn_server(ROOT, env, data_dir, port)




# -- flooders (separate processes) ---------------------------------------------------


async def _flood_once(port: int, slug: str, source: str, until: float, stats: dict[str, Any]) -> None:
    """One connection: pings until the server ends it (or time is up). Its end is recorded
    as the close code the server sent, "reset" (the server closed with pings still unread,
    so TCP answered with a reset) or "eof"; with the seconds it lasted."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /api/v1/rooms/{slug}/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        stats["connections"].append((f"http {head[9:12].decode()}", 0.0))
        writer.close()
        return
    opened = time.time()
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def watch() -> None:
        end = "eof"
        try:
            while True:
                head = await reader.readexactly(2)
                size = head[1] & 0x7F
                if size >= 126:
                    size = int.from_bytes(await reader.readexactly(2 if size == 126 else 8), "big")
                payload = await reader.readexactly(size)
                if head[0] & 0x0F == 8:
                    end = str(int.from_bytes(payload[:2], "big"))
                    break
        except asyncio.IncompleteReadError:
            end = "eof"
        except ConnectionError:
            end = "reset"
        if not ended.done():
            ended.set_result(end)

    watcher = asyncio.create_task(watch())
    burst = PING * PINGS_PER_WRITE
    try:
        while not ended.done() and not writer.is_closing() and time.time() < until:
            writer.write(burst)
            await writer.drain()
    except ConnectionError:
        pass
    try:
        end = await asyncio.wait_for(asyncio.shield(ended), 3)
    except TimeoutError:
        end = "open at the end"
    watcher.cancel()
    writer.close()
    stats["connections"].append((end, round(time.time() - opened, 3)))


def flooder(port: int, slug: str, source: str, until: float, reconnect: bool, out: Any) -> None:
    stats: dict[str, Any] = {"connections": []}

    async def main() -> None:
        while time.time() < until:
            try:
                await _flood_once(port, slug, source, until, stats)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            if not reconnect:
                return

    asyncio.run(main())
    out.put(stats)


# -- normal clients ----------------------------------------------------------------------


async def register(http: aiohttp.ClientSession, base: str, username: str) -> str:
    async with http.post(base + "/api/v1/auth/register", json={"username": username, "password": PASSWORD}) as r:
        assert r.status == 201, await r.text()
    async with http.post(base + "/api/v1/auth/login", json={"username": username, "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        token = str((await r.json())["token"])
    http.cookie_jar.clear()
    return token


async def read_comments(ws: aiohttp.ClientWebSocketResponse, latencies: list[float], counts: list[int]) -> None:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        frame = json.loads(msg.data)
        if frame["type"] == "comment":
            latencies.append(time.time() - float(frame["text"].split()[1]))
            counts[0] += 1


async def run(args: argparse.Namespace) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        server = start_server(data_dir, port, args.no_limit, args.abuse_block)
        try:
            wait_ready(base, server)
            await measure(args, base, port)
        finally:
            server.terminate()
            server.wait(10)


async def measure(args: argparse.Namespace, base: str, port: int) -> None:
    async with aiohttp.ClientSession() as http:
        token = await register(http, base, "poster")
        auth = {"Authorization": f"Bearer {token}"}
        async with http.post(base + "/api/v1/rooms", json={"title": "Abuse bench"}, headers=auth) as r:
            slug = (await r.json())["room"]["slug"]
        poster = await http.ws_connect(f"{base}/api/v1/rooms/{slug}/chat", headers=auth)
        readers = [await http.ws_connect(f"{base}/api/v1/rooms/{slug}/chat") for _ in range(args.clients)]
        latencies: list[float] = []
        counts = [0]
        tasks = [asyncio.create_task(read_comments(ws, latencies, counts)) for ws in readers]
        until = time.time() + args.seconds + 1
        ctx = mp.get_context("spawn")
        out: Any = ctx.Queue()
        procs = [ctx.Process(target=flooder, args=(port, slug, f"127.0.1.{i + 1}", until, args.reconnect, out))
                 for i in range(args.flooders)]
        for proc in procs:
            proc.start()
        await asyncio.sleep(0.5)  # the flood is on
        sent, interval = 0, 1.0 / args.rate
        start = time.monotonic()
        while time.monotonic() - start < args.seconds:
            await poster.send_json({"type": "comment", "text": f"t {time.time():.6f}"})
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * interval - time.monotonic()))
        await asyncio.sleep(1.0)
        flood = [out.get(timeout=30) for _ in procs]
        for proc in procs:
            proc.join(10)
        for ws in (poster, *readers):
            await ws.close()
        for task in tasks:
            task.cancel()
    report(args, sent, counts[0], latencies, flood)


def report(args: argparse.Namespace, sent: int, received: int, latencies: list[float],
           flood: list[dict[str, Any]]) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p = statistics.quantiles(ms, n=100) if len(ms) >= 2 else ms * 99
    block = "server default" if args.abuse_block is None else f"{args.abuse_block} s"
    print(f"frame budget: {'off (--no-limit)' if args.no_limit else 'on (defaults)'}; abuse block: {block};"
          f" flooders: {args.flooders}"
          f"{' reconnecting' if args.reconnect else ''}; clients: {args.clients}; {args.rate} comments/s"
          f" for {args.seconds} s")
    print(f"comments delivered: {received} of {sent * args.clients}")
    if ms:
        print(f"delivery latency: p50 {p[49]:.1f} ms, p99 {p[98]:.1f} ms, max {ms[-1]:.1f} ms")
    for i, stats in enumerate(flood):
        ends = stats["connections"]
        upgraded = [(end, secs) for end, secs in ends if not end.startswith("http")]
        shown = ", ".join(f"{end} after {secs} s" for end, secs in upgraded[:3]) + (" ..." if len(upgraded) > 3 else "")
        refused = Counter(end for end, _ in ends if end.startswith("http"))
        print(f"flooder {i}: {len(upgraded)} WebSocket(s): {shown}; refused before the upgrade: {dict(refused) or 0}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0, help="comments a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reconnect", action="store_true", help="flooders reconnect when closed")
    parser.add_argument("--no-limit", action="store_true", help="set the frame budget out of reach (and no block)")
    parser.add_argument("--abuse-block", type=float, default=None,
                        help="chat.abuse_block_seconds (default: the server's)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
