"""Origins A and B sharing PostgreSQL and Redis (separate OS processes): a room's lease
and HLS timeline live in Redis, so a publish of the room on B after A died continues
A's playlist (rising media sequence numbers, one discontinuity, new segment names), and
a publish on B while A is live takes the room over: A drops its publisher."""

from __future__ import annotations

import asyncio
import re
import time
from types import SimpleNamespace
from typing import Any

from helpers import make_room, register_and_login, rtmp_url, segment_uris, wait_for, wait_playlist
from pg import PgCluster
from publisher import PublishFailed, read_hls_frames_async, start_publisher
from test_chat_support import connect, next_frame, post

FPS = 30
HLS = {"segment_duration": 1.0, "window": 6}
LEASE = 1.5


def sequences(playlist: str) -> list[int]:
    """The media sequence number of every listed segment."""
    first = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist).group(1))  # type: ignore[union-attr]
    return list(range(first, first + len(segment_uris(playlist))))


def discontinuity_sequence(playlist: str) -> int:
    m = re.search(r"#EXT-X-DISCONTINUITY-SEQUENCE:(\d+)", playlist)
    return int(m.group(1)) if m else 0


def discontinuities_before(playlist: str) -> list[str]:
    """The segment URIs that carry an EXT-X-DISCONTINUITY tag."""
    marked, pending = [], False
    for line in playlist.splitlines():
        if line == "#EXT-X-DISCONTINUITY":
            pending = True
        elif line and not line.startswith("#"):
            if pending:
                marked.append(line)
            pending = False
    return marked


async def origins(cluster: Any, pg_server: PgCluster) -> tuple[Any, Any]:
    redis = await cluster.redis()
    url = pg_server.url(await pg_server.create_database("failover"))
    sections = {"database": {"url": url}, "cluster": {"redis": redis.url, "lease_seconds": LEASE}, "hls": HLS}
    a = await cluster.node("a", **sections)
    b = await cluster.node("b", **sections)
    return a, b


async def test_publish_on_b_continues_the_playlist_after_a_is_killed(cluster: Any, pg_server: PgCluster) -> None:
    a, b = await origins(cluster, pg_server)
    room = await make_room(a)
    slug = room["slug"]
    first = await start_publisher(rtmp_url(a, room["stream_key"]), seconds=60.0, fps=FPS, gop=FPS, realtime=True)
    try:
        before = await wait_playlist(a, slug, lambda t: len(segment_uris(t)) >= 3)
        await a.kill()
    finally:
        await first.stop()
    second = await start_publisher(rtmp_url(b, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS, realtime=True)
    after = await wait_playlist(b, slug, lambda t: len(segment_uris(t)) >= 2)
    await second.result()
    assert min(sequences(after)) > max(sequences(before)), (before, after)
    assert discontinuities_before(after) == [segment_uris(after)[0]]  # one discontinuity: the join
    assert discontinuity_sequence(after) >= discontinuity_sequence(before)
    prefixes_a = {uri.split("-", 1)[0] for uri in segment_uris(before)}
    prefixes_b = {uri.split("-", 1)[0] for uri in segment_uris(after)}
    assert prefixes_a.isdisjoint(prefixes_b)  # new names: no cache serves A's bytes for B's segment
    async with b.http.get(b.url("/metrics")) as r:
        assert re.search(r'^livecast_cluster_room_claims_total\{kind="(failover|takeover)"\} 1\.0$',
                         await r.text(), re.M)


async def test_publish_on_b_takes_the_room_over_from_a(cluster: Any, pg_server: PgCluster) -> None:
    a, b = await origins(cluster, pg_server)
    room = await make_room(a)
    slug = room["slug"]
    first = await start_publisher(rtmp_url(a, room["stream_key"]), seconds=60.0, fps=FPS, gop=FPS, realtime=True)
    second = None
    try:
        before = await wait_playlist(a, slug, lambda t: len(segment_uris(t)) >= 2)
        second = await start_publisher(rtmp_url(b, room["stream_key"]), seconds=5.0, fps=FPS, gop=FPS,
                                       realtime=True)
        # until B's publisher claims the room, B serves A's playlist (pulled from the holder)
        after = await wait_playlist(b, slug, lambda t: bool(discontinuities_before(t)) and len(segment_uris(t)) >= 2)
        assert min(sequences(after)) > max(sequences(before))
        assert discontinuities_before(after) == [segment_uris(after)[0]]
        # A no longer publishes the room: its /hls/ URL now serves B's timeline
        await wait_playlist(a, slug, lambda t: bool(set(segment_uris(t)) & set(segment_uris(after))),
                            timeout=3 * LEASE + 10)

        async def a_dropped_its_publisher() -> bool:
            async with a.http.get(a.url(f"/api/v1/rooms/{slug}")) as r:
                return (await r.json())["room"]["stream"] is None  # A's own hub no longer has it

        await wait_for(a_dropped_its_publisher, timeout=10, what="A dropped its publisher")
        for node in (a, b):  # every origin answers alike: the room is live (on B)
            async with node.http.get(node.url(f"/api/v1/rooms/{slug}")) as r:
                assert (await r.json())["room"]["live"] is True
        await second.result()
    finally:
        await first.stop()
        if second is not None:
            await second.stop()
    try:
        await first.result(timeout=15)
    except PublishFailed:
        pass  # the server closed the connection under it: what a taken-over encoder sees
    assert "taken over" in a.log_text()


async def test_a_room_published_on_b_plays_from_a(cluster: Any, pg_server: PgCluster) -> None:
    a, b = await origins(cluster, pg_server)
    room = await make_room(b)
    slug = room["slug"]
    async with a.http.get(a.url(f"/hls/{slug}/index.m3u8")) as r:
        assert r.status == 404  # nobody publishes it yet
    publisher = await start_publisher(rtmp_url(b, room["stream_key"]), seconds=6.0, fps=FPS, gop=FPS,
                                      realtime=True)
    try:
        on_b = await wait_playlist(b, slug, lambda t: len(segment_uris(t)) >= 2)
        on_a = await wait_playlist(a, slug, lambda t: len(segment_uris(t)) >= 2)
        assert set(segment_uris(on_a)) & set(segment_uris(on_b))  # the same timeline
        async with a.http.get(a.url(f"/api/v1/rooms/{slug}")) as r:
            assert (await r.json())["room"]["live"] is True  # A's room JSON says what B's does
        name = segment_uris(on_a)[0]
        async with a.http.get(a.url(f"/hls/{slug}/{name}")) as ra, b.http.get(b.url(f"/hls/{slug}/{name}")) as rb:
            assert ra.status == rb.status == 200
            assert await ra.read() == await rb.read()
        await publisher.result()
    finally:
        await publisher.stop()


async def test_edge_with_two_origins_follows_the_room_across_a_failover(cluster: Any, pg_server: PgCluster) -> None:
    """E lists A and B; a real-time publish to A is read through E by PyAV's HLS demuxer,
    which decodes every frame; A is SIGKILLed mid-stream and the publisher reconnects to B
    (its timestamps follow its capture clock, as a camera's do): E's playlist goes on with
    rising sequence numbers and one discontinuity; the reader decodes both sides with no
    error, and the media lost at the join is at most the reconnect delay plus two segments.
    A comment acknowledged before the kill stays in the history; comments and gifts sent
    through B reach a viewer on E."""
    a, b = await origins(cluster, pg_server)
    # chat.bus defaults to cluster.redis on edges too: E hosts its viewers' chat sockets
    edge = await cluster.node("e", role="edge", origin=SimpleNamespace(base=f"{a.base},{b.base}"), hls=HLS,
                              cluster={"redis": a.sections["cluster"]["redis"]})
    room = await make_room(edge)  # the API through the edge (to A)
    slug = room["slug"]
    fan = await register_and_login(edge)
    viewer, _ = await connect(edge, slug)
    capture_clock = time.time()
    first = await start_publisher(rtmp_url(a, room["stream_key"]), seconds=60.0, fps=FPS, gop=FPS, realtime=True,
                                  clock_origin=capture_clock)
    try:
        before = await wait_playlist(edge, slug, lambda t: len(segment_uris(t)) >= 3)
        reader = asyncio.create_task(read_hls_frames_async(edge.url(f"/hls/{slug}/index.m3u8"), timeout=90))
        on_a, _ = await connect(a, slug, fan)
        acked = await post(on_a, "before the kill")
        # the reader is attached and playing while the stream moves on by a segment
        await wait_playlist(edge, slug, lambda t: max(sequences(t)) > max(sequences(before)))
        killed_at = time.time()
        await a.kill()
    finally:
        await first.stop()
    second = await start_publisher(rtmp_url(b, room["stream_key"]), seconds=5.0, fps=FPS, gop=FPS, realtime=True,
                                   clock_origin=capture_clock)
    after = await wait_playlist(edge, slug, lambda t: any(s > max(sequences(before)) + 3 for s in sequences(t)),
                                timeout=30)
    reconnect_delay = (await second.result()).started - killed_at  # SIGKILL -> B accepted the publish
    assert "#EXT-X-DISCONTINUITY" in after
    assert sequences(after) == sorted(sequences(after))
    read = await reader
    assert read["errors"] == []  # no decoder (or demuxer) error, across the join
    times = read["times"]
    steps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert min(steps) > 0, "media time went backwards at the join"
    join = steps.index(max(steps))
    # the largest gap is the join: nothing was captured between the kill and B's start
    assert max(steps) >= reconnect_delay - 1 / FPS, (max(steps), reconnect_delay)
    assert max(steps) <= reconnect_delay + 2 * HLS["segment_duration"], (max(steps), reconnect_delay)
    assert join + 1 >= 2 * FPS, "frames decoded from A's side"  # at least the 2 segments listed on attach
    assert len(times) - join - 1 >= 4 * FPS, "frames decoded from B's side"  # most of B's 5 s
    async with edge.http.get(edge.url(f"/api/v1/rooms/{slug}")) as r:
        assert r.status == 200  # the edge's API calls go on through B
    async with edge.http.get(edge.url(f"/api/v1/rooms/{slug}/comments")) as r:
        assert acked["id"] in [c["id"] for c in (await r.json())["comments"]]
    on_b, _ = await connect(b, slug, fan)
    await post(on_b, "after the kill")
    await next_frame(viewer, "comment", lambda f: f["text"] == "after the kill")
    async with b.http.post(b.url(f"/api/v1/rooms/{slug}/gifts"), json={"gift": "rose"}, headers=fan["headers"]) as r:
        assert r.status == 201, await r.text()
    gift = await next_frame(viewer, "gift")
    assert gift["gift"] == "rose" and gift["user"]["username"] == fan["user"]["username"]
    for ws in (viewer, on_b):
        await ws.close()


async def test_an_origin_that_loses_redis_keeps_serving_its_rooms_and_says_degraded(cluster: Any) -> None:
    redis = await cluster.redis()
    a = await cluster.node("a", cluster={"redis": redis.url, "lease_seconds": LEASE}, hls=HLS)
    async with a.http.get(a.url("/healthz")) as r:
        assert await r.json() == {"status": "ok", "database": True, "redis": True}
    room = await make_room(a)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(a, room["stream_key"]), seconds=8.0, fps=FPS, gop=FPS,
                                      realtime=True)
    try:
        before = await wait_playlist(a, slug, lambda t: len(segment_uris(t)) >= 2)
        await redis.stop()

        async def degraded() -> bool:
            async with a.http.get(a.url("/healthz")) as r:
                return r.status == 200 and (await r.json()) == {"status": "degraded", "database": True,
                                                                "redis": False}

        await wait_for(degraded, timeout=3 * LEASE + 5, what="/healthz says degraded")
        after = await wait_playlist(a, slug, lambda t: max(sequences(t)) >= max(sequences(before)) + 3)
        assert "#EXT-X-ENDLIST" not in after  # the room held here goes on being served
        await publisher.result()
    finally:
        await publisher.stop()
    async with a.http.get(a.url("/metrics")) as r:
        assert "livecast_cluster_redis_degraded 1.0" in await r.text()


async def test_every_origin_answers_play_with_an_edge_heard_by_another(cluster: Any, pg_server: PgCluster) -> None:
    """The edge registry lives in Redis: E heartbeats to A only, and B (also after a
    restart) hands E out for /play as A does."""
    a, b = await origins(cluster, pg_server)
    edge = await cluster.node("e", role="edge", origin=a)
    room = await make_room(a)

    async def plays_edge(node: Any) -> bool:
        async with node.http.get(node.url(f"/api/v1/rooms/{room['slug']}/play")) as r:
            body = await r.json()
            return r.status == 200 and body["node"]["role"] == "edge" and body["node"]["url"] == edge.base

    await wait_for(lambda: plays_edge(a), timeout=15, what="A hands out E")
    await wait_for(lambda: plays_edge(b), timeout=15, what="B hands out E (heard by A)")
    await b.restart()
    await wait_for(lambda: plays_edge(b), timeout=15, what="B hands out E after a restart")


async def test_chat_survives_the_origin_and_reaches_edge_viewers_through_b(cluster: Any,
                                                                          pg_server: PgCluster) -> None:
    """A comment acknowledged by A before A is killed stays in the history; comments and
    gifts sent through B reach a viewer on E (chat.bus = the cluster's Redis)."""
    a, b = await origins(cluster, pg_server)
    redis_url = a.sections["cluster"]["redis"]
    edge = await cluster.node("e", role="edge", origin=SimpleNamespace(base=f"{a.base},{b.base}"),
                              chat={"bus": redis_url})
    room = await make_room(a)
    slug = room["slug"]
    fan = await register_and_login(a)
    viewer, _ = await connect(edge, slug)
    on_a, _ = await connect(a, slug, fan)
    acked = await post(on_a, "before the kill")
    await a.kill()
    async with b.http.get(b.url(f"/api/v1/rooms/{slug}/comments")) as r:
        assert acked["id"] in [c["id"] for c in (await r.json())["comments"]]
    on_b, _ = await connect(b, slug, fan)
    await post(on_b, "after the kill")
    seen = await next_frame(viewer, "comment", lambda f: f["text"] == "after the kill")
    assert seen["user"]["username"] == fan["user"]["username"]
    async with b.http.post(b.url(f"/api/v1/rooms/{slug}/gifts"), json={"gift": "rose"}, headers=fan["headers"]) as r:
        assert r.status == 201, await r.text()
    gift = await next_frame(viewer, "gift")
    assert gift["gift"] == "rose" and gift["user"]["username"] == fan["user"]["username"]
    for ws in (viewer, on_b):
        await ws.close()
