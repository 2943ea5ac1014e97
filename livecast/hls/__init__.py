"""HLS output: media units in, rolling MPEG-TS or fMP4 playlists out, kept in memory.

``HlsService`` is the entry point: ``publish_started`` returns a ``StreamWriter``
for a publisher session; the HTTP layer reads ``playlist()`` and ``segment()``.
"""

from livecast.hls.service import HlsService, StreamWriter
from livecast.hls.store import SegmentData

PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"

__all__ = ["PLAYLIST_CONTENT_TYPE", "HlsService", "SegmentData", "StreamWriter"]
