"""Issue #15's figures. ``api``: API requests/s (login, room read, an authenticated
``/api/v1/me``) against one ``livecast serve`` child on SQLite versus on PostgreSQL (a
throw-away PostgreSQL 15 started here, fsync on), same client, same concurrency.

    python bench/failover.py api --seconds 5 --concurrency 32

Login is bcrypt-bound: the server runs with ``auth.bcrypt_rounds`` = ``--bcrypt-rounds``
(4 by default, to see the database's share; production uses 12). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from benchnode import free_port, spawn_server, wait_ready
from pgserver import PgServer

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password 1"


async def setup(base: str) -> tuple[str, str]:
    """A streamer with one room: (room slug, bearer token)."""
    async with aiohttp.ClientSession() as http:
        await http.post(base + "/api/v1/auth/register", json={"username": "bench", "password": PASSWORD})
        async with http.post(base + "/api/v1/auth/login", json={"username": "bench", "password": PASSWORD}) as r:
            token = (await r.json())["token"]
        async with http.post(base + "/api/v1/rooms", json={"title": "Bench room"},
                             headers={"Authorization": f"Bearer {token}"}) as r:
            slug = (await r.json())["room"]["slug"]
    return slug, token


async def rate(call: Callable[[aiohttp.ClientSession], Awaitable[int]], seconds: float, concurrency: int) -> float:
    """Requests/s of ``call`` from ``concurrency`` loops for ``seconds`` (non-2xx answers abort)."""
    done = 0
    deadline = time.monotonic() + seconds

    async def loop(http: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            status = await call(http)
            if status >= 300:
                raise SystemExit(f"request failed with {status}")
            done += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.monotonic()
        await asyncio.gather(*(loop(http) for _ in range(concurrency)))
        return done / (time.monotonic() - start)


async def measure(base: str, seconds: float, concurrency: int) -> dict[str, float]:
    slug, token = await setup(base)
    auth = {"Authorization": f"Bearer {token}"}

    async def login(http: aiohttp.ClientSession) -> int:
        async with http.post(base + "/api/v1/auth/login", json={"username": "bench", "password": PASSWORD}) as r:
            await r.read()
            return r.status

    async def room(http: aiohttp.ClientSession) -> int:
        async with http.get(f"{base}/api/v1/rooms/{slug}") as r:
            await r.read()
            return r.status

    async def me(http: aiohttp.ClientSession) -> int:
        async with http.get(base + "/api/v1/me", headers=auth) as r:
            await r.read()
            return r.status

    return {name: await rate(call, seconds, concurrency)
            for name, call in (("login", login), ("room read", room), ("me (token)", me))}


def run_node(database_url: str, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "LIVECAST_DATABASE_URL": database_url, "LIVECAST_AUTH_BCRYPT_ROUNDS": str(args.bcrypt_rounds),
           "LIVECAST_AUTH_LOGIN_REQUESTS_PER_CLIENT": "1000000", "LIVECAST_AUTH_LOGIN_ATTEMPTS_PER_USER": "1000000",
           "LIVECAST_AUTH_LOGIN_ATTEMPTS_PER_CLIENT": "1000000", "LIVECAST_LOG_LEVEL": "warning",
           "PYTHONPATH": str(ROOT)}
    proc = spawn_server(ROOT, env, tempfile.mkdtemp(prefix="livecast-bench-"), port)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        return asyncio.run(measure(f"http://127.0.0.1:{port}", args.seconds, args.concurrency))
    finally:
        proc.terminate()
        proc.wait(15)


def api(args: argparse.Namespace) -> None:
    results = {"SQLite": run_node("", args)}
    pg = PgServer()
    pg.start()
    try:
        results["PostgreSQL"] = run_node(pg.create_database("bench"), args)
    finally:
        pg.stop()
    names = list(results["SQLite"])
    print(f"{'requests/s':<14}" + "".join(f"{n:>14}" for n in names))
    for backend, figures in results.items():
        print(f"{backend:<14}" + "".join(f"{figures[n]:>14.0f}" for n in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("api", help="API requests/s on SQLite versus PostgreSQL")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--bcrypt-rounds", type=int, default=4)
    args = parser.parse_args()
    if args.command == "api":
        api(args)


if __name__ == "__main__":
    main()
