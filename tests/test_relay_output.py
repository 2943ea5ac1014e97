"""A push target's own queue (``relay.output.PushOutput``) on a real server: a target slower
than the publisher drops to the next keyframe, counted, and never delays the room (its HLS
keeps every frame); its task takes what is queued in batches, in order; metadata keeps its
place among the units; the sink is closed at the end of the session."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from helpers import make_room, rtmp_url, wait_playlist
from publisher import publish_async, read_hls_async

from livecast.core.media import MediaUnit, Track
from livecast.core.tasks import Supervisor
from livecast.ingest.component import HUB
from livecast.pipeline.hub import LiveStream
from livecast.relay.output import PushOutput

FPS = 30


class SlowBatchSink:
    """A target that takes 50 ms per batch: far slower than a fast publisher."""

    def __init__(self) -> None:
        self.items: list[MediaUnit | dict[str, Any]] = []
        self.batches = 0
        self.closed = asyncio.Event()

    async def write_batch(self, units: list[MediaUnit]) -> None:
        self.items.extend(units)
        self.batches += 1
        await asyncio.sleep(0.05)  # simulated work: the slow target under test

    async def set_metadata(self, values: dict[str, Any]) -> None:
        self.items.append(values)

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


async def test_a_slow_target_drops_to_the_next_keyframe_in_batches_while_hls_keeps_every_frame(node: Any) -> None:
    supervisor = Supervisor("test-push-outputs")
    slow: list[tuple[PushOutput, SlowBatchSink, LiveStream]] = []
    everything = Everything()

    def slow_output(stream: LiveStream) -> PushOutput:
        sink = SlowBatchSink()
        output = PushOutput(stream, sink, supervisor, max_units=16, max_bytes=4 * 1024 * 1024)
        slow.append((output, sink, stream))
        return output

    node.node.app[HUB].add_output_factory(slow_output)
    node.node.app[HUB].add_output_factory(lambda stream: everything)
    room = await make_room(node)
    sent = await publish_async(rtmp_url(node, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS)
    await wait_playlist(node, room["slug"], lambda text: "#EXT-X-ENDLIST" in text)
    (output, sink, stream), = slow
    await asyncio.wait_for(sink.closed.wait(), 30)
    await supervisor.close()

    units = [item for item in sink.items if isinstance(item, MediaUnit)]
    assert isinstance(sink.items[0], dict) and "width" in sink.items[0]  # the metadata came first
    assert output.dropped > 0 and stream.stats.dropped >= output.dropped
    assert len(units) + output.dropped == len(everything.units)
    assert sink.batches < len(units) / 2  # whole batches, not a wake-up per unit
    position = {id(unit): i for i, unit in enumerate(everything.units)}
    kept = [position[id(unit)] for unit in units]
    assert kept == sorted(kept)
    gaps = [(a, b) for a, b in itertools.pairwise(kept) if b != a + 1]
    assert gaps, "the slow target never dropped"
    for _, resumed in gaps:  # after a drop the target resumes on a video keyframe, audio included
        unit = everything.units[resumed]
        assert unit.track is Track.VIDEO and unit.keyframe and not unit.config
    frames, _, _ = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
    assert frames == sent.video_frames  # the room's own HLS dropped nothing
