"""``GET /metrics``: real node, real RTMP publisher, scraped and parsed as Prometheus text."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import make_room, room_json, rtmp_url, segment_uris, wait_for, wait_playlist
from prometheus_client.parser import text_string_to_metric_families
from publisher import publish_async, start_publisher


async def scrape(node: Any) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """{family name: [(sample name, labels, value)]}."""
    async with node.http.get(node.url("/metrics")) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    """Sum of the samples named ``sample`` whose labels include ``labels``."""
    names = [name for name in families if sample.startswith(name)]
    assert names, f"{sample} not exported"
    family = families[max(names, key=len)]
    return sum(v for n, lab, v in family if n == sample and all(lab.get(k) == x for k, x in labels.items()))


async def wait_live(node: Any, slug: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        room = await room_json(node, slug)
        if room["live"] and room["stream"]["video_codec"]:
            return room
        await asyncio.sleep(0.1)
    raise AssertionError("room never went live")


async def test_fresh_node_exports_base_families(node) -> None:
    async with node.http.get(node.url("/healthz")) as r:
        assert r.status == 200

    async def probed() -> dict[str, list[tuple[str, dict[str, str], float]]] | None:
        families = await scrape(node)
        return families if value(families, "livecast_event_loop_lag_seconds_count") >= 1 else None

    families = await wait_for(probed, what="one event-loop lag probe")
    assert value(families, "livecast_publishers") == 0
    assert value(families, "livecast_rtmp_connections") == 0
    assert value(families, "livecast_chat_connections") == 0
    assert value(families, "livecast_http_requests_total", route="/healthz", method="GET", status="200") == 1
    assert value(families, "livecast_http_request_duration_seconds_count", route="/healthz") == 1
    assert value(families, "livecast_event_loop_lag_seconds_count") >= 1
    assert "livecast_event_loop_lag_last_seconds" in families


async def test_unmatched_paths_share_one_label(node) -> None:
    for path in ("/no/such/thing", "/another-missing-path-123"):
        async with node.http.get(node.url(path)) as r:
            assert r.status == 404
    families = await scrape(node)
    assert value(families, "livecast_http_requests_total", route="unmatched", status="404") == 2
    routes = {lab["route"] for n, lab, _ in families["livecast_http_requests"]}
    assert not any("missing" in r or "thing" in r for r in routes)


@pytest.mark.slow
async def test_publish_and_playback_move_the_counters(node_factory) -> None:
    node = await node_factory(hls={"segment_duration": 1.0, "window": 10})
    room = await make_room(node)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=3.0, fps=15, gop=15, realtime=True)
    await wait_live(node, slug)
    live = await scrape(node)
    assert value(live, "livecast_publishers") == 1
    assert value(live, "livecast_rtmp_connections") >= 1
    assert value(live, "livecast_ingest_bytes_total", room=slug) > 0
    assert value(live, "livecast_stream_bitrate_bps", room=slug) >= 0
    await publisher.result(timeout=30)

    playlist = await wait_playlist(node, slug, lambda text: "#EXT-X-ENDLIST" in text)
    uris = segment_uris(playlist)
    async with node.http.get(node.url(f"/hls/{slug}/{uris[0]}")) as r:
        assert r.status == 200
        segment_size = len(await r.read())
    async with node.http.get(node.url(f"/hls/{slug}/nope.ts")) as r:
        assert r.status == 404

    after = await scrape(node)
    assert value(after, "livecast_publishers") == 0
    # the ended session's totals are kept, not dropped with the stream
    ingest_bytes = "livecast_ingest_bytes_total"
    assert value(after, ingest_bytes, room=slug) >= value(live, ingest_bytes, room=slug)
    assert value(after, "livecast_ingest_units_total", room=slug) > 0
    assert value(after, "livecast_hls_segments_total", room=slug) >= len(uris)
    assert value(after, "livecast_http_requests_total", route="hls_playlist", status="200") >= 1
    assert value(after, "livecast_http_requests_total", route="hls_segment", status="200") == 1
    assert value(after, "livecast_http_requests_total", route="hls_segment", status="404") == 1
    assert value(after, "livecast_http_response_bytes_total", route="hls_segment") >= segment_size
    assert value(after, "livecast_http_request_duration_seconds_count", route="hls_playlist") >= 1

    async with node.http.delete(node.url(f"/api/v1/rooms/{slug}"), headers=room["headers"]) as r:
        assert r.status == 204
    gone = await scrape(node)
    for family in ("livecast_ingest_bytes", "livecast_hls_segments"):
        assert all(lab.get("room") != slug for _, lab, _ in gone[family])


async def test_per_room_labels_can_be_turned_off(node_factory) -> None:
    node = await node_factory(hls={"segment_duration": 1.0}, metrics={"per_room": False})
    room = await make_room(node)
    await publish_async(rtmp_url(node, room["stream_key"]), seconds=1.0, fps=15, gop=15)
    await wait_playlist(node, room["slug"], lambda text: "#EXT-X-ENDLIST" in text)
    families = await scrape(node)
    samples = families["livecast_ingest_bytes"]
    assert len(samples) == 1 and samples[0][1] == {} and samples[0][2] > 0
    assert all("room" not in lab for _, lab, _ in families["livecast_hls_segments"])
    assert "livecast_stream_bitrate_bps" not in families


async def test_edge_node_serves_metrics(node, node_factory) -> None:
    edge = await node_factory(node.settings.data_path.parent / "edge",
                              server={"role": "edge", "origin": node.base}, cluster={"secret": "s3cret-test"})
    families = await scrape(edge)
    assert "livecast_http_requests" in families
    assert "livecast_publishers" not in families  # no ingest on an edge
    assert value(families, "livecast_edge_origin_up") == 1
    assert value(families, "livecast_edge_upstream_requests_total") == 0


async def test_chat_counters(node) -> None:
    families = await scrape(node)
    for name in ("livecast_chat_connections_opened", "livecast_chat_slow_disconnects", "livecast_chat_comments",
                 "livecast_chat_gifts", "livecast_chat_frames_out"):
        assert value(families, name + "_total") == 0
    room = await make_room(node)
    async with node.http.ws_connect(node.url(f"/api/v1/rooms/{room['slug']}/chat"), headers=room["headers"]) as ws:
        await ws.send_json({"type": "comment", "text": "hello metrics"})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            frame = await ws.receive_json(timeout=5)
            if frame.get("type") == "comment":
                break
        else:
            raise AssertionError("comment never came back")
        families = await scrape(node)
        assert value(families, "livecast_chat_connections") == 1
        assert value(families, "livecast_chat_rooms") == 1
        assert value(families, "livecast_chat_connections_opened_total") == 1
        assert value(families, "livecast_chat_comments_total") == 1
        assert value(families, "livecast_chat_frames_out_total") >= 1
