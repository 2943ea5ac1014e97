"""RTMP abuse benchmark: what unauthenticated peers can still do to a LiveCast process.

1. Lock-out: N sockets from one address (and then from many) finish the handshake and
   send a ping every few seconds; meanwhile a valid-key publisher connects K times from
   127.0.0.1. Prints how many attacker sockets the server kept, and the publisher's time
   from TCP connect to ``NetStream.Publish.Start`` (or its refusal).
2. Memory: 60 connections from 60 addresses keep starting 16 MiB messages on 8 chunk
   streams and never finish them, reconnecting when closed. Prints the server's RSS
   before, at peak, and after.

    python bench/abuse_rtmp.py --sockets 300 --publishes 20 --attack-seconds 10

The attackers bind to 127.x.y.z source addresses (all loopback on Linux). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import ingest  # noqa: E402
from rtmp_craft import (  # noqa: E402
    HANDSHAKE_SIZE,
    c0c1,
    c2,
    chunk,
    command_message,
    ping_request,
    set_chunk_size,
)

from livecast.rtmp.amf import decode_values  # noqa: E402
from livecast.rtmp.chunks import ChunkReader  # noqa: E402

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def handshake(port: int, source: str) -> Conn | None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        writer.write(c0c1())
        s0s1s2 = await asyncio.wait_for(reader.readexactly(1 + 2 * HANDSHAKE_SIZE), 5)
        writer.write(c2(s0s1s2[1:1 + HANDSHAKE_SIZE]))
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        return None
    return reader, writer


async def timed_publish(port: int, key: str) -> float | None:
    """Seconds from connect to NetStream.Publish.Start; None if refused or closed."""
    start = time.perf_counter()
    conn = await handshake(port, "127.0.0.1")
    if conn is None:
        return None
    reader, writer = conn
    try:
        writer.write(command_message("connect", 1, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"})
                     + command_message("createStream", 2, None)
                     + command_message("publish", 3, None, key, "live", stream_id=1, csid=8))
        parser = ChunkReader(max_chunk_size=0x7FFFFFFF)
        async with asyncio.timeout(10):
            while data := await reader.read(65536):
                for msg in parser.feed(data):
                    values = decode_values(msg.payload) if msg.type_id == 20 else []
                    if values and values[0] == "onStatus":
                        ok = values[3]["code"] == "NetStream.Publish.Start"
                        return time.perf_counter() - start if ok else None
        return None
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()


def server_counts(server: ingest.LivecastServer) -> str:
    """The pending gauge and the non-zero refusal counters from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/metrics") as r:
        text = r.read().decode()
    found = re.findall(r'^livecast_rtmp_(pending_connections|refused_total\{reason="(\w+)"\}) (\S+)$', text,
                       re.MULTILINE)
    return ", ".join(f"{reason or name} {float(v):.0f}" for name, reason, v in found if float(v))


async def lockout(port: int, key: str, sources: list[str], publishes: int) -> None:
    conns = [await handshake(port, source) for source in sources]
    held = [c for c in conns if c is not None]

    async def pings() -> None:
        while True:
            for _, writer in held:
                with contextlib.suppress(OSError):
                    writer.write(ping_request(0))
            await asyncio.sleep(3.0)

    task = asyncio.create_task(pings())
    times = [await timed_publish(port, key) for _ in range(publishes)]
    task.cancel()
    for _, writer in held:
        writer.close()
    ok = sorted(t * 1000 for t in times if t is not None)
    summary = (f"p50 {statistics.median(ok):.1f} ms, max {ok[-1]:.1f} ms" if ok else "-")
    print(f"  {len(sources)} attacker sockets from {len(set(sources))} address(es): {len(held)} kept after the "
          f"handshake; publisher: {len(ok)}/{publishes} accepted, {summary}")


async def partial_attacker(port: int, source: str, stop: asyncio.Event) -> None:
    first = set_chunk_size(65536) + b"".join(
        chunk(0, csid, bytes(65536), length=0xFFFFFF - 1, type_id=9, stream_id=1) for csid in range(4, 12))
    more = b"".join(chunk(3, csid, bytes(65536)) for csid in range(4, 12))
    while not stop.is_set():
        conn = await handshake(port, source)
        if conn is None:
            await asyncio.sleep(0.1)
            continue
        _, writer = conn
        try:
            writer.write(first)
            for _ in range(60):  # ~30 MiB
                writer.write(more)
                await asyncio.wait_for(writer.drain(), 2.0)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()


async def memory(server: ingest.LivecastServer, seconds: float) -> None:
    before = peak = ingest.proc_rss_kib(server.pids)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(partial_attacker(server.rtmp, f"127.0.2.{i + 1}", stop)) for i in range(60)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, ingest.proc_rss_kib(server.pids))
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(6.0)  # the sweeper's memory hand-back runs at most every 5 s
    after = ingest.proc_rss_kib(server.pids)
    print(f"  RSS before {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB (+{(peak - before) / 1024:.1f}), "
          f"6 s after {after / 1024:.0f} MiB (+{(after - before) / 1024:.1f})")


async def run(args: argparse.Namespace) -> None:
    # The default ingest settings (bench/ingest.py raises max_publishers for its load).
    server = ingest.LivecastServer(segment=2.0, container="mpegts",
                                   env_overrides={"LIVECAST_INGEST_MAX_PUBLISHERS": "100"})
    try:
        key = server.urls(1)[0].rsplit("/", 1)[1]
        print("lock-out:")
        await lockout(server.rtmp, key, ["127.0.0.2"] * args.sockets, args.publishes)
        print("    server:", server_counts(server))
        await asyncio.sleep(1.0)
        await lockout(server.rtmp, key, [f"127.0.1.{i // 4 + 1}" for i in range(args.sockets)], args.publishes)
        print("    server:", server_counts(server))
        if args.attack_seconds > 0:
            print("partial-message memory attack, 60 connections:")
            await memory(server, args.attack_seconds)
            print("    server:", server_counts(server))
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sockets", type=int, default=300)
    ap.add_argument("--publishes", type=int, default=20)
    ap.add_argument("--attack-seconds", type=float, default=10.0, help="0 skips the memory attack")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
