"""The HLS media playlist (RFC 8216) as an object with a cached ``render()``.

With ``low_latency`` set it is an LL-HLS playlist (draft-pantos-hls-rfc8216bis):
version 9, EXT-X-SERVER-CONTROL (blocking reload; delta updates when the window is
long enough to ever skip a segment), EXT-X-PART-INF, the parts that start within the
last three target durations (rfc8216bis 6.2.2: EXT-X-PART tags SHOULD be removed once
they are more than three target durations from the end of the playlist; a part that
starts earlier is partly beyond that, so the listed parts never span more than three
target durations; the segment being made keeps all its parts), and an EXT-X-PRELOAD-HINT
for the next part. ``render(skip=True)`` is the delta update (EXT-X-SKIP replaces the
segments older than CAN-SKIP-UNTIL).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

VERSION = {"mpegts": 3, "fmp4": 7}  # 3: decimal EXTINF; EXT-X-MAP needs >= 6
LL_VERSION = 9  # EXT-X-SKIP needs 9; one version for every LL playlist
PART_WINDOW = 3  # parts are listed while they start within this many target durations of the end
SKIP_AFTER = 6  # CAN-SKIP-UNTIL, in target durations (the spec's minimum)


@dataclass(frozen=True)
class PartEntry:
    uri: str
    duration: float  # seconds
    independent: bool


@dataclass(frozen=True)
class LowLatency:
    part_target: float  # seconds (EXT-X-PART-INF:PART-TARGET)
    can_skip: bool = False  # offer delta updates (the window is longer than CAN-SKIP-UNTIL)

    @property
    def advance_part_limit(self) -> int:
        """How many parts ahead of the last one a blocking request may ask for."""
        return 3 if self.part_target >= 1 else int(3 / self.part_target)


@dataclass(frozen=True)
class PlaylistEntry:
    sequence: int
    uri: str
    duration: float  # seconds
    program_date_time: float  # unix time of the segment's first frame
    discontinuity: bool = False
    map_uri: str | None = None  # fMP4 init segment
    parts: tuple[PartEntry, ...] = ()  # LL-HLS: the parts it was made of


def extinf(duration: float) -> str:
    return f"{duration:.3f}"


def rounded_seconds(duration: float) -> int:
    """A duration rounded to the nearest integer, the way RFC 8216 compares it with the
    target duration (computed from the printed 3-decimal value)."""
    return int(float(extinf(duration)) + 0.5)


def program_date_time(unix: float) -> str:
    moment = datetime.fromtimestamp(unix, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _open_segment(lines: list[str], discontinuity: bool, map_uri: str | None, current_map: str | None,
                  date: float) -> str | None:
    """The tags before a segment's parts and URI: a discontinuity, a changed EXT-X-MAP and
    its date; returns the map in force after it."""
    if discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    if map_uri is not None and map_uri != current_map:
        lines.append(f'#EXT-X-MAP:URI="{map_uri}"')
        current_map = map_uri
    lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{program_date_time(date)}")
    return current_map


class MediaPlaylist:
    """A live media playlist: a sliding list of entries plus the sequence bookkeeping.

    ``media_sequence`` is the number of the first listed entry; removing an entry
    that carries a discontinuity bumps ``discontinuity_sequence`` (RFC 8216 6.2.2).
    The target duration only grows: it covers every entry ever listed.
    """

    def __init__(
        self, kind: str, target_duration: float, first_sequence: int = 0, low_latency: LowLatency | None = None
    ) -> None:
        self.kind = kind
        self.low_latency = low_latency
        self.pending: list[PartEntry] = []  # LL: parts of the segment being made
        self.pending_discontinuity = False
        self.pending_map: str | None = None
        self.pending_date = 0.0  # unix time of the first frame of the segment being made
        self.preload_hint: str | None = None  # LL: URI of the next part
        self._rendered_skip: bytes | None = None
        self.part_floor = (first_sequence, 0)  # LL: (sequence, part index) of the oldest listed part
        self.entries: deque[PlaylistEntry] = deque()
        self.next_sequence = first_sequence
        self.discontinuity_sequence = 0
        self.target_duration = max(1, rounded_seconds(target_duration))
        self.ended = False
        self._rendered: bytes | None = None

    @property
    def media_sequence(self) -> int:
        return self.entries[0].sequence if self.entries else self.next_sequence

    @property
    def last_sequence(self) -> int:
        """Media sequence number of the last complete segment (one less than the first if none)."""
        return self.next_sequence - 1

    def part_position(self) -> tuple[int, int]:
        """(media sequence, part index) of the newest part; part -1 if there is none."""
        if self.pending or not self.entries:
            return self.next_sequence, len(self.pending) - 1
        last = self.entries[-1]
        return last.sequence, len(last.parts) - 1

    def append(self, entry: PlaylistEntry) -> None:
        self.entries.append(entry)
        self.next_sequence = entry.sequence + 1
        self.target_duration = max(self.target_duration, rounded_seconds(entry.duration))
        self.pending = []
        self.pending_discontinuity = False
        self.pending_map = None
        self._advance_part_floor()
        self.changed()

    def add_part(
        self, part: PartEntry, discontinuity: bool, map_uri: str | None, preload_hint: str | None, wall: float
    ) -> None:
        if not self.pending:
            self.pending_discontinuity, self.pending_map = discontinuity, map_uri
            if self.entries:  # never let the date go back
                last = self.entries[-1]
                wall = max(wall, last.program_date_time + last.duration)
            self.pending_date = wall
        self.pending.append(part)
        self.preload_hint = preload_hint
        self._advance_part_floor()
        self.changed()

    def set_preload_hint(self, uri: str | None) -> None:
        if uri != self.preload_hint:
            self.preload_hint = uri
            self.changed()

    def _advance_part_floor(self) -> None:
        """Unlist the parts that start more than PART_WINDOW target durations before the
        end. Only ever moves on: parts go in playlist order and never come back (not
        even when the target duration grows). The segment being made keeps all its parts
        (it can outgrow the window before its length raises the target duration): a
        blocking request's ``_HLS_part`` counts them from its first."""
        if self.low_latency is None:
            return
        horizon = self.duration() - PART_WINDOW * self.target_duration - 1e-6
        being_made = (self.next_sequence, 0)
        first = next(((sequence, index) for sequence, index, start in self._part_starts() if start >= horizon),
                     being_made)
        self.part_floor = max(self.part_floor, min(first, being_made))

    def _part_starts(self) -> Iterator[tuple[int, int, float]]:
        """(sequence, index, start in seconds from the first listed segment's) of every part,
        oldest first, those of the segment being made included."""
        clock = 0.0
        segments = [(entry.sequence, entry.parts, entry.duration) for entry in self.entries]
        for sequence, parts, duration in [*segments, (self.next_sequence, tuple(self.pending), 0.0)]:
            start = clock
            for index, part in enumerate(parts):
                yield sequence, index, start
                start += part.duration
            clock += duration

    def duration(self) -> float:
        """Seconds from the start of the first listed segment to the end of the newest part."""
        return sum(entry.duration for entry in self.entries) + sum(part.duration for part in self.pending)

    def listed_parts(self, sequence: int, parts: tuple[PartEntry, ...] | list[PartEntry]) -> list[PartEntry]:
        """The parts of segment ``sequence`` the LL playlist lists."""
        floor_sequence, floor_index = self.part_floor
        if sequence < floor_sequence:
            return []
        return list(parts[floor_index:]) if sequence == floor_sequence else list(parts)

    def changed(self) -> None:
        self._rendered = self._rendered_skip = None

    def pop_oldest(self) -> PlaylistEntry:
        entry = self.entries.popleft()
        if entry.discontinuity:
            self.discontinuity_sequence += 1
        self.changed()
        return entry

    def set_ended(self, ended: bool) -> None:
        if ended != self.ended:
            self.ended = ended
            if ended:
                self.preload_hint = None
            self.changed()

    def render(self, skip: bool = False) -> bytes:
        if skip and self.low_latency is not None and self.low_latency.can_skip and not self.ended:
            if self._rendered_skip is None:
                self._rendered_skip = self._render_ll(skip=True).encode()
            return self._rendered_skip
        if self._rendered is None:
            self._rendered = (self._render() if self.low_latency is None else self._render_ll(skip=False)).encode()
        return self._rendered

    def _render(self) -> str:
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{VERSION[self.kind]}",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        current_map: str | None = None
        for entry in self.entries:
            current_map = _open_segment(lines, entry.discontinuity, entry.map_uri, current_map,
                                        entry.program_date_time)
            lines.append(f"#EXTINF:{extinf(entry.duration)},")
            lines.append(entry.uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    # -- LL-HLS ------------------------------------------------------------------

    def _render_ll(self, skip: bool) -> str:
        ll = self.low_latency
        assert ll is not None
        target = self.target_duration
        control = "CAN-BLOCK-RELOAD=YES"
        if ll.can_skip:
            control += f",CAN-SKIP-UNTIL={SKIP_AFTER * target:.1f}"
        control += f",PART-HOLD-BACK={3 * ll.part_target:.3f},HOLD-BACK={3 * target:.1f}"
        ends: list[float] = []  # each entry's end, in seconds from the first listed entry's start
        clock = 0.0
        for entry in self.entries:
            clock += entry.duration
            ends.append(clock)
        end = clock + sum(part.duration for part in self.pending)
        skipped = 0
        if skip:
            while skipped < len(ends) - 1 and end - ends[skipped] >= SKIP_AFTER * target:
                skipped += 1
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{LL_VERSION}",
            f"#EXT-X-TARGETDURATION:{target}",
            f"#EXT-X-SERVER-CONTROL:{control}",
            f"#EXT-X-PART-INF:PART-TARGET={ll.part_target:.3f}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
        current_map: str | None = None
        for index, entry in enumerate(self.entries):
            if index < skipped:
                continue
            current_map = _open_segment(lines, entry.discontinuity, entry.map_uri, current_map,
                                        entry.program_date_time)
            lines.extend(_part_line(part) for part in self.listed_parts(entry.sequence, entry.parts))
            lines.append(f"#EXTINF:{extinf(entry.duration)},")
            lines.append(entry.uri)
        if self.pending:
            _open_segment(lines, self.pending_discontinuity, self.pending_map, current_map, self.pending_date)
            lines.extend(_part_line(part) for part in self.listed_parts(self.next_sequence, self.pending))
        if self.preload_hint is not None and not self.ended:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.preload_hint}"')
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def _part_line(part: PartEntry) -> str:
    independent = ",INDEPENDENT=YES" if part.independent else ""
    return f'#EXT-X-PART:DURATION={part.duration:.3f},URI="{part.uri}"{independent}'
