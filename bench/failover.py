"""Issue #15's figures.

``failover``: origins A and B (PostgreSQL and Redis shared, started here), edge E listing
both; ffmpeg pushes a real-time 320x240 clip (1 s GOP, 1 s segments) to one origin; that
origin is SIGKILLed and ffmpeg is restarted against the other one at once (what OBS's
reconnect through a balancer does). A real player watches through E all along: headless
Chromium (Debian's ``chromium``, through Playwright) on E's room page with hls.js. Per
round: kill -> publisher accepted by the other origin (the room is live there), -> first
new segment in E's playlist, -> a client polling E gets that segment's bytes, -> the
player advancing again: ``video.currentTime`` passes the end of what it had buffered when
the origin died (it shows the new origin's media). The killed origin is restarted for the
next round.

    python bench/failover.py failover --rounds 5

``api``: API requests/s (login, room read, an authenticated ``/api/v1/me``) against one
``livecast serve`` child on SQLite versus on PostgreSQL (a throw-away PostgreSQL 15 started
here, fsync on), same client, same concurrency.

    python bench/failover.py api --seconds 5 --concurrency 32

Login is bcrypt-bound: the server runs with ``auth.bcrypt_rounds`` = ``--bcrypt-rounds``
(4 by default, to see the database's share; production uses 12). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import playwright.async_api as playwright_api
from benchnode import free_port, spawn_server, wait_ready
from pgserver import PgServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from procs import NodeProcess, RedisProcess, node_sections  # noqa: E402  (the tests' process launcher)
from test_web_ui import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (the browser tests' Chromium)

PLAYER = """() => { const v = document.getElementById('video'), b = v.buffered;
    return {time: v.currentTime, buffered: b.length ? b.end(b.length - 1) : 0,
            state: document.getElementById('player').dataset.state}; }"""
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


def make_clip(path: Path) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", "30", "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-keyint_min", "30",
                    "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", str(path)], check=True)


async def push(clip: Path, origin: NodeProcess, key: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "quiet", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy",
        "-f", "flv", f"rtmp://127.0.0.1:{origin.rtmp_port}/live/{key}", stdin=asyncio.subprocess.DEVNULL)


def listed(text: str) -> list[tuple[int, str]]:
    m = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    return [(int(m.group(1)) + i, uri) for i, uri in enumerate(uris)] if m else []


async def until(check: Any, timeout: float = 60.0) -> float:
    """Seconds (monotonic clock) at which ``await check()`` first holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise SystemExit("timed out")


async def player(page: Any) -> dict[str, Any]:
    status: dict[str, Any] = await page.evaluate(PLAYER)
    return status


async def failover_round(http: aiohttp.ClientSession, browser: Any, clip: Path, live: NodeProcess,
                         other: NodeProcess, edge: NodeProcess, slug: str, key: str) -> tuple[float, ...]:
    publisher = await push(clip, live, key)
    newest = 0

    async def edge_has(more: int) -> bool:
        nonlocal newest
        async with http.get(edge.url(f"/hls/{slug}/index.m3u8")) as r:
            items = listed(await r.text()) if r.status == 200 else []
        if items and items[-1][0] >= more:
            newest = items[-1][0]
            return True
        return False

    await until(lambda: edge_has(newest + 3))
    page = await browser.new_page()
    await page.goto(edge.url(f"/r/{slug}?player=hls.js"))
    start = (await until_value(lambda: playing_from(page, 0.0)))["time"]
    await until_value(lambda: playing_from(page, start + 1.0))  # it plays
    await edge_has(0)  # the newest segment E lists now
    before = newest
    killed = time.monotonic()
    await live.kill()
    held = (await player(page))["buffered"]  # all of the dead origin's media it will ever get
    await stop(publisher)  # it may have ended already: its origin died under it
    publisher = await push(clip, other, key)

    async def other_live() -> bool:
        async with http.get(other.url(f"/api/v1/rooms/{slug}")) as r:
            # ``stream`` is the origin's own publisher (``live`` is the cluster's stored flag)
            return bool(r.status == 200 and (await r.json())["room"]["stream"] is not None)

    reconnected = await until(other_live)
    segment = await until(lambda: edge_has(before + 1))

    async def player_gets_it() -> bool:
        async with http.get(edge.url(f"/hls/{slug}/index.m3u8")) as r:
            items = listed(await r.text()) if r.status == 200 else []
        new = [uri for seq, uri in items if seq > before]
        if not new:
            return False
        async with http.get(edge.url(f"/hls/{slug}/{new[0]}")) as r:
            return r.status == 200 and len(await r.read()) > 0

    fetched = await until(player_gets_it)
    await until_value(lambda: playing_from(page, held))
    advanced = time.monotonic()
    await page.close()
    await stop(publisher)
    await live.start()  # back for the next round
    return reconnected - killed, segment - killed, fetched - killed, advanced - killed


async def stop(publisher: asyncio.subprocess.Process) -> None:
    if publisher.returncode is None:
        try:
            publisher.kill()
        except ProcessLookupError:
            pass  # exited between the check and the signal
    await publisher.wait()


async def playing_from(page: Any, past: float) -> dict[str, Any] | None:
    """The player's status once it plays beyond ``past`` seconds of media, else None."""
    status = await player(page)
    return status if status["state"] == "playing" and status["time"] > past else None


async def until_value(check: Any, timeout: float = 60.0) -> Any:
    """The first truthy value of ``await check()`` (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.02)
    raise SystemExit("timed out")


async def failover_bench(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="lc-failover-"))
    clip = work / "clip.flv"
    make_clip(clip)
    pg = PgServer()
    pg.start()
    redis = RedisProcess(work / "redis")
    await redis.start()
    nodes: list[NodeProcess] = []
    try:
        url = pg.create_database("failover")
        extra: dict[str, dict[str, Any]] = {
            "database": {"url": url}, "cluster": {"redis": redis.url, "lease_seconds": args.lease},
            "hls": {"segment_duration": 1.0, "window": 6}, "log": {"level": "warning"}}
        a = NodeProcess(work / "a", node_sections(work / "a" / "data", "origin", "", **extra))
        b = NodeProcess(work / "b", node_sections(work / "b" / "data", "origin", "", **extra))
        nodes.extend((a, b))
        await asyncio.gather(a.start(), b.start())
        edge = NodeProcess(work / "e", node_sections(work / "e" / "data", "edge", f"{a.base},{b.base}",
                                                     log={"level": "warning"}))
        nodes.append(edge)
        await edge.start()
        async with aiohttp.ClientSession() as http, playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            creds = {"username": "bench", "password": PASSWORD}
            await http.post(a.url("/api/v1/auth/register"), json=creds)
            async with http.post(a.url("/api/v1/auth/login"), json=creds) as r:
                token = (await r.json())["token"]
            async with http.post(a.url("/api/v1/rooms"), json={"title": "Failover"},
                                 headers={"Authorization": f"Bearer {token}"}) as r:
                room = (await r.json())["room"]
            rounds = []
            for i in range(args.rounds):
                live, other = (a, b) if i % 2 == 0 else (b, a)
                rounds.append(await failover_round(http, browser, clip, live, other, edge, room["slug"],
                                                   room["stream_key"]))
                print(f"round {i + 1}: reconnected {rounds[-1][0]:.2f} s, new segment at the edge "
                      f"{rounds[-1][1]:.2f} s, its bytes fetched {rounds[-1][2]:.2f} s, "
                      f"hls.js advancing again {rounds[-1][3]:.2f} s", flush=True)
            await browser.close()
    finally:
        for proc in reversed(nodes):
            await proc.stop()
        await redis.stop()
        pg.stop()
    for i, name in enumerate(("kill -> publisher reconnected", "kill -> new segment at the edge",
                              "kill -> its bytes fetched from E", "kill -> hls.js advancing again")):
        values = [r[i] for r in rounds]
        print(f"{name:<34} p50 {statistics.median(values):.2f} s   max {max(values):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("failover", help="five failovers: kill to reconnect, to new segment, to the player advancing")
    f.add_argument("--rounds", type=int, default=5)
    f.add_argument("--lease", type=float, default=5.0)
    p = sub.add_parser("api", help="API requests/s on SQLite versus PostgreSQL")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--bcrypt-rounds", type=int, default=4)
    args = parser.parse_args()
    if args.command == "api":
        api(args)
    else:
        asyncio.run(failover_bench(args))


if __name__ == "__main__":
    main()
