"""EXT-X-RENDITION-REPORT lines: an LL-HLS rendition's playlist tells where the room's
other renditions are (rfc8216bis 4.4.5.4), so a player switches without a blind reload."""

from __future__ import annotations

from livecast.hls.service import DEFAULT_RENDITION, HlsService


def relative_uri(current: str, other: str) -> str:
    """The URI of ``other``'s playlist from ``current``'s (/hls/{slug}/ vs /hls/{slug}/{name}/)."""
    base = "" if current == DEFAULT_RENDITION else "../"
    return f"{base}index.m3u8" if other == DEFAULT_RENDITION else f"{base}{other}/index.m3u8"


def rendition_reports(hls: HlsService, slug: str, current: str) -> bytes:
    lines = []
    for other in sorted(hls.renditions(slug)):
        room = hls.room(slug, other)
        if other == current or room is None or room.playlist is None or room.playlist.ended:
            continue
        msn, part = room.playlist.part_position()
        if part < 0:
            msn, part = msn - 1, -1
        if msn < 0:
            continue
        attrs = f'URI="{relative_uri(current, other)}",LAST-MSN={msn}'
        if part >= 0:
            attrs += f",LAST-PART={part}"
        lines.append(f"#EXT-X-RENDITION-REPORT:{attrs}\n")
    return "".join(lines).encode()
