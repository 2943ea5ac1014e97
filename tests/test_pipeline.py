"""The media pipeline: the HLS output off the RTMP read path, a slow output dropping to the
next keyframe, and a second kind of source going through the same session manager."""

from __future__ import annotations

import asyncio
import itertools
import sys
from typing import Any

import pytest
from helpers import make_room, room_json, rtmp_url, wait_playlist
from media_gen import cached_units
from publisher import PublishFailed, publish_async, read_hls_async, start_publisher
from test_chat_support import connect, next_frame

from livecast.core.events import StreamStarted, StreamStopped
from livecast.core.media import MediaUnit, Track
from livecast.core.tasks import Supervisor
from livecast.hls.service import StreamWriter
from livecast.ingest.component import HUB, SESSIONS
from livecast.keys import EVENTS
from livecast.pipeline.hub import LiveStream, StreamHub
from livecast.pipeline.outputs import QueuedOutput

FPS = 30


def _ended(text: str) -> bool:
    return "#EXT-X-ENDLIST" in text


def _callers() -> set[str]:
    """The qualified names of every function on the current call stack."""
    names: set[str] = set()
    frame = sys._getframe(1)
    while frame is not None:
        names.add(frame.f_code.co_qualname)
        frame = frame.f_back
    return names


async def test_hls_muxing_runs_in_the_outputs_drain_not_in_data_received(node: Any, monkeypatch: Any) -> None:
    stacks: list[set[str]] = []
    original = StreamWriter.write

    def recording_write(self: StreamWriter, unit: MediaUnit) -> None:
        stacks.append(_callers())
        original(self, unit)

    monkeypatch.setattr(StreamWriter, "write", recording_write)
    room = await make_room(node)
    sent = await publish_async(rtmp_url(node, room["stream_key"]), seconds=3.0, fps=FPS, gop=FPS)
    await wait_playlist(node, room["slug"], _ended)
    assert len(stacks) >= sent.video_frames + sent.audio_frames
    # every unit reaches the segmenter from the output's own drain (a loop callback of its
    # own), never from inside the RTMP connection's data_received
    assert all("QueuedOutput._run_batch" in stack for stack in stacks)
    assert not any("RtmpConnection.data_received" in stack for stack in stacks)
    frames, _, _ = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
    assert frames == sent.video_frames


class SlowSink:
    """A consumer that takes 20 ms per unit: far slower than a fast publisher."""

    def __init__(self) -> None:
        self.units: list[MediaUnit] = []
        self.closed = asyncio.Event()

    async def write(self, unit: MediaUnit) -> None:
        self.units.append(unit)
        await asyncio.sleep(0.02)  # simulated work: the slow consumer under test

    async def set_metadata(self, values: dict[str, Any]) -> None:
        pass

    async def close(self) -> None:
        self.closed.set()


class Everything:
    """A synchronous output that keeps every unit the publisher wrote, in order."""

    def __init__(self) -> None:
        self.units: list[MediaUnit] = []

    def write(self, unit: MediaUnit) -> None:
        self.units.append(unit)

    def set_metadata(self, values: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


async def test_a_slow_output_drops_to_the_next_keyframe_while_hls_keeps_every_frame(node: Any) -> None:
    supervisor = Supervisor("test-outputs")
    slow: list[tuple[QueuedOutput, SlowSink, LiveStream]] = []
    everything = Everything()

    def slow_output(stream: LiveStream) -> QueuedOutput:
        sink = SlowSink()
        output = QueuedOutput(stream, sink, supervisor, max_units=16)
        slow.append((output, sink, stream))
        return output

    node.node.app[HUB].add_output_factory(slow_output)
    node.node.app[HUB].add_output_factory(lambda stream: everything)
    room = await make_room(node)
    sent = await publish_async(rtmp_url(node, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS)
    await wait_playlist(node, room["slug"], _ended)
    (output, sink, stream), = slow
    await asyncio.wait_for(sink.closed.wait(), 30)
    await supervisor.close()

    assert output.dropped > 0
    assert stream.stats.dropped >= output.dropped
    assert len(sink.units) + output.dropped == len(everything.units)
    position = {id(unit): i for i, unit in enumerate(everything.units)}
    kept = [position[id(unit)] for unit in sink.units]
    assert kept == sorted(kept)
    gaps = [(a, b) for a, b in itertools.pairwise(kept) if b != a + 1]
    assert gaps, "the slow output never dropped"
    for _, resumed in gaps:  # after a drop the output resumes on a video keyframe, audio included
        unit = everything.units[resumed]
        assert unit.track is Track.VIDEO and unit.keyframe and not unit.config
    frames, _, _ = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
    assert frames == sent.video_frames  # the HLS output dropped nothing


class FileSource:
    """A second kind of source: units from a file (made by media_gen), no RTMP."""

    def __init__(self, units: tuple[MediaUnit, ...]) -> None:
        self.units = units
        self.peer = "file:test.flv"
        self.stop_reasons: list[str | None] = []
        self.stopped = asyncio.Event()

    def stop(self, reason: str | None) -> None:
        self.stop_reasons.append(reason)
        self.stopped.set()


def _recorder(node: Any) -> list[object]:
    seen: list[object] = []
    node.node.app[EVENTS].subscribe(seen.append)
    return seen


async def test_a_file_source_goes_live_stops_and_fires_the_same_events(node: Any) -> None:
    room = await make_room(node)
    slug = room["slug"]
    events = _recorder(node)
    ws, _ = await connect(node, slug)
    units = cached_units(3.0)
    source = FileSource(units)
    session = node.node.app[SESSIONS].begin(slug, source)
    assert (await next_frame(ws, "stream"))["live"] is True
    for unit in units:
        session.write(unit)
    info = await room_json(node, slug)
    assert info["live"] is True and info["stream"]["video_codec"] == "h264"
    await wait_playlist(node, slug, lambda text: ".ts" in text)
    assert session.end() is True
    assert (await next_frame(ws, "stream"))["live"] is False
    await wait_playlist(node, slug, _ended)
    assert (await room_json(node, slug))["live"] is False
    starts = [e for e in events if isinstance(e, StreamStarted)]
    stops = [e for e in events if isinstance(e, StreamStopped)]
    assert [e.slug for e in starts] == [slug] and starts[0].info == {"peer": "file:test.flv"}
    assert [e.slug for e in stops] == [slug]
    assert source.stop_reasons == []
    frames, _, _ = await read_hls_async(node.url(f"/hls/{slug}/index.m3u8"))
    assert frames == sum(1 for u in units if u.track is Track.VIDEO and not u.config)
    await ws.close()


async def test_a_file_source_and_an_rtmp_publisher_take_over_from_each_other(node_factory: Any) -> None:
    node = await node_factory(hls={"segment_duration": 1.0, "window": 20})
    room = await make_room(node)
    slug = room["slug"]
    events = _recorder(node)
    sessions = node.node.app[SESSIONS]
    url = rtmp_url(node, room["stream_key"])

    rtmp = await start_publisher(url, seconds=30, realtime=True)
    try:
        await wait_playlist(node, slug, lambda text: ".ts" in text)
        source = FileSource(cached_units(3.0))
        session = sessions.begin(slug, source)  # the file takes over from RTMP
        with pytest.raises(PublishFailed):
            await rtmp.result(timeout=15)
    finally:
        await rtmp.stop()
    assert (await room_json(node, slug))["live"] is True
    for unit in source.units:
        session.write(unit)

    again = await start_publisher(url, seconds=30, realtime=True)
    try:
        await asyncio.wait_for(source.stopped.wait(), 15)  # RTMP takes over from the file
        assert source.stop_reasons == [None]
        assert session.end() is False  # superseded: no stop event for it
        assert (await room_json(node, slug))["live"] is True
    finally:
        await again.stop()
    await wait_playlist(node, slug, _ended)
    kinds = [type(e).__name__ for e in events if isinstance(e, (StreamStarted, StreamStopped))]
    assert kinds == ["StreamStarted", "StreamStopped"]  # takeovers keep the room live throughout
    text = await wait_playlist(node, slug, _ended)
    assert text.count("#EXT-X-DISCONTINUITY") >= 2


async def test_a_lossless_output_congests_the_stream_instead_of_dropping() -> None:
    supervisor = Supervisor("test-lossless")
    sink = SlowSink()
    hub = StreamHub()
    outputs: list[QueuedOutput] = []
    hub.add_output_factory(lambda s: outputs.append(QueuedOutput(s, sink, supervisor, max_units=64, lossless=True))
                           or outputs[-1])
    stream, _ = hub.start("room", "test")
    relieved = asyncio.Event()
    units = cached_units(2.0)
    for unit in units:
        stream.write(unit)
    assert stream.congested  # the source is told to stop reading ...
    stream.on_relief = relieved.set
    await asyncio.wait_for(relieved.wait(), 30)  # ... until the output has caught up
    assert not stream.congested
    hub.stop(stream)
    await asyncio.wait_for(sink.closed.wait(), 30)
    await supervisor.close()
    assert outputs[0].dropped == 0 and sink.units == list(units)  # nothing dropped


async def test_a_sync_sink_is_fed_after_the_write_returns_and_holds_the_source_back() -> None:
    supervisor = Supervisor("test-sync-sink")
    sink = Everything()  # plain methods: fed from loop callbacks, not a task per unit
    hub = StreamHub()
    outputs: list[QueuedOutput] = []
    hub.add_output_factory(lambda s: outputs.append(QueuedOutput(s, sink, supervisor, lossless=True,
                                                                 congest_bytes=64 * 1024)) or outputs[-1])
    stream, _ = hub.start("room", "test")
    relieved = asyncio.Event()
    units = cached_units(2.0)
    for unit in units:
        stream.write(unit)
    assert sink.units == []  # nothing reached the sink inside the publisher's write
    assert stream.congested  # 64 KiB queued: the source is told to stop reading ...
    stream.on_relief = relieved.set
    await asyncio.wait_for(relieved.wait(), 30)  # ... until the output has caught up
    assert not stream.congested
    hub.stop(stream)
    await asyncio.wait_for(supervisor.wait(), 30)
    await supervisor.close()
    assert outputs[0].dropped == 0 and sink.units == list(units)  # nothing dropped, in order
