"""The HLS media playlist (RFC 8216) as an object with a cached ``render()``."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

VERSION = {"mpegts": 3, "fmp4": 7}  # 3: decimal EXTINF; EXT-X-MAP needs >= 6


@dataclass(frozen=True)
class PlaylistEntry:
    sequence: int
    uri: str
    duration: float  # seconds
    program_date_time: float  # unix time of the segment's first frame
    discontinuity: bool = False
    map_uri: str | None = None  # fMP4 init segment


def extinf(duration: float) -> str:
    return f"{duration:.3f}"


def rounded_seconds(duration: float) -> int:
    """A duration rounded to the nearest integer, the way RFC 8216 compares it with the
    target duration (computed from the printed 3-decimal value)."""
    return int(float(extinf(duration)) + 0.5)


def program_date_time(unix: float) -> str:
    moment = datetime.fromtimestamp(unix, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class MediaPlaylist:
    """A live media playlist: a sliding list of entries plus the sequence bookkeeping.

    ``media_sequence`` is the number of the first listed entry; removing an entry
    that carries a discontinuity bumps ``discontinuity_sequence`` (RFC 8216 6.2.2).
    The target duration only grows: it covers every entry ever listed.
    """

    def __init__(self, kind: str, target_duration: float, first_sequence: int = 0) -> None:
        self.kind = kind
        self.entries: deque[PlaylistEntry] = deque()
        self.next_sequence = first_sequence
        self.discontinuity_sequence = 0
        self.target_duration = max(1, rounded_seconds(target_duration))
        self.ended = False
        self._rendered: bytes | None = None

    @property
    def media_sequence(self) -> int:
        return self.entries[0].sequence if self.entries else self.next_sequence

    def append(self, entry: PlaylistEntry) -> None:
        self.entries.append(entry)
        self.next_sequence = entry.sequence + 1
        self.target_duration = max(self.target_duration, rounded_seconds(entry.duration))
        self._rendered = None

    def pop_oldest(self) -> PlaylistEntry:
        entry = self.entries.popleft()
        if entry.discontinuity:
            self.discontinuity_sequence += 1
        self._rendered = None
        return entry

    def set_ended(self, ended: bool) -> None:
        if ended != self.ended:
            self.ended = ended
            self._rendered = None

    def render(self) -> bytes:
        if self._rendered is None:
            self._rendered = self._render().encode()
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
            if entry.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if entry.map_uri is not None and entry.map_uri != current_map:
                lines.append(f'#EXT-X-MAP:URI="{entry.map_uri}"')
                current_map = entry.map_uri
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{program_date_time(entry.program_date_time)}")
            lines.append(f"#EXTINF:{extinf(entry.duration)},")
            lines.append(entry.uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"
