"""Units to segments for one publish session.

Before the first segment a ``StartGate`` buffers units until it knows which tracks
the stream has; then the segmenter opens a template and muxes units into one
``SegmentMuxer`` per segment, cutting at the first video keyframe once the target
duration is reached (audio-only: by duration). A changed config (or a track that
shows up late) makes a new template at the next cut point, and a timestamp jump
makes a new timeline; both mark the next segment as a discontinuity.
With a part target (LL-HLS, fMP4 only) each segment is muxed as parts by a
``PartedMuxer``, reported through ``on_part`` as they complete; a segment's bytes
are then its parts joined. MPEG-TS segments are rewritten by a ``TsContinuity`` so
their continuity counters run on across the session.
It never raises for bad media: non-increasing timestamps, units for unknown
tracks and packets FFmpeg rejects are dropped and counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from livecast.hls.continuity import TsContinuity
from livecast.hls.gate import StartGate
from livecast.hls.muxer import MuxError, SegmentMuxer, split_init
from livecast.hls.parts import Part, PartedMuxer
from livecast.hls.template import Template, TemplateError, needs_config, open_template
from livecast.core.media import Codec, MediaUnit, Track

log = logging.getLogger(__name__)

RESET_MS = 1000  # the reference track going back more than this starts a new timeline
GAP_MS = 10_000  # ... and so does jumping forward more than this
FORCE_CUT_MS = 30_000  # no keyframe for this long (intra refresh?): cut anyway
FMP4_ONLY = (Codec.HEVC, Codec.AV1)  # browsers and Apple players want these in fMP4
DEFAULT_FRAME_MS = {Track.VIDEO: 33, Track.AUDIO: 21}


@dataclass(frozen=True)
class Segment:
    """A finished media segment, before it gets a name."""

    kind: str  # "mpegts" or "fmp4"
    data: bytes | bytearray  # TS: the buffer its counters were patched in, never changed after
    duration: float  # seconds
    start_dts: int
    wall_start: float  # unix time of the first frame
    discontinuity: bool  # codec change or timeline break before this segment
    init: bytes | None  # fMP4 init segment this one needs
    init_id: int  # changes whenever the init changes


class Segmenter:
    def __init__(
        self,
        kind: str,
        target_duration: float,
        on_segment: Callable[[Segment], None],
        *,
        has_video: bool | None = None,
        has_audio: bool | None = None,
        clock: Callable[[], float] = time.time,
        part_target: float | None = None,
        on_part: Callable[[Part], None] | None = None,
    ) -> None:
        self.part_target_ms = int(round(part_target * 1000)) if part_target else 0
        if self.part_target_ms:
            kind = "fmp4"  # LL-HLS parts are fMP4 fragments
        self.configured_kind = kind
        self._on_part = on_part
        self.next_part = 0  # number of the next part (the preload hint)
        self.kind = kind
        self.target_ms = int(round(target_duration * 1000))
        self.counters: dict[str, int] = {}
        self.gate = StartGate(has_video, has_audio, self._count)
        self._on_segment = on_segment
        self._clock = clock
        self._template: Template | None = None
        self._muxer: SegmentMuxer | PartedMuxer | None = None
        self._ref = Track.VIDEO  # the track whose timestamps define segment boundaries
        self._seg_start = 0
        self._last_dts: dict[Track, int] = {}
        self._frame_ms: dict[Track, int] = dict(DEFAULT_FRAME_MS)
        self._anchor: tuple[float, int] | None = None  # (wall clock, dts) of the timeline
        self._configs: dict[Track, MediaUnit] = {}
        self._codecs: dict[Track, Codec] = {}  # what the template's tracks carry
        self._changed: set[Track] = set()  # tracks waiting for a new template
        self._resync = False  # timeline break: drop until the next cut point
        self._discontinuity = False
        self._init: bytes | None = None
        self._init_id = -1
        self._last_audio: MediaUnit | None = None
        self._continuity = TsContinuity()  # MPEG-TS counters run on from segment to segment
        self._closed = False

    @property
    def started(self) -> bool:
        return self._template is not None

    # -- input -------------------------------------------------------------

    def push(self, unit: MediaUnit) -> None:
        if self._closed:
            return
        if self._anchor is None and not unit.config:
            self._anchor = (self._clock(), unit.dts)
        if unit.track is Track.AUDIO and not unit.config:
            self._last_audio = unit
        if self._template is None:
            self.gate.add(unit)
            self._maybe_start(final=False)
        elif unit.config:
            self._config_unit(unit)
        else:
            self._media_unit(unit)

    def set_hints(self, has_video: bool | None, has_audio: bool | None) -> None:
        self.gate.set_hints(has_video, has_audio)
        if self._template is None and not self._closed:
            self._maybe_start(final=False)

    def set_frame_rate(self, fps: float) -> None:
        if 1 <= fps <= 240:
            self._frame_ms[Track.VIDEO] = max(1, round(1000 / fps))

    def flush(self) -> None:
        """End of the session: start with whatever is known, emit the last segment."""
        if self._closed:
            return
        if self._template is None:
            self._maybe_start(final=True)
        self._finish_segment(None)
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._muxer is not None:
            self._muxer.abort()
            self._muxer = None
        if self._template is not None:
            self._template.close()
        self.gate.clear()

    # -- start ---------------------------------------------------------------

    def _maybe_start(self, final: bool) -> None:
        plan = self.gate.plan(final)
        if plan is None:
            return
        self._configs = dict(plan.configs)
        try:
            self._open_template(plan.keyframe, plan.audio_frame, plan.with_audio)
        except (TemplateError, MuxError) as err:
            self._count("template_errors", f"cannot start HLS for this stream: {err}")
            self.gate.reject(plan)
            return
        for unit in plan.units:
            self._media_unit(unit)

    def _open_template(self, keyframe: MediaUnit | None, audio_frame: MediaUnit | None, with_audio: bool) -> None:
        video_config = self._configs.get(Track.VIDEO) if keyframe is not None else None
        audio_config = self._configs.get(Track.AUDIO) if with_audio else None
        if with_audio and audio_frame is None:
            audio_frame = self._last_audio
        if audio_frame is not None and audio_config is not None and audio_frame.codec is not audio_config.codec:
            audio_frame = None
        if audio_frame is not None and audio_config is None and needs_config(audio_frame.codec):
            audio_frame = None
        template = open_template(video_config, keyframe, audio_config, audio_frame)
        kind = "fmp4" if video_config is not None and video_config.codec in FMP4_ONLY else self.configured_kind
        try:
            SegmentMuxer(template, kind).abort()  # the muxer accepts these streams (header written)
        except MuxError:
            template.close()
            raise
        if self._template is not None:
            self._template.close()
            self._discontinuity = True
        self._template = template
        self._codecs = {}
        if video_config is not None:
            self._codecs[Track.VIDEO] = video_config.codec
        if template.audio is not None:
            audio = audio_config or audio_frame
            assert audio is not None
            self._codecs[Track.AUDIO] = audio.codec
        self._ref = Track.VIDEO if template.video is not None else Track.AUDIO
        self.kind = kind
        self._init = None
        self._init_id += 1

    # -- after start ---------------------------------------------------------

    def _current_config(self, track: Track) -> MediaUnit | None:
        template = self._template
        if template is None:
            return None
        return template.video_config if track is Track.VIDEO else template.audio_config

    def _in_template(self, track: Track) -> bool:
        template = self._template
        return template is not None and (template.video if track is Track.VIDEO else template.audio) is not None

    def _config_unit(self, unit: MediaUnit) -> None:
        current = self._current_config(unit.track)
        if current is not None and current.codec is unit.codec and current.payload == unit.payload:
            self._changed.discard(unit.track)
            self._configs[unit.track] = unit
            return
        self._configs[unit.track] = unit
        self._changed.add(unit.track)

    def _media_unit(self, unit: MediaUnit) -> None:
        track = unit.track
        if not self._in_template(track) and track is Track.AUDIO and not needs_config(unit.codec):
            self._changed.add(track)  # e.g. MP3 showing up in a video-only stream
        expected = self._expected_codec(track)
        if expected is not None and unit.codec is not expected:
            self._count("dropped_codec_mismatch", "unit of another codec than its track's config")
            return
        checked = self._check_time(unit)
        if checked is None:
            return
        unit = checked
        if self._is_cut_point(unit):
            self._cut(unit)
        elif self._resync or self._muxer is None or track in self._changed:
            self._count("dropped_waiting", "units before the next keyframe after a change")
            return
        if not self._in_template(track):
            self._count("dropped_untracked", "unit for a track the stream did not start with")
            return
        if self._muxer is not None and not self._muxer.add(unit):
            self._count("dropped_invalid", "packet rejected by the muxer")

    def _expected_codec(self, track: Track) -> Codec | None:
        if track in self._changed:
            config = self._configs.get(track)
            return config.codec if config is not None else None
        return self._codecs.get(track)

    def _check_time(self, unit: MediaUnit) -> MediaUnit | None:
        """Drop or fix units with bad timestamps; detect timeline breaks."""
        if unit.dts < 0:
            self._count("dropped_negative", "negative timestamp")
            return None
        if unit.pts < unit.dts:
            unit = replace(unit, pts=unit.dts)
        track = unit.track
        last = self._last_dts.get(track)
        if last is not None:
            if unit.dts <= last:
                if track is not self._ref or last - unit.dts <= RESET_MS:
                    self._count("dropped_backwards", "non-increasing timestamp within a track")
                    return None
                self._timeline_break(f"timestamps went back {last - unit.dts} ms")
                last = None
            elif track is self._ref and unit.dts - last > GAP_MS:
                self._timeline_break(f"timestamps jumped forward {unit.dts - last} ms")
                last = None
        if last is not None and unit.dts - last <= 1000:
            self._frame_ms[track] = unit.dts - last
        self._last_dts[track] = unit.dts
        return unit

    def _is_cut_point(self, unit: MediaUnit) -> bool:
        video_cut = self._ref is Track.VIDEO or Track.VIDEO in self._changed
        if video_cut:
            if unit.track is not Track.VIDEO:
                return False
            if not unit.keyframe:
                if self._changed or self._resync or self._muxer is None:
                    return False
                if unit.dts - self._seg_start < FORCE_CUT_MS:
                    return False
                self._count("forced_cuts", "no keyframe for 30 s, cutting a segment without one")
                return True
            if Track.VIDEO in self._changed and Track.VIDEO not in self._configs:
                return False
        elif unit.track is not Track.AUDIO:
            return False
        if self._changed or self._resync or self._muxer is None:
            return True
        return unit.dts - self._seg_start + self._frame_ms[self._ref] // 2 >= self.target_ms

    def _cut(self, unit: MediaUnit) -> None:
        self._finish_segment(unit.dts)
        if self._changed:
            self._changed.clear()
            video = unit if unit.track is Track.VIDEO else None
            with_audio = Track.AUDIO in self._configs or self._last_audio is not None
            try:
                self._open_template(video, None, with_audio)
            except (TemplateError, MuxError) as err:
                # a bad config must not stop the stream: go on with the old one
                self._count("template_errors", f"new config rejected, keeping the old one: {err}")
                self._revert_configs()
        if self._resync:
            self._resync = False
            self._discontinuity = True
            self._anchor = (self._clock(), unit.dts)
        assert self._template is not None
        try:
            if self.part_target_ms and self.kind == "fmp4":
                self._muxer = PartedMuxer(
                    self._template, self._ref, self.part_target_ms, self._frame_ms, self._take_part_index, self._part,
                )
            else:
                self._muxer = SegmentMuxer(self._template, self.kind)
        except MuxError as err:
            self._count("mux_errors", str(err))
            return
        self._seg_start = unit.dts

    def _revert_configs(self) -> None:
        for track in Track:
            current = self._current_config(track)
            if current is not None:
                self._configs[track] = current
            elif not self._in_template(track):
                self._configs.pop(track, None)

    def _timeline_break(self, reason: str) -> None:
        self._count("timeline_breaks", reason)
        self._finish_segment(None)
        self._resync = True
        self._last_dts.clear()

    def _finish_segment(self, next_dts: int | None) -> None:
        muxer, self._muxer = self._muxer, None
        if muxer is None:
            return
        if next_dts is None:
            next_dts = max(self._last_dts.get(self._ref, self._seg_start), self._seg_start) + self._frame_ms[self._ref]
            if isinstance(muxer, PartedMuxer):
                next_dts = muxer.fit_end(next_dts)
        init = None
        data: bytes | bytearray
        if isinstance(muxer, PartedMuxer) or self.kind == "fmp4":
            whole = muxer.finish_at(next_dts) if isinstance(muxer, PartedMuxer) else muxer.finish()
            if muxer.packets == 0 or not whole:
                return
            init, data = split_init(whole)
            self._check_init(init)
        else:  # TS: counters patched in the muxer's buffer, which becomes the segment (no copy)
            data = muxer.finish_mutable()
            if muxer.packets == 0 or not data:
                return
            data = self._continuity.rewrite(data, self._discontinuity)
        wall, anchor_dts = self._anchor or (self._clock(), self._seg_start)
        segment = Segment(
            kind=self.kind,
            data=data,
            duration=max(next_dts - self._seg_start, 1) / 1000,
            start_dts=self._seg_start,
            wall_start=wall + (self._seg_start - anchor_dts) / 1000,
            discontinuity=self._discontinuity,
            init=init,
            init_id=self._init_id,
        )
        self._discontinuity = False
        self._on_segment(segment)

    def _check_init(self, init: bytes) -> None:
        if self._init is None:
            self._init = init
        elif init != self._init:
            log.warning("fMP4 init segment changed without a config change")
            self._init, self._init_id = init, self._init_id + 1

    def _take_part_index(self) -> int:
        index = self.next_part
        self.next_part += 1
        return index

    def _part(self, init: bytes, data: bytes, index: int, duration_ms: int, independent: bool) -> None:
        self._check_init(init)
        if self._on_part is not None:
            wall, anchor_dts = self._anchor or (self._clock(), self._seg_start)
            self._on_part(Part(
                index, data, duration_ms / 1000, independent, init, self._init_id, self._discontinuity,
                wall + (self._seg_start - anchor_dts) / 1000,
            ))

    def _count(self, name: str, message: str) -> None:
        count = self.counters.get(name, 0) + 1
        self.counters[name] = count
        if count & (count - 1) == 0:  # 1, 2, 4, 8, ...: a bounded number of log lines
            log.warning("%s (%s: %d so far)", message, name, count)
