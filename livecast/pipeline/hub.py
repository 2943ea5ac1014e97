"""The stream hub: which room is live, with which publisher, and fan-out of its units.

A publisher writes MediaUnits into its ``LiveStream``; each output (the HLS segmenter,
later recorders or relays) receives them through a synchronous ``write``. Outputs are
cheap and never block: anything slow must keep its own bounded queue. An output that
raises is detached and logged, and the publisher carries on: one broken consumer never
stops a stream.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from livecast.core.media import Codec, MediaUnit, Track

log = logging.getLogger(__name__)


class Output(Protocol):
    def write(self, unit: MediaUnit) -> None: ...
    def set_metadata(self, values: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


OutputFactory = Callable[["LiveStream"], Output]

_STATS_WINDOW_MS = 4000
# "bitrate_collapse": each of the last COLLAPSE_SECONDS one-second buckets (media time)
# carried under COLLAPSE_RATIO of the stream's average bitrate.
COLLAPSE_SECONDS = 3
COLLAPSE_RATIO = 0.1


class StreamStats:
    """Bitrate, frame rate and keyframe interval measured from the units themselves."""

    __slots__ = (
        "_first_dts",
        "_last_dts",
        "_last_key_dts",
        "_window",
        "_window_bytes",
        "_window_frames",
        "bytes",
        "dropped",
        "keyframe_interval_ms",
        "last_audio_dts",
        "last_video_dts",
        "late",
        "units",
        "video_frames",
    )

    def __init__(self) -> None:
        self.bytes = 0
        self.units = 0
        self.video_frames = 0
        self.dropped = 0
        self.late = 0  # units whose dts went backwards on their track
        self.last_video_dts: int | None = None
        self.last_audio_dts: int | None = None
        self._window: deque[tuple[int, int, int]] = deque()  # (dts, bytes, is_video_frame)
        self._window_bytes = 0
        self._window_frames = 0
        self._last_key_dts: int | None = None
        self.keyframe_interval_ms: int | None = None
        self._first_dts: int | None = None
        self._last_dts = 0

    def add(self, unit: MediaUnit) -> None:
        size = len(unit.payload)
        self.bytes += size
        self.units += 1
        if unit.config:
            return
        dts = unit.dts
        if self._first_dts is None:
            self._first_dts = dts
        self._last_dts = max(self._last_dts, dts)
        frame = 0
        if unit.track is Track.VIDEO:
            last = self.last_video_dts
            if last is not None and dts < last:
                self.late += 1
            else:
                self.last_video_dts = dts
            frame = 1
            self.video_frames += 1
            if unit.keyframe:
                if self._last_key_dts is not None and dts > self._last_key_dts:
                    self.keyframe_interval_ms = dts - self._last_key_dts
                self._last_key_dts = dts
        else:
            last = self.last_audio_dts
            if last is not None and dts < last:
                self.late += 1
            else:
                self.last_audio_dts = dts
        window = self._window
        window.append((dts, size, frame))
        self._window_bytes += size
        self._window_frames += frame
        horizon = self._last_dts - _STATS_WINDOW_MS
        while window and window[0][0] < horizon:
            _, old_size, old_frame = window.popleft()
            self._window_bytes -= old_size
            self._window_frames -= old_frame

    def _span_s(self) -> float:
        if len(self._window) < 2:
            return 0.0
        return max(self._window[-1][0] - self._window[0][0], 1) / 1000.0

    @property
    def bitrate(self) -> int:
        span = self._span_s()
        return int(self._window_bytes * 8 / span) if span else 0

    @property
    def fps(self) -> float:
        span = self._span_s()
        return round(self._window_frames / span, 2) if span else 0.0

    @property
    def media_seconds(self) -> float:
        return 0.0 if self._first_dts is None else (self._last_dts - self._first_dts) / 1000.0

    @property
    def av_drift_ms(self) -> int | None:
        """Latest audio dts minus latest video dts (positive: audio runs ahead)."""
        if self.last_audio_dts is None or self.last_video_dts is None:
            return None
        return self.last_audio_dts - self.last_video_dts

    def bitrate_collapsed(self) -> bool:
        """True when each of the last COLLAPSE_SECONDS seconds ran under COLLAPSE_RATIO of the average.

        Computed on demand from the 4 s window, so ``add`` stays cheap.
        """
        seconds = self.media_seconds
        if seconds < COLLAPSE_SECONDS * 2 or not self._window:
            return False
        limit = self.bytes / seconds * COLLAPSE_RATIO  # bytes per second
        buckets = [0] * COLLAPSE_SECONDS
        end = self._last_dts
        for dts, size, _ in self._window:
            age = (end - dts) // 1000
            if 0 <= age < COLLAPSE_SECONDS:
                buckets[age] += size
        return all(b < limit for b in buckets)


_session_ids = itertools.count(1)


class LiveStream:
    """One publisher session of one room."""

    def __init__(self, slug: str, peer: str, keyframe_limit: float | None = None) -> None:
        self.slug = slug
        self.peer = peer  # not in info(): the room JSON is public
        self.keyframe_limit = keyframe_limit  # seconds; longer GOPs get a "keyframe_interval" warning
        self.session_id = next(_session_ids)
        self.started_at = time.time()
        self.metadata: dict[str, Any] = {}
        self.codecs: dict[Track, Codec] = {}
        self.stats = StreamStats()
        self.outputs: list[Output] = []
        self.closed = False
        # Lossless outputs (HLS) that are behind: the source should stop reading until
        # ``on_relief`` is called (an RTMP publisher then waits in TCP, as it always did).
        self._congested: set[object] = set()
        self.on_relief: Callable[[], None] | None = None

    @property
    def congested(self) -> bool:
        return bool(self._congested)

    def congestion(self, output: object, behind: bool) -> None:
        """An output reports that it is behind (``behind``) or caught up again."""
        if behind:
            self._congested.add(output)
            return
        self._congested.discard(output)
        if not self._congested and self.on_relief is not None:
            relief, self.on_relief = self.on_relief, None
            relief()

    def write(self, unit: MediaUnit) -> None:
        self.stats.add(unit)
        if unit.config:
            self.codecs[unit.track] = unit.codec
        failed: list[Output] | None = None
        for output in self.outputs:
            try:
                output.write(unit)
            except Exception:
                log.exception("output %r failed on %s; detaching it", output, self.slug)
                failed = (failed or []) + [output]
        if failed:
            for output in failed:
                self._detach(output)

    def set_metadata(self, values: dict[str, Any]) -> None:
        self.metadata = dict(values)
        for output in self.outputs:
            try:
                output.set_metadata(self.metadata)
            except Exception:
                log.exception("output %r failed on metadata for %s", output, self.slug)

    def _detach(self, output: Output) -> None:
        if output in self.outputs:
            self.outputs.remove(output)

    def close_outputs(self) -> None:
        self.closed = True
        outputs, self.outputs = self.outputs, []
        for output in outputs:
            try:
                output.close()
            except Exception:
                log.exception("output %r failed to close for %s", output, self.slug)

    def info(self) -> dict[str, Any]:
        meta = self.metadata
        video = self.codecs.get(Track.VIDEO)
        audio = self.codecs.get(Track.AUDIO)
        width = meta.get("width")
        height = meta.get("height")
        return {
            "video_codec": video.value if video else None,
            "audio_codec": audio.value if audio else None,
            "width": int(width) if isinstance(width, (int, float)) else None,
            "height": int(height) if isinstance(height, (int, float)) else None,
            "fps": self.stats.fps,
            "bitrate": self.stats.bitrate,
            "keyframe_interval": (self.stats.keyframe_interval_ms or 0) / 1000.0 or None,
            "declared": {k: meta[k] for k in ("framerate", "videodatarate", "audiodatarate", "encoder") if k in meta},
            "av_drift_ms": self.stats.av_drift_ms,
            "late_packets": self.stats.late,
            "warnings": self.warnings(),
            "uptime": round(time.time() - self.started_at, 1),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
        }


    def warnings(self) -> list[str]:
        found = []
        interval = self.stats.keyframe_interval_ms
        if self.keyframe_limit and interval is not None and interval > self.keyframe_limit * 1000:
            found.append("keyframe_interval")
        if self.stats.bitrate_collapsed():
            found.append("bitrate_collapse")
        return found


class StreamHub:
    def __init__(self) -> None:
        self._live: dict[str, LiveStream] = {}
        self._factories: list[OutputFactory] = []
        # Seconds: a stream whose keyframe interval exceeds it is flagged (set to hls.segment_duration).
        self.keyframe_limit: float | None = None

    def add_output_factory(self, factory: OutputFactory) -> None:
        self._factories.append(factory)

    def __len__(self) -> int:
        return len(self._live)

    def get(self, slug: str) -> LiveStream | None:
        return self._live.get(slug)

    def live_slugs(self) -> list[str]:
        return list(self._live)

    def start(self, slug: str, peer: str) -> tuple[LiveStream, LiveStream | None]:
        """A new publisher for ``slug``; returns (its stream, the one it took over, if any).

        New outputs are created before the old ones close, so an output that continues
        across a takeover (HLS) sees the new session first and treats the old as stale.
        """
        previous = self._live.get(slug)
        stream = LiveStream(slug, peer, self.keyframe_limit)
        for factory in self._factories:
            try:
                stream.outputs.append(factory(stream))
            except Exception:
                log.exception("could not attach an output to %s", slug)
        self._live[slug] = stream
        if previous is not None:
            previous.close_outputs()
        return stream, previous

    def stop(self, stream: LiveStream) -> bool:
        """End a publisher session; False if it was already superseded (takeover)."""
        current = self._live.get(stream.slug) is stream
        if current:
            del self._live[stream.slug]
        if not stream.closed:
            stream.close_outputs()
        return current
