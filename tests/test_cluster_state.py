"""Cluster-state correctness across origins sharing PostgreSQL and Redis (separate OS
processes): the database's ``live`` flag survives the old origin's stop after a takeover,
and a publish refused for "server full" holds no lease."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from helpers import make_room, register_and_login, rtmp_url, segment_uris, wait_for, wait_playlist
from pg import PgCluster
from publisher import PublishFailed, start_publisher
from rtmp_attack import crafted_publish
from rtmp_craft import command_message
from test_chat_support import connect, post

from livecast.cluster.ratelimit import RedisLimits
from livecast.config import AuthSettings
from livecast.rooms import RoomService
from livecast.storage.postgres import PostgresDatabase
from livecast.storage.sqlite import SqliteDatabase
from livecast.users import UserService

FPS = 30
HLS = {"segment_duration": 1.0, "window": 6}
LEASE = 1.5


async def origins(cluster: Any, pg_server: PgCluster, name: str, hls: dict[str, Any] = HLS,
                  **extra: Any) -> tuple[Any, Any]:
    """A (with ``extra`` sections) and B sharing PostgreSQL and Redis."""
    redis = await cluster.redis()
    url = pg_server.url(await pg_server.create_database(name))
    sections = {"database": {"url": url}, "cluster": {"redis": redis.url, "lease_seconds": LEASE}, "hls": hls}
    a = await cluster.node("a", **sections, **extra)
    b = await cluster.node("b", **sections)
    return a, b


async def test_only_the_live_run_that_set_the_flag_clears_it(tmp_path: Path, pg_server: PgCluster) -> None:
    """On both backends: run "b" takes the room over from run "a"; a's late stop changes
    nothing, b's stop clears the flag (a conditional UPDATE, no read-then-write)."""
    backends: list[SqliteDatabase | PostgresDatabase] = [
        SqliteDatabase(tmp_path / "live.db"), PostgresDatabase(pg_server.url(await pg_server.create_database("runs")))]
    for db in backends:
        await db.open()
        users = UserService(db, AuthSettings(bcrypt_rounds=4))
        try:
            owner = await users.create_user("streamer", "pw pw pw 1")
            rooms = RoomService(db)
            slug = (await rooms.create(owner, "Run room")).slug
            assert await rooms.set_live(slug, True, "a")
            assert await rooms.set_live(slug, True, "b")  # the takeover
            assert not await rooms.set_live(slug, False, "a")  # the old run's stop, late
            assert await _db_live(rooms, slug)
            assert await rooms.set_live(slug, False, "b")
            assert not await _db_live(rooms, slug)
        finally:
            users.close()
            await db.close()


async def _db_live(rooms: RoomService, slug: str) -> bool:
    room = await rooms.get(slug)
    assert room is not None
    return room.live


async def listed(node: Any) -> list[tuple[str, bool]]:
    """(slug, live) of every room, in the list's order (live rooms first)."""
    async with node.http.get(node.url("/api/v1/rooms")) as r:
        assert r.status == 200, await r.text()
        return [(room["slug"], room["live"]) for room in (await r.json())["rooms"]]


async def test_the_old_origins_stop_after_a_takeover_leaves_the_room_live(cluster: Any,
                                                                         pg_server: PgCluster) -> None:
    a, b = await origins(cluster, pg_server, "liveflag")
    room = await make_room(a)
    slug = room["slug"]
    newer = (await make_room(a, "Newer room"))["slug"]  # listed first unless ``slug`` is live
    first = await start_publisher(rtmp_url(a, room["stream_key"]), seconds=60.0, fps=FPS, gop=FPS, realtime=True)
    second = None
    try:
        await wait_for(lambda: _first_is(a, (slug, True)), timeout=15, what="the room listed live")
        await wait_playlist(a, slug, lambda t: len(segment_uris(t)) >= 2)
        second = await start_publisher(rtmp_url(b, room["stream_key"]), seconds=60.0, fps=FPS, gop=FPS,
                                       realtime=True)
        # A drops its publisher; its stop, whenever it lands, leaves the room live (on B)
        await wait_for(lambda: re.search(rf"room {slug}: (marked offline|live flag left)", a.log_text()),
                       timeout=3 * LEASE + 10, what="A's stop after the takeover")
        await wait_playlist(b, slug, lambda t: len(segment_uris(t)) >= 1)
        # the list's order is the database's flag on every origin; ``live`` is the holder's word
        await wait_for(lambda: _first_is(b, (slug, True)), what="B lists the room first and live")
        assert (await listed(b))[:2] == [(slug, True), (newer, False)]
        assert [s for s, _ in await listed(a)][:2] == [slug, newer]
    finally:
        await first.stop()
        if second is not None:
            await second.stop()
    try:
        await first.result(timeout=15)
    except PublishFailed:
        pass  # dropped by A: what a taken-over encoder sees
    # B's own stop clears it
    await wait_for(lambda: _first_is(b, (newer, False)), timeout=15, what="B's stop clears the flag")
    assert (slug, False) in await listed(a)


async def _first_is(node: Any, expected: tuple[str, bool]) -> bool:
    rooms = await listed(node)
    return bool(rooms) and rooms[0] == expected


async def test_a_publish_refused_as_server_full_holds_no_lease(cluster: Any, pg_server: PgCluster) -> None:
    """A (ingest.max_publishers = 1) is full: a publish of a room B holds is refused without
    taking the room from B, and a publish of an idle room leaves no lease behind."""
    a, b = await origins(cluster, pg_server, "full", ingest={"max_publishers": 1})
    redis = aioredis.from_url(a.sections["cluster"]["redis"], decode_responses=True)
    on_a, on_b, idle = await make_room(a, "On A"), await make_room(a, "On B"), await make_room(a, "Idle")
    publishers = [await start_publisher(rtmp_url(node, r["stream_key"]), seconds=60.0, fps=FPS, gop=FPS,
                                        realtime=True) for node, r in ((a, on_a), (b, on_b))]
    try:
        await wait_playlist(a, on_a["slug"], lambda t: len(segment_uris(t)) >= 1)
        await wait_playlist(b, on_b["slug"], lambda t: len(segment_uris(t)) >= 1)
        held_by_b = await redis.get(f"livecast:lease:{on_b['slug']}")
        assert held_by_b and held_by_b.endswith(b.base)
        for r in (on_b, idle):
            refused = await start_publisher(rtmp_url(a, r["stream_key"]), seconds=5.0, fps=FPS, gop=FPS)
            try:
                await refused.result(timeout=30)
                raise AssertionError("a publish to a full origin went through")
            except PublishFailed as err:
                assert "server is full" in str(err) or "Rejected" in str(err), err
        assert await redis.get(f"livecast:lease:{idle['slug']}") is None
        assert await redis.get(f"livecast:lease:{on_b['slug']}") == held_by_b  # B still holds it
        assert "server_full" in a.log_text() or "max_publishers reached" in a.log_text()
        before = await wait_playlist(b, on_b["slug"], lambda t: len(segment_uris(t)) >= 1)
        await wait_playlist(b, on_b["slug"], lambda t: segment_uris(t)[-1] != segment_uris(before)[-1])
        assert "taken over" not in b.log_text()
    finally:
        for p in publishers:
            await p.stop()
        await redis.aclose()


async def _login(node: Any, name: str) -> tuple[int, str | None]:
    async with node.http.post(node.url("/api/v1/auth/login"), json={"username": name, "password": "wrong pw 1"}) as r:
        if r.status >= 500:
            raise AssertionError(await r.text())
        return r.status, r.headers.get("Retry-After")


async def _register(node: Any, name: str) -> int:
    account = {"username": name, "password": "pw pw pw 1"}
    async with node.http.post(node.url("/api/v1/auth/register"), json=account) as r:
        assert r.status < 500, await r.text()
        return r.status


async def test_shared_limiter_windows_in_redis(cluster: Any) -> None:
    """The Redis limiter itself: a window shared by two stores (two origins), peeking
    records nothing, a refund frees the newest slot, and an outage falls back per store."""
    redis = await cluster.redis()
    one, two = RedisLimits(redis.url), RedisLimits(redis.url)
    try:
        x, y = one("t", 2, 30.0), two("t", 2, 30.0)
        assert [await x.hit("k"), await y.retry_after("k"), await y.hit("k")] == [0.0, 0.0, 0.0]
        assert 29.0 < await x.hit("k") <= 30.0  # full: the third hit waits for the oldest to leave
        assert 29.0 < await y.retry_after("k") <= 30.0
        assert await y.hit("other") == 0.0  # keys are apart
        await y.refund("k")
        assert await x.hit("k") == 0.0 and await y.hit("k") > 0
        await redis.stop()
        assert [await x.hit("k"), await x.hit("k"), await x.hit("k") > 0] == [0.0, 0.0, True]  # on its own
        assert one.degraded and not two.degraded
    finally:
        await one.close()
        await two.close()


async def test_login_throttling_is_shared_by_the_origins_through_redis(cluster: Any) -> None:
    """Failed logins split across A and B count as on one origin; when Redis goes away each
    origin falls back to its own limits (with a warning), never a 500."""
    redis = await cluster.redis()
    sections = {"cluster": {"redis": redis.url, "lease_seconds": LEASE},
                "auth": {"login_attempts_per_user": 4, "login_attempts_per_client": 100, "register_per_address": 3}}
    a, b = await cluster.node("a", **sections), await cluster.node("b", **sections)
    for node in (a, b, a, b):
        assert (await _login(node, "victim"))[0] == 401
    for node in (a, b):
        status, retry_after = await _login(node, "victim")
        assert status == 429 and retry_after is not None and int(retry_after) >= 1
    assert (await _login(b, "someone"))[0] == 401  # another name from the same address still may try
    registered = [await _register(node, f"reg{i}") for i, node in enumerate((a, b, a, b))]
    assert registered == [201, 201, 201, 429]  # registrations per address, across the origins

    await redis.stop()
    # each origin on its own now: its own four failures, then 429
    assert [(await _login(a, "outage"))[0] for _ in range(5)] == [401] * 4 + [429]
    assert (await _login(b, "outage"))[0] == 401
    assert "rate limits: Redis unreachable" in a.log_text()


class Hooks:
    """A real HTTP receiver counting webhook deliveries by event name."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        return web.Response(status=204)

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]


async def test_a_broadcast_continued_on_another_origin_is_one_webhook_broadcast(cluster: Any,
                                                                              pg_server: PgCluster) -> None:
    """A and B send webhooks to the same receiver: a publish on A taken over on B is one
    ``stream.started`` and, when B's publisher stops, one ``stream.stopped`` (the takeover's
    stop on A is not sent, B's start is claimed by A's delivery); a comment once."""
    hooks = Hooks()
    app = web.Application()
    app.router.add_post("/hook", hooks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        a, b = await origins(cluster, pg_server, "hooks", webhooks={"urls": [url]})
        b.sections["webhooks"] = {"urls": [url]}
        await b.restart()  # now with the same webhook URL as A
        room = await make_room(a)
        slug = room["slug"]
        first = await start_publisher(rtmp_url(a, room["stream_key"]), seconds=60.0, fps=FPS, gop=FPS,
                                      realtime=True)
        second = None
        try:
            await wait_for(lambda: "stream.started" in hooks.names(), timeout=15, what="A's stream.started")
            await wait_playlist(a, slug, lambda t: len(segment_uris(t)) >= 1)
            second = await start_publisher(rtmp_url(b, room["stream_key"]), seconds=3.0, fps=FPS, gop=FPS,
                                           realtime=True)
            await wait_for(lambda: re.search(rf"room {slug}: (marked offline|live flag left)", a.log_text()),
                           timeout=3 * LEASE + 10, what="A's stop after the takeover")
            await second.result()
        finally:
            await first.stop()
            if second is not None:
                await second.stop()
        await wait_for(lambda: "stream.stopped" in hooks.names(), timeout=15, what="B's stream.stopped")
        fan = await register_and_login(b)
        ws, _ = await connect(b, slug, fan)
        await post(ws, "once")
        await ws.close()
        await wait_for(lambda: "comment.created" in hooks.names(), timeout=15, what="the comment's webhook")
        # everything above has been delivered; a last event on A flushes A's queue behind it
        await make_room(a, "Flush")
        await wait_for(lambda: hooks.names().count("room.created") == 2, timeout=15, what="the flush")
        names = hooks.names()
        assert names.count("stream.started") == 1 and names.count("stream.stopped") == 1, names
        assert names.count("comment.created") == 1, names
        started, stopped = (next(e for e in hooks.events if e["event"] == n) for n in ("stream.started",
                                                                                       "stream.stopped"))
        assert names.index("stream.started") < names.index("stream.stopped")
        assert started["data"]["room"] == stopped["data"]["room"] == slug
    finally:
        await runner.cleanup()


async def test_an_origin_start_leaves_rooms_live_elsewhere_and_a_dead_holders_room_goes_offline(
        cluster: Any, pg_server: PgCluster) -> None:
    """B's restart does not clear the flag of a room live on A; once A is killed and the
    publisher does not come back within ``hls.reconnect_grace``, the room is marked offline."""
    a, b = await origins(cluster, pg_server, "sweep", hls={**HLS, "reconnect_grace": 1.0})
    room = await make_room(a)
    slug = room["slug"]
    newer = (await make_room(a, "Newer room"))["slug"]
    publisher = await start_publisher(rtmp_url(a, room["stream_key"]), seconds=60.0, fps=FPS, gop=FPS,
                                      realtime=True)
    try:
        await wait_for(lambda: _first_is(a, (slug, True)), timeout=15, what="the room listed live")
        await b.restart()
        assert [s for s, _ in await listed(b)][:2] == [slug, newer]  # still live after B's start
        await a.kill()
    finally:
        await publisher.stop()
    await wait_for(lambda: _first_is(b, (newer, False)), timeout=3 * LEASE + 20,
                   what="the dead holder's room marked offline")
    assert f"room {slug}: marked offline (no origin holds it)" in b.log_text()


async def test_a_lease_claimed_for_a_publish_that_never_began_is_released(cluster: Any) -> None:
    """A second publish on a connection already publishing is refused after its room's lease
    was claimed ("already publishing"): the next renewal finds no publisher and lets go."""
    redis_server = await cluster.redis()
    a = await cluster.node("a", cluster={"redis": redis_server.url, "lease_seconds": LEASE}, hls=HLS)
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    first, second = await make_room(a, "First"), await make_room(a, "Second")
    reader, writer = await crafted_publish(a, first["stream_key"])
    try:
        writer.write(command_message("createStream", 4, None))
        writer.write(command_message("publish", 5, None, second["stream_key"], "live", stream_id=2, csid=8))
        await writer.drain()
        await wait_for(lambda: f"room {second['slug']}: no publisher here any more" in a.log_text(),
                       timeout=3 * LEASE + 5, what="the stray lease released")
        assert await redis.get(f"livecast:lease:{second['slug']}") is None
        assert await redis.get(f"livecast:lease:{first['slug']}")  # the real publish keeps its own
    finally:
        writer.close()
        await redis.aclose()
