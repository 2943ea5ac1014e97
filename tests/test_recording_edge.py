"""Recordings through an edge (separate OS processes): the VOD playlist, its segments,
download.mp4 and clips come through the edge's cache byte-identical to the origin's;
a private recording passes the viewer's credentials through and is never cached."""

from __future__ import annotations

import re
from typing import Any

import pytest

from helpers import make_room, rtmp_url
from publisher import publish_async
from test_recording import FPS, RECORDING, _finished

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


async def _get(node: Any, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with node.http.get(node.url(path), headers=headers) as r:
        return r.status, await r.read()


async def _vod_hits(edge: Any) -> float:
    async with edge.http.get(edge.url("/metrics")) as r:
        text = await r.text()
    found = re.search(r'^livecast_edge_cache_lookups_total\{kind="vod",result="hit"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_vod_download_and_clips_through_an_edge_are_byte_identical(cluster: Any) -> None:
    origin = await cluster.node("origin", recording=RECORDING, hls={"segment_duration": 1.0})
    edge = await cluster.node("edge", role="edge", origin=origin)
    room = await make_room(origin)
    await publish_async(rtmp_url(origin, room["stream_key"]), seconds=3, fps=FPS)
    recording = await _finished(origin, room["slug"])
    vod = recording["playlist_url"]
    paths = [vod, f"/vod/{recording['id']}/download.mp4"]
    status, playlist = await _get(origin, vod)
    assert status == 200
    paths += [f"/vod/{recording['id']}/{line}" for line in playlist.decode().splitlines()
              if line and not line.startswith("#")]
    for path in paths:
        from_origin = await _get(origin, path)
        assert from_origin[0] == 200, path
        assert await _get(edge, path) == from_origin, path
    hits = await _vod_hits(edge)
    for path in paths:
        assert (await _get(edge, path))[0] == 200
    assert await _vod_hits(edge) >= hits + len(paths)  # the second round came from the cache

    async with origin.http.post(origin.url(f"/api/v1/rooms/{room['slug']}/clips"), headers=room["headers"],
                                json={"recording": recording["id"], "from": 0, "to": 2}) as r:
        assert r.status == 201
        clip = (await r.json())["clip"]
    assert await _get(edge, clip["url"]) == await _get(origin, clip["url"])

    async with origin.http.patch(origin.url(f"/api/v1/recordings/{recording['id']}"), headers=room["headers"],
                                 json={"visibility": "private"}) as r:
        assert r.status == 200
    # Not cached on the edge yet: the origin's answer (403 without a session or signature).
    assert (await _get(edge, f"{vod}?fresh=1"))[0] == 403
    assert (await _get(edge, f"{vod}?fresh=2", room["headers"]))[0] == 200
    async with origin.http.post(origin.url(f"/api/v1/recordings/{recording['id']}/signed-url"),
                                headers=room["headers"]) as r:
        signed = (await r.json())["url"]
    assert (await _get(edge, signed))[0] == 200
    assert (await _get(edge, f"/api/v1/recordings/{recording['id']}/chat"))[0] == 403
    assert (await _get(edge, f"/api/v1/recordings/{recording['id']}/chat", room["headers"]))[0] == 200
