"""Units to container bytes: one PyAV output container per segment.

MPEG-TS: each segment is a complete little TS file (PAT/PMT first). The muxer flags
each PID's first packet as discontinuous (``initial_discontinuity``); the segmenter's
``TsContinuity`` then carries the continuity counters over from the previous segment
and clears that flag except where the timeline really breaks (clearing a bit is cheap,
adding an adaptation field is not). The TS muxer converts AVCC/HVCC to Annex B and
adds ADTS itself.

fMP4: each segment is muxed as a fragmented MP4 (empty moov, one fragment,
``frag_discont`` + non-negative timestamps so ``tfdt`` carries the absolute decode
time). The ftyp+moov prefix is identical for every segment made from the same
template, so it is cut off and served once as the init segment.
"""

from __future__ import annotations

import logging
import struct
from fractions import Fraction

import av

from livecast.hls.template import Template
from livecast.core.media import Codec, MediaUnit, Track

log = logging.getLogger(__name__)

MS = Fraction(1, 1000)
# max_delay: PCR runs 0.7 s ahead of DTS, as with the ffmpeg tool (PTS/DTS carry a constant
# +1.4 s offset; the same in every segment, so the timeline stays continuous).
TS_OPTIONS = {"mpegts_flags": "initial_discontinuity", "max_delay": "700000", "avoid_negative_ts": "disabled"}
# frag_discont + make_non_negative: tfdt = the unit's own decode time (not reset to 0 per
# container); use_editlist=0: no shift by the first composition offset (B-frames);
# skip_trailer: no mfra index at the end of every media segment.
MP4_OPTIONS = {
    "movflags": "frag_custom+empty_moov+default_base_moof+frag_discont+skip_trailer",
    "avoid_negative_ts": "make_non_negative",
    "use_editlist": "0",
}
CONTENT_TYPES = {"mpegts": "video/mp2t", "fmp4": "video/mp4", "init": "video/mp4"}
EXTENSIONS = {"mpegts": "ts", "fmp4": "m4s"}


class _Chunks:
    """Where PyAV writes a segment: each buffer it flushes, kept as it comes and joined once
    at the end. A growing ``BytesIO`` reallocates and copies the whole segment over and over
    as it grows (a sixth of the ingest CPU went there). Having no ``seek``, it tells FFmpeg
    the output is a stream, which the TS and fragmented-MP4 muxers write identically."""

    __slots__ = ("chunks", "write")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.write = self.chunks.append  # PyAV counts a non-int answer as all bytes written

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)

    def getbuffer(self) -> bytearray:
        return bytearray().join(self.chunks)


class MuxError(Exception):
    """A segment container could not be opened or finished."""


class SegmentMuxer:
    """Muxes the units of one segment into one in-memory container."""

    def __init__(self, template: Template, kind: str) -> None:
        self.kind = kind
        self._buffer = _Chunks()
        fmt, options = ("mpegts", TS_OPTIONS) if kind == "mpegts" else ("mp4", MP4_OPTIONS)
        self._container = av.open(self._buffer, "w", format=fmt, options=dict(options))
        self._streams: dict[Track, av.stream.Stream] = {}
        try:
            if template.video is not None:
                stream = self._container.add_stream_from_template(template.video, opaque=True)
                if kind == "fmp4" and template.video_config is not None and template.video_config.codec is Codec.HEVC:
                    stream.codec_context.codec_tag = "hvc1"  # what Apple players want (parameter sets in hvcC)
                self._streams[Track.VIDEO] = stream
            if template.audio is not None:
                audio = self._container.add_stream_from_template(template.audio, opaque=True)
                if template.sample_rate:
                    audio.codec_context.sample_rate = template.sample_rate
                self._streams[Track.AUDIO] = audio
            if any(s.type not in ("video", "audio") for s in self._streams.values()):
                raise ValueError(f"{fmt} cannot carry this codec")
            # Write the header now: a muxer whose header failed must never see a packet
            # (FFmpeg would crash), so a failure here rejects the whole template.
            self._container.start_encoding()
        except (av.FFmpegError, ValueError) as err:
            self.abort()
            raise MuxError(f"cannot open {kind} muxer: {err}") from err
        self.packets = 0
        self.dropped = 0

    def add(self, unit: MediaUnit, duration: int = 0) -> bool:
        """Mux one unit; a unit FFmpeg rejects is dropped (counted) and False returned.
        ``duration`` (ms, 0 = unknown) sets the sample's duration: LL-HLS parts need it
        for the last sample of each track in a fragment."""
        stream = self._streams.get(unit.track)
        if stream is None or not unit.payload:
            self.dropped += 1
            return False
        packet = av.Packet(unit.payload)
        packet.stream = stream
        packet.time_base = MS
        packet.dts = unit.dts
        packet.pts = unit.pts
        packet.is_keyframe = unit.keyframe
        if duration > 0:
            packet.duration = duration
        try:
            self._container.mux_one(packet)
        except (av.FFmpegError, ValueError) as err:
            self.dropped += 1
            log.debug("packet dropped by muxer: %s", err)
            return False
        self.packets += 1
        return True

    def finish(self) -> bytes:
        """Close the container and return everything it wrote."""
        self._close()
        return self._buffer.getvalue()

    def finish_mutable(self) -> bytearray:
        """``finish`` as a bytearray, for a caller that patches the bytes in place (TS
        continuity counters) before it keeps them."""
        self._close()
        return self._buffer.getbuffer()

    def _close(self) -> None:
        try:
            self._container.close()
        except (av.FFmpegError, ValueError) as err:
            log.warning("%s muxer failed to finish a segment: %s", self.kind, err)

    def abort(self) -> None:
        try:
            self._container.close()
        except (av.FFmpegError, ValueError) as err:
            log.debug("closing a %s muxer: %s", self.kind, err)


def split_init(data: bytes) -> tuple[bytes, bytes]:
    """Split fragmented MP4 bytes into (ftyp+moov, the fragments that follow)."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        elif size == 0:
            size = len(data) - pos
        if kind in (b"moof", b"styp", b"sidx") or size < 8:
            break
        pos += size
    return data[:pos], data[pos:]
