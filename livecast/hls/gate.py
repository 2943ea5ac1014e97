"""Start-up buffering: wait until we know which tracks a stream has.

A track is *ready* when its config has arrived (MP3 needs none) and, for video,
a keyframe too. The gate waits for a track that is hinted present or has been
seen for up to ``WAIT_MS`` of media; a track never seen counts as absent after
``DETECT_MS`` of media. Units wait in a bounded buffer; the plan hands them back
in feeding order, starting with the first video keyframe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from livecast.hls.template import needs_config
from livecast.core.media import MediaUnit, Track

DETECT_MS = 1000
WAIT_MS = 3000
MAX_PENDING_UNITS = 4000
MAX_PENDING_BYTES = 64 * 1024 * 1024


@dataclass
class StartPlan:
    configs: dict[Track, MediaUnit]
    keyframe: MediaUnit | None  # None: audio-only
    audio_frame: MediaUnit | None
    with_audio: bool
    units: list[MediaUnit]  # media units to feed, the keyframe (if any) first


class StartGate:
    def __init__(self, has_video: bool | None, has_audio: bool | None, count: Callable[[str, str], None]) -> None:
        self.hints: dict[Track, bool | None] = {Track.VIDEO: has_video, Track.AUDIO: has_audio}
        self.configs: dict[Track, MediaUnit] = {}
        self._count = count
        self.skipped = 0
        self._first_key: MediaUnit | None = None
        self._configless_audio = False
        self._seen: set[Track] = set()
        self._pending: list[MediaUnit] = []
        self._bytes = 0
        self._low: int | None = None
        self._high: int | None = None

    def set_hints(self, has_video: bool | None, has_audio: bool | None) -> None:
        for track, value in ((Track.VIDEO, has_video), (Track.AUDIO, has_audio)):
            if value is not None and self.hints[track] is None:
                self.hints[track] = value

    def add(self, unit: MediaUnit) -> None:
        self._seen.add(unit.track)
        if unit.config:
            self.configs[unit.track] = unit
            if unit.track is Track.VIDEO:
                self._first_key = self._find_keyframe()
            return
        self._low = unit.dts if self._low is None else min(self._low, unit.dts)
        self._high = unit.dts if self._high is None else max(self._high, unit.dts)
        self._pending.append(unit)
        self._bytes += unit.size
        if unit.track is Track.AUDIO and not needs_config(unit.codec):
            self._configless_audio = True
        elif self._first_key is None and self._is_keyframe(unit):
            self._first_key = unit
        if len(self._pending) > MAX_PENDING_UNITS or self._bytes > MAX_PENDING_BYTES:
            drop = max(1, len(self._pending) // 4)
            self._bytes -= sum(u.size for u in self._pending[:drop])
            del self._pending[:drop]
            self._first_key = self._find_keyframe()
            self._count("dropped_overflow", "start-up buffer full, dropping the oldest units")

    def clear(self) -> None:
        self._pending = []
        self._bytes = 0
        self._first_key = None
        self._configless_audio = False

    def _is_keyframe(self, unit: MediaUnit) -> bool:
        config = self.configs.get(Track.VIDEO)
        return unit.track is Track.VIDEO and unit.keyframe and config is not None and unit.codec is config.codec

    def _find_keyframe(self) -> MediaUnit | None:
        return next((u for u in self._pending if self._is_keyframe(u)), None)

    def _ready(self, track: Track) -> bool:
        if track is Track.VIDEO:
            return self._first_key is not None
        return Track.AUDIO in self.configs or self._configless_audio

    def _waiting(self, track: Track, span: int) -> bool:
        if self._ready(track):
            return False
        hint = self.hints[track]
        if hint is False:
            return False
        if hint is True or track in self._seen:
            return span < WAIT_MS
        return span < DETECT_MS

    def plan(self, final: bool) -> StartPlan | None:
        """What to start with, or None to keep waiting. Hands the buffered units over."""
        span = (self._high - self._low) if self._low is not None and self._high is not None else 0
        if not final and any(self._waiting(track, span) for track in Track):
            return None
        with_video = self._ready(Track.VIDEO)
        with_audio = self._ready(Track.AUDIO)
        if not with_video and not with_audio:
            return None
        pending = self._pending
        keyframe = self._first_key if with_video else None
        if keyframe is not None:
            position = next(i for i, u in enumerate(pending) if u is keyframe)
            units = [keyframe] + [
                u for i, u in enumerate(pending)
                if u is not keyframe and (i > position or (u.track is Track.AUDIO and u.dts >= keyframe.dts))
            ]
        else:
            units = list(pending)
        if not with_audio:
            units = [u for u in units if u.track is Track.VIDEO]
        if not with_video:
            units = [u for u in units if u.track is Track.AUDIO]
        self.skipped += len(pending) - len(units)  # before the first keyframe, or an absent track: normal
        audio_frame = next((u for u in units if u.track is Track.AUDIO), None) if with_audio else None
        self.clear()
        wanted = {Track.VIDEO: with_video, Track.AUDIO: with_audio}
        configs = {track: config for track, config in self.configs.items() if wanted[track]}
        return StartPlan(configs, keyframe, audio_frame, with_audio, units)

    def reject(self, plan: StartPlan) -> None:
        """The template for this plan failed: wait for newer data (and a later keyframe)."""
        self._low = self._high = None
