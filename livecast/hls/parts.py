"""LL-HLS partial segments: one media segment muxed as a run of fMP4 fragments.

Each part is its own little fMP4 container (PyAV cannot ask FFmpeg's mov muxer to
flush a fragment on demand, but closing a container does): the ftyp+moov prefix is
cut off (it is the segment's init, identical for every part of a template) and what
remains is exactly one moof+mdat. ``frag_discont`` puts each part's absolute decode
time in its ``tfdt``; the moof sequence numbers are rewritten to count up across the
session, so the full segment is simply its parts' bytes joined.

Part boundaries fall on samples of the reference track (video, or audio if there is
none). A part never runs longer than the part target: the muxer holds back one
reference-track unit and only decides where it goes when the next one shows up (the
unit's duration is then known, which the last sample of a fragment needs anyway). So
parts last between the target minus one frame and the target; only the last part of
a segment (cut at a keyframe) and the last one of a stream may be shorter.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

from livecast.hls.muxer import MuxError, SegmentMuxer, split_init
from livecast.hls.template import Template
from livecast.core.media import MediaUnit, Track

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """A finished partial segment, before it gets a name."""

    index: int  # session-wide part number: names the part; the next one is the preload hint
    data: bytes  # one moof+mdat
    duration: float  # seconds
    independent: bool  # starts with a video keyframe (every part of an audio-only stream does)
    init: bytes  # the fMP4 init segment it needs
    init_id: int
    discontinuity: bool  # its segment follows a codec change or a timeline break
    wall_start: float  # unix time of its segment's first frame


# on_part(init, fragment, index, duration_ms, independent)
PartSink = Callable[[bytes, bytes, int, int, bool], None]


def set_fragment_sequence(fragment: bytes, number: int) -> bytes:
    """Rewrite the ``mfhd`` sequence number of a moof+mdat (every container starts at 1)."""
    if len(fragment) >= 24 and fragment[4:8] == b"moof" and fragment[12:16] == b"mfhd":
        return fragment[:20] + struct.pack(">I", number & 0xFFFFFFFF) + fragment[24:]
    return fragment


class PartedMuxer:
    """Muxes one segment as parts: ``add`` like ``SegmentMuxer``, then ``finish_at`` the segment's end."""

    kind = "fmp4"

    def __init__(
        self,
        template: Template,
        ref: Track,
        part_target_ms: int,
        frame_ms: dict[Track, int],
        take_index: Callable[[], int],
        on_part: PartSink,
    ) -> None:
        self._template = template
        self._ref = ref
        self._target = part_target_ms
        self._frame_ms = frame_ms  # the segmenter's live estimates (the last sample's duration)
        self._take_index = take_index
        self._on_part = on_part
        self._part: SegmentMuxer | None = None
        self._part_start: int | None = None  # dts of the part's first reference unit
        self._independent = False
        self._held: MediaUnit | None = None  # reference unit whose part is not decided yet
        self._init = b""
        self.fragments: list[bytes] = []
        self.packets = 0
        self.dropped = 0

    def add(self, unit: MediaUnit) -> bool:
        if unit.track is not self._ref:
            return self._mux(unit, self._frame_ms.get(unit.track, 0))
        held, self._held = self._held, unit
        if held is None:
            if self._part_start is None:
                self._part_start = unit.dts
            return True
        self._place(held, unit.dts)
        return True

    def finish_at(self, end_dts: int) -> bytes:
        """Close the last part (the segment or stream ends at ``end_dts``); init + all parts."""
        held, self._held = self._held, None
        if held is not None:
            self._place(held, max(end_dts, held.dts + 1))
        if self._part_start is not None and self._part is not None:
            self._close_part(max(end_dts, self._part_start + 1))
        return self._init + b"".join(self.fragments) if self.fragments else b""

    def fit_end(self, estimate: int) -> int:
        """An estimated end of the stream, shortened so it does not split the last part
        just because the last frame's duration is a guess."""
        start, held = self._part_start, self._held
        if start is not None and held is not None and held.dts < start + self._target < estimate:
            return start + self._target
        return estimate

    def abort(self) -> None:
        if self._part is not None:
            self._part.abort()
            self._part = None

    # -- internals -----------------------------------------------------------

    def _place(self, held: MediaUnit, next_dts: int) -> None:
        """Mux ``held`` (it lasts until ``next_dts``), first closing the part if ``held``
        would make it run past the target."""
        start = self._part_start
        if start is not None and held.dts > start and next_dts - start > self._target:
            self._close_part(held.dts)
        if self._part_start is None:
            self._part_start = held.dts
        first = self._part_start == held.dts
        if self._mux(held, next_dts - held.dts) and first:
            self._independent = held.keyframe or self._ref is Track.AUDIO

    def _mux(self, unit: MediaUnit, duration: int) -> bool:
        if self._part is None:
            try:
                self._part = SegmentMuxer(self._template, "fmp4")
            except MuxError as err:
                log.warning("cannot open a part muxer: %s", err)
                self.dropped += 1
                return False
            self._independent = False
        if self._part.add(unit, duration):
            self.packets += 1
            return True
        self.dropped += 1
        return False

    def _close_part(self, end_dts: int) -> None:
        muxer, self._part = self._part, None
        start, self._part_start = self._part_start, end_dts
        if muxer is None or start is None:
            return
        data = muxer.finish()
        if muxer.packets == 0 or not data:
            return
        init, fragment = split_init(data)
        if not fragment:
            return
        index = self._take_index()
        fragment = set_fragment_sequence(fragment, index + 1)
        self._init = init
        self.fragments.append(fragment)
        self._on_part(init, fragment, index, max(end_dts - start, 1), self._independent)
