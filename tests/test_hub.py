"""The stream hub: fan-out, isolation of a failing output, takeover ordering, stats."""

from __future__ import annotations

from typing import Any

from livecast.core.media import Codec, MediaUnit, Track
from livecast.pipeline.hub import LiveStream, StreamHub


class Recorder:
    def __init__(self, log: list[str], name: str, fail: bool = False) -> None:
        self.log, self.name, self.fail = log, name, fail
        self.units: list[MediaUnit] = []

    def write(self, unit: MediaUnit) -> None:
        if self.fail:
            raise RuntimeError("broken output")
        self.units.append(unit)

    def set_metadata(self, values: dict[str, Any]) -> None:
        self.log.append(f"{self.name}:meta")

    def close(self) -> None:
        self.log.append(f"{self.name}:close")


def _unit(dts: int, key: bool = False, size: int = 1000) -> MediaUnit:
    return MediaUnit(Track.VIDEO, Codec.H264, dts, dts, key, b"x" * size)


def test_failing_output_is_detached_and_others_keep_receiving() -> None:
    hub = StreamHub()
    log: list[str] = []
    outputs: list[Recorder] = []

    def factory(stream: LiveStream) -> Recorder:
        rec = Recorder(log, f"o{len(outputs)}", fail=len(outputs) == 0)
        outputs.append(rec)
        return rec

    hub.add_output_factory(factory)
    hub.add_output_factory(factory)
    stream, previous = hub.start("room", "1.2.3.4:5")
    assert previous is None
    for i in range(5):
        stream.write(_unit(i * 33))
    assert len(outputs[1].units) == 5
    assert outputs[0] not in stream.outputs


def test_takeover_creates_new_outputs_before_closing_old() -> None:
    hub = StreamHub()
    log: list[str] = []
    hub.add_output_factory(lambda s: (log.append(f"open:{s.session_id}"), Recorder(log, str(s.session_id)))[1])
    first, _ = hub.start("room", "a")
    second, previous = hub.start("room", "b")
    assert previous is first
    assert log == [f"open:{first.session_id}", f"open:{second.session_id}", f"{first.session_id}:close"]
    assert hub.stop(first) is False      # superseded: not the live one any more
    assert hub.get("room") is second
    assert hub.stop(second) is True
    assert hub.get("room") is None


def test_stats_measure_bitrate_fps_and_keyframe_interval() -> None:
    stream = LiveStream("room", "peer")
    for i in range(150):  # 5 s at 30 fps, 1000-byte frames, keyframe every 2 s
        stream.write(_unit(round(i * 1000 / 30), key=(i % 60 == 0)))
    info = stream.info()
    assert 29 <= info["fps"] <= 31.5
    assert 230_000 <= info["bitrate"] <= 250_000   # 30 fps * 8000 bits
    assert info["keyframe_interval"] == 2.0
