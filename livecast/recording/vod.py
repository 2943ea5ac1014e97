"""VOD playlists of stored recordings, and the signed URLs that open private ones.

The playlist lists only indexed segments (each durably stored), so a recording cut short
by a crash plays up to its last stored segment.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
from datetime import UTC, datetime

from livecast.storage.recordings import StoredSegment

log = logging.getLogger(__name__)

SEGMENT_NAME = re.compile(r"^(?:\d{1,9}\.(?:ts|m4s)|init\d{1,9}\.mp4)$")


def object_name(key: str) -> str:
    """The last part of an object key: the name a playlist uses for it."""
    return key.rsplit("/", 1)[-1]


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_vod(segments: list[StoredSegment], query: str = "", ended: bool = True) -> bytes:
    """An EXT-X-PLAYLIST-TYPE:VOD playlist with EXT-X-ENDLIST (EVENT, open, while still
    recording); ``query`` (a signature) is appended to every URI so a player without a
    session can fetch them too."""
    return _render(segments, "VOD" if ended else "EVENT", "", query, ended=ended)


def render_dvr(segments: list[StoredSegment], recording_id: int, window: float) -> bytes:
    """The broadcast in progress from its start (an EVENT playlist), or its last ``window``
    seconds once it is longer (then a sliding playlist); URIs point into /vod/{id}/."""
    if segments:
        edge = segments[-1].media_start + segments[-1].duration
        kept = [s for s in segments if s.media_start + s.duration > edge - window]
    else:
        kept = []
    kind = "EVENT" if len(kept) == len(segments) else None
    return _render(kept, kind, f"/vod/{recording_id}/", "", ended=False)


def _render(segments: list[StoredSegment], kind: str | None, base: str, query: str, ended: bool) -> bytes:
    suffix = f"?{query}" if query else ""
    target = max((math.ceil(s.duration) for s in segments), default=1)
    fmp4 = any(s.init_key for s in segments)
    sequence = segments[0].seq if segments else 0
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{7 if fmp4 else 3}", f"#EXT-X-TARGETDURATION:{max(1, target)}",
             *([f"#EXT-X-PLAYLIST-TYPE:{kind}"] if kind else []), f"#EXT-X-MEDIA-SEQUENCE:{sequence}",
             "#EXT-X-INDEPENDENT-SEGMENTS"]
    init: str | None = None
    for i, segment in enumerate(segments):
        if i and segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if segment.init_key and segment.init_key != init:
            init = segment.init_key
            lines.append(f'#EXT-X-MAP:URI="{base}{object_name(init)}{suffix}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(segment.program_date_time)}")
        lines.append(f"#EXTINF:{segment.duration:.5f},")
        lines.append(base + object_name(segment.object_key) + suffix)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


class UrlSigner:
    """HMAC-signed, expiring access to one recording (``exp`` and ``sig`` query values).
    Every node given the same key accepts the same URLs."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, recording_id: int, expires: int) -> str:
        message = f"vod:{recording_id}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def query(self, recording_id: int, expires: int) -> str:
        return f"exp={expires}&sig={self.sign(recording_id, expires)}"

    def valid(self, recording_id: int, expires: str | None, sig: str | None, now: float) -> bool:
        if not expires or not sig or not expires.isdigit() or len(expires) > 12:
            return False
        if int(expires) < now:
            return False
        return hmac.compare_digest(self.sign(recording_id, int(expires)), sig)
