"""Multivariant playlists: one EXT-X-STREAM-INF per rendition of a room.

BANDWIDTH is the peak and AVERAGE-BANDWIDTH the mean bit rate of the rendition's listed
segments (RFC 8216 4.3.4.2: measured over the segments, container overhead included);
before a rendition has segments the caller's estimate stands in for both.
"""

from __future__ import annotations

from dataclasses import dataclass

from livecast.hls.room import Room

VERSION = 6


@dataclass(frozen=True)
class StreamInf:
    uri: str
    bandwidth: int
    average_bandwidth: int
    width: int
    height: int
    fps: float
    codecs: str


def measured_bandwidth(room: Room) -> tuple[int, int] | None:
    """(peak, average) bits per second over the room's listed segments; None without any."""
    playlist = room.playlist
    if playlist is None:
        return None
    peak, bits, seconds = 0, 0, 0.0
    for entry in playlist.entries:
        data = room.segment(entry.uri)
        if data is None or entry.duration <= 0:
            continue
        size = len(data.data) * 8
        peak = max(peak, int(size / entry.duration))
        bits += size
        seconds += entry.duration
    if not seconds:
        return None
    return peak, int(bits / seconds)


def render_master(variants: list[StreamInf], independent: bool = True) -> bytes:
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}"]
    if independent:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    for v in sorted(variants, key=lambda v: v.bandwidth, reverse=True):
        attrs = [f"BANDWIDTH={v.bandwidth}", f"AVERAGE-BANDWIDTH={v.average_bandwidth}"]
        if v.width and v.height:
            attrs.append(f"RESOLUTION={v.width}x{v.height}")
        if v.fps:
            attrs.append(f"FRAME-RATE={v.fps:.3f}")
        if v.codecs:  # unknown for a source the ladder does not transcode (not H.264)
            attrs.append(f'CODECS="{v.codecs}"')
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), v.uri]
    return ("\n".join(lines) + "\n").encode()
