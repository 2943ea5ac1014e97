"""HLS keyed by room and rendition: a named rendition gets its own playlist and segments
under /hls/{slug}/{rendition}/, apart from the default rendition's URLs."""

from __future__ import annotations

from typing import Any

from helpers import make_room, segment_uris
from media_gen import cached_units
from publisher import read_hls_async

from livecast.core.media import Track
from livecast.hls.service import DEFAULT_RENDITION
from livecast.ingest.component import HLS


async def _get(node: Any, path: str) -> tuple[int, bytes, Any]:
    async with node.http.get(node.url(path)) as r:
        return r.status, await r.read(), r.headers


async def test_a_named_rendition_has_its_own_playlist_and_segments(node: Any) -> None:
    room = await make_room(node)
    slug = room["slug"]
    hls = node.node.app[HLS]
    units = cached_units(3.0)
    writer = hls.publish_started(slug, rendition="low")
    for unit in units:
        writer.write(unit)
    hls.publish_stopped(slug, writer)

    status, body, headers = await _get(node, f"/hls/{slug}/low/index.m3u8")
    assert status == 200 and headers["Content-Type"] == "application/vnd.apple.mpegurl"
    text = body.decode()
    assert "#EXT-X-ENDLIST" in text
    uris = segment_uris(text)
    assert uris
    status, data, headers = await _get(node, f"/hls/{slug}/low/{uris[0]}")
    assert status == 200 and data and "immutable" in headers["Cache-Control"]
    frames, _, _ = await read_hls_async(node.url(f"/hls/{slug}/low/index.m3u8"))
    assert frames == sum(1 for u in units if u.track is Track.VIDEO and not u.config)

    # the default rendition ("source") is another playlist: nothing published it
    assert hls.renditions(slug) == ["low"]
    status, body, _ = await _get(node, f"/hls/{slug}/index.m3u8")
    assert status == 404
    status, _, _ = await _get(node, f"/hls/{slug}/{uris[0]}")
    assert status == 404  # a rendition's segment is not served under the default's URL


async def test_default_rendition_keeps_todays_urls(node: Any) -> None:
    room = await make_room(node)
    slug = room["slug"]
    hls = node.node.app[HLS]
    writer = hls.publish_started(slug)  # the default rendition
    for unit in cached_units(3.0):
        writer.write(unit)
    hls.publish_stopped(slug, writer)
    status, body, _ = await _get(node, f"/hls/{slug}/index.m3u8")
    assert status == 200 and segment_uris(body.decode())
    assert hls.renditions(slug) == [DEFAULT_RENDITION]
    status, body, _ = await _get(node, f"/hls/{slug}/{DEFAULT_RENDITION}/index.m3u8")
    assert status == 200  # the default rendition by name, too


async def test_unknown_or_malformed_renditions_are_404_json(node: Any) -> None:
    room = await make_room(node)
    for path in (f"/hls/{room['slug']}/nope/index.m3u8", f"/hls/{room['slug']}/BAD!name/index.m3u8",
                 f"/hls/{room['slug']}/nope/seg-1.ts"):
        async with node.http.get(node.url(path)) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"
