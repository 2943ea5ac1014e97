"""Room-list load: N rooms, K clients listing ``GET /api/v1/rooms`` in a loop, while a
prober measures ``/healthz`` latency (issue #13, finding 7: 5,000 rooms, four listing
clients pushed /healthz p99 to 260 ms and one answer was 11 MB).

The server runs as its own process on a fresh data dir. ``--tree`` runs another source
tree's code (e.g. a checkout before pagination) for a before/after comparison.

    python bench/lists.py --rooms 5000 --clients 4 --seconds 10

Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
from benchnode import free_port, spawn_server, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password 1"



def start_server(tree: Path, data_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LIVECAST_AUTH_BCRYPT_ROUNDS": "4", "LIVECAST_LOG_LEVEL": "warning",
           "LIVECAST_SERVER_UVLOOP": "0", "PYTHONPATH": str(tree)}
    if (tree / "livecast" / "api" / "paging.py").exists():
        env["LIVECAST_ROOMS_MAX_PER_USER"] = "0"  # one account creates all the rooms, as in the report
    return spawn_server(tree, env, data_dir, port)




async def create_rooms(http: aiohttp.ClientSession, base: str, count: int) -> dict[str, str]:
    async with http.post(base + "/api/v1/auth/register", json={"username": "flooder", "password": PASSWORD}) as r:
        assert r.status == 201, await r.text()
    async with http.post(base + "/api/v1/auth/login", json={"username": "flooder", "password": PASSWORD}) as r:
        headers = {"Authorization": f"Bearer {(await r.json())['token']}"}
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem, http.post(base + "/api/v1/rooms", json={"title": f"Flood room {i}"}, headers=headers) as r:
            assert r.status == 201, await r.text()

    await asyncio.gather(*(one(i) for i in range(count)))
    return headers


async def lister(http: aiohttp.ClientSession, base: str, stop: asyncio.Event, sizes: list[int]) -> None:
    while not stop.is_set():
        async with http.get(base + "/api/v1/rooms") as r:
            sizes.append(len(await r.read()))


async def prober(http: aiohttp.ClientSession, base: str, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        async with http.get(base + "/healthz") as r:
            await r.read()
        out.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.01)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(base: str, args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as http:
        t0 = time.perf_counter()
        await create_rooms(http, base, args.rooms)
        print(f"created {args.rooms} rooms in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        async with http.get(base + "/api/v1/rooms") as r:
            body = await r.read()
        print(f"one GET /api/v1/rooms: {len(body) / 1024:.1f} KiB in {(time.perf_counter() - t0) * 1000:.1f} ms")
        quiet: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(prober(http, base, stop, quiet))
        await asyncio.sleep(min(3.0, args.seconds))
        stop.set()
        await probe
        loaded: list[float] = []
        sizes: list[int] = []
        stop = asyncio.Event()
        tasks = [asyncio.create_task(lister(http, base, stop, sizes)) for _ in range(args.clients)]
        probe = asyncio.create_task(prober(http, base, stop, loaded))
        await asyncio.sleep(args.seconds)
        stop.set()
        await asyncio.gather(probe, *tasks)
    print(f"/healthz idle:   p50 {statistics.median(quiet):.1f} ms  p99 {pct(quiet, 0.99):.1f} ms  (n={len(quiet)})")
    print(f"/healthz while {args.clients} clients list: p50 {statistics.median(loaded):.1f} ms"
          f"  p99 {pct(loaded, 0.99):.1f} ms  (n={len(loaded)})")
    print(f"listing: {len(sizes) / args.seconds:.0f} answers/s, {statistics.mean(sizes) / 1024:.1f} KiB each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree to run the server from")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        server = start_server(args.tree.resolve(), data_dir, port)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base, server)
            asyncio.run(measure(base, args))
        finally:
            server.terminate()
            server.wait(15)


if __name__ == "__main__":
    main()
