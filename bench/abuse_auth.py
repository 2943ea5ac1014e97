"""Login latency under a registration flood (issue #13, finding 3).

A ``livecast serve`` child at the default bcrypt cost (12) trusts 127.0.0.1 as a proxy, so
each flooder can present a new X-Forwarded-For address per request and is not simply
refused by the per-address registration limit: the flood reaches the bcrypt pool. While
``--flooders`` tasks register new accounts back to back, one legitimate user logs in again
and again; the figures are that user's login latencies (and, first, without the flood).

    python bench/abuse_auth.py --flooders 16 --seconds 15
    python bench/abuse_auth.py --root /path/to/older/tree     # the same load on other code

Not a test: it prints figures for the issue (target: login under 0.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from benchnode import free_port, spawn_server, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password 1"
USER = "legit_user"



def start_server(root: Path, data_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(root), "LIVECAST_LOG_LEVEL": "error",
           "LIVECAST_AUTH_BCRYPT_ROUNDS": "12", "LIVECAST_SERVER_TRUSTED_PROXIES": "127.0.0.1",
           "LIVECAST_SERVER_UVLOOP": "0"}
    return spawn_server(root, env, data_dir, port)




async def login_once(http: aiohttp.ClientSession, base: str) -> float:
    started = time.perf_counter()
    async with http.post(base + "/api/v1/auth/login", json={"username": USER, "password": PASSWORD},
                         headers={"X-Forwarded-For": "192.0.2.1"}) as r:
        await r.read()
        if r.status != 200:
            raise SystemExit(f"legitimate login refused: {r.status} {await r.text()}")
    return time.perf_counter() - started


async def flooder(http: aiohttp.ClientSession, base: str, names: itertools.count[int],
                  stop: asyncio.Event, outcome: Counter[int]) -> None:
    while not stop.is_set():
        n = next(names)
        address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        async with http.post(base + "/api/v1/auth/register",
                             json={"username": f"flood{n}", "password": PASSWORD},
                             headers={"X-Forwarded-For": address}) as r:
            await r.read()
            outcome[r.status] += 1
            if r.status in (429, 503):
                await asyncio.sleep(min(1.0, float(r.headers.get("Retry-After", "1"))))


def describe(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (f"{label}: n={len(samples)} p50={statistics.median(samples) * 1000:.0f} ms "
            f"p90={p90 * 1000:.0f} ms max={max(samples) * 1000:.0f} ms")


def bare_hash_seconds() -> float:
    """One cost-12 bcrypt hash in this process: what the machine gives right now (shared CPUs)."""
    import bcrypt

    started = time.perf_counter()
    bcrypt.hashpw(b"calibration", bcrypt.gensalt(12))
    return time.perf_counter() - started


async def measure(base: str, flooders: int, seconds: float) -> None:
    print(f"one bare bcrypt hash at cost 12 here and now: {bare_hash_seconds() * 1000:.0f} ms")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async with http.post(base + "/api/v1/auth/register", json={"username": USER, "password": PASSWORD}) as r:
            assert r.status == 201, await r.text()
        quiet = [await login_once(http, base) for _ in range(5)]
        print(describe("login, no flood      ", quiet))
        stop, outcome, names = asyncio.Event(), Counter[int](), itertools.count(1)
        tasks = [asyncio.create_task(flooder(http, base, names, stop, outcome)) for _ in range(flooders)]
        await asyncio.sleep(1.0)  # let the flood fill the pool first
        loaded: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            loaded.append(await login_once(http, base))
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
    print(describe(f"login, {flooders} flooders", loaded))
    print(f"one bare bcrypt hash at cost 12 after the run: {bare_hash_seconds() * 1000:.0f} ms")
    print("registration answers during the flood: " + ", ".join(f"{k}: {v}" for k, v in sorted(outcome.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flooders", type=int, default=16, help="parallel registration loops")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long the legitimate user keeps logging in")
    parser.add_argument("--root", type=Path, default=ROOT, help="the source tree to run the server from")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="lc-abuse-auth-") as data_dir:
        proc = start_server(args.root, data_dir, port)
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc)
            asyncio.run(measure(f"http://127.0.0.1:{port}", args.flooders, args.seconds))
        finally:
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    main()
