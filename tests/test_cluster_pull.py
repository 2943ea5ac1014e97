"""Pull sources on a cluster: origins A and B (separate OS processes) share PostgreSQL and
Redis; a room fed from nginx-rtmp is pulled by exactly one origin (the room's lease holder;
the other waits and serves the room's HLS from it); SIGKILL the pulling origin and the
other pulls and continues the playlist (rising media sequence numbers, a discontinuity);
a publish with the room's key on either origin takes precedence over the pull; an
on-demand source starts on one origin for a viewer on any."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from helpers import make_room, room_json, rtmp_url, segment_uris, wait_for, wait_playlist
from nginx_rtmp import NginxRtmp
from pg import PgCluster
from publisher import start_publisher
from test_cluster_failover import discontinuities_before, sequences

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
FPS = 30
LEASE = 1.5
HLS = {"segment_duration": 1.0, "window": 6}
RELAY = {"retry_first": 0.5, "retry_max": 1.0, "idle_seconds": 3.0}
WAITING = "another origin pulls or publishes the room"


@pytest.fixture
async def nginx() -> AsyncIterator[NginxRtmp]:
    server = NginxRtmp()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver: its URL and the events it got."""
    events: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        events.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", events
    await runner.cleanup()


async def origins(cluster: Any, pg_server: PgCluster, name: str, **extra: dict[str, Any]) -> tuple[Any, Any]:
    redis = await cluster.redis()
    url = pg_server.url(await pg_server.create_database(name))
    sections = {"database": {"url": url}, "cluster": {"redis": redis.url, "lease_seconds": LEASE},
                "hls": HLS, "relay": RELAY, **extra}
    return await cluster.node("a", **sections), await cluster.node("b", **sections)


async def set_source(node: Any, room: dict[str, Any], **body: Any) -> None:
    async with node.http.patch(node.url(f"/api/v1/rooms/{room['slug']}"), json=body, headers=room["headers"]) as r:
        assert r.status == 200, await r.text()


async def source_state(node: Any, slug: str) -> str:
    return str(((await room_json(node, slug)).get("source") or {}).get("state"))


async def puller_and_watcher(a: Any, b: Any, slug: str, timeout: float = 30) -> tuple[Any, Any]:
    """Wait until one origin pulls the room ("live") and the other waits; (puller, watcher)."""

    async def one_pulls() -> dict[Any, str] | None:
        states = {a: await source_state(a, slug), b: await source_state(b, slug)}
        return states if sorted(states.values()) == ["live", "waiting"] else None

    states = await wait_for(one_pulls, timeout=timeout, what="one origin pulling, the other waiting")
    return (a, b) if states[a] == "live" else (b, a)


def plays(nginx: NginxRtmp, name: str) -> int:
    """How many times a player (a puller) subscribed to ``name`` on nginx."""
    return nginx.log().count(f"play: name='{name}'")


async def metrics(node: Any) -> str:
    async with node.http.get(node.url("/metrics")) as r:
        return await r.text()


async def test_one_origin_pulls_and_the_other_continues_when_it_is_killed(
        cluster: Any, pg_server: PgCluster, nginx: NginxRtmp, hooks: tuple[str, list[dict[str, Any]]]) -> None:
    """Also: the source's state webhooks come from the pulling origin only, each once."""
    hook_url, events = hooks
    source = await start_publisher(f"{nginx.url}/cam1", seconds=120.0, fps=FPS, gop=FPS, realtime=True)
    try:
        a, b = await origins(cluster, pg_server, "pull_failover", webhooks={"urls": [hook_url]})
        room = await make_room(a)
        slug = room["slug"]
        await set_source(a, room, source_url=f"{nginx.url}/cam1")  # B learns it from the database
        puller, watcher = await puller_and_watcher(a, b, slug)
        assert re.search(r'^livecast_relay_sources\{state="waiting"\} 1\.0$', await metrics(watcher), re.M)
        assert re.search(r'^livecast_relay_sources\{state="live"\} 1\.0$', await metrics(puller), re.M)
        await wait_for(lambda: WAITING in watcher.log_text(), what="the watcher's log says it waits")
        before = await wait_playlist(puller, slug, lambda t: len(segment_uris(t)) >= 3)
        # the room plays through both origins' /hls/ (the watcher serves the puller's timeline)
        on_watcher = await wait_playlist(watcher, slug,
                                         lambda t: bool(set(segment_uris(t)) & set(segment_uris(before))))
        name = sorted(set(segment_uris(on_watcher)) & set(segment_uris(before)))[0]
        async with puller.http.get(puller.url(f"/hls/{slug}/{name}")) as rp, \
                watcher.http.get(watcher.url(f"/hls/{slug}/{name}")) as rw:
            assert rp.status == rw.status == 200
            assert await rp.read() == await rw.read()
        assert plays(nginx, "cam1") == 1  # exactly one origin pulls
        before = await wait_playlist(puller, slug, lambda t: len(segment_uris(t)) >= 3)
        await puller.kill()

        async def watcher_pulls() -> bool:
            return await source_state(watcher, slug) == "live"

        await wait_for(watcher_pulls, timeout=4 * LEASE + 10, what="the other origin pulling")
        after = await wait_playlist(watcher, slug, lambda t: bool(discontinuities_before(t))
                                    and len(segment_uris(t)) >= 2, timeout=30)
        assert min(sequences(after)) > max(sequences(before)), (before, after)
        assert discontinuities_before(after) == [segment_uris(after)[0]]  # one discontinuity: the join
        assert plays(nginx, "cam1") == 2
        assert re.search(r'^livecast_cluster_room_claims_total\{kind="failover"\} 1\.0$', await metrics(watcher),
                         re.M)

        def states() -> list[str]:
            return [e["data"]["state"] for e in events if e["event"] == "relay.source"]

        await wait_for(lambda: states().count("live") == 2, timeout=15, what="the second origin's 'live' webhook")
        assert states() == ["connecting", "live", "connecting", "live"], states()  # no watcher's 'waiting'
        ids = [e["id"] for e in events if e["event"] == "relay.source"]
        assert len(set(ids)) == len(ids)
    finally:
        await source.stop()


async def test_a_publish_on_either_origin_takes_precedence_over_the_pull(
        cluster: Any, pg_server: PgCluster, nginx: NginxRtmp) -> None:
    source = await start_publisher(f"{nginx.url}/cam2", seconds=120.0, fps=FPS, gop=FPS, realtime=True)
    try:
        a, b = await origins(cluster, pg_server, "pull_precedence")
        room = await make_room(a)
        slug = room["slug"]
        await set_source(a, room, source_url=f"{nginx.url}/cam2")
        puller, watcher = await puller_and_watcher(a, b, slug)
        publish = await start_publisher(rtmp_url(watcher, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS,
                                        realtime=True)
        try:
            async def puller_waits() -> bool:
                return await source_state(puller, slug) == "waiting"

            await wait_for(puller_waits, timeout=3 * LEASE + 10, what="the pulling origin giving the room up")
            await wait_for(lambda: "taken over" in puller.log_text(), what="the puller's log says taken over")
            # nobody pulls while the publisher is live
            assert await source_state(watcher, slug) == "waiting"
            await publish.result()
        finally:
            await publish.stop()
        # the publisher is gone: one origin pulls again
        puller, watcher = await puller_and_watcher(a, b, slug)
        assert plays(nginx, "cam2") == 2
        # the source removed through the waiting origin: the pulling one learns it and stops
        await set_source(watcher, room, source_url="")

        async def no_source_on_the_puller() -> bool:
            return "source" not in await room_json(puller, slug)

        await wait_for(no_source_on_the_puller, timeout=3 * LEASE + 10, what="the pulling origin dropping the source")
        assert "source" not in await room_json(watcher, slug)
    finally:
        await source.stop()


async def test_an_on_demand_source_starts_on_one_origin_for_a_viewer_on_any(
        cluster: Any, pg_server: PgCluster, nginx: NginxRtmp) -> None:
    source = await start_publisher(f"{nginx.url}/cam3", seconds=120.0, fps=FPS, gop=FPS, realtime=True)
    try:
        a, b = await origins(cluster, pg_server, "pull_on_demand")
        room = await make_room(a)
        slug = room["slug"]
        await set_source(a, room, source_url=f"{nginx.url}/cam3", source_on_demand=True)

        async def b_knows_it() -> bool:
            return await source_state(b, slug) == "idle"

        await wait_for(b_knows_it, timeout=3 * LEASE + 10, what="B loading the source from the database")
        assert await source_state(a, slug) == "idle" and plays(nginx, "cam3") == 0
        first = await wait_playlist(b, slug, lambda t: len(segment_uris(t)) >= 1, timeout=30)  # the first viewer
        # a viewer on A too: A's source waits, B's pulls
        await wait_playlist(a, slug, lambda t: bool(set(segment_uris(t)) & set(segment_uris(first))))
        assert await source_state(b, slug) == "live"
        assert await source_state(a, slug) == "waiting"
        # viewers on A only, for twice relay.idle_seconds: B's pull goes on (A asks B for the playlist)
        last = max(sequences(first))
        await wait_playlist(a, slug, lambda t: max(sequences(t)) >= last + 2 * RELAY["idle_seconds"], timeout=30)
        assert await source_state(b, slug) == "live"
        assert plays(nginx, "cam3") == 1
    finally:
        await source.stop()
